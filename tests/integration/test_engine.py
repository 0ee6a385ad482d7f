"""The trace engine end to end: real devchain over HTTP, real Postgres, real worker processes."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tests.reliability_support import stop_processes, worker_process
from tracer.chains.evm import EvmChain
from tracer.demo import load_scenario_labels
from tracer.devchain.scenario import Scenario, ScenarioParams, generate
from tracer.engine import report as treport
from tracer.engine.service import create_trace, wait_for
from tracer.runner import run_with_workers
from tracer.store.db import Database

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return generate(ScenarioParams.for_size(3000, seed=11))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def chain_url(scenario: Scenario, devchain_factory: Any) -> AsyncIterator[str]:
    server = await devchain_factory(scenario)
    yield server.url


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client(chain_url: str, scenario: Scenario) -> AsyncIterator[EvmChain]:
    c = EvmChain(chain_url, chain=scenario.chain, expected_chain_id=scenario.chain_id)
    await c.connect()
    yield c
    await c.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def labelled_db(db: Database, scenario: Scenario) -> Database:
    await load_scenario_labels(db.pool, scenario)
    return db


async def _hops(db: Database, trace_id: int) -> set[tuple[str, str, int, str]]:
    rows = await db.pool.fetch(
        """SELECT t.tx_hash, t.position, h.amount, h.status FROM hops h JOIN transfers t ON t.id = h.transfer_id
           WHERE h.trace_id = $1""", trace_id)
    return {(r["tx_hash"], r["position"], int(r["amount"]), r["status"]) for r in rows}


async def test_trace_finds_every_offramp_with_the_right_amount(
    labelled_db: Database, client: EvmChain, scenario: Scenario
) -> None:
    trace_id = await create_trace(labelled_db.pool, client, chain=scenario.chain, seeds=scenario.seeds, policy={})
    status = await run_with_workers(labelled_db.pool, {scenario.chain: client}, trace_id, workers=2, progress=False)
    assert status == "done"
    rep = await treport.build(labelled_db.pool, trace_id)
    found = {(e.address, e.asset): e for e in rep.exits}
    threshold_share = 0.0005
    checked = 0
    for o in scenario.truth.offramps:
        total = scenario.truth.stolen[o.asset]
        if o.amount < total * threshold_share * 2:
            continue
        checked += 1
        assert (o.address, o.asset) in found, f"off-ramp {o.address} ({o.entity}, {o.kind}) not found"
        got = found[(o.address, o.asset)].amount
        assert abs(got - o.amount) <= o.amount * 0.001, (o.address, got, o.amount)
    assert checked >= 5
    noise = set(scenario.truth.noise_offramps)
    assert not [e.address for e in rep.exits if e.address in noise]
    # exits never hold more than left the seeds
    for asset, total in rep.totals.items():
        assert sum(e.amount for e in rep.exits if e.asset == asset) <= total
    # hubs are reported, not exploded
    stopped = {s["address"] for s in rep.stops}
    for hub in scenario.truth.hubs:
        reached = await labelled_db.pool.fetchval(
            "SELECT count(*) FROM hops WHERE trace_id = $1 AND to_addr = $2", trace_id, hub)
        if reached:
            assert hub in stopped
            assert not await labelled_db.pool.fetchval(
                "SELECT count(*) FROM hops WHERE trace_id = $1 AND from_addr = $2", trace_id, hub)
    text = treport.render(rep)
    assert "deposit address" in text


async def _run_with_processes(db: Database, client: EvmChain, scenario: Scenario, url: str, n: int,
                              kill_after: float | None = None) -> int:
    trace_id = await create_trace(db.pool, client, chain=scenario.chain, seeds=scenario.seeds, policy={})
    # Real OS processes (not tasks) so a SIGKILL is a real crash.
    procs = [worker_process(db.url, url, lease=2.0, batch_size=8) for _ in range(n)]
    try:
        if kill_after is not None:
            # Kill a worker for real while it holds leased jobs mid-trace.
            deadline = asyncio.get_running_loop().time() + 60
            while asyncio.get_running_loop().time() < deadline:
                held = await db.pool.fetchval(
                    "SELECT count(*) FROM jobs WHERE trace_id = $1 AND state = 'running' AND worker LIKE $2",
                    trace_id, f"%:{procs[0].pid}:%")
                hops = await db.pool.fetchval("SELECT count(*) FROM hops WHERE trace_id = $1", trace_id)
                if held and hops >= kill_after:
                    break
                await asyncio.sleep(0.02)
            procs[0].send_signal(signal.SIGKILL)
            procs[0].wait()
        status = await wait_for(db.pool, trace_id, timeout=240)
        assert status == "done"
    finally:
        stop_processes(procs)
    return trace_id


async def test_one_two_and_four_worker_processes_agree(
    labelled_db: Database, client: EvmChain, scenario: Scenario, devchain_factory: Any
) -> None:
    server = await devchain_factory(scenario, latency=0.002)
    # Four processes, then two of them, then one: each trace runs on exactly that many (the others
    # have exited before it starts), and a process start (a second or more of CPU) is paid four
    # times, not seven.
    procs = [worker_process(labelled_db.url, server.url, lease=2.0, batch_size=8) for _ in range(4)]
    results = []
    try:
        for n in (4, 2, 1):
            # In a thread: this event loop serves the devchain the stopping workers may still ask.
            await asyncio.to_thread(stop_processes, procs[n:])
            trace_id = await create_trace(labelled_db.pool, client, chain=scenario.chain, seeds=scenario.seeds,
                                          policy={})
            assert await wait_for(labelled_db.pool, trace_id, timeout=240) == "done"
            assert all(p.poll() is None for p in procs[:n]), "a worker process died"
            results.append(await _hops(labelled_db, trace_id))
    finally:
        await asyncio.to_thread(stop_processes, procs)
    assert results[0], "the trace found nothing"
    assert results[0] == results[1] == results[2]


async def test_sigkilled_worker_loses_and_duplicates_nothing(
    labelled_db: Database, client: EvmChain, scenario: Scenario, devchain_factory: Any
) -> None:
    reference_id = await create_trace(labelled_db.pool, client, chain=scenario.chain, seeds=scenario.seeds, policy={})
    await run_with_workers(labelled_db.pool, {scenario.chain: client}, reference_id, workers=1, progress=False)
    reference = await _hops(labelled_db, reference_id)
    # A slow node keeps jobs leased long enough to be killed while holding them; forget the
    # transfers cache so the workers have to ask that node.
    await labelled_db.pool.execute("DELETE FROM address_coverage")
    server = await devchain_factory(scenario, latency=0.05)
    trace_id = await _run_with_processes(labelled_db, client, scenario, server.url, 2, kill_after=20)
    got = await _hops(labelled_db, trace_id)
    assert got == reference
    dup = await labelled_db.pool.fetchval(
        """SELECT count(*) FROM (SELECT transfer_id FROM hops WHERE trace_id = $1
           GROUP BY transfer_id HAVING count(*) > 1) d""", trace_id)
    assert dup == 0
    attempts = await labelled_db.pool.fetchval(
        "SELECT max(attempts) FROM jobs WHERE trace_id = $1", trace_id)
    assert attempts >= 2, "no job was taken over from the killed worker"


async def test_time_window_resolves_to_blocks(labelled_db: Database, client: EvmChain, scenario: Scenario) -> None:
    from datetime import UTC, datetime

    head = await client.head()
    times = await client.block_times([10, 20])
    start = datetime.fromtimestamp(times[10], UTC).isoformat()
    trace_id = await create_trace(labelled_db.pool, client, chain=scenario.chain, seeds=scenario.seeds,
                                  policy={"from_time": start, "to_time": times[20]})
    row = await labelled_db.pool.fetchrow("SELECT from_block, to_block FROM traces WHERE id = $1", trace_id)
    assert (row["from_block"], row["to_block"]) == (10, 20) and head > 20
    await labelled_db.pool.execute("SELECT 1")
    from tracer.engine.service import TraceInputError

    with pytest.raises(TraceInputError) as err:
        await create_trace(labelled_db.pool, client, chain=scenario.chain, seeds=scenario.seeds,
                           policy={"from_time": times[20] + 10**9})
    assert err.value.field == "policy.from_block"
    await labelled_db.pool.execute("UPDATE traces SET status = 'cancelled' WHERE id = $1", trace_id)
