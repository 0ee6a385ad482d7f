"""tracer.store.db, .migrate, .embedded and ``tracer db``: migrations, constraints, the embedded server, retrying, CLI.

Everything runs against real Postgres: the session server from ``tests/fixtures_db.py`` and, for
the embedded-server tests, a second pgserver in a temp data dir started once for this module.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio

import tracer
from tests.fixtures_db import temporary_database
from tracer import db_cli as store_cli
from tracer.store.db import Database, create_pool, is_transient, retrying
from tracer.store.embedded import embedded_pgdata, start_embedded, start_embedded_server, stop_embedded
from tracer.store.migrate import (
    MigrationError,
    applied_migrations,
    load_migrations,
    migrate,
    migrations_dir,
    pending_migrations,
)
from tracer.store.urls import database_name, redact_url, resolve_database_url, with_database

REPO = Path(tracer.__file__).resolve().parent.parent
ALL_VERSIONS = [m.version for m in load_migrations()]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tracer")
    store_cli.register(parser.add_subparsers(dest="command", required=True))
    return parser


async def _run_cli(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.func
    # Handlers run their own event loop (asyncio.run), as from the real command line: give them
    # a thread without a running loop.
    return await asyncio.to_thread(handler, args)


def _subprocess_env(**overrides: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


async def _run_python(code: str, env: dict[str, str]) -> str:
    """Run ``code`` in a fresh interpreter; return its stripped stdout (fails the test on error)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return out.decode().strip()


# ----------------------------------------------------------------------------------------- URLs


def test_resolve_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert resolve_database_url(None) is None
    assert resolve_database_url("postgresql://x/y") == "postgresql://x/y"
    monkeypatch.setenv("DATABASE_URL", "postgresql://env/db")
    assert resolve_database_url(None) == "postgresql://env/db"
    assert resolve_database_url("postgresql://flag/db") == "postgresql://flag/db"
    monkeypatch.setenv("DATABASE_URL", "")
    assert resolve_database_url(None) is None


def test_url_helpers() -> None:
    socket_url = "postgresql://postgres:@/postgres?host=/tmp/x/pg"
    assert with_database(socket_url, "tracer") == "postgresql://postgres:@/tracer?host=/tmp/x/pg"
    assert database_name(with_database(socket_url, "tracer")) == "tracer"
    assert with_database("postgresql://u:pw@h:5433/a", "b") == "postgresql://u:pw@h:5433/b"
    assert redact_url("postgresql://u:secret@h:5433/a") == "postgresql://u:***@h:5433/a"
    assert redact_url(socket_url) == socket_url


# ----------------------------------------------------------------------------------- migrations


def test_migrations_are_found_in_order() -> None:
    assert migrations_dir() == REPO / "schemas" / "migrations"
    assert ALL_VERSIONS[0] == 1
    assert ALL_VERSIONS == sorted(set(ALL_VERSIONS))


def test_bad_migration_folders_are_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACER_MIGRATIONS_DIR", str(tmp_path / "missing"))
    with pytest.raises(MigrationError, match="migrations folder not found"):
        migrations_dir()
    (tmp_path / "001_a.sql").write_text("SELECT 1;")
    (tmp_path / "001_b.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="two migrations with version 1"):
        load_migrations(tmp_path)
    (tmp_path / "001_b.sql").unlink()
    (tmp_path / "init.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="must look like"):
        load_migrations(tmp_path)


async def test_db_fixture_database_is_migrated(db: Database) -> None:
    assert await applied_migrations(db.pool) == ALL_VERSIONS
    assert await pending_migrations(db.pool) == []


async def test_migrate_is_idempotent(db: Database) -> None:
    before = await db.pool.fetch("SELECT version, name, applied_at FROM schema_migrations ORDER BY version")
    assert await migrate(db.pool) == []
    assert await migrate(db.pool) == []
    after = await db.pool.fetch("SELECT version, name, applied_at FROM schema_migrations ORDER BY version")
    assert [tuple(r) for r in after] == [tuple(r) for r in before]


async def test_migrate_empty_database(pg_server_url: str) -> None:
    async with temporary_database(pg_server_url) as url:
        pool = await create_pool(url, max_size=2)
        try:
            assert await pending_migrations(pool) == ALL_VERSIONS
            assert await applied_migrations(pool) == []
            assert await migrate(pool) == ALL_VERSIONS
            assert await pending_migrations(pool) == []
            assert await migrate(pool) == []
            names = await pool.fetch("SELECT version, name FROM schema_migrations ORDER BY version")
            expected = [(m.version, m.name) for m in load_migrations()]
            assert [(r["version"], r["name"]) for r in names] == expected
        finally:
            await pool.close()


async def test_concurrent_migrate_from_two_pools(pg_server_url: str) -> None:
    async with temporary_database(pg_server_url) as url:
        pools = [await create_pool(url, max_size=1) for _ in range(2)]
        try:
            results = await asyncio.gather(*(migrate(p) for p in pools))
            assert sorted(results[0] + results[1]) == ALL_VERSIONS  # each applied exactly once
            count = await pools[0].fetchval("SELECT count(*) FROM schema_migrations")
            assert count == len(ALL_VERSIONS)
        finally:
            for p in pools:
                await p.close()


async def test_concurrent_migrate_is_serialised(pg_server_url: str, tmp_path: Path) -> None:
    # Migrations that would fail if run twice (no IF NOT EXISTS), the first one slow enough that
    # all starters are inside migrate() at once: only the advisory lock keeps this green.
    (tmp_path / "001_first.sql").write_text("CREATE TABLE first_t (id int); SELECT pg_sleep(0.3);")
    (tmp_path / "002_second.sql").write_text("CREATE TABLE second_t (id int); INSERT INTO second_t SELECT 1;")
    (tmp_path / "010_third.sql").write_text("ALTER TABLE second_t ADD COLUMN x int;")
    async with temporary_database(pg_server_url) as url:
        pools = [await create_pool(url, max_size=1) for _ in range(3)]
        try:
            results = await asyncio.gather(*(migrate(p, tmp_path) for p in pools))
            assert sorted(v for r in results for v in r) == [1, 2, 10]
            assert await pools[0].fetchval("SELECT count(*) FROM second_t") == 1
            assert await pending_migrations(pools[0], tmp_path) == []
        finally:
            for p in pools:
                await p.close()


async def test_failed_migration_rolls_back_and_stops(pg_server_url: str, tmp_path: Path) -> None:
    (tmp_path / "001_ok.sql").write_text("CREATE TABLE ok_t (id int);")
    (tmp_path / "002_bad.sql").write_text("CREATE TABLE bad_t (id int); SELECT * FROM no_such_table;")
    (tmp_path / "003_later.sql").write_text("CREATE TABLE later_t (id int);")
    async with temporary_database(pg_server_url) as url:
        pool = await create_pool(url, max_size=1)
        try:
            with pytest.raises(asyncpg.UndefinedTableError):
                await migrate(pool, tmp_path)
            assert await applied_migrations(pool) == [1]
            assert await pool.fetchval("SELECT to_regclass('bad_t') IS NULL")  # rolled back whole
            assert await pending_migrations(pool, tmp_path) == [2, 3]
        finally:
            await pool.close()


# ---------------------------------------------------------------------------------- the schema

# Uniqueness the store relies on for idempotent upserts. A unique index whose leading columns are
# these counts: labels, for one, are unique per claim *and* validity interval (migration 002).
EXPECTED_UNIQUE = {
    ("transfers", ("chain", "tx_hash", "position")),
    ("labels", ("chain", "address", "source", "entity", "category")),
    ("address_coverage", ("chain", "address")),
    ("jobs", ("trace_id", "address")),
    ("hops", ("trace_id", "transfer_id")),
    ("schema_migrations", ("version",)),
}


async def test_schema_unique_constraints_exist(db: Database) -> None:
    # pg_index rather than pg_constraint: unique indexes (e.g. NULLS NOT DISTINCT) are not constraints.
    rows = await db.pool.fetch(
        """SELECT i.indrelid::regclass::text AS tbl,
                  array_agg(a.attname::text ORDER BY k.ord) AS cols
           FROM pg_index i
           JOIN pg_class t ON t.oid = i.indrelid AND t.relnamespace = 'public'::regnamespace
           CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
           JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
           WHERE i.indisunique AND i.indpred IS NULL
           GROUP BY i.indexrelid, i.indrelid"""
    )
    unique = [(r["tbl"], tuple(r["cols"])) for r in rows]
    missing = {
        (table, cols)
        for table, cols in EXPECTED_UNIQUE
        if not any(t == table and found[: len(cols)] == cols for t, found in unique)
    }
    assert not missing, f"no unique index for {missing}; have {sorted(unique)}"


async def test_duplicate_chain_facts_are_rejected(db: Database) -> None:
    transfer = (
        "INSERT INTO transfers (chain, tx_hash, position, block_number, block_time, tx_index, from_addr,"
        " to_addr, asset, amount, kind) VALUES ('ethereum', '0xaa', '0', 1, 1, 0, '0x01', '0x02',"
        " 'native', 10, 'native')"
    )
    label = (
        "INSERT INTO labels (chain, address, entity, category, source)"
        " VALUES ('ethereum', '0x01', 'Ex', 'exchange', 'test')"
    )
    for statement in (transfer, label):
        async with db.pool.acquire() as conn:
            tx = conn.transaction()
            await tx.start()
            try:
                await conn.execute(statement)
                with pytest.raises(asyncpg.UniqueViolationError):
                    await conn.execute(statement)
            finally:
                await tx.rollback()  # leave the module's database as the fixture made it


async def test_json_codec_round_trips(db: Database) -> None:
    value = {"a": [1, 2, {"b": None}], "s": "x"}
    assert await db.pool.fetchval("SELECT $1::jsonb", value) == value
    assert await db.pool.fetchval("SELECT $1::json", value) == value
    assert await db.pool.fetchval("SELECT '{\"k\": 1}'::jsonb") == {"k": 1}
    assert await db.pool.fetchval("SELECT jsonb_typeof($1::jsonb)", value) == "object"
    # The contract: a str parameter is a JSON string value; already-encoded JSON goes through text.
    assert await db.pool.fetchval("SELECT jsonb_typeof($1::jsonb)", '{"k": 1}') == "string"
    assert await db.pool.fetchval("SELECT $1::text::jsonb", '{"k": 1}') == {"k": 1}


# ------------------------------------------------------------------------------ retry semantics


def test_is_transient_classification() -> None:
    for exc in (
        ConnectionRefusedError(111, "refused"),
        FileNotFoundError(2, "no socket"),
        asyncpg.ConnectionDoesNotExistError("closed in the middle"),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.SerializationError("could not serialize"),
        asyncpg.InterfaceError("cannot call Connection.fetch(): connection is closed"),
    ):
        assert is_transient(exc), exc
    for exc in (
        asyncpg.UniqueViolationError("dup"),
        asyncpg.UndefinedTableError("nope"),
        TimeoutError(),
        ValueError("x"),
        asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
    ):
        assert not is_transient(exc), exc


async def test_retrying_retries_transient_errors_only() -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionRefusedError(111, "refused")
        return "ok"

    assert await retrying(flaky, base_delay=0.001) == "ok"
    assert calls == 3

    calls = 0

    async def always_down() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionRefusedError(111, "refused")

    with pytest.raises(ConnectionRefusedError):
        await retrying(always_down, attempts=4, base_delay=0.001)
    assert calls == 4

    calls = 0

    async def broken() -> None:
        nonlocal calls
        calls += 1
        raise asyncpg.UniqueViolationError("dup")

    with pytest.raises(asyncpg.UniqueViolationError):
        await retrying(broken, base_delay=0.001)
    assert calls == 1


# ------------------------------------------------------------------------------- embedded server


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def embedded_data_dir() -> AsyncIterator[Path]:
    """A tracer data dir for this module's embedded-server tests; its server is stopped at the end.
    Not under pytest's basetemp (see tests/acceptance/test_demo_embedded.py)."""
    data_dir = Path(tempfile.mkdtemp(prefix="tracer-data-"))
    try:
        yield data_dir
    finally:
        await asyncio.to_thread(stop_embedded, data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)


async def test_embedded_server_when_database_url_unset(
    embedded_data_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("TRACER_DATA_DIR", str(embedded_data_dir))
    caplog.set_level(logging.INFO, logger="tracer.store")
    db = await Database.connect()
    try:
        pgdata = embedded_pgdata(embedded_data_dir)
        assert pgdata == (embedded_data_dir / "pg").resolve()
        assert db.embedded
        assert database_name(db.url) == "tracer"
        assert f"host={pgdata}" in db.url  # unix socket inside the data dir, no TCP port
        assert (pgdata / "PG_VERSION").exists()
        assert await applied_migrations(db.pool) == ALL_VERSIONS
        ready = [r.getMessage() for r in caplog.records if "embedded postgres ready" in r.getMessage()]
        assert ready and f"data_dir={pgdata}" in ready[0] and f"url={db.url}" in ready[0]

        # Another process handed the URL through DATABASE_URL (how `tracer demo` starts workers).
        worker = await _run_python(
            "import asyncio, os, asyncpg\n"
            "async def main():\n"
            "    c = await asyncpg.connect(os.environ['DATABASE_URL'])\n"
            "    print(await c.fetchval('SELECT count(*) FROM schema_migrations'))\n"
            "    await c.close()\n"
            "asyncio.run(main())\n",
            _subprocess_env(DATABASE_URL=db.url),
        )
        assert worker == str(len(ALL_VERSIONS))

        # A process that finds the server itself (no DATABASE_URL) registers a pgserver handle;
        # its exit must not stop the server the rest of us are using (cleanup_mode=None).
        finder = await _run_python(
            "import asyncio\n"
            "from tracer.store.db import Database\n"
            "async def main():\n"
            "    db = await Database.connect()\n"
            "    print(db.url)\n"
            "    await db.close()\n"
            "asyncio.run(main())\n",
            _subprocess_env(DATABASE_URL=None, TRACER_DATA_DIR=str(embedded_data_dir)),
        )
        assert finder == db.url
        assert await db.pool.fetchval("SELECT 1") == 1
        async with await Database.connect(db.url) as again:  # and new connections still work
            assert await again.pool.fetchval("SELECT 1") == 1
    finally:
        await db.close()


async def test_embedded_server_restart_is_retryable(embedded_data_dir: Path) -> None:
    db = await Database.connect(await start_embedded(embedded_data_dir), min_size=2, max_size=2)
    try:
        assert await db.pool.fetchval("SELECT 1") == 1
        in_flight = asyncio.create_task(db.pool.fetchval("SELECT pg_sleep(30)"))
        await asyncio.sleep(0.3)
        assert await asyncio.to_thread(stop_embedded, embedded_data_dir)

        # A statement running when the server went away fails with a retryable error...
        with pytest.raises(Exception) as killed:
            await in_flight
        assert is_transient(killed.value), repr(killed.value)
        # ... and so does one issued while it is down.
        with pytest.raises(Exception) as down:
            await db.pool.fetchval("SELECT 1")
        assert is_transient(down.value), repr(down.value)

        async def restart_later() -> None:
            await asyncio.sleep(0.5)
            await asyncio.to_thread(start_embedded_server, embedded_data_dir)

        restarter = asyncio.create_task(restart_later())
        # The same pool recovers: retrying() waits out the downtime, dead connections are replaced
        # and the replacements get the JSON codecs again.
        assert await retrying(lambda: db.pool.fetchval("SELECT $1::jsonb", {"ok": True})) == {"ok": True}
        await restarter
    finally:
        await db.close()


# ------------------------------------------------------------------------------------------ CLI


def test_cli_register_needs_a_verb(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args(["db"])
    args = _parser().parse_args(["db", "migrate", "--database-url", "postgresql://x/y"])
    assert args.command == "db" and args.db_command == "migrate" and args.database_url == "postgresql://x/y"


async def test_cli_db_migrate(
    pg_server_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with temporary_database(pg_server_url) as url:
        assert await _run_cli(["db", "migrate", "--database-url", url]) == 0
        expected = [f"applied {m.version:03d}_{m.name}" for m in load_migrations()]
        lines = capsys.readouterr().out.splitlines()
        assert lines[:-1] == expected
        assert lines[-1].startswith("default labels: ") and lines[-1].endswith(" added")

        # Second run through $DATABASE_URL instead of the flag: nothing left to do.
        monkeypatch.setenv("DATABASE_URL", url)
        assert await _run_cli(["db", "migrate"]) == 0
        assert capsys.readouterr().out.splitlines() == [
            f"up to date (version {ALL_VERSIONS[-1]:03d})", "default labels: already loaded"]


async def test_cli_db_url(
    embedded_data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert await _run_cli(["db", "url", "--database-url", "postgresql://flag/db"]) == 0
    assert capsys.readouterr().out.strip() == "postgresql://flag/db"
    monkeypatch.setenv("DATABASE_URL", "postgresql://env/db")
    assert await _run_cli(["db", "url"]) == 0
    assert capsys.readouterr().out.strip() == "postgresql://env/db"

    # No URL anywhere: the embedded server, which outlives the command.
    monkeypatch.delenv("DATABASE_URL")
    assert await _run_cli(["db", "stop", "--data-dir", str(embedded_data_dir)]) == 0
    assert capsys.readouterr().out.startswith("stopped ")
    assert await _run_cli(["db", "url", "--data-dir", str(embedded_data_dir)]) == 0
    url = capsys.readouterr().out.strip()
    assert url.startswith("postgresql://") and database_name(url) == "tracer"
    conn = await asyncpg.connect(url)
    try:
        assert await conn.fetchval("SELECT 1") == 1
    finally:
        await conn.close()


async def test_cli_db_stop_refuses_external_server(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://env/db")
    assert await _run_cli(["db", "stop"]) == 2
    assert "only the embedded server" in capsys.readouterr().err
