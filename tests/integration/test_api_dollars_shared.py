"""A trace's dollar sums (every hop at its block's price) read every hop: the API computes them once
per state of the trace however many clients ask at the same time, and a large running trace gets
them when it finishes instead of on every poll (fifty clients polling the exits of a 1M-hop trace
each started a 24-second sum, and the API answered nothing for a minute)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tests.api_support import Api, conforms, running_api
from tracer.api.context import CTX, Settings
from tracer.api.memo import DollarsMemo
from tracer.chains.evm import EvmChain
from tracer.demo import load_scenario_labels
from tracer.devchain.prices import paths_for
from tracer.devchain.scenario import Scenario
from tracer.store.db import Database


@pytest.mark.asyncio(loop_scope="session")
async def test_one_computation_however_many_wait_and_a_leaving_client_cancels_nothing() -> None:
    memo = DollarsMemo(size=2)
    started = 0
    release = asyncio.Event()

    async def compute() -> int:
        nonlocal started
        started += 1
        await release.wait()
        return 42

    waiters = [asyncio.ensure_future(memo.get("k", compute)) for _ in range(50)]
    await asyncio.sleep(0.01)
    waiters[0].cancel()  # a client that leaves
    release.set()
    results = await asyncio.gather(*waiters[1:])
    assert started == 1 and memo.computed == 1 and set(results) == {42}
    assert await memo.get("k", compute) == 42 and started == 1  # kept
    for key in ("a", "b"):
        await memo.get(key, compute)
    await memo.get("k", compute)  # pushed out by two newer keys: computed again
    assert started == 4


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def api(db: Database, small_scenario: Scenario, devchain_factory: Any) -> AsyncIterator[Api]:
    sc = small_scenario
    ts = [sc.genesis_time] + [b.timestamp for b in sc.blocks]
    node = await devchain_factory(sc, prices=paths_for("ethereum", ts[0], ts[-1], seed=3, heartbeat=24))
    client = EvmChain(node.url, chain=sc.chain, expected_chain_id=sc.chain_id)
    await client.connect()
    await load_scenario_labels(db.pool, sc)
    # No exits cache: every request goes to the sums, as for a running or watching trace.
    settings = Settings(workers=2, worker_lease_seconds=10.0, exits_cache_size=0)
    try:
        async with running_api(db, {sc.chain: client}, settings) as a:
            yield a
    finally:
        await client.close()


@pytest.mark.asyncio(loop_scope="session")
async def test_concurrent_exits_requests_share_one_sum(api: Api, small_scenario: Scenario) -> None:
    trace = await api.run_trace({"seeds": small_scenario.seeds, "policy": {}})
    ctx = api.app[CTX]
    ctx.dollars = DollarsMemo()  # the summary read by run_trace already summed it (the same sums)
    answers = await asyncio.gather(*(api.call("GET", f"/v1/traces/{trace['id']}/exits", expect=200)
                                     for _ in range(20)))
    bodies = [body for _, body, _ in answers]
    assert ctx.dollars.computed == 1
    assert all(b == bodies[0] for b in bodies)
    conforms("exit-list", bodies[0])
    summed = bodies[0]["usd"]
    assert "deferred" not in summed and isinstance(summed["unpriced_hops"], int)
    assert any(i["usd"] is not None for i in bodies[0]["items"])  # the native exits, at the feed's price


@pytest.mark.asyncio(loop_scope="session")
async def test_a_large_running_trace_gets_its_dollars_when_it_finishes(
    api: Api, small_scenario: Scenario, db: Database
) -> None:
    trace = await api.run_trace({"seeds": small_scenario.seeds, "policy": {}})
    ctx = api.app[CTX]
    old = ctx.settings.live_usd_max_hops
    await db.pool.execute("UPDATE traces SET status = 'running' WHERE id = $1", trace["id"])
    try:
        ctx.settings.live_usd_max_hops = trace["progress"]["hops"] - 1
        before = ctx.dollars.computed
        _, body, _ = await api.call("GET", f"/v1/traces/{trace['id']}/exits", expect=200)
        conforms("exit-list", body)
        assert ctx.dollars.computed == before  # nothing summed
        assert body["items"] and all(i["usd"] is None for i in body["items"])
        assert body["usd"]["seeds"] is None and "when the trace finishes" in body["usd"]["deferred"]
        ctx.settings.live_usd_max_hops = trace["progress"]["hops"]  # small enough again: summed
        _, body, _ = await api.call("GET", f"/v1/traces/{trace['id']}/exits", expect=200)
        assert "deferred" not in body["usd"] and isinstance(body["usd"]["unpriced_hops"], int)
        assert any(i["usd"] is not None for i in body["items"])
    finally:
        ctx.settings.live_usd_max_hops = old
        await db.pool.execute("UPDATE traces SET status = 'done' WHERE id = $1", trace["id"])
