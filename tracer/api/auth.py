"""API keys: who is calling and what they may do.

A key comes in `X-API-Key: trk_…` or `Authorization: Bearer trk_…`. Scopes: `read` (every GET),
`trace` (start and cancel traces, label addresses; implies read), `admin` (everything, including
deleting traces and reading the audit log). With Settings.rate_limit each key gets a token bucket
kept in Postgres and shared by every API process (each client address in open mode, in memory);
past it, 429 with Retry-After. Checked keys are cached for a few seconds
(Settings.key_cache_seconds), which is also how long a revocation takes to bite.

With no active key in the database the API runs open, every caller acting as "open" with every
scope, but only on a loopback host: the CLI refuses to start open elsewhere, and this module
refuses non-loopback peers in open mode as a second line of defence.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiohttp import web

from tracer.api.context import CTX, is_loopback
from tracer.api.errors import ApiError
from tracer.store import keys as key_store
from tracer.store import ownership
from tracer.store.ownership import Owner
from tracer.store.sql import Conn

log = logging.getLogger("tracer.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_CACHE_MAX = 10_000
_TOUCH_EVERY = 60.0  # seconds between last_used_at writes per key: no write per request


@dataclass(frozen=True)
class Principal:
    name: str
    key_pk: int | None
    scopes: frozenset[str]
    team: str | None = None

    def allows(self, scope: str) -> bool:
        if "admin" in self.scopes or scope in self.scopes:
            return True
        return scope == "read" and "trace" in self.scopes

    @property
    def owner(self) -> Owner:
        """What this caller's new traces, subscriptions and labels belong to."""
        return Owner(self.key_pk, self.team)

    def owns(self, owner: Owner | None) -> bool:
        """May act on (cancel, delete, replay) a row of `owner`: its key, its team, or an admin."""
        if self.allows("admin"):
            return True
        if owner is None or owner.nobody:
            return False
        return (self.key_pk is not None and owner.key_id == self.key_pk) or (
            self.team is not None and owner.team == self.team)


OPEN = Principal("open", None, frozenset(key_store.SCOPES))
PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal", Principal)


class RateLimiter:
    """Token buckets per caller: `rate` requests per second, bursts up to `burst`."""

    def __init__(self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate limit needs rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = float(burst)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # caller -> (tokens, stamp)

    def take(self, caller: str) -> float:
        """Spend one token of `caller`: 0.0 when allowed, else the seconds until one is there."""
        now = self._clock()
        tokens, stamp = self._buckets.get(caller, (self.burst, now))
        tokens = min(self.burst, tokens + (now - stamp) * self.rate)
        if len(self._buckets) >= _CACHE_MAX and caller not in self._buckets:
            # Forget full buckets first: they behave exactly like new ones.
            self._buckets = {c: b for c, b in self._buckets.items()
                             if b[0] + (now - b[1]) * self.rate < self.burst}
        if tokens >= 1.0:
            self._buckets[caller] = (tokens - 1.0, now)
            return 0.0
        self._buckets[caller] = (tokens, now)
        return (1.0 - tokens) / self.rate


class Authenticator:
    def __init__(self, pool_getter: Callable[[], asyncpg.Pool], *, cache_seconds: float, allow_open: bool,
                 rate_limit: float | None = None, rate_limit_burst: int = 20) -> None:
        self._pool = pool_getter
        self.cache_seconds = cache_seconds
        self.allow_open = allow_open
        self.limiter = RateLimiter(rate_limit, rate_limit_burst) if rate_limit else None
        self._keys: dict[bytes, tuple[float, Principal | None, str]] = {}
        self._has_keys: tuple[float, bool] = (0.0, False)
        self._touched: dict[int, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def has_keys(self) -> bool:
        at, value = self._has_keys
        now = time.monotonic()
        if now - at > self.cache_seconds:
            async with self._pool().acquire() as conn:
                value = await key_store.active_key_count(conn) > 0
            self._has_keys = (now, value)
        return value

    async def check(self, presented: str) -> Principal:
        """The key's principal, or ApiError 401. Lookup by the public key id, constant-time compare
        of the secret's hash; failures are cached too, so a client hammering with a bad key costs
        one query per cache period."""
        cache_key = hashlib.sha256(presented.encode("utf-8", "surrogatepass")).digest()
        hit = self._keys.get(cache_key)
        now = time.monotonic()
        if hit is not None and now - hit[0] <= self.cache_seconds:
            principal, why = hit[1], hit[2]
        else:
            principal, why = await self._lookup(presented)
            if len(self._keys) >= _CACHE_MAX:
                self._keys.clear()
            self._keys[cache_key] = (now, principal, why)
        if principal is None:
            raise ApiError(401, "Unauthorized", why, headers={"WWW-Authenticate": 'Bearer realm="tracer"'})
        self._touch(principal)
        return principal

    async def _lookup(self, presented: str) -> tuple[Principal | None, str]:
        parts = key_store.split_key(presented)
        if parts is None:
            return None, "malformed API key"
        key_id, secret = parts
        async with self._pool().acquire() as conn:
            key = await key_store.get_key(conn, key_id)
        # Hash and compare even for an unknown key id, so timing says nothing about which ids exist.
        expected = key.secret_sha256 if key is not None else b"\0" * 32
        ok = hmac.compare_digest(key_store.hash_secret(secret), expected)
        if key is None or not ok:
            return None, "unknown API key"
        if key.revoked_at is not None:
            return None, "API key revoked"
        return Principal(key.name, key.id, frozenset(key.scopes), key.team), ""

    def _touch(self, principal: Principal) -> None:
        if principal.key_pk is None:
            return
        now = time.monotonic()
        if now - self._touched.get(principal.key_pk, -_TOUCH_EVERY) < _TOUCH_EVERY:
            return
        self._touched[principal.key_pk] = now
        task = asyncio.create_task(self._write_touch(principal.key_pk))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write_touch(self, key_pk: int) -> None:
        try:
            async with self._pool().acquire() as conn:
                await key_store.touch_key(conn, key_pk)
        except Exception as exc:  # bookkeeping only: never fail or log-spam a request for it
            log.debug("event=key_touch_failed key=%d error=%r", key_pk, exc)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def presented_key(request: web.Request) -> str | None:
    key = request.headers.get("X-API-Key")
    if key:
        return key.strip()
    auth = request.headers.get("Authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    ctx = request.app[CTX]
    route = request.match_info.route
    resource = route.resource
    scope = ctx.scopes.get((route.method, resource.canonical)) if resource is not None else None
    if scope is None:  # public: health, metrics, the OpenAPI document, unmatched routes
        return await handler(request)
    auth = ctx.auth
    presented = presented_key(request)
    if presented is not None:
        principal = await auth.check(presented)
    elif await auth.has_keys():
        raise ApiError(401, "Unauthorized", "send an API key in X-API-Key or Authorization: Bearer",
                       headers={"WWW-Authenticate": 'Bearer realm="tracer"'})
    elif auth.allow_open and is_loopback(request.remote or ""):
        principal = OPEN
    else:
        raise ApiError(401, "Unauthorized", "no API keys are configured and this server is not loopback-only; "
                       "create one with `tracer keys create`")
    if auth.limiter is not None:
        if principal.key_pk is not None:
            # One bucket per key in Postgres: every API process serving this key draws from it.
            async with auth._pool().acquire() as conn:
                wait = await ownership.take_token(conn, f"key:{principal.key_pk}", auth.limiter.rate,
                                                  auth.limiter.burst)
        else:  # open mode: loopback callers, one process; per client address, in memory
            wait = auth.limiter.take(f"addr:{request.remote}")
        if wait > 0:
            raise ApiError(429, "Too many requests",
                           f"this key is limited to {auth.limiter.rate:g} requests per second "
                           f"(bursts of {auth.limiter.burst:g}); retry in {wait:.1f}s",
                           headers={"Retry-After": str(max(1, math.ceil(wait)))})
    if not principal.allows(scope):
        raise ApiError(403, "Forbidden", f"this key lacks the {scope!r} scope")
    request[PRINCIPAL] = principal
    return await handler(request)


def principal_of(request: web.Request) -> Principal:
    return request.get(PRINCIPAL, OPEN)


async def audit(request: web.Request, conn: Conn, action: str, target: str,
                details: dict[str, Any] | None = None) -> None:
    """Record in the audit log that the request's key did `action` to `target`, from where."""
    principal = principal_of(request)
    await key_store.audit(conn, actor=principal.name, api_key_id=principal.key_pk, action=action, target=target,
                          remote=request.remote, details=details)
