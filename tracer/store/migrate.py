"""Schema migrations: ``schemas/migrations/NNN_name.sql``, applied in order, each exactly once.

The folder is found through tracer.resources (inside the installed package for a wheel, next to the
package in a checkout), so an installed tracer migrates without a source tree.
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from tracer.domain.errors import UserError
from tracer.resources import schemas_root

log = logging.getLogger(__name__)

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


class MigrationError(UserError, RuntimeError):
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
