"""The jobs channel: migration 022 notifies `tracer_jobs` (payload: the job's chain) whenever a
job becomes runnable. Workers listen on one connection per pool (tracer.workers.wakeup)."""

from __future__ import annotations

from collections.abc import Callable

import asyncpg

CHANNEL = "tracer_jobs"

Callback = Callable[[asyncpg.Connection, int, str, str], None]


async def listen(conn: asyncpg.Connection, callback: Callback) -> None:
    await conn.add_listener(CHANNEL, callback)


async def unlisten(conn: asyncpg.Connection, callback: Callback) -> None:
    await conn.remove_listener(CHANNEL, callback)


async def alive(conn: asyncpg.Connection) -> None:
    """A dead TCP connection delivers no notifications and raises nothing: ask it something."""
    await conn.fetchval("SELECT 1")
