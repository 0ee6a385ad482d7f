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
