"""Every off-ramp a trace reached: who, how recognised, how much and what share of the seeds' total."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from aiohttp import web

from tracer.api import params, usd
from tracer.api import serialize as ser
from tracer.api.context import ApiContext
from tracer.api.handlers.common import asset_meta, dumps_bytes, trace_or_404, trace_request
from tracer.engine.pricing import usd_text
from tracer.store import backward as back_store
from tracer.store import reads

FINISHED = ("done", "failed", "cancelled")


def _remember(ctx: ApiContext, key: tuple[object, ...], body: bytes) -> None:
    cache = ctx.exits_cache
    cache[key] = body
    cache.move_to_end(key)
    while len(cache) > ctx.settings.exits_cache_size:
        cache.popitem(last=False)


async def list_(request: web.Request) -> web.Response:
    ctx, trace_id = trace_request(request, ("asset", "category", "sort", "min_usd"))
    asset = params.asset_param(request, "asset")
    category = params.str_param(request, "category", max_len=64)
    sort = params.enum_param(request, "sort", ("amount", "usd"), default="amount")
    min_usd = params.decimal_param(request, "min_usd")
    async with ctx.read_pool.acquire() as conn:
        trace = await trace_or_404(conn, trace_id)
        # A finished trace's exits never change; updated_at in the key covers a trace that is
        # deleted and whose id is reused, or re-opened by a future "watching" mode.
        key = (trace_id, trace.status, trace.updated_at, asset, category, sort, min_usd)
        cached = ctx.exits_cache.get(key) if trace.status in FINISHED else None
        if cached is not None:
            ctx.exits_cache.move_to_end(key)
            return web.Response(body=cached, content_type="application/json")
        backward = trace.direction == back_store.BACKWARD
        # A backward trace's exits are its sources: the same lines, read by sender (store/backward.py).
        rows = (await back_store.sources(conn, trace_id, trace.chain, asset=asset, category=category)
                if backward else await reads.exits(conn, trace_id, asset=asset, category=category))
        meta = await asset_meta(ctx, conn, trace)
        held = await back_store.held(conn, trace_id, asset=asset) if backward and category is None else []
    chain = trace.chain
    totals = {a: int(v) for a, v in (trace.totals or {}).items()}
    # Dollars at the time of each hop (prices still missing are read from the nodes' feeds), summed
    # once per state of the trace; a large running trace gets them when it finishes.
    dollars = await usd.shared_dollars(ctx, trace)
    items = []
    for r in rows:
        value = dollars.exit_usd(r.chain, r.address, r.asset) if dollars else None
        if min_usd is not None and (value is None or value < min_usd):
            continue
        share = dollars.share(value) if dollars else None
        items.append(ser.exit_line(chain, r, totals, {"usd": usd_text(value), "usd_share": share}))
        if backward:
            items[-1]["path"] = back_store.evidence_of(r).get("path", [])
    if sort == "usd":  # largest first, unknown last
        items.sort(key=lambda i: (i["usd"] is None, -Decimal(i["usd"] or 0)))
    reached: dict[str, int] = {}
    for r in rows:
        reached[r.asset] = reached.get(r.asset, 0) + r.amount
    summary: list[dict[str, Any]] = []
    for a, total in sorted(totals.items()):
        sym, dec = meta.get(a, (None, None))
        summary.append({"total": ser.amount(chain, a, total, sym, dec),
                        "reached_exits": ser.amount(chain, a, reached.get(a, 0), sym, dec),
                        "share": round(reached.get(a, 0) / total, 9) if total else 0.0})
    if dollars is None:
        usd_block: dict[str, Any] = {"seeds": None, "exits": None, "exits_share": None, "stopped": None, "held": None,
                                     "unpriced_hops": None,
                                     "deferred": usd.deferred(ctx, trace)}
    else:
        reached_usd = dollars.exits_total.usd
        usd_block = {"seeds": usd_text(dollars.seeds.usd), "exits": usd_text(reached_usd),
                     "exits_share": dollars.share(reached_usd),
                     "stopped": usd_text(dollars.stopped.usd), "held": usd_text(dollars.held.usd),
                     "unpriced_hops": dollars.unpriced_hops}
    body = dumps_bytes({"trace_id": trace_id, "status": trace.status, "complete": trace.status == "done",
                  "direction": trace.direction,
                  "totals": summary, "items": items, "usd": usd_block,
                  **({"held": [{"address": h.address, "chain": h.chain, "depth": h.depth,
                                **ser.amount(h.chain, h.asset, h.amount, *meta.get(h.asset, (None, None)))}
                               for h in held]} if backward else {})})
    if trace.status in FINISHED and ctx.settings.exits_cache_size > 0:
        _remember(ctx, key, body)
    return web.Response(body=body, content_type="application/json")
