"""Delivered marks and lease releases of a delivery worker's slots, written in batches."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import asyncpg

from tracer.store import deliveries as delivery_store

log = logging.getLogger("tracer.alerts")


class Finisher:
    """Writes delivered marks and lease releases for all of a worker's slots in one transaction
    every few milliseconds, so a delivery costs an HTTP request and no database round trip of its
    own. A mark lost to a crash before its batch is written only means that event is sent again
    (delivery is at least once); a lease is released only after its marks are written.

    While `busy()` says first deliveries still wait for a slot (a block's event going out to
    thousands of subscriptions), the batch waits too, up to `hold` seconds: those writes then cost
    Postgres CPU beside the requests, and on a small machine the last receivers of the block waited
    for them. After a crash that much more is sent twice; `flush()` is never held."""

    def __init__(self, pool: asyncpg.Pool, worker: str, every: float, released: Callable[[], None], *,
                 busy: Callable[[], bool] = lambda: False, hold: float = 0.5) -> None:
        self.pool = pool
        self.worker = worker
        self.every = every
        self.released = released  # called once leases were given back
        self.busy = busy
        self.hold = hold
        self._marks: list[tuple[int, int, int]] = []
        self._releases: list[tuple[int, bool]] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._kick = asyncio.Event()

    def mark(self, subscription_id: int, seq: int, status: int) -> None:
        self._marks.append((subscription_id, seq, status))

    async def flush(self) -> None:
        """Wait until everything marked so far is written."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        self._kick.set()
        await fut

    def release(self, subscription_id: int, succeeded: bool) -> None:
        self._releases.append((subscription_id, succeeded))
        self._kick.set()

    async def run(self, stop: asyncio.Event) -> None:
        while True:
            if not (self._marks or self._releases or self._waiters):
                if stop.is_set():
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._kick.wait(), 0.1)
                self._kick.clear()
                continue
            await asyncio.sleep(self.every)  # gather what the other slots finish meanwhile
            loop = asyncio.get_running_loop()
            held_until = loop.time() + self.hold
            holding = self.busy  # looked at every few ms: nothing signals its end
            while holding() and not self._waiters and not stop.is_set() and loop.time() < held_until:  # noqa: ASYNC110
                await asyncio.sleep(self.every)
            marks, releases, waiters = self._marks, self._releases, self._waiters
            self._marks, self._releases, self._waiters = [], [], []
            try:
                async with self.pool.acquire() as conn:
                    await delivery_store.finish_deliveries(conn, self.worker, marks, releases)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                # Unwritten marks are re-sent and unreleased leases lapse: nothing is lost.
                log.warning("event=deliver_finish_failed marks=%d releases=%d error=%r", len(marks), len(releases),
                            exc)
                for w in waiters:
                    if not w.done():
                        w.set_exception(exc)
                continue
            for w in waiters:
                if not w.done():
                    w.set_result(None)
            if releases:
                self.released()
