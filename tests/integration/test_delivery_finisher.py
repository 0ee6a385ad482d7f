"""The delivery worker's finisher: marks written in batches, held while first deliveries wait.

While `busy()` says leased subscriptions still wait for their first slot (a block's event going
out), the marks wait too, at most `hold` seconds; a `flush()` is never held; once not busy, they
are written within a batch interval.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from tracer.alerts.finisher import Finisher
from tracer.store.db import Database

pytestmark = pytest.mark.asyncio(loop_scope="session")

BASE = 9_100_000  # subscription ids no other test uses (deliveries hold no key into subscriptions)


@contextlib.asynccontextmanager
async def running(db: Database, finisher: Finisher, ids: list[int]
                  ) -> AsyncIterator[tuple[asyncio.Task[None], asyncio.Event]]:
    """`finisher` running (its task and stop) until the block ends; then stopped, the rows deleted."""
    stop = asyncio.Event()
    task = asyncio.create_task(finisher.run(stop))
    try:
        yield task, stop
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
        await db.pool.execute("DELETE FROM deliveries WHERE subscription_id = ANY($1)", ids)


async def _pending(db: Database, ids: list[int]) -> None:
    await db.pool.execute(
        "INSERT INTO deliveries (subscription_id, seq, event_id, trace_key) "
        "SELECT g, 1, 1, 7 FROM unnest($1::bigint[]) g", ids)


async def _delivered(db: Database, ids: list[int]) -> int:
    return int(await db.pool.fetchval(
        "SELECT count(*) FROM deliveries WHERE subscription_id = ANY($1) AND state = 'delivered'", ids))


async def test_marks_wait_while_first_deliveries_wait_but_not_past_the_hold_nor_a_flush(db: Database) -> None:
    ids = [BASE + i for i in range(1, 7)]
    await _pending(db, ids)
    busy = True
    released: list[int] = []
    finisher = Finisher(db.pool, "finisher-test", 0.005, released=lambda: released.append(1),
                        busy=lambda: busy, hold=1.5)
    async with running(db, finisher, ids):
        # Busy: held (well inside the 1.5 s hold).
        finisher.mark(ids[0], 1, 200)
        await asyncio.sleep(0.4)
        assert await _delivered(db, ids) == 0
        # Not past the hold, busy or not.
        await asyncio.sleep(1.5)
        assert await _delivered(db, ids) == 1

        # A flush is written at once, busy or not.
        finisher.mark(ids[1], 1, 200)
        await asyncio.wait_for(finisher.flush(), 0.5)
        assert await _delivered(db, ids) == 2

        # Busy again, then the first deliveries are out: written within a batch or two.
        finisher.mark(ids[2], 1, 200)
        await asyncio.sleep(0.2)
        assert await _delivered(db, ids) == 2
        busy = False
        await asyncio.sleep(0.2)
        assert await _delivered(db, ids) == 3

        # Not busy: every few ms, as before.
        finisher.mark(ids[3], 1, 200)
        await asyncio.sleep(0.2)
        assert await _delivered(db, ids) == 4


async def test_stopping_writes_what_is_held(db: Database) -> None:
    ids = [BASE + 10]
    await _pending(db, ids)
    finisher = Finisher(db.pool, "finisher-test", 0.005, released=lambda: None, busy=lambda: True, hold=30.0)
    async with running(db, finisher, ids) as (task, stop):
        finisher.mark(ids[0], 1, 200)
        await asyncio.sleep(0.1)
        assert await _delivered(db, ids) == 0
        stop.set()
        await asyncio.wait_for(task, 2)
        assert await _delivered(db, ids) == 1
