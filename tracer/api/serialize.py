"""Database rows to the JSON objects of schemas/json: amounts as decimal strings, times as RFC 3339.

Every amount goes out twice, exactly: `amount` in the asset's display units ("12.5" ETH) and
`amount_raw` in base units ("12500000000000000000" wei), with the asset, its symbol and decimals,
so no client ever has to parse a float or guess a scale.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from tracer.addresses import checksum
from tracer.domain.chains import native_unit
from tracer.domain.records import ExitRow
from tracer.domain.transfers import NATIVE
from tracer.domain.verdicts import LABEL_REASON_PREFIX, Reason
from tracer.domain.views import StoredHop, StoredTrace


@functools.lru_cache(maxsize=65536)
def _unix_iso(ts: int) -> str:
    # Block times repeat across the rows of a page (one block, many transfers): cache them.
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def iso(value: datetime | int | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, int):
        return _unix_iso(value)
    if value.tzinfo is None:  # naive datetimes in this codebase mean UTC
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


@functools.lru_cache(maxsize=100_000)
def checksummed(address: str) -> str:
    # EIP-55 costs a keccak per address, more than everything else in an exit row: cache it.
    return checksum(address)


def asset_info(chain: str, asset: str, symbol: str | None, decimals: int | None) -> tuple[str | None, int | None]:
    if asset == NATIVE:
        return native_unit(chain)
    return symbol, decimals


def format_units(raw: int, decimals: int | None) -> str:
    """Exact decimal string of a raw amount in display units, in integer arithmetic (the same text
    as tracer.engine.report.format_amount, without going through Decimal: this runs per row)."""
    if not decimals:
        return str(raw)
    whole, frac = divmod(raw, _POW10[decimals] if decimals < len(_POW10) else 10**decimals)
    if not frac:
        return str(whole)
    return f"{whole}.{str(frac).rjust(decimals, '0').rstrip('0')}"


_POW10 = [10**i for i in range(80)]


def amount(chain: str, asset: str, raw: int | Decimal | str, symbol: str | None,
           decimals: int | None) -> dict[str, Any]:
    sym, dec = asset_info(chain, asset, symbol, decimals)
    value = int(raw)
    return {"asset": asset, "symbol": sym, "decimals": dec, "amount": format_units(value, dec),
            "amount_raw": str(value)}


def links_for_trace(trace_id: int) -> dict[str, str]:
    base = f"/v1/traces/{trace_id}"
    return {"self": base, "hops": f"{base}/hops", "exits": f"{base}/exits", "paths": f"{base}/paths",
            "graph": f"{base}/graph", "cancel": f"{base}/cancel"}


def trace(row: StoredTrace, meta: Mapping[str, tuple[str | None, int | None]],
          counters: Mapping[str, int] | None = None) -> dict[str, Any]:
    chain = row.chain
    totals = row.totals
    if isinstance(totals, str):
        totals = json.loads(totals)
    policy = row.policy
    if isinstance(policy, str):
        policy = json.loads(policy)
    out: dict[str, Any] = {
        "id": row.id,
        "chain": chain,
        "direction": row.direction,
        "status": row.status,
        "label": row.label,
        "seeds": list(row.seeds),
        "policy": policy,
        "from_block": row.from_block,
        "to_block": row.to_block,
        "error": row.error,
        "created_by": row.created_by,
        "created_at": iso(row.created_at),
        "started_at": iso(row.started_at),
        "finished_at": iso(row.finished_at),
        "updated_at": iso(row.updated_at),
        "totals": [amount(chain, a, v, *meta.get(a, (None, None))) for a, v in sorted((totals or {}).items())],
        # How prior balances were read: node_state (an archive node), derived_from_history (a node
        # without old state), not_needed (models that ignore clean money); null until the trace starts.
        "balance_method": row.balance_method,
        "balance_method_reason": row.balance_method_reason,
        "links": links_for_trace(row.id),
    }
    if counters is not None:
        out["progress"] = dict(counters)
    return out


def hop(chain: str, row: StoredHop, usd: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One hop; `chain` is the trace's own, used when the row does not name the hop's chain;
    `usd`: its dollars (tracer.api.usd.fields)."""
    # One dict built in one pass (this runs 100 times a page): the fields of `amount` and `usd`
    # written in place, in the order the schema lists them.
    chain = row.chain or chain
    block_time = row.block_time
    out: dict[str, Any] = {
        "chain": chain,
        "tx_hash": row.tx_hash,
        "position": row.position,
        "block_number": row.block_number,
        "timestamp": _unix_iso(block_time) if type(block_time) is int else iso(block_time),
        "from": row.from_addr,
        "to": row.to_addr,
        "depth": row.depth,
        "kind": row.kind,
        "status": row.status,
        "reason": row.reason,
        "share": round(float(row.share), 9),
    }
    evidence = row.evidence
    # Any stored evidence, {} too (the store parses the column's text, which is never empty).
    if evidence is not None:
        # Inferred hops say why they exist (a bridge payout: the deposit, the protocol, the match).
        out["confidence"] = round(float(row.confidence), 6)
        out["evidence"] = evidence
    asset = row.asset
    sym, dec = native_unit(chain) if asset == NATIVE else (row.symbol, row.decimals)
    value = int(row.amount)
    out["asset"] = asset
    out["symbol"] = sym
    out["decimals"] = dec
    out["amount"] = format_units(value, dec)
    out["amount_raw"] = str(value)
    if usd is None:
        out["usd"] = out["usd_source"] = None
    else:
        out.update(usd)
    return out


def recognised_by(reason: str | None, evidence: dict[str, Any] | None) -> dict[str, Any]:
    """How an exit was recognised: a label (and whose), the deposit-address sweep behaviour, or
    (a bridge) the deposit event its contract emitted, labelled or not."""
    if evidence and evidence.get("recognised_by") == "event":
        return {"method": "event", "source": ", ".join(evidence.get("events") or []) or reason, "evidence": evidence}
    if reason and reason.startswith(LABEL_REASON_PREFIX):
        return {"method": "label", "source": reason.split(":", 1)[1], "evidence": evidence}
    if reason == Reason.DEPOSIT_ADDRESS:
        return {"method": "behaviour", "source": (evidence or {}).get("source", "behaviour"), "evidence": evidence}
    return {"method": "other", "source": reason, "evidence": evidence}


def ratio9(part: int, whole: int) -> float:
    """part / whole (whole > 0) rounded half up to 9 decimals from the exact ratio, in integers
    (Postgres writes the exits' shares the same way: tracer.store.exits), so no float rounds it first."""
    return (2 * part * 1_000_000_000 + whole) // (2 * whole) / 1_000_000_000


def exit_line(chain: str, row: ExitRow, totals: Mapping[str, int],
              usd: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One off-ramp; `chain` is the trace's own (its totals are in that chain's units: an exit on
    a chain the trace continued into has no share of them)."""
    home = chain
    chain = row.chain or chain
    raw = row.amount
    total = totals.get(row.asset, 0) if chain == home else 0
    out = {
        "chain": chain,
        "address": row.address,
        "address_checksum": checksummed(row.address),
        "entity": row.entity,
        "category": row.category,
        "reason": row.reason,
        "recognised_by": recognised_by(row.reason, row.evidence),
        # A ratio, not money: a JSON number is fine here, rounded so it reads as what it is.
        "share": ratio9(raw, total) if total else 0.0,
        "paths": row.hops,
        "senders": row.senders,
        "depth": row.depth,
        "first_seen": iso(row.first_time),
        "last_seen": iso(row.last_time),
        "first_block": row.first_block,
        "last_block": row.last_block,
    }
    out.update(amount(chain, row.asset, raw, row.symbol, row.decimals))
    out.update(usd or {"usd": None, "usd_share": None})
    return out


def label(lb: Any, now: datetime) -> dict[str, Any]:
    return {
        "entity": lb.entity,
        "category": lb.category,
        "source": lb.source,
        "confidence": lb.confidence,
        "valid_from": iso(lb.valid_from),
        "valid_to": iso(lb.valid_to),
        "active": bool(lb.valid_at(now)),
        "program": lb.program,
        "evidence": lb.evidence,
        "created_by": lb.created_by,
    }
