"""Dollars of hop events (webhooks, streams, event pages): each hop's amount at its asset's price
at its block (tracer.engine.pricing). A process with nodes reads prices not stored yet from their
feeds; one without (a delivery worker) uses the prices stored, and says null when none is."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import asyncpg

from tracer.alerts.events import HOP_TYPES
from tracer.domain.alerts import EventRow
from tracer.engine import pricing
from tracer.engine.pricing import Value


def _hop_row(row: EventRow) -> pricing.HopAmount | None:
    p = row.payload or {}
    if row.type not in HOP_TYPES or p.get("block_number") is None or p.get("asset") is None:
        return None
    return pricing.HopAmount(row.seq, str(p.get("chain") or row.chain or "ethereum"), p["asset"],
                             int(Decimal(str(p["amount"]))), int(p["block_number"]), int(p.get("block_time") or 0),
                             p.get("decimals"))


async def event_values(pool: asyncpg.Pool, rows: Sequence[EventRow],
                       chains: Mapping[str, Any] | None = None) -> dict[int, Value]:
    """USD of the hop events among `rows` (event rows: seq, type, chain, payload), by seq."""
    hops = [h for h in (_hop_row(r) for r in rows) if h is not None]
    if not hops:
        return {}
    if chains:
        await pricing.price_keys(pool, chains, pricing.keys_of(hops))
    async with pool.acquire() as conn:
        return await pricing.hop_values(conn, hops)
