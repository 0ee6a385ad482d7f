"""Quotas and rate limits of the API (defaults and variables in docs/SECURITY.md).

- seeds per trace (and addresses per watchlist): Settings.max_seeds, 400 past it;
- unfinished traces and subscriptions per key (or per team): Settings.max_active_traces and
  Settings.max_subscriptions, 429 with Retry-After past them;
- requests per second per key: Settings.rate_limit with bursts of rate_limit_burst, one token
  bucket per key in Postgres, so every API process draws from the same bucket; 429 with
  Retry-After. In open mode (no keys) the bucket is per client address and in memory.

Open mode has no owner to count against: the quotas apply to keys.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg
from aiohttp import web

from tracer.api.auth import Principal
from tracer.api.context import CTX
from tracer.api.errors import ApiError, bad_request
from tracer.store import ownership
from tracer.store.ownership import Owner


def check_seeds(request: web.Request, count: int, field: str) -> None:
    most = request.app[CTX].settings.max_seeds
    if count > most:
        raise bad_request(field, f"{count} addresses; at most {most} per trace on this server (TRACER_MAX_SEEDS)")


def _quota(detail: str) -> ApiError:
    return ApiError(429, "Quota exceeded", detail, headers={"Retry-After": "60"})


async def check_trace_quota(request: web.Request, conn: asyncpg.pool.PoolConnectionProxy,
                            principal: Principal) -> None:
    await _within_quota(principal, request.app[CTX].settings.max_active_traces,
                        lambda owner: ownership.active_traces(conn, owner), "unfinished traces",
                        "TRACER_MAX_ACTIVE_TRACES", "cancel one or wait for one to finish")


async def check_subscription_quota(request: web.Request, conn: asyncpg.pool.PoolConnectionProxy,
                                   principal: Principal) -> None:
    await _within_quota(principal, request.app[CTX].settings.max_subscriptions,
                        lambda owner: ownership.subscriptions_of(conn, owner), "subscriptions",
                        "TRACER_MAX_SUBSCRIPTIONS", "delete one first")


async def _within_quota(principal: Principal, most: int, count: Callable[[Owner], Awaitable[int]], what: str,
                        variable: str, advice: str) -> None:
    """429 when the key (or its team) already holds `most` of `what`; keyless callers have no quota."""
    owner = principal.owner
    if owner.nobody:
        return
    held = await count(owner)
    if held >= most:
        who = f"team {owner.team!r}" if owner.team else "this key"
        raise _quota(f"{who} has {held} {what}, the most allowed ({variable}={most}); {advice}")
