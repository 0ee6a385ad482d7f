"""Who may act on what: traces, subscriptions and labels belong to the key (or team) that made them.

Reads stay open to every read key. Cancelling a trace, deleting or replaying a subscription needs
the owner (its key or a key of its team) or an admin: 403 otherwise. Labels made by non-admin
keys are private to their owner until an admin publishes them (`POST /v1/labels/{id}/publish`);
screening and the address page use the public labels plus the caller's own.
"""

from __future__ import annotations

import asyncpg
from aiohttp import web

from tracer.api.auth import Principal, principal_of
from tracer.api.errors import ApiError
from tracer.store import ownership
from tracer.store.ownership import Viewer

INVESTIGATOR_SOURCE = "investigator"


def viewer(principal: Principal, *, admin_sees_all: bool = False) -> Viewer:
    return Viewer(principal.key_pk, principal.team, everything=admin_sees_all and principal.allows("admin"))


def private_labels(principal: Principal) -> bool:
    """Whether this caller's labels start private (everyone's but an admin's, and open mode's)."""
    return not principal.allows("admin")


def label_source(principal: Principal) -> str:
    """The source of a caller's investigator labels: one owner's claims stay apart from another's
    (and from the public ones) under the labels' unique key."""
    if not private_labels(principal):
        return INVESTIGATOR_SOURCE
    if principal.team is not None:
        return f"{INVESTIGATOR_SOURCE}:team:{principal.team}"
    return f"{INVESTIGATOR_SOURCE}:key:{principal.key_pk}"


def _refuse(what: str) -> ApiError:
    return ApiError(403, "Forbidden", f"{what} belongs to another key; only its owner (or its team) or an admin "
                    "may change it")


async def require_trace(request: web.Request, conn: asyncpg.pool.PoolConnectionProxy, trace_id: int) -> None:
    """403 unless the caller owns the trace (a missing trace passes: the handler answers 404)."""
    owner = await ownership.trace_owner(conn, trace_id)
    if owner is not None and not principal_of(request).owns(owner):
        raise _refuse(f"trace {trace_id}")


async def require_subscription(request: web.Request, conn: asyncpg.pool.PoolConnectionProxy, sid: int) -> None:
    owner = await ownership.subscription_owner(conn, sid)
    if owner is not None and not principal_of(request).owns(owner):
        raise _refuse(f"subscription {sid}")
