"""A LISTEN connection that keeps listening across database restarts (for alerting, streams and
any worker that wants waking when Postgres says there is work).

Notifications only wake things up; nothing depends on receiving every one. Every loop that
listens also polls on a timer, so a notification lost while the connection was down costs a
poll interval of latency, never an event. `on_reconnect` lets the owner look for what it missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

import asyncpg

log = logging.getLogger("tracer.listen")

Connect = Callable[[], Awaitable[asyncpg.Connection]]


def connector(url: str) -> Connect:
    """A `Connect` for a database URL: a dedicated connection, outside any pool (a LISTEN
    connection is held for the life of the process)."""

    async def connect() -> asyncpg.Connection:
        conn: asyncpg.Connection = await asyncpg.connect(url, server_settings={"application_name": "tracer-listen"})
        return conn

    return connect


async def ping(conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy) -> None:
    """A round trip: raises when the connection is dead (a dead TCP connection delivers no
    notifications and raises nothing until it is used)."""
    await conn.fetchval("SELECT 1")


class Listener:
    def __init__(
        self,
        connect: Connect,
        channels: Sequence[str],
        on_notify: Callable[[str, str], None],
        *,
        on_reconnect: Callable[[], None] | None = None,
        check_every: float = 10.0,
    ) -> None:
        self._connect = connect
        self.channels = tuple(channels)
        self._on_notify = on_notify
        self._on_reconnect = on_reconnect
        self.check_every = check_every
        self.connected = asyncio.Event()

    def _callback(self, _conn: object, _pid: int, channel: str, payload: str) -> None:
        try:
            self._on_notify(channel, payload)
        except Exception:  # a bad callback must not kill the listener
            log.exception("event=notify_callback_failed channel=%s", channel)

    async def run(self, stop: asyncio.Event) -> None:
        delay = 0.5
        while not stop.is_set():
            conn: asyncpg.Connection | None = None
            try:
                conn = await self._connect()
                for ch in self.channels:
                    await conn.add_listener(ch, self._callback)
                self.connected.set()
                delay = 0.5
                if self._on_reconnect is not None:
                    self._on_reconnect()
                while not stop.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), self.check_every)
                    if not stop.is_set():
                        # A dead TCP connection delivers no notifications and raises nothing: ask.
                        await asyncio.wait_for(ping(conn), 5.0)
            except asyncio.CancelledError:
                raise
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                self.connected.clear()
                log.warning("event=listen_lost channels=%s error=%r retry_in=%.1fs", ",".join(self.channels), exc,
                            delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                delay = min(delay * 2, 10.0)
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(conn.close(), 2.0)
        self.connected.clear()
