"""The investigator's report of a trace: exits, amounts, shares of the stolen total, paths."""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from decimal import ROUND_DOWN, Decimal, localcontext
from typing import Any

import asyncpg

from tracer.addresses import checksum
from tracer.domain.chains import native_unit
from tracer.domain.destinations import Destination, Payout
from tracer.domain.records import UnknownTrace
from tracer.domain.transfers import NATIVE
from tracer.domain.verdicts import Reason
from tracer.domain.views import BridgeVerdict, StoredHop
from tracer.engine import graph as tgraph
from tracer.store import backward as back_store
from tracer.store import traces as store
from tracer.store import transfers as transfer_store

# Hop reasons of CoinJoin outputs the trace did not follow (tracer.engine.step.follow_utxo writes them).
ENTERED_REASONS = frozenset({Reason.ENTERED_COINJOIN, Reason.BELOW_THRESHOLD})


def format_amount(raw: int, decimals: int | None, places: int | None = None) -> str:
    """Exact decimal string of a raw amount (no floats anywhere near money); `places` rounds
    down for display only."""
    if not decimals:
        return str(raw)
    # uint256 amounts have up to 78 digits: the default 28-digit context would round them.
    with localcontext() as ctx:
        ctx.prec = 100
        q = Decimal(raw).scaleb(-decimals)
        if places is not None:
            q = q.quantize(Decimal(1).scaleb(-places), rounding=ROUND_DOWN)
        text = format(q, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


@dataclass
class ExitLine:
    address: str
    entity: str | None
    category: str | None
    reason: str | None
    asset: str
    symbol: str
    decimals: int | None
    amount: int
    share: float
    hops: int
    first_time: int
    last_time: int
    evidence: dict[str, Any] | None
    path: list[dict[str, Any]] = field(default_factory=list)
    chain: str = ""  # the off-ramp's chain: the trace's own or one it continued into

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["amount"] = format_amount(self.amount, self.decimals)
        d["amount_raw"] = str(self.amount)
        return d


@dataclass
class CoinJoinLine:
    """One traced wallet's flagged money entering one CoinJoin, and the links followed out of it."""

    chain: str
    depositor: str
    txid: str
    pattern: str
    anonymity_set: int
    denomination: int
    flagged: int  # flagged sats the wallet brought in
    links: list[dict[str, Any]]  # outputs followed (or ended at an exit): to, kind, amount, confidence
    unfollowed: int  # outputs reported but not followed (1-in-n links below policy.min_link_confidence)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["denomination"], d["flagged"] = str(self.denomination), str(self.flagged)
        return d


@dataclass(frozen=True)
class Continuation:
    """A bridge deposit whose payout was found on the destination chain (followed or only reported):
    the bridge verdict's entry for it as the domain reads it, where the payout went, in which units."""

    from_chain: str
    bridge: str  # the bridge contract deposited into
    recognised_by: str  # "label", or "event": no label, the contract's own deposit event named it
    deposit: Destination
    paid: Payout
    chain: str  # the payout's chain
    recipient: str
    symbol: str
    decimals: int | None

    @property
    def followed(self) -> bool:
        return self.deposit.followed

    @property
    def note(self) -> str:
        return (self.deposit.onward.note if self.deposit.onward is not None else None) or ""

    def to_json(self) -> dict[str, Any]:
        d, p = self.deposit, self.paid
        return {"from_chain": self.from_chain, "chain": self.chain, "protocol": d.protocol, "depositor": str(d.sender),
                "deposit_tx": d.tx_hash, "recipient": self.recipient, "followed": self.followed, "note": self.note,
                "payout_tx": p.tx_hash, "asset": p.asset, "symbol": self.symbol, "decimals": self.decimals,
                "payout": str(p.amount), "carried": str(p.carried), "match": p.match, "confidence": p.confidence,
                "bridge": self.bridge, "recognised_by": self.recognised_by}


@dataclass
class BridgeLine:
    """A bridge the trace deposited into: every destination it decoded, continued or not."""

    address: str
    chain: str
    entity: str | None
    recognised_by: str  # "label" or "event"
    evidence: dict[str, Any]

    @property
    def destinations(self) -> list[dict[str, Any]]:
        return list(self.evidence.get("destinations") or [])


@dataclass
class Report:
    trace_id: int
    status: str
    chain: str
    seeds: list[str]
    totals: dict[str, int]
    symbols: dict[str, tuple[str, int | None]]
    exits: list[ExitLine]
    stops: list[dict[str, Any]]
    counts: dict[str, int]
    error: str | None
    coinjoins: list[CoinJoinLine] = field(default_factory=list)
    continuations: list[Continuation] = field(default_factory=list)
    bridges: list[BridgeLine] = field(default_factory=list)
    balance_method: str | None = None  # node_state | derived_from_history | not_needed (engine/balances.py)
    balance_method_reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "trace_id": self.trace_id, "status": self.status, "chain": self.chain, "seeds": self.seeds,
            "totals": {a: {"amount": format_amount(v, self.symbols.get(a, ("", None))[1]),
                           "amount_raw": str(v), "symbol": self.symbols.get(a, (a, None))[0]}
                       for a, v in self.totals.items()},
            "exits": [e.to_json() for e in self.exits],
            "stops": self.stops, "counts": self.counts, "error": self.error,
            "coinjoins": [c.to_json() for c in self.coinjoins],
            "continuations": [c.to_json() for c in self.continuations],
            "balance_method": self.balance_method, "balance_method_reason": self.balance_method_reason,
        }


async def build(pool: asyncpg.Pool, trace_id: int, *, with_paths: bool = True) -> Report:
    async with pool.acquire() as conn:
        trace = await store.get_trace(conn, trace_id)
        if trace is None:
            raise UnknownTrace(trace_id)
        backward = trace.direction == back_store.BACKWARD
        # A backward trace's exits are its sources, each with the path its money took (its evidence).
        exit_rows: Sequence[Any] = (await back_store.sources(conn, trace_id, trace.chain) if backward
                                    else await store.exits(conn, trace_id))
        bridge_rows = await store.bridge_verdicts(conn, trace_id)
        stop_rows = await store.stops(conn, trace_id)
        counts = await store.trace_progress(conn, trace_id)
        # The hops also carry the CoinJoin entries (their evidence): without paths, none are listed.
        hops = await store.all_hops(conn, trace_id) if with_paths else []
        units = await transfer_store.token_units(conn, trace.chain, list((trace.totals or {}).keys()))
    totals = {k: int(v) for k, v in (trace.totals or {}).items()}
    symbols: dict[str, tuple[str, int | None]] = {NATIVE: native_unit(trace.chain), **units}
    g = tgraph.build(hops, trace.chain) if hops and exit_rows else None
    exits: list[ExitLine] = []
    for r in exit_rows:
        asset = r.asset
        chain = r.chain
        home = chain == trace.chain
        sym, dec = symbols.get(asset, (r.symbol or asset[:10], r.decimals)) if home else (
            r.symbol or asset[:10], r.decimals)
        if asset == NATIVE:
            sym, dec = native_unit(chain)
        amount = r.amount
        # The totals are in the trace's own chain's units: an exit elsewhere has no share of them.
        total = totals.get(asset, 0) if home else 0
        line = ExitLine(
            address=r.address, entity=r.entity, category=r.category, reason=r.reason, asset=asset,
            symbol=sym, decimals=dec, amount=amount, share=(amount / total) if total else 0.0, hops=r.hops,
            first_time=-1 if r.first_time is None else r.first_time,
            last_time=-1 if r.last_time is None else r.last_time, evidence=r.evidence, chain=chain,
        )
        if backward:
            line.evidence = back_store.evidence_of(r) or None
            line.path = _steps((line.evidence or {}).get("path") or [], hops, chain)
        elif g is not None:
            paths = tgraph.paths_to(g, list(trace.seeds), r.address, limit=1, chain=trace.chain,
                                    target_chain=chain)
            if paths:
                line.path = [{"from": s.from_addr, "to": s.to_addr, "tx_hash": s.tx_hash,
                              "block_number": s.block_number, "chain": s.chain} for s in paths[0]]
        exits.append(line)
    stops = [{"address": r.address, "reason": r.reason, "entity": r.entity, "category": r.category,
              "depth": r.depth, "amounts": r.amounts, "chain": r.chain} for r in stop_rows]
    return Report(trace_id, trace.status, trace.chain, list(trace.seeds), totals, symbols, exits, stops,
                  {k: int(v) for k, v in counts.items()}, trace.error, coinjoins(hops, trace.chain),
                  continuations(bridge_rows, hops, trace.chain), bridge_lines(bridge_rows, trace.chain),
                  trace.balance_method, trace.balance_method_reason)


def _steps(path: Sequence[str], hops: Sequence[StoredHop], chain: str) -> list[dict[str, Any]]:
    """A backward source's path (addresses, source first) as steps, each by its largest hop."""
    largest: dict[tuple[str, str], StoredHop] = {}
    for h in hops:
        key = (h.from_addr, h.to_addr)
        if key not in largest or int(h.amount) > int(largest[key].amount):
            largest[key] = h
    steps = []
    for a, b in itertools.pairwise(path):
        big = largest.get((a, b))
        steps.append({"from": a, "to": b, "tx_hash": big.tx_hash if big else None,
                      "block_number": big.block_number if big else None, "chain": chain})
    return steps


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def units(chain: str, asset: str, symbol: str | None, decimals: int | None) -> tuple[str, int | None]:
    """Symbol and decimals of an asset on `chain` (the native coin's are the chain's own)."""
    if asset == NATIVE:
        return native_unit(chain)
    return symbol or asset[:10], decimals


def coinjoins(hops: Sequence[StoredHop], chain: str) -> list[CoinJoinLine]:
    """The CoinJoin entries of a trace, from the hops the worker wrote on the CoinJoins' outputs
    (each names the CoinJoin, its pattern and anonymity set): one line per wallet and CoinJoin."""
    lines: dict[tuple[str, str, str], CoinJoinLine] = {}
    for h in sorted(hops, key=lambda h: (h.block_number, str(h.position or ""))):
        ev = h.evidence
        if not isinstance(ev, dict) or not ev.get("coinjoin"):
            continue
        c = h.chain or chain
        key = (c, h.from_addr, ev["coinjoin"])
        line = lines.get(key)
        if line is None:
            line = lines[key] = CoinJoinLine(c, h.from_addr, ev["coinjoin"], str(ev.get("pattern")),
                                             int(ev.get("anonymity_set") or 0), int(ev.get("denomination") or 0),
                                             int(ev.get("flagged_entered") or 0), [], 0)
        if h.reason in ENTERED_REASONS:
            line.unfollowed += 1
        else:
            line.links.append({"to": h.to_addr, "kind": ev.get("kind"), "vout": ev.get("vout"),
                               "amount": str(int(h.amount)), "confidence": float(h.confidence or 0.0),
                               "status": h.status, "reason": h.reason})
    return list(lines.values())


def continuations(bridges: Sequence[BridgeVerdict], hops: Sequence[StoredHop], chain: str) -> list[Continuation]:
    """Every bridge deposit whose payout was found on its destination chain, from the bridge's
    verdict evidence (followed or not: a payout below policy.min_link_confidence is reported).
    `bridges`: rows of store.bridge_verdicts (a continued deposit is a crossing, not an exit)."""
    meta = {((h.chain or chain), h.tx_hash, h.asset): (h.symbol, h.decimals) for h in hops}
    out: list[Continuation] = []
    seen: set[tuple[str, str, str | None]] = set()
    for b in bridges:
        ev = _json(b.evidence)
        if not isinstance(ev, dict):
            continue
        home = b.chain or chain
        how = str(ev.get("recognised_by") or "label")
        for d in map(Destination.from_json, ev.get("destinations") or []):
            onward = d.onward
            if onward is None or onward.payout is None or (home, *d.key) in seen:
                continue
            seen.add((home, *d.key))
            paid = onward.payout
            dest = str(onward.chain or d.chain)
            sym, dec = units(dest, paid.asset, *meta.get((dest, paid.tx_hash, paid.asset), (None, None)))
            out.append(Continuation(home, str(b.address), how, d, paid, dest, str(onward.address or d.address),
                                    sym, dec))
    return out


def bridge_lines(rows: Sequence[BridgeVerdict], chain: str) -> list[BridgeLine]:
    out = []
    for r in rows:
        ev = _json(r.evidence)
        ev = ev if isinstance(ev, dict) else {}
        out.append(BridgeLine(r.address, r.chain or chain, r.entity, str(ev.get("recognised_by") or "label"),
                              ev))
    return out


def _short(addr: str) -> str:
    try:
        c = checksum(addr)
    except Exception:
        c = addr
    return f"{c[:8]}…{c[-6:]}"


def render(report: Report, *, max_exits: int = 40) -> str:
    """A readable text report for the terminal."""
    lines: list[str] = []
    lines.append(f"Trace #{report.trace_id} on {report.chain}: {report.status}"
                 + (f" ({report.error})" if report.error else ""))
    lines.append(f"Seeds ({len(report.seeds)}): " + ", ".join(_short(s) for s in report.seeds[:6])
                 + (" …" if len(report.seeds) > 6 else ""))
    for asset, total in sorted(report.totals.items()):
        sym, dec = report.symbols.get(asset, (asset[:10], None))
        # Exits on chains the trace continued into are in other units: not counted against the totals.
        reached = sum(e.amount for e in report.exits if e.asset == asset and e.chain in ("", report.chain))
        share = reached / total if total else 0.0
        lines.append(f"  left the seeds: {format_amount(total, dec, 4):>16} {sym:<6}"
                     f" reached exits: {format_amount(reached, dec, 4)} {sym} ({share:.1%})")
    if report.balance_method:
        lines.append(f"Prior balances: {report.balance_method.replace('_', ' ')}"
                     + (f" ({report.balance_method_reason})" if report.balance_method_reason else ""))
    c = report.counts
    lines.append(f"Counts: {c.get('hops', 0)} hops, {c.get('addresses', 0)} addresses visited, "
                 f"{len(report.exits)} exits, {len(report.stops)} stops")
    lines.append("")
    if not report.exits:
        lines.append("No off-ramp reached.")
    else:
        lines.append(f"{'#':>3}  {'entity':<18} {'how recognised':<22} {'address':<17} "
                     f"{'amount':>18} {'asset':<6} {'share':>6}  hops")
        for i, e in enumerate(report.exits[:max_exits], 1):
            how = "deposit address (sweeps)" if e.reason == Reason.DEPOSIT_ADDRESS else (e.reason or "")
            if e.reason == Reason.BRIDGE and (_json(e.evidence) or {}).get("recognised_by") == "event":
                how = "bridge, by its event"
            if e.chain and e.chain != report.chain:
                how = f"{e.chain}: {how}"
            lines.append(f"{i:>3}  {(e.entity or '?')[:18]:<18} {how[:22]:<22} {_short(e.address):<17} "
                         f"{format_amount(e.amount, e.decimals, 4):>18} {e.symbol[:6]:<6} {e.share:>6.1%}  {e.hops}")
            if e.path:
                chain = " → ".join([_short(e.path[0]["from"])] + [_short(s["to"]) for s in e.path])
                lines.append(f"       path ({len(e.path)} hops): {chain}")
        if len(report.exits) > max_exits:
            lines.append(f"  … {len(report.exits) - max_exits} more exits (use --json for all)")
    if report.coinjoins:
        lines.append("")
        lines.append(f"CoinJoins entered ({len(report.coinjoins)}):")
        for i, cj in enumerate(report.coinjoins, 1):
            sym, dec = units(cj.chain, NATIVE, None, None)
            lines.append(f"{i:>3}  {_short(cj.depositor)} → CoinJoin {cj.txid[:10]}… ({cj.pattern}, anonymity set "
                         f"{cj.anonymity_set}, {format_amount(cj.denomination, dec)} {sym} outputs): "
                         f"{format_amount(cj.flagged, dec, 8)} {sym} flagged in")
            for lk in cj.links:
                lines.append(f"       link followed: {lk['kind']} → {_short(lk['to'])} "
                             f"{format_amount(int(lk['amount']), dec, 8)} {sym} at {lk['confidence']:.0%} "
                             f"({lk['status']})")
            if not cj.links:
                lines.append("       no link followed: the trace stops in the CoinJoin")
            if cj.unfollowed:
                lines.append(f"       {cj.unfollowed} outputs reported, not followed "
                             "(below policy.min_link_confidence)")
    if report.continuations:
        lines.append("")
        lines.append(f"Cross-chain continuations ({len(report.continuations)}):")
        for i, cc in enumerate(report.continuations, 1):
            p = cc.paid
            how = " (recognised by event)" if cc.recognised_by == "event" else ""
            lines.append(f"{i:>3}  {cc.from_chain} → {cc.chain} via {cc.deposit.protocol}{how}: "
                         f"{_short(str(cc.deposit.sender))} deposit {cc.deposit.tx_hash[:12]}…")
            lines.append(f"       payout {format_amount(p.amount, cc.decimals, 8)} {cc.symbol} to "
                         f"{_short(cc.recipient)} in {p.tx_hash[:12]}…, carrying "
                         f"{format_amount(p.carried, cc.decimals, 8)} {cc.symbol}; "
                         f"match {p.match}, confidence {p.confidence}; "
                         + ("followed" if cc.followed else f"not followed ({cc.note})"))
    if report.stops:
        reasons: dict[str, int] = {}
        for s in report.stops:
            reasons[s["reason"]] = reasons.get(s["reason"], 0) + 1
        lines.append("")
        lines.append("Stopped at: " + ", ".join(f"{n} × {r}" for r, n in sorted(reasons.items())))
    return "\n".join(lines)
