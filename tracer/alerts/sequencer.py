"""The sequencer: numbers committed events in commit order and fans them out to webhook queues.

Any number of processes may run one (every API process, delivery worker and monitor does): rounds
serialise on a row lock in Postgres (`store.outbox.sequence_round`), so running several costs a
few empty rounds and buys availability. A round starts after the notification that woke it, so
it sees the events whose commit sent that notification; the timer only covers notifications lost
while a LISTEN connection was down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import asyncpg

from tracer.domain.alerts import Round
from tracer.store import outbox

log = logging.getLogger("tracer.alerts")


class Sequencer:
    def __init__(self, pool: asyncpg.Pool, *, batch: int = 5000, interval: float = 2.0,
                 on_round: Callable[[Round], None] | None = None) -> None:
        self.pool = pool
        self.batch = batch
        self.interval = interval
        self.on_round = on_round
        self._wake = asyncio.Event()
        self.rounds = 0
        self.numbered = 0

    def poke(self) -> None:
        """New events were committed: run a round soon (pokes during a round coalesce into one more)."""
        self._wake.set()

    async def run_once(self) -> int:
        """Rounds until nothing waits; returns how many events were numbered."""
        total = 0
        while True:
            async with self.pool.acquire() as conn:
                r = await outbox.sequence_round(conn, self.batch)
            if r is None:
                return total
            self.rounds += 1
            self.numbered += r.count
            total += r.count
            if self.on_round is not None:
                self.on_round(r)
            log.debug("event=sequenced first=%d last=%d traces=%d deliveries=%d", r.first_seq, r.last_seq,
                      len(r.trace_ids), r.deliveries)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self._wake.clear()
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("event=sequencer_failed error=%r", exc)
                await asyncio.sleep(1.0)
            if self._wake.is_set():
                continue
            waiter = asyncio.ensure_future(self._wake.wait())
            stopper = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait({waiter, stopper}, timeout=self.interval, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for t in (waiter, stopper):
                    t.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await t
