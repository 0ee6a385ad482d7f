"""Dollars beside coin amounts in API answers: each hop at its block's price (engine/pricing.py).
Prices not stored yet are read from the configured nodes' feeds once, then kept."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from tracer.api.context import ApiContext
from tracer.engine import pricing
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
