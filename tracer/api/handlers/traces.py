"""Traces: start one, list them, read one (status, progress, totals), cancel, delete."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import asyncpg
from aiohttp import web

from tracer.api import limits, nodewatch, owners, params, usd
from tracer.api import serialize as ser
from tracer.api.auth import audit, principal_of
from tracer.api.context import ApiContext
from tracer.api.errors import ApiError, bad_request, not_found
from tracer.api.handlers.common import (
    asset_meta,
    chain_client,
    checked_body,
    ctx_of,
    ok,
    page,
    page_limit,
    read_cursor,
    trace_or_404,
    trace_request,
)
from tracer.domain.views import StoredTrace
from tracer.engine import service
from tracer.store import ownership, reads

log = logging.getLogger("tracer.api")

STATUSES = ("queued", "running", "done", "failed", "cancelled", "watching")
_NODE_ERRORS = (OSError, TimeoutError, asyncio.TimeoutError)


def _head_errors() -> tuple[type[BaseException], ...]:
    try:
        from tracer.chains.errors import ChainError
    except ImportError:  # the chain layer is optional at import time for read-only deployments
        return _NODE_ERRORS
    return (*_NODE_ERRORS, ChainError)


def _told(exc: BaseException) -> str:
    """What a client is told of a node's failure: a malformed answer whole (it names the node without
    its URL's secrets and says what it answered), other errors by name (they may quote a provider's
    page)."""
    from tracer.chains.errors import MalformedAnswer

    return str(exc) if isinstance(exc, MalformedAnswer) else type(exc).__name__


async def create(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    body = await checked_body(request, "trace-create")  # the engine then checks what a schema cannot
    # A process with nodes (embedded workers) accepts the chains it has; a read-only one accepts
    # any known chain name, and the missing node is then a 503 below.
    nodewatch.refuse_if_down(request, body.get("chain", "ethereum"))
    try:
        chain = service.check_chain(body.get("chain", "ethereum"), list(ctx.chains))
    except service.TraceInputError as exc:
        raise bad_request("chain", exc.message) from None
    client = chain_client(request, chain)
    principal = principal_of(request)
    if "seeds" not in body and not body.get("from_list"):
        raise bad_request("seeds", "give seeds (flagged addresses) or from_list (a sanctions list)")
    seeds = list(body.get("seeds", []))
    if body.get("from_list"):
        seeds += await service.seeds_from_list(ctx.pool, chain, body["from_list"]["list"],
                                               body["from_list"].get("program"))
    limits.check_seeds(request, len(set(seeds)), "seeds")
    async with ctx.pool.acquire() as conn:
        await limits.check_trace_quota(request, conn, principal)
    try:
        trace_id = await service.create_trace(
            ctx.pool, client, chain=chain, seeds=seeds, policy=body.get("policy"),
            label=body.get("label"), created_by=principal.name, chains=list(ctx.chains),
            direction=body.get("direction", "forward"),
        )
    except _head_errors() as exc:
        log.warning("event=node_unavailable chain=%s error=%r", chain, exc)
        raise ApiError(503, "Chain node unavailable", f"could not read the chain head of {chain}: {_told(exc)}",
                       headers={"Retry-After": "10"}) from None
    async with ctx.pool.acquire() as conn:
        await ownership.set_trace_owner(conn, trace_id, principal.owner)
        await audit(request, conn, "trace.create", f"trace:{trace_id}", {
            "chain": chain, "seeds": len(seeds), "label": body.get("label"),
            "direction": body.get("direction", "forward"), "from_list": body.get("from_list")})
        row = await trace_or_404(conn, trace_id)
        meta = await asset_meta(ctx, conn, row)
    return ok(ser.trace(row, meta), status=201, headers={"Location": f"/v1/traces/{trace_id}"})


async def list_(request: web.Request) -> web.Response:
    params.reject_unknown(request, ("status", "seed", "label", "limit", "cursor"))
    ctx = ctx_of(request)
    statuses = params.enum_list_param(request, "status", STATUSES)
    seed = params.address_param(request, "seed", params.ANY_CHAIN)
    label = params.str_param(request, "label")
    limit = page_limit(request)
    scope = {"status": statuses, "seed": seed, "label": label}
    after = read_cursor(request, "traces", scope)
    before_id = params.parse_int("cursor", after[0], minimum=1) if after else None
    async with ctx.read_pool.acquire() as conn:
        rows = await reads.list_traces(conn, statuses=statuses, seed=seed, label=label, before_id=before_id,
                                       limit=limit + 1)
        items = []
        for row in rows[:limit]:
            items.append(ser.trace(row, await asset_meta(ctx, conn, row)))
    return ok(page(request, "traces", scope, items, rows, limit, lambda r: [str(r.id)]))


async def _trace_with_counters(ctx: ApiContext, conn: asyncpg.pool.PoolConnectionProxy,
                               row: StoredTrace) -> dict[str, Any]:
    """One trace as GET /v1/traces/{id} shows it, with its progress counters (a list page has none)."""
    return ser.trace(row, await asset_meta(ctx, conn, row), await reads.trace_counters(conn, row.id))


async def get(request: web.Request) -> web.Response:
    ctx, trace_id = trace_request(request, ())
    async with ctx.read_pool.acquire() as conn:
        row = await trace_or_404(conn, trace_id)
        out = await _trace_with_counters(ctx, conn, row)
    out["usd"] = await usd.trace_summary(ctx, row)
    return ok(out)


async def cancel(request: web.Request) -> web.Response:
    ctx, trace_id = trace_request(request, ())
    async with ctx.pool.acquire() as conn:
        await owners.require_trace(request, conn, trace_id)
    cancelled = await service.cancel_trace(ctx.pool, trace_id)
    async with ctx.pool.acquire() as conn:
        row = await trace_or_404(conn, trace_id)
        if not cancelled:
            raise ApiError(409, "Conflict", f"trace {trace_id} is {row.status}; only queued, running or "
                           "watching traces can be cancelled", extra={"trace_status": row.status})
        await audit(request, conn, "trace.cancel", f"trace:{trace_id}")
        out = await _trace_with_counters(ctx, conn, row)
    return ok(out)


async def delete(request: web.Request) -> web.Response:
    ctx, trace_id = trace_request(request, ())
    async with ctx.pool.acquire() as conn:
        row = await reads.get_trace(conn, trace_id)
    if row is None or not await service.delete_trace(ctx.pool, trace_id):
        raise not_found(f"no trace {trace_id}")
    async with ctx.pool.acquire() as conn:
        await audit(request, conn, "trace.delete", f"trace:{trace_id}",
                    {"status": row.status, "label": row.label, "seeds": len(row.seeds)})
    return web.Response(status=204)
