"""Postgres restarted in the middle of a trace, on a server this test starts itself (the embedded
pgserver in a temp dir, never the shared one): the workers' batch in flight is lost without a trace
of it, they reconnect and finish with exactly the hops of an undisturbed run, and the API answers
again once the server is back."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.api_support import running_api
from tests.reliability_support import duplicate_hops, hop_rows
from tracer.api.context import Settings
from tracer.chains.evm import EvmChain
from tracer.demo import load_scenario_labels
from tracer.devchain.scenario import Scenario
from tracer.engine.service import create_trace
from tracer.runner import run_with_workers
from tracer.store.db import Database, retrying
from tracer.store.embedded import start_embedded, start_embedded_server, stop_embedded
from tracer.workers.trace import Worker, WorkerSettings

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(loop_scope="session")
async def own_server() -> AsyncIterator[tuple[Path, Database]]:
    data_dir = Path(tempfile.mkdtemp(prefix="tracer-restart-pg-"))
    db: Database | None = None
    try:
        url = await start_embedded(data_dir)
        db = await Database.connect(url)
        yield data_dir, db
    finally:
        if db is not None:
            await db.close(grace_s=2)
        await asyncio.to_thread(stop_embedded, data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)


async def _status(db: Database, trace_id: int) -> str:
    async def read() -> str:
        return str(await db.pool.fetchval("SELECT status FROM traces WHERE id = $1", trace_id))
    return await retrying(read, attempts=20)


async def test_postgres_restart_mid_trace(
    own_server: tuple[Path, Database], small_scenario: Scenario, devchain_factory: Any
) -> None:
    data_dir, db = own_server
    await load_scenario_labels(db.pool, small_scenario)
    fast = await devchain_factory(small_scenario)
    client = EvmChain(fast.url, chain=small_scenario.chain, expected_chain_id=small_scenario.chain_id)
    await client.connect()
    slow = await devchain_factory(small_scenario, latency=0.05)
    slow_client = EvmChain(slow.url, chain=small_scenario.chain, expected_chain_id=small_scenario.chain_id)
    await slow_client.connect()
    try:
        reference_id = await create_trace(db.pool, client, chain=small_scenario.chain, seeds=small_scenario.seeds,
                                          policy={})
        assert await run_with_workers(db.pool, {small_scenario.chain: client}, reference_id, workers=2,
                                      progress=False) == "done"
        reference = await hop_rows(db.pool, reference_id)
        await db.pool.execute("DELETE FROM address_coverage")

        async with running_api(db, {small_scenario.chain: slow_client}, Settings(key_cache_seconds=0)) as api:
            status, body, _ = await api.call("POST", "/v1/traces", expect=201,
                                             json={"seeds": small_scenario.seeds, "chain": small_scenario.chain})
            trace_id = body["id"]
            stop = asyncio.Event()
            # Short leases: a batch in flight when the server went away is retried once they lapse.
            settings = WorkerSettings(batch_size=4, lease_seconds=1.5)
            crew = [Worker(db.pool, {small_scenario.chain: slow_client}, name=f"restart-{i}", settings=settings)
                    for i in range(2)]
            tasks = [asyncio.create_task(w.run(stop)) for w in crew]
            try:
                # Stop the server at a moment a batch is in flight: some hops written, jobs leased.
                while True:
                    hops = await db.pool.fetchval("SELECT count(*) FROM hops WHERE trace_id = $1", trace_id)
                    held = await db.pool.fetchval(
                        "SELECT count(*) FROM jobs WHERE trace_id = $1 AND state = 'running'", trace_id)
                    if hops >= 5 and held:
                        break
                    assert not any(t.done() for t in tasks)
                    assert await _status(db, trace_id) != "done", "the trace finished before the restart"
                    await asyncio.sleep(0.005)
                await asyncio.to_thread(stop_embedded, data_dir)
                status, _, _ = await api.call("GET", f"/v1/traces/{trace_id}")
                assert status == 503, status  # "database unreachable, retry", not a 500 or a hang
                await asyncio.sleep(1.0)
                await asyncio.to_thread(start_embedded_server, data_dir)
                assert await asyncio.wait_for(_status(db, trace_id), 60) in ("queued", "running", "done")
                deadline = asyncio.get_running_loop().time() + 90
                while await _status(db, trace_id) in ("queued", "running"):
                    dead = [t for t in tasks if t.done()]
                    assert not dead, f"a worker died: {dead[0].exception()!r}"
                    assert asyncio.get_running_loop().time() < deadline, "the trace did not finish"
                    await asyncio.sleep(0.1)
            finally:
                stop.set()
                await asyncio.gather(*tasks, return_exceptions=True)
            assert held, "the restart did not hit a batch in flight"
            assert await _status(db, trace_id) == "done"
            status, body, _ = await api.call("GET", f"/v1/traces/{trace_id}", expect=200)
            assert body["status"] == "done"
        assert await duplicate_hops(db.pool, trace_id) == 0
        assert await hop_rows(db.pool, trace_id) == reference
    finally:
        await client.close()
        await slow_client.close()
