"""Dollars of hop events at commit, so subscriptions can filter on `min_usd` at fan-out.

The sequencer fans events out in its own transaction and has no node, so a hop event's dollars
must be in its payload before it is numbered. The worker that commits the hops writes them:
before its transaction, while any subscription filters on dollars, it reads the prices its
batch's transfers still lack from the feeds (one batch per commit, never per hop:
engine/pricing.py); inside it, each new event is valued from the prices stored (no node call under
the trace's lock). An event whose price is still unknown carries `usd: null` and is delivered to
every subscription whatever its min_usd: money is never kept from a receiver because its price is
unknown."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import asyncpg

from tracer.chains.errors import ChainError
from tracer.domain.alerts import WrittenEvent
from tracer.engine import pricing
from tracer.engine.pricing import usd_text
from tracer.store import outbox

log = logging.getLogger(__name__)


async def prefetch(pool: asyncpg.Pool, chains: Mapping[str, Any], transfer_ids: Sequence[int]) -> bool:
    """Read from the feeds the prices of these transfers not stored yet, if anyone filters on them;
    whether anyone does (then the commit prices its events: `price_events`). Without such a
    subscription the commit adds no pricing work: deliveries and event pages price as they read."""
    try:
        async with pool.acquire() as conn:
            if not await outbox.any_min_usd(conn):
                return False
            if not transfer_ids:
                return True
            keys = await outbox.transfer_price_keys(conn, transfer_ids)
        await pricing.price_keys(pool, chains, keys)
    except (ChainError, OSError, TimeoutError) as exc:
        # The trace goes on: its events are then delivered unpriced, never held back.
        log.warning("event=event_prices_failed error=%r", exc)
    return True


async def price_events(conn: Any, chain: str, events: Sequence[WrittenEvent]) -> None:
    """Write the dollars of just-inserted hop events (rows: id, payload) into their payloads;
    `chain`: the trace's, for hops that do not name theirs."""
    hops = []
    for e in events:
        p = e.payload
        if isinstance(p, str):
            p = json.loads(p)
        hops.append(pricing.HopAmount(int(e.id), p.get("chain") or chain, p["asset"], int(Decimal(str(p["amount"]))),
                                      int(p["block_number"]), int(p.get("block_time") or 0), p.get("decimals")))
    if not hops:
        return
    values = await pricing.hop_values(conn, hops)
    await outbox.set_event_usd(conn, [(i, usd_text(v.usd), v.source if v.usd is not None else None)
                                           for i, v in sorted(values.items())])
