"""The delivery queue's reads and marks stay probes when the statistics say nothing is pending.

deliveries is mostly delivered rows, so ANALYZE nearly always finds no pending one. Before
migration 034 the planner then took the pending partial indexes for empty and scanned them whole:
once per subscription in a claim's queue read, once per batch of delivered marks (joined against
every mark). Counted here as index entries read, which does not depend on the machine's speed.
"""

from __future__ import annotations

from typing import Any

import pytest

from tracer.store import deliveries
from tracer.store.db import Database

pytestmark = pytest.mark.asyncio(loop_scope="session")

BASE = 9_000_000  # subscription ids no other test uses (deliveries hold no key into subscriptions)
SUBS = 2000
PROBED = 100


async def _entries_read(conn: Any) -> int:
    await conn.execute("SELECT pg_stat_force_next_flush()")
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    return int(await conn.fetchval(
        "SELECT coalesce(sum(idx_tup_read), 0) FROM pg_stat_user_indexes WHERE relname = 'deliveries'"))


async def test_queue_reads_and_marks_probe_with_stale_statistics(db: Database) -> None:
    async with db.pool.acquire() as conn:
        try:
            # History: every row delivered when ANALYZE looks, as in a running system.
            await conn.execute(
                """INSERT INTO deliveries (subscription_id, seq, event_id, trace_key, state)
                   SELECT $1 + g, r, r, 7, 'delivered' FROM generate_series(1, $2) g, generate_series(1, 10) r""",
                BASE, SUBS)
            await conn.execute("ANALYZE deliveries")
            await conn.execute(
                """INSERT INTO deliveries (subscription_id, seq, event_id, trace_key)
                   SELECT $1 + g, 11, 11, 7 FROM generate_series(1, $2) g""",
                BASE, SUBS)
            ids = [BASE + i for i in range(1, PROBED + 1)]

            before = await _entries_read(conn)
            due = await deliveries.due_deliveries(conn, ids, 100)
            read_due = await _entries_read(conn) - before
            assert [(d.subscription_id, d.seq) for d in due] == [(i, 11) for i in ids]

            before = await _entries_read(conn)
            await deliveries.finish_deliveries(conn, "plans", [(i, 11, 200) for i in ids], [])
            read_marks = await _entries_read(conn) - before
            assert await conn.fetchval(
                "SELECT count(*) FROM deliveries WHERE subscription_id = ANY($1) AND state = 'delivered' AND seq = 11",
                ids) == PROBED

            # A few entries per subscription probed, not the SUBS pending ones per probe (or per batch).
            assert read_due <= 4 * PROBED, read_due
            assert read_marks <= 4 * PROBED, read_marks
        finally:
            await conn.execute("DELETE FROM deliveries WHERE subscription_id > $1 AND subscription_id <= $2",
                               BASE, BASE + SUBS)
