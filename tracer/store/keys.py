"""SQL for API keys, server secrets and the audit log (schemas/migrations/003_api.sql).

A key is `trk_<key_id>_<secret>`. Only sha256(secret) is stored; the key is shown once, when it
is created. Lookups go by the public key_id and the caller compares hashes in constant time.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from tracer.store.sql import Conn

SCOPES = ("read", "trace", "admin")
KEY_PREFIX = "trk_"


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: int
    key_id: str
    secret_sha256: bytes
    name: str
    scopes: tuple[str, ...]
    created_by: str | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    #: Keys of one team own their traces, subscriptions and private labels together.
    team: str | None = None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    api_key_id: int | None
    action: str
    target: str
    details: dict[str, Any]
    remote: str | None


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def split_key(presented: str) -> tuple[str, str] | None:
    """(key_id, secret) of a well-formed key, else None. Never raises on garbage input."""
    if not presented.startswith(KEY_PREFIX):
        return None
    key_id, sep, secret = presented[len(KEY_PREFIX):].partition("_")
    if not sep or not key_id or not secret or len(presented) > 200:
        return None
    return key_id, secret


def _key(r: asyncpg.Record) -> ApiKey:
    return ApiKey(r["id"], r["key_id"], bytes(r["secret_sha256"]), r["name"], tuple(r["scopes"]),
                  r["created_by"], r["created_at"], r["last_used_at"], r["revoked_at"], r.get("team"))


async def create_key(conn: Conn, name: str, scopes: list[str], created_by: str | None = None, *,
                     team: str | None = None) -> tuple[ApiKey, str]:
    """Store a new key; return it and the full key text (the only time the secret exists)."""
    bad = sorted(set(scopes) - set(SCOPES))
    if bad or not scopes:
        raise ValueError(f"scopes must be a non-empty subset of {', '.join(SCOPES)}; got {bad or scopes}")
    key_id = secrets.token_hex(6)
    # 32 random bytes: brute force is out of reach, which is why a fast hash is enough.
    secret = secrets.token_urlsafe(32).replace("_", "-")
    row = await conn.fetchrow(
        """INSERT INTO api_keys (key_id, secret_sha256, name, scopes, created_by, team)
           VALUES ($1, $2, $3, $4, $5, $6) RETURNING *""",
        key_id, hash_secret(secret), name, sorted(set(scopes), key=SCOPES.index), created_by, team,
    )
    assert row is not None
    return _key(row), f"{KEY_PREFIX}{key_id}_{secret}"


async def get_key(conn: Conn, key_id: str) -> ApiKey | None:
    row = await conn.fetchrow("SELECT * FROM api_keys WHERE key_id = $1", key_id)
    return _key(row) if row is not None else None


async def list_keys(conn: Conn, *, include_revoked: bool = True) -> list[ApiKey]:
    rows = await conn.fetch(
        "SELECT * FROM api_keys WHERE $1 OR revoked_at IS NULL ORDER BY id", include_revoked
    )
    return [_key(r) for r in rows]


async def revoke_key(conn: Conn, ref: str) -> ApiKey | None:
    """Revoke by numeric id or key_id; returns the key (already revoked ones unchanged)."""
    row = await conn.fetchrow(
        """UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())
           WHERE key_id = $1 OR (id::text = $1) RETURNING *""",
        ref,
    )
    return _key(row) if row is not None else None


async def active_key_count(conn: Conn) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM api_keys WHERE revoked_at IS NULL"))


async def touch_key(conn: Conn, key_pk: int) -> None:
    await conn.execute("UPDATE api_keys SET last_used_at = now() WHERE id = $1", key_pk)


async def server_secret(conn: Conn, name: str) -> bytes:
    """A random 32-byte secret shared by every process on this database, created on first use."""
    await conn.execute(
        "INSERT INTO api_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        name, secrets.token_bytes(32),
    )
    return bytes(await conn.fetchval("SELECT value FROM api_secrets WHERE name = $1", name))


async def audit(
    conn: Conn,
    *,
    actor: str,
    action: str,
    target: str,
    api_key_id: int | None = None,
    details: dict[str, Any] | None = None,
    remote: str | None = None,
) -> None:
    await conn.execute(
        """INSERT INTO audit_log (actor, api_key_id, action, target, details, remote)
           VALUES ($1, $2, $3, $4, $5::text::jsonb, $6)""",
        actor, api_key_id, action, target, json.dumps(details or {}, default=str), remote,
    )


async def audit_page(
    conn: Conn, *, before_id: int | None, limit: int, target: str | None = None, action: str | None = None
) -> list[AuditEntry]:
    rows = await conn.fetch(
        """SELECT id, at, actor, api_key_id, action, target, details::text AS details, remote FROM audit_log
           WHERE ($1::bigint IS NULL OR id < $1) AND ($3::text IS NULL OR target = $3)
             AND ($4::text IS NULL OR action = $4)
           ORDER BY id DESC LIMIT $2""",
        before_id, limit, target, action,
    )
    return [AuditEntry(r["id"], r["at"], r["actor"], r["api_key_id"], r["action"], r["target"],
                       json.loads(r["details"]), r["remote"]) for r in rows]
