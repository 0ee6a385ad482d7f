"""Every off-ramp a trace reached: who, how recognised, how much and what share of the seeds' total."""

from __future__ import annotations

from aiohttp import web

from tracer.api import params
from tracer.api import serialize as ser
from tracer.api.handlers.common import asset_meta, ctx_of, ok, trace_or_404
from tracer.store import reads


async def list_(request: web.Request) -> web.Response:
    params.reject_unknown(request, ("asset", "category"))
    ctx = ctx_of(request)
    trace_id = params.trace_id(request)
    asset = params.asset_param(request, "asset")
    category = params.str_param(request, "category", max_len=64)
    async with ctx.pool.acquire() as conn:
        trace = await trace_or_404(conn, trace_id)
        rows = await reads.exits(conn, trace_id, asset=asset, category=category)
        meta = await asset_meta(ctx, conn, trace)
    chain = trace["chain"]
    totals = {a: int(v) for a, v in (trace["totals"] or {}).items()}
    items = [ser.exit_line(chain, r, totals) for r in rows]
    reached: dict[str, int] = {}
    for r in rows:
        reached[r["asset"]] = reached.get(r["asset"], 0) + int(r["amount"])
    summary = []
    for a, total in sorted(totals.items()):
        sym, dec = meta.get(a, (None, None))
        summary.append({"total": ser.amount(chain, a, total, sym, dec),
                        "reached_exits": ser.amount(chain, a, reached.get(a, 0), sym, dec),
                        "share": round(reached.get(a, 0) / total, 9) if total else 0.0})
    return ok({"trace_id": trace_id, "status": trace["status"], "complete": trace["status"] == "done",
               "totals": summary, "items": items})
