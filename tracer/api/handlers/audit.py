"""The audit log: who started, cancelled, deleted or labelled what (admin scope)."""

from __future__ import annotations

from aiohttp import web

from tracer.api import params
from tracer.api import serialize as ser
from tracer.api.handlers.common import ctx_of, ok, page, page_limit, read_cursor
from tracer.store import keys as key_store

ACTIONS = ("trace.create", "trace.cancel", "trace.delete", "label.create", "label.import", "key.create", "key.revoke",
           "subscription.create", "subscription.delete", "subscription.replay", "label.publish")


async def list_(request: web.Request) -> web.Response:
    params.reject_unknown(request, ("limit", "cursor", "target", "action"))
    ctx = ctx_of(request)
    target = params.str_param(request, "target")
    action = params.enum_param(request, "action", ACTIONS)
    limit = page_limit(request)
    scope = {"target": target, "action": action}
    after = read_cursor(request, "audit", scope)
    before = params.parse_int("cursor", after[0], minimum=1) if after else None
    async with ctx.pool.acquire() as conn:
        entries = await key_store.audit_page(conn, before_id=before, limit=limit + 1, target=target, action=action)
    items = [{"id": e.id, "at": ser.iso(e.at), "actor": e.actor, "api_key_id": e.api_key_id, "action": e.action,
              "target": e.target, "details": e.details, "remote": e.remote} for e in entries[:limit]]
    return ok(page(request, "audit", scope, items, entries, limit, lambda e: [str(e.id)]))
