"""Wake idle workers when a job becomes runnable, instead of letting them find it at their next poll.

One LISTEN connection per pool (taken from it while any worker of the process runs) is shared by
the workers on that pool: a notification on the jobs channel (migration 022, payload the job's
chain) sets the wake event of every registered worker that reads that chain. Notifications only
wake: the claim that follows is the same FOR UPDATE SKIP LOCKED claim as a poll's, so any number of
workers on any number of machines stay correct, and a notification lost while the connection was
down costs one poll interval (the workers keep polling as a fallback).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Collection

import asyncpg

from tracer.store import job_signals

log = logging.getLogger("tracer.worker")

_CHECK_EVERY = 10.0  # seconds between liveness checks of the LISTEN connection
_MIN_POOL = 3  # a smaller pool keeps every connection for the work: its workers only poll


class Waiter:
    """One worker's wake event and the chains it reads."""

    def __init__(self, chains: Collection[str]) -> None:
        self.chains = frozenset(chains)
        self.event = asyncio.Event()
        self.notifications = 0  # job notifications that named one of its chains
        self.waiting = False  # its worker is idle, waiting for this event


class Wakeup:
    """The LISTEN of one pool, shared by its workers (hub(pool) finds or makes it)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.waiters: set[Waiter] = set()
        self.listening = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def register(self, waiter: Waiter) -> None:
        self.waiters.add(waiter)
        if self._task is None and self.pool.get_max_size() >= _MIN_POOL:
            self._task = asyncio.create_task(self._listen(), name="tracer-job-listen")

    async def unregister(self, waiter: Waiter) -> None:
        self.waiters.discard(waiter)
        if not self.waiters and self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            if not self.waiters and _HUBS.get(id(self.pool)) is self:
                _HUBS.pop(id(self.pool), None)

    def others_busy(self, waiter: Waiter) -> bool:
        """Whether another worker of this pool is working (and may be the one whose commit notified)."""
        return any(not w.waiting for w in self.waiters if w is not waiter)

    def _notified(self, _conn: object, _pid: int, _channel: str, chain: str) -> None:
        for w in self.waiters:
            if not chain or chain in w.chains:
                w.notifications += 1
                w.event.set()

    def _wake_all(self) -> None:
        for w in self.waiters:
            w.event.set()

    async def _listen(self) -> None:
        delay = 0.5
        while True:
            try:
                async with self.pool.acquire() as conn:
                    await job_signals.listen(conn, self._notified)
                    try:
                        self.listening.set()
                        delay = 0.5
                        self._wake_all()  # what became runnable while nobody listened
                        while True:
                            await asyncio.sleep(_CHECK_EVERY)
                            await asyncio.wait_for(job_signals.alive(conn), 5.0)
                    finally:
                        self.listening.clear()
                        with contextlib.suppress(Exception):
                            await job_signals.unlisten(conn, self._notified)
            except asyncio.CancelledError:
                raise
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("event=job_listen_lost error=%r retry_in=%.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)


_HUBS: dict[int, Wakeup] = {}


def hub(pool: asyncpg.Pool) -> Wakeup:
    """The Wakeup of `pool` in this process (one LISTEN connection however many workers)."""
    found = _HUBS.get(id(pool))
    if found is None or found.pool is not pool:
        found = _HUBS[id(pool)] = Wakeup(pool)
    return found
