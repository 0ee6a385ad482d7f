"""Database access: the asyncpg pool with tracer's connection setup, and riding out restarts.

Which server is used, first match wins: an explicit URL (``--database-url``, or
``Database.connect(url)``), ``$DATABASE_URL``, else the embedded server (tracer.store.embedded).
``Database.connect`` applies pending migrations (tracer.store.migrate) before it returns.

JSON. Every pool connection encodes ``json``/``jsonb`` parameters with ``json.dumps`` and decodes
results with ``json.loads``: pass Python objects to a ``$n::jsonb`` parameter, never ``json.dumps()``
output (a ``str`` is stored as a JSON *string*). Text that is already JSON goes through a text
parameter cast in SQL (``$n::text::jsonb``, or ``unnest($n::text[])`` then ``::jsonb``).

Reconnection. asyncpg pools replace connections that died (a server restart, a killed backend) on
the next acquire, but an operation already running on a dying connection fails. Such failures are
classified by ``is_transient()``; wrap a unit of work (one transaction, safe to run again) in
``retrying()`` to ride out a restart.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import asyncpg

from tracer.domain.errors import UserError
from tracer.store import migrate as migrations
from tracer.store.embedded import start_embedded
from tracer.store.urls import redact_url, resolve_database_url

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Default per-statement timeout (seconds) for pool operations: long enough for the biggest batch
#: upsert, short enough that a wedged query surfaces as an error instead of a silent hang.
DEFAULT_COMMAND_TIMEOUT = 60.0


async def _init_connection(conn: asyncpg.Connection) -> None:
    # json/jsonb come back as Python objects and go in as Python objects, not as strings.
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(type_name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def keep_session(conn: asyncpg.Connection) -> None:
    """A pool's `reset` that keeps the session as it is: asyncpg still rolls back a transaction
    left open and drops the connection's listener callbacks, but skips its reset query (unlock
    advisory locks, CLOSE ALL, UNLISTEN *, RESET ALL), a round trip on every release. Only for
    pools whose users leave no session state behind: no session advisory locks, no SET, cursors
    inside transactions, LISTENs undone by their owner (a stray one only sends notifications
    nobody reads)."""


async def create_pool(
    url: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    command_timeout: float | None = DEFAULT_COMMAND_TIMEOUT,
    reset: Callable[[asyncpg.Connection], Awaitable[None]] | None = None,
) -> asyncpg.Pool:
    """An asyncpg pool with tracer's connection setup (JSON codecs, timeout, application_name);
    `reset` as asyncpg's (None: its full reset query on every release)."""
    pool = await asyncpg.create_pool(
        url,
        min_size=min_size,
        max_size=max_size,
        command_timeout=command_timeout,
        reset=reset,
        init=_init_connection,
        # Shows up in pg_stat_activity, which makes our sessions easy to find and terminate.
        server_settings={"application_name": "tracer"},
    )
    assert pool is not None  # create_pool only returns None when awaited on a closed loop
    return pool


class DatabaseUnreachable(UserError):
    """The database could not be opened: no server at the address, a login or database the server
    refuses, a URL that is not one. Raised by ``Database.connect``, naming the URL (without its
    password) and the reason."""


def _unreachable(url: str, exc: BaseException) -> DatabaseUnreachable:
    # An OSError's own words ("Connect call failed ('127.0.0.1', 1)") without its errno prefix.
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return DatabaseUnreachable(f"cannot open the database at {redact_url(url)}: {reason}")


class Database:
    """A connected asyncpg pool plus where it points. Build it with ``await Database.connect()``."""

    pool: asyncpg.Pool
    url: str
    embedded: bool

    def __init__(self, pool: asyncpg.Pool, url: str, *, embedded: bool = False) -> None:
        self.pool = pool
        self.url = url
        self.embedded = embedded

    @classmethod
    async def connect(
        cls,
        url: str | None = None,
        *,
        data_dir: Path | None = None,
        min_size: int = 1,
        max_size: int = 10,
        migrate: bool = True,
        command_timeout: float | None = DEFAULT_COMMAND_TIMEOUT,
        migrations_dir: Path | None = None,
        reset: Callable[[asyncpg.Connection], Awaitable[None]] | None = None,
    ) -> Database:
        """Connect to ``url``, else ``$DATABASE_URL``, else the embedded server of ``data_dir``.

        ``data_dir`` is the tracer data directory (the server lives in ``data_dir/pg``); default
        ``$TRACER_DATA_DIR`` or ``~/.local/share/tracer``. With ``migrate`` (default) pending
        migrations are applied before returning. Closing does not stop the embedded server: other
        processes may be using it.
        """
        resolved = resolve_database_url(url)
        embedded = resolved is None
        if resolved is None:
            resolved = await start_embedded(data_dir)
        try:
            pool = await create_pool(
                resolved, min_size=min_size, max_size=max_size, command_timeout=command_timeout, reset=reset
            )
        # Refused or unresolvable (OSError), a login or database the server refuses (PostgresError), a
        # malformed URL (InterfaceError, ValueError): what the user fixes, named for the command line.
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
            raise _unreachable(resolved, exc) from exc
        try:
            if migrate:
                await migrations.migrate(pool, migrations_dir)
        except BaseException:
            await pool.close()
            raise
        log.info("database connected url=%s embedded=%s", redact_url(resolved), embedded)
        return cls(pool, resolved, embedded=embedded)

    async def close(self, grace_s: float = 10.0) -> None:
        """Close the pool; connections still checked out after ``grace_s`` seconds are terminated."""
        # asyncio.wait, not wait_for: wait_for cancels pool.close() on timeout and then waits for
        # the cancellation, which a close stuck on a dead server's connection never completes.
        closing = asyncio.ensure_future(self.pool.close())
        done, _ = await asyncio.wait({closing}, timeout=grace_s)
        if done:
            closing.result()
            return
        log.warning("database close timed out, terminating connections grace_s=%s", grace_s)
        self.pool.terminate()
        done, _ = await asyncio.wait({closing}, timeout=grace_s)
        if not done:
            closing.cancel()

    async def __aenter__(self) -> Database:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"Database(url={redact_url(self.url)!r}, embedded={self.embedded})"


# Errors that mean "the server or the connection went away, or the server asked us to try again";
# the same statement on a fresh connection a moment later can succeed.
_TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,  # class 08, incl. ConnectionDoesNotExistError
    asyncpg.AdminShutdownError,  # 57P01: server shutting down / backend terminated
    asyncpg.CrashShutdownError,  # 57P02
    asyncpg.CannotConnectNowError,  # 57P03: server starting up or in recovery
    asyncpg.TooManyConnectionsError,  # 53300
    asyncpg.SerializationError,  # 40001
    asyncpg.DeadlockDetectedError,  # 40P01
    ConnectionError,  # refused / reset
    FileNotFoundError,  # unix socket gone while the server restarts
)


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is a failure that retrying the same unit of work may get past."""
    if isinstance(exc, TimeoutError):
        # A command_timeout: the query itself is slow, running it again would not help.
        return False
    if isinstance(exc, _TRANSIENT_ERRORS):
        return True
    # Using a connection object that a restart closed under us.
    return isinstance(exc, asyncpg.InterfaceError) and "connection is closed" in str(exc)


async def retrying(
    fn: Callable[[], Awaitable[T]],
    *,
    attempts: int = 8,
    base_delay: float = 0.1,
    max_delay: float = 5.0,
) -> T:
    """Await ``fn()``, calling it again after transient database errors (``is_transient``).

    Backoff doubles from ``base_delay`` up to ``max_delay`` with jitter; the defaults ride out about
    ten seconds of downtime, enough for a Postgres restart. ``fn`` must be safe to run twice: make
    it one transaction (``async with pool.acquire() as c, c.transaction(): ...``) with idempotent
    writes, since a connection lost during COMMIT leaves its outcome unknown. Other errors, and
    the last transient one, propagate.
    """
    for attempt in range(1, attempts + 1):
        try:
            return await fn()
        except Exception as exc:
            if attempt >= attempts or not is_transient(exc):
                raise
            delay = min(max_delay, base_delay * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
            log.warning(
                "database transient error, retrying attempt=%d/%d delay_s=%.2f error=%s: %s",
                attempt,
                attempts,
                delay,
                type(exc).__name__,
                exc,
            )
            await asyncio.sleep(delay)
    raise AssertionError("unreachable: the loop returns or raises")


__all__ = ["DEFAULT_COMMAND_TIMEOUT", "Database", "create_pool", "is_transient", "retrying"]
