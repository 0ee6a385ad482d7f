"""An idle worker is woken by Postgres NOTIFY when a job becomes runnable (migration 022,
tracer/workers/wakeup.py), not by its poll: the workers here poll once an hour, so a trace they
finish was started by the notification alone."""

from __future__ import annotations

import asyncio

import pytest

from tests.fixtures_chain import RunningDevChain
from tracer.chains.evm import EvmChain
from tracer.engine.service import create_trace, wait_for
from tracer.store.db import Database
from tracer.workers.trace import Worker, WorkerSettings
from tracer.workers.wakeup import hub

pytestmark = pytest.mark.asyncio(loop_scope="session")

_NEVER = 3600.0  # poll interval: longer than the test's hang guard


async def test_an_idle_worker_takes_a_new_trace_when_notified(db: Database, devchain: RunningDevChain) -> None:
    sc = devchain.scenario
    client = EvmChain(devchain.url, chain=sc.chain, expected_chain_id=sc.chain_id)
    await client.connect()
    never = WorkerSettings(idle_sleep=_NEVER)
    workers = [Worker(db.pool, {sc.chain: client}, name=f"wakeup-{i}", settings=never) for i in range(2)]
    # A worker of another chain shares the LISTEN but is not woken by this chain's jobs.
    other = Worker(db.pool, {"avalanche": client}, name="wakeup-avalanche", settings=never)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(w.run(stop)) for w in [*workers, other]]
    try:
        await asyncio.wait_for(hub(db.pool).listening.wait(), 60)
        # Idle after their first (empty) claim, and after the wake-up every (re)connect sends.
        for w in [*workers, other]:
            await asyncio.wait_for(_idle_after_connect(w), 60)
        woken_before = [w.waiter.notifications for w in workers]
        trace_id = await create_trace(db.pool, client, chain=sc.chain, seeds=sc.seeds, policy={})
        assert await wait_for(db.pool, trace_id, timeout=120) == "done"
        assert sum(w.waiter.notifications for w in workers) > sum(woken_before)
        assert sum(w.stats.notified for w in workers) >= 1
        assert sum(w.stats.jobs for w in workers) > 1
        assert other.waiter.notifications == 0 and other.stats.jobs == 0
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await client.close()
    assert not hub(db.pool).listening.is_set()  # the last worker out closed the LISTEN


async def _idle_after_connect(w: Worker) -> None:
    while not (w.idle.is_set() and not w.waiter.event.is_set()):  # noqa: ASYNC110 (two events at once)
        await asyncio.sleep(0.01)


async def test_a_worker_with_lanes_runs_several_traces_at_once(db: Database, devchain: RunningDevChain) -> None:
    """Lanes: one worker runs batches of different traces at once (a block wakes many watching
    traces), each trace still one batch at a time, and every trace ends as a lone one does."""
    sc = devchain.scenario
    client = EvmChain(devchain.url, chain=sc.chain, expected_chain_id=sc.chain_id)
    await client.connect()
    try:
        ids = [await create_trace(db.pool, client, chain=sc.chain, seeds=sc.seeds, policy={}) for _ in range(3)]
        worker = Worker(db.pool, {sc.chain: client}, name="lanes", settings=WorkerSettings(lanes=3, idle_sleep=0.05))
        await asyncio.wait_for(worker.run(until_idle=True), 120)
        assert worker.stats.peak_lanes >= 2
        statuses = await db.pool.fetch("SELECT status FROM traces WHERE id = ANY($1::bigint[])", ids)
        assert {r["status"] for r in statuses} == {"done"}
        hops = await db.pool.fetch("SELECT trace_id, count(*) AS n, sum(amount::numeric) AS total FROM hops "
                                   "WHERE trace_id = ANY($1::bigint[]) GROUP BY trace_id", ids)
        assert len(hops) == 3 and len({(r["n"], r["total"]) for r in hops}) == 1, hops
    finally:
        await client.close()
