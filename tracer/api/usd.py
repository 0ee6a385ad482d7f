"""Dollars beside coin amounts in API answers: each hop at its block's price (engine/pricing.py).
Prices not stored yet are read from the configured nodes' feeds once, then kept."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from tracer.api.context import ApiContext
from tracer.engine import dollars, pricing
from tracer.engine.pricing import Value, usd_text

log = logging.getLogger(__name__)


def fields(v: Value | None) -> dict[str, Any]:
    """`usd` (decimal string, None when unknown) and where its price came from."""
    if v is None:
        return {"usd": None, "usd_source": None}
    return {"usd": usd_text(v.usd), "usd_source": v.source}


async def hop_values(ctx: ApiContext, rows: Sequence[Any]) -> dict[int, Value]:
    """USD of hop rows (transfer_id, chain, asset, amount, block_number, block_time, decimals)."""
    if not rows:
        return {}
    await pricing.price_keys(ctx.pool, ctx.chains, pricing.keys_of(rows))
    async with ctx.pool.acquire() as conn:
        return await pricing.hop_values(conn, rows)


FINISHED = ("done", "failed", "cancelled")


async def trace_summary(ctx: ApiContext, row: Any) -> dict[str, Any] | None:
    """The trace summary's dollars (the same sums as `/exits`: engine/dollars.py), for finished
    traces only: the sums read every hop, which a summary polled on a large running trace must not
    do on each call. A finished trace's sums never change, so they are kept with /exits' cache."""
    if row["status"] not in FINISHED:
        return None
    key = ("summary-usd", row["id"], row["status"], row["updated_at"])
    cached = ctx.exits_cache.get(key)
    if cached is not None:
        ctx.exits_cache.move_to_end(key)
        return json.loads(cached)
    try:
        d = await dollars.trace_dollars(ctx.pool, row["id"], ctx.chains)
    except KeyError:  # deleted since it was read: the summary has no dollars to show
        return None
    reached = d.exits_total.usd
    out = {"seeds": usd_text(d.seeds.usd), "exits": usd_text(reached), "exits_share": d.share(reached),
           "unpriced_hops": sum(1 for v in d.values.values() if v.usd is None)}
    if ctx.settings.exits_cache_size > 0:
        ctx.exits_cache[key] = json.dumps(out).encode()
        ctx.exits_cache.move_to_end(key)
        while len(ctx.exits_cache) > ctx.settings.exits_cache_size:
            ctx.exits_cache.popitem(last=False)
    return out
