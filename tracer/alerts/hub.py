"""What an API process runs for live streams: one LISTEN connection, a sequencer, stream wake-ups.

Workers anywhere announce new events with pg_notify; the hub pokes its sequencer, whose rounds
announce numbered events; those wake the SSE handlers of the traces named (a subscription stream
wakes on every round). Handlers then read Postgres themselves, from their own cursor, so a lost
or coalesced notification costs latency (handlers also re-read on a timer), never an event, and
any API process serves events written by any worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

import asyncpg

from tracer.alerts.sequencer import Sequencer
from tracer.store import outbox
from tracer.store.listen import Connect, Listener

log = logging.getLogger("tracer.alerts")

ANY_TRACE = 0  # wake-up key of streams that want every round (subscription streams)


class Hub:
    def __init__(self, pool: asyncpg.Pool, connect: Connect | None, *, sequence: bool = True) -> None:
        self.pool = pool
        self.connect = connect
        self.sequencer = Sequencer(pool) if sequence else None
        self._waiters: dict[int, set[asyncio.Event]] = {}
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.closing = False

    async def start(self) -> None:
        if self.connect is not None:
            listener = Listener(self.connect, (outbox.EVENTS_CHANNEL, outbox.ALERTS_CHANNEL),
                                self._on_notify, on_reconnect=self._wake_everything)
            self._tasks.append(asyncio.create_task(listener.run(self._stop), name="tracer-hub-listen"))
        if self.sequencer is not None:
            self._tasks.append(asyncio.create_task(self.sequencer.run(self._stop), name="tracer-hub-sequencer"))

    def close_streams(self) -> None:
        """Server shutting down: every open stream ends now (clients reconnect elsewhere)."""
        self.closing = True
        self._wake_everything()

    async def stop(self) -> None:
        self.close_streams()
        self._stop.set()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    def _on_notify(self, channel: str, payload: str) -> None:
        if channel == outbox.EVENTS_CHANNEL:
            if self.sequencer is not None:
                self.sequencer.poke()
            return
        _, traces = outbox.parse_notify(payload)
        if traces is None:
            self._wake_everything()
            return
        for key in (*traces, ANY_TRACE):
            for ev in self._waiters.get(key, ()):
                ev.set()

    def _wake_everything(self) -> None:
        for waiters in self._waiters.values():
            for ev in waiters:
                ev.set()
        if self.sequencer is not None:
            self.sequencer.poke()

    @contextlib.contextmanager
    def subscribe(self, trace_id: int | None) -> Iterator[asyncio.Event]:
        """An event set whenever events of `trace_id` (None: of any trace) may have been numbered."""
        key = ANY_TRACE if trace_id is None else trace_id
        ev = asyncio.Event()
        self._waiters.setdefault(key, set()).add(ev)
        try:
            yield ev
        finally:
            waiters = self._waiters.get(key)
            if waiters is not None:
                waiters.discard(ev)
                if not waiters:
                    del self._waiters[key]

    @property
    def streams(self) -> int:
        return sum(len(w) for w in self._waiters.values())
