"""Every off-ramp a trace reached: who, how recognised, how much and what share of the seeds' total."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import orjson
from aiohttp import web

from tracer.api import params, usd
from tracer.api import serialize as ser
from tracer.api.context import ApiContext
from tracer.api.handlers.common import asset_meta, dumps_bytes, trace_or_404, trace_request, tron_shown
from tracer.domain.views import ExitItems, ExitLine
from tracer.engine.dollars import TraceDollars
from tracer.engine.pricing import usd_text
from tracer.store import backward as back_store
from tracer.store import exits as exit_store

FINISHED = ("done", "failed", "cancelled")
_NO_USD = ',"usd":null,"usd_share":null}'


def _remember(ctx: ApiContext, key: tuple[object, ...], body: bytes) -> None:
    cache = ctx.exits_cache
    cache[key] = body
    cache.move_to_end(key)
    while len(cache) > ctx.settings.exits_cache_size:
        cache.popitem(last=False)


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


_NO_CHECKSUM = '"address_checksum":null'


def encoded_items(lines: Sequence[ExitLine], dollars: TraceDollars | None, min_usd: Decimal | None,
                  sort: str | None) -> bytes:
    """The items array of a forward trace's exits from the lines Postgres wrote (tracer.store.exits):
    the same JSON as serialize.exit_line, with the dollars put in here."""
    out: list[tuple[str | None, str]] = []
    tron = False
    for line in lines:
        if dollars is None:
            if min_usd is not None:
                continue
            text, money = None, _NO_USD
        else:
            value = dollars.exit_usd(line.chain, line.address, line.asset)
            if min_usd is not None and (value is None or value < min_usd):
                continue
            text = usd_text(value)
            money = f',"usd":{_json(text)},"usd_share":{_json(dollars.share(value))}}}'
        json_line = line.line
        if line.no_checksum:  # a row written before the store kept its address's checksum
            json_line = json_line.replace(_NO_CHECKSUM, f'"address_checksum":"{ser.checksummed(line.address)}"', 1)
        out.append((text, json_line + money))
        tron = tron or line.tron
    if sort == "usd":  # largest first, unknown last
        out.sort(key=lambda i: (i[0] is None, -Decimal(i[0] or 0)))
    return _shown(("[" + ",".join(text for _, text in out) + "]").encode(), tron)


def _shown(items: bytes, tron: bool) -> bytes:
    # Scanning 100 kB for Tron addresses costs as much as writing it: only where Postgres saw one.
    return tron_shown(items) if tron else items


async def list_(request: web.Request) -> web.Response:
    ctx, trace_id = trace_request(request, ("asset", "category", "sort", "min_usd"))
    asset = params.asset_param(request, "asset")
    category = params.str_param(request, "category", max_len=64)
    sort = params.enum_param(request, "sort", ("amount", "usd"), default="amount")
    min_usd = params.decimal_param(request, "min_usd")
    rows: list[Any] = []
    lines: list[ExitLine] = []
    whole: ExitItems | None = None
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
        totals = {a: int(v) for a, v in (trace.totals or {}).items()}
        # A backward trace's exits are its sources: the same lines, read by sender (store/backward.py).
        if backward:
            rows = await back_store.sources(conn, trace_id, trace.chain, asset=asset, category=category)
        else:
            # Without dollars (a large running trace's come when it finishes) no line needs the API.
            if usd.deferred(ctx, trace) is not None:
                whole = await exit_store.exit_items(conn, trace_id, trace.chain, totals, asset=asset,
                                                    category=category)
            if whole is None:
                lines = await exit_store.exit_lines(conn, trace_id, trace.chain, totals, asset=asset,
                                                    category=category)
        meta = await asset_meta(ctx, conn, trace)
        held = await back_store.held(conn, trace_id, asset=asset) if backward and category is None else []
    chain = trace.chain
    # Dollars at the time of each hop (prices still missing are read from the nodes' feeds), summed
    # once per state of the trace; a large running trace gets them when it finishes.
    dollars = await usd.shared_dollars(ctx, trace)
    reached: dict[str, int] = dict(whole.reached) if whole is not None else {}
    for r in rows or lines:
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
    head = {"trace_id": trace_id, "status": trace.status, "complete": trace.status == "done",
            "direction": trace.direction, "totals": summary}
    if backward:
        body = dumps_bytes({**head, "items": _source_items(chain, rows, totals, dollars, min_usd, sort),
                            "usd": usd_block,
                            "held": [{"address": h.address, "chain": h.chain, "depth": h.depth,
                                      **ser.amount(h.chain, h.asset, h.amount, *meta.get(h.asset, (None, None)))}
                                     for h in held]})
    else:
        # The lines arrive as JSON: the envelope is written around them, not parsed and written again.
        if whole is not None and dollars is None:
            items = _shown(whole.items if min_usd is None else b"[]", whole.tron)
        else:
            items = encoded_items(lines, dollars, min_usd, sort)
        body = b"".join((tron_shown(orjson.dumps(head)[:-1]), b',"items":', items, b',"usd":',
                         orjson.dumps(usd_block), b"}"))
    if trace.status in FINISHED and ctx.settings.exits_cache_size > 0:
        _remember(ctx, key, body)
    return web.Response(body=body, content_type="application/json")


def _source_items(chain: str, rows: Sequence[Any], totals: Mapping[str, int], dollars: TraceDollars | None,
                  min_usd: Decimal | None, sort: str | None) -> list[dict[str, Any]]:
    """A backward trace's sources, each with the widest path its money took to a seed."""
    items = []
    for r in rows:
        value = dollars.exit_usd(r.chain, r.address, r.asset) if dollars else None
        if min_usd is not None and (value is None or value < min_usd):
            continue
        share = dollars.share(value) if dollars else None
        items.append(ser.exit_line(chain, r, totals, {"usd": usd_text(value), "usd_share": share}))
        items[-1]["path"] = back_store.evidence_of(r).get("path", [])
    if sort == "usd":  # largest first, unknown last
        items.sort(key=lambda i: (i["usd"] is None, -Decimal(i["usd"] or 0)))
    return items
