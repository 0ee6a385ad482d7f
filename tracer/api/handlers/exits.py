"""Every off-ramp a trace reached: who, how recognised, how much and what share of the seeds' total."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tracer.api import params
from tracer.api import serialize as ser
from tracer.api.context import ApiContext
from tracer.api.handlers.common import asset_meta, ctx_of, dumps, trace_or_404
from tracer.store import reads

FINISHED = ("done", "failed", "cancelled")


def _remember(ctx: ApiContext, key: tuple[object, ...], body: bytes) -> None:
    cache = ctx.exits_cache
    cache[key] = body
    cache.move_to_end(key)
    while len(cache) > ctx.settings.exits_cache_size:
        cache.popitem(last=False)


async def list_(request: web.Request) -> web.Response:
    params.reject_unknown(request, ("asset", "category"))
    ctx = ctx_of(request)
    trace_id = params.trace_id(request)
    asset = params.asset_param(request, "asset")
    category = params.str_param(request, "category", max_len=64)
    async with ctx.pool.acquire() as conn:
        trace = await trace_or_404(conn, trace_id)
        # A finished trace's exits never change; updated_at in the key covers a trace that is
        # deleted and whose id is reused, or re-opened by a future "watching" mode.
        key = (trace_id, trace["status"], trace["updated_at"], asset, category)
        cached = ctx.exits_cache.get(key) if trace["status"] in FINISHED else None
        if cached is not None:
            ctx.exits_cache.move_to_end(key)
            return web.Response(body=cached, content_type="application/json")
        rows = await reads.exits(conn, trace_id, trace["chain"], asset=asset, category=category)
        meta = await asset_meta(ctx, conn, trace)
    chain = trace["chain"]
    totals = {a: int(v) for a, v in (trace["totals"] or {}).items()}
    items = [ser.exit_line(chain, r, totals) for r in rows]
    reached: dict[str, int] = {}
    for r in rows:
        reached[r["asset"]] = reached.get(r["asset"], 0) + int(r["amount"])
    summary: list[dict[str, Any]] = []
    for a, total in sorted(totals.items()):
        sym, dec = meta.get(a, (None, None))
        summary.append({"total": ser.amount(chain, a, total, sym, dec),
                        "reached_exits": ser.amount(chain, a, reached.get(a, 0), sym, dec),
                        "share": round(reached.get(a, 0) / total, 9) if total else 0.0})
    body = dumps({"trace_id": trace_id, "status": trace["status"], "complete": trace["status"] == "done",
                  "totals": summary, "items": items}).encode()
    if trace["status"] in FINISHED and ctx.settings.exits_cache_size > 0:
        _remember(ctx, key, body)
    return web.Response(body=body, content_type="application/json")
