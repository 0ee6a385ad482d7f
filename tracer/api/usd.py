"""Dollars beside coin amounts in API answers: each hop at its block's price (engine/pricing.py).
Prices not stored yet are read from the configured nodes' feeds once, then kept."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from tracer.api.context import ApiContext
from tracer.chains.feeds import Feed
from tracer.domain.views import StoredHop, StoredTrace
from tracer.engine import dollars, pricing
from tracer.engine.pricing import Value, usd_text
from tracer.store import prices as price_store

log = logging.getLogger(__name__)


def fields(v: Value | None) -> dict[str, Any]:
    """`usd` (decimal string, None when unknown) and where its price came from."""
    if v is None:
        return {"usd": None, "usd_source": None}
    return {"usd": usd_text(v.usd), "usd_source": v.source}


async def registered_feeds(ctx: ApiContext) -> list[Feed]:
    """The feeds of `price_feeds`, read again once `feeds_cache_seconds` passed: every page of hops
    needs them, and they change only when someone registers a feed (a handful of rows, rarely)."""
    now = time.monotonic()
    cached = ctx.feeds
    if cached is not None and now - cached[0] < ctx.settings.feeds_cache_seconds:
        return cached[1]
    async with ctx.pool.acquire() as conn:
        feeds = await price_store.registered_feeds(conn)
    ctx.feeds = (now, feeds)
    return feeds


async def hop_values(ctx: ApiContext, rows: Sequence[StoredHop]) -> dict[int, Value]:
    """USD of hops."""
    if not rows:
        return {}
    return await pricing.priced_hop_values(ctx.pool, ctx.chains, rows, await registered_feeds(ctx))


FINISHED = ("done", "failed", "cancelled")


def deferred(ctx: ApiContext, row: StoredTrace) -> str | None:
    """Why an unfinished trace's dollars are not summed now, or None when they are."""
    hops = int(row.hop_count or 0)
    if row.status in FINISHED or hops <= ctx.settings.live_usd_max_hops:
        return None
    return (f"dollars are summed when the trace finishes: it has {hops} hops, more than the "
            f"{ctx.settings.live_usd_max_hops} summed while it runs (TRACER_API_LIVE_USD_MAX_HOPS)")


async def shared_dollars(ctx: ApiContext, row: StoredTrace) -> dollars.TraceDollars | None:
    """The trace's dollar sums, computed once per state of the trace however many requests ask at
    the same time (they read every hop); None for a running trace past `live_usd_max_hops`."""
    if deferred(ctx, row) is not None:
        return None
    key = (row.id, row.status, row.updated_at, int(row.hop_count or 0))
    result: dollars.TraceDollars = await ctx.dollars.get(
        key, lambda: dollars.trace_dollars(ctx.pool, row.id, ctx.chains))
    return result


async def trace_summary(ctx: ApiContext, row: StoredTrace) -> dict[str, Any] | None:
    """The trace summary's dollars (the same sums as `/exits`: engine/dollars.py), for finished
    traces only: the sums read every hop, which a summary polled on a large running trace must not
    do on each call. A finished trace's sums never change: they are computed once (shared_dollars)."""
    if row.status not in FINISHED:
        return None
    try:
        d = await shared_dollars(ctx, row)
    except KeyError:  # deleted since it was read: the summary has no dollars to show
        return None
    if d is None:
        return None
    reached = d.exits_total.usd
    return {"seeds": usd_text(d.seeds.usd), "exits": usd_text(reached), "exits_share": d.share(reached),
            "unpriced_hops": d.unpriced_hops}
