"""Reads from a PostgreSQL streaming replica (`TRACER_READ_DATABASE_URL`), with read-your-writes.

The read endpoints that only read (a page of hops, exits, traces) take their connection from
`ApiContext.read_pool`: the replica's pool when one is configured and it has replayed every write
this API process made, else the primary's. Writes, job claims, LISTEN, the workers and every
endpoint that may write (prices cached while a page is priced, screening caches) stay on the
primary through `ApiContext.pool`.

Read-your-writes: after any request that may have written (not GET/HEAD), the primary's WAL
position is noted before the response leaves; a later GET reads from the replica only once the
replica has replayed up to it (one query on the replica while it lags, none once it caught up).
A client that just created a trace therefore finds it. Hops the workers write reach the replica
with its lag (milliseconds on one machine), as on any read replica.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from aiohttp import web

from tracer.store import replica as replica_store
from tracer.store.db import Database

log = logging.getLogger("tracer.api.replica")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Whether the request being handled may read from the replica (set per request task).
_ON_REPLICA: contextvars.ContextVar[bool] = contextvars.ContextVar("tracer_read_replica", default=False)


class ReadRouting:
    """Where reads go: the primary's and the replica's pools, and the WAL positions compared."""

    def __init__(self, primary: Database, replica: Database | None) -> None:
        self.primary = primary
        self.replica = replica
        self.written = 0  # primary WAL position after the latest write made through this process
        self.replayed = 0  # highest replay position seen on the replica
        self.reads_on_replica = 0
        self.reads_on_primary = 0

    @property
    def pool(self) -> asyncpg.Pool:
        if self.replica is not None and _ON_REPLICA.get():
            return self.replica.pool
        return self.primary.pool

    async def note_write(self) -> None:
        async with self.primary.pool.acquire() as conn:
            self.written = max(self.written, await replica_store.written_lsn(conn))

    async def fresh(self) -> bool:
        """True when the replica holds every write this process made (asked only while it lags)."""
        if self.replica is None:
            return False
        if self.replayed >= self.written:
            return True
        try:
            async with self.replica.pool.acquire() as conn:
                self.replayed = max(self.replayed, await replica_store.replayed_lsn(conn))
        except (OSError, asyncpg.PostgresError) as exc:  # a replica down: the primary serves
            log.warning("event=replica_unavailable error=%s", type(exc).__name__)
            return False
        return self.replayed >= self.written


def replica_middleware(routing: ReadRouting) -> Any:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if routing.replica is None:
            return await handler(request)
        if request.method in ("GET", "HEAD"):
            on_replica = await routing.fresh()
            if on_replica:
                routing.reads_on_replica += 1
            else:
                routing.reads_on_primary += 1
            token = _ON_REPLICA.set(on_replica)
            try:
                return await handler(request)
            finally:
                _ON_REPLICA.reset(token)
        try:
            return await handler(request)
        finally:
            # Before the response leaves: the client's next read must see what this one wrote.
            await routing.note_write()

    return middleware
