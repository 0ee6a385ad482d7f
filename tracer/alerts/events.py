"""The public form of an event: what a webhook receives and what an SSE stream sends.

One function renders both, so a receiver can switch between webhook and stream without a second
parser. The contract is schemas/json/webhook_event.schema.json. Amounts are exact strings, as in
the API: `amount` in the asset's units and `amount_raw` in base units, with asset, symbol and
decimals.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from tracer.addresses import show_tron
from tracer.domain.alerts import EventRow
from tracer.domain.chains import native_unit
from tracer.engine.pricing import usd_text

#: Every event type, in the order a trace produces them.
EVENT_TYPES = (
    "trace_created",
    "trace_started",
    "hop_added",
    "hop_updated",
    "exit_reached",
    "trace_watching",
    "hop_retracted",
    "hops_retracted",
    "trace_finished",
    "trace_failed",
    "trace_cancelled",
    "screening_result",  # a watched address received new money: its screening (alerts/screening.py)
)
#: Types whose body has a `hop` (the others have `data`).
HOP_TYPES = frozenset({"hop_added", "hop_updated", "hop_retracted"})

def format_units(raw: int, decimals: int | None) -> str:
    """Exact decimal string of a raw amount in the asset's units (integer arithmetic only)."""
    if not decimals:
        return str(raw)
    whole, frac = divmod(raw, 10**decimals)
    if not frac:
        return str(whole)
    return f"{whole}.{str(frac).rjust(decimals, '0').rstrip('0')}"


def _int(value: Any) -> int:
    # Raw amounts are integer strings; Decimal also reads "2E+18", which numeric text can be.
    return int(Decimal(str(value)))


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def hop(chain: str, p: Mapping[str, Any]) -> dict[str, Any]:
    """A hop payload (as the worker or the reorg retraction stored it) in public form. `chain` is
    the trace's own, for payloads stored before hops named theirs (a trace may continue onto
    other chains: a hop's amount is in its own chain's units)."""
    chain = str(p.get("chain") or chain)
    asset = str(p["asset"])
    symbol: str | None
    decimals: int | None
    if asset == "native":
        symbol, decimals = native_unit(chain)
    else:
        symbol, decimals = p.get("symbol"), p.get("decimals")
    raw = _int(p["amount"])
    whole = _int(p.get("transfer_amount") or raw)
    block_time = p.get("block_time")
    return {
        "chain": chain,
        "tx_hash": p["tx_hash"],
        "position": p["position"],
        "block_number": int(p["block_number"]),
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(block_time))) if block_time is not None
        else None,
        "from": p["from"],
        "to": p["to"],
        "depth": int(p["depth"]),
        "kind": p["kind"],
        "status": p["status"],
        "reason": p["reason"],
        "share": float(p.get("share") or 0.0),
        "asset": asset,
        "symbol": symbol,
        "decimals": decimals,
        "amount": format_units(raw, decimals),
        "amount_raw": str(raw),
        "transfer_amount_raw": str(whole),
        "to_entity": p.get("to_entity"),
        "to_category": p.get("to_category"),
        # US dollars at the asset's price at the hop's block (tracer.alerts.prices); null: unknown.
        "usd": None,
        "usd_source": None,
    }


def render(row: EventRow, *, subscription_id: int | None = None, usd: Any = None) -> dict[str, Any]:
    """A numbered event as its public JSON object.

    `id` is the event's seq: unique, never reused, increasing in commit order; receivers drop
    duplicates by it (delivery is at least once) and streams resume after it.
    """
    payload: Mapping[str, Any] = row.payload or {}
    # An event of no trace (a screening result) names its chain itself.
    chain = row.chain or str(payload.get("chain") or "ethereum")
    body: dict[str, Any] = {
        "id": row.seq,
        "type": row.type,
        "created_at": iso(row.created_at),
        "trace_id": row.trace_id,
        "chain": chain,
    }
    if subscription_id is not None:
        body["subscription_id"] = subscription_id
    if row.type in HOP_TYPES:
        body["hop"] = hop(chain, payload)
        if payload.get("usd") is not None:
            # Priced at commit (engine/event_usd.py): the dollars subscriptions' min_usd compared.
            body["hop"]["usd"], body["hop"]["usd_source"] = payload["usd"], payload.get("usd_source")
        elif usd is not None:  # a tracer.engine.pricing.Value, priced since
            body["hop"]["usd"], body["hop"]["usd_source"] = usd_text(usd.usd), usd.source
    else:
        body["data"] = dict(payload)
    return body


def encode(body: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON: the exact bytes that are signed and sent."""
    return show_tron(json.dumps(body, separators=(",", ":"), ensure_ascii=False)).encode()


_SENTINEL = 8_870_313_709_185_077_001  # stands in for a subscription id while rendering once


@dataclass(frozen=True, slots=True)
class Rendered:
    """An event's webhook body rendered once for every subscription it fans out to: the bytes
    before and after the subscription id, so a body costs a join, not a render and an encode.
    `for_subscription(n)` is byte for byte `encode(render(row, subscription_id=n, usd=...))`."""

    seq: int
    type: str
    head: bytes
    tail: bytes

    def for_subscription(self, subscription_id: int) -> bytes:
        return b"%s%d%s" % (self.head, subscription_id, self.tail)


def rendered(row: EventRow, usd: Any = None) -> Rendered:
    text = encode(render(row, subscription_id=_SENTINEL, usd=usd))
    # The key comes before the hop or data object (dict order), so its first occurrence is ours;
    # strings before it cannot hold it unescaped (JSON escapes their quotes).
    head, found, tail = text.partition(b'"subscription_id":%d' % _SENTINEL)
    assert found, "the subscription id must be in the body"
    return Rendered(row.seq, row.type, head + b'"subscription_id":', tail)
