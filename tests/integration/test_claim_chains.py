"""A worker claims only jobs on chains it has a node for; the others stay pending for workers
that do (a fleet where only some processes read Bitcoin)."""

from __future__ import annotations

import pytest

from tracer.store import traces as store
from tracer.store.db import Database

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_claims_stay_on_the_workers_chains(db: Database) -> None:
    async with db.pool.acquire() as conn:
        trace_id = await store.insert_trace(conn, chain="ethereum", seeds=["0x" + "01" * 20], policy={}, label=None,
                                            from_block=0, to_block=10)
        await store.enqueue(conn, trace_id, [("bc1qexampleaddress", 3)], chain="bitcoin")
        await store.enqueue(conn, trace_id, [("0x" + "02" * 20, 1)])
        await conn.execute("UPDATE jobs SET state = 'done' WHERE trace_id = $1 AND kind = 'start'", trace_id)

        assert await store.any_runnable(conn, ["bitcoin"])
        assert not await store.any_runnable(conn, ["avalanche"])
        assert await store.claim_jobs(conn, "evm-only", 10, 30.0, ["avalanche"]) == []

        [btc] = await store.claim_jobs(conn, "btc-reader", 10, 30.0, ["bitcoin"])
        assert (btc.chain, btc.address) == ("bitcoin", "bc1qexampleaddress")
        [eth] = await store.claim_jobs(conn, "eth-reader", 10, 30.0, ["ethereum"])
        assert (eth.chain, eth.address) == ("ethereum", "0x" + "02" * 20)
        assert await store.claim_jobs(conn, "anyone", 10, 30.0) == []  # both leased now


async def test_claims_take_the_longest_waiting_trace_and_skip_one_being_claimed(db: Database) -> None:
    """Across traces the job that waits longest goes first (a block that wakes many watching
    traces gets each its step before any goes a hop further), a trace being claimed by someone
    else is skipped rather than returning nothing, and `other_than` leaves out the caller's own."""
    chain = "claim-order-test"  # only this test's jobs are on it
    async with db.pool.acquire() as conn:
        ids = []
        for i in range(3):
            tid = await store.insert_trace(conn, chain="ethereum", seeds=["0x" + f"{0x70 + i:02x}" * 20], policy={},
                                           label=None, from_block=0, to_block=10)
            await store.enqueue(conn, tid, [(f"addr-{i}", 1)], chain=chain)
            ids.append(tid)
        # Woken oldest first: the last trace, then the first, then the second.
        for tid, age in zip(ids, (20, 5, 30), strict=True):
            await conn.execute("UPDATE jobs SET updated_at = now() - make_interval(secs => $2) "
                               "WHERE trace_id = $1 AND chain = $3", tid, age, chain)
        [first] = await store.claim_jobs(conn, "w1", 10, 30.0, [chain], other_than=[ids[2]])
        assert first.trace_id == ids[0]
        async with db.pool.acquire() as other, other.transaction():
            [held] = await store.claim_jobs(other, "w2", 10, 30.0, [chain])  # locked until this block ends
            assert held.trace_id == ids[2]
            [next_one] = await store.claim_jobs(conn, "w3", 10, 30.0, [chain])
            assert next_one.trace_id == ids[1]
        assert await store.claim_jobs(conn, "w4", 10, 30.0, [chain]) == []
        await conn.execute("UPDATE traces SET status = 'cancelled' WHERE id = ANY($1::bigint[])", ids)
