"""The investigator's report of a trace: exits, amounts, shares of the stolen total, paths."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from decimal import ROUND_DOWN, Decimal, localcontext
from typing import Any

import asyncpg

from tracer.addresses import checksum
from tracer.chains.records import NATIVE
from tracer.engine import graph as tgraph
from tracer.store import traces as store

NATIVE_DECIMALS = 18
NATIVE_SYMBOL = {"ethereum": "ETH", "bitcoin": "BTC"}
NATIVE_DECIMALS_OF = {"bitcoin": 8}  # satoshis; EVM chains count wei


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

    def to_json(self) -> dict[str, Any]:
        return {
            "trace_id": self.trace_id, "status": self.status, "chain": self.chain, "seeds": self.seeds,
            "totals": {a: {"amount": format_amount(v, self.symbols.get(a, ("", None))[1]),
                           "amount_raw": str(v), "symbol": self.symbols.get(a, (a, None))[0]}
                       for a, v in self.totals.items()},
            "exits": [e.to_json() for e in self.exits],
            "stops": self.stops, "counts": self.counts, "error": self.error,
        }


async def build(pool: asyncpg.Pool, trace_id: int, *, with_paths: bool = True) -> Report:
    async with pool.acquire() as conn:
        trace = await store.get_trace(conn, trace_id)
        if trace is None:
            raise KeyError(trace_id)
        exit_rows = await store.exits(conn, trace_id)
        stop_rows = await store.stops(conn, trace_id)
        counts = await store.trace_progress(conn, trace_id)
        hops = await store.all_hops(conn, trace_id) if with_paths and exit_rows else []
        meta_rows = await conn.fetch(
            """SELECT DISTINCT ON (asset) asset, symbol, decimals FROM transfers
               WHERE chain = $1 AND asset = ANY($2::text[]) AND symbol IS NOT NULL""",
            trace["chain"], list((trace["totals"] or {}).keys()),
        )
    totals = {k: int(v) for k, v in (trace["totals"] or {}).items()}
    symbols: dict[str, tuple[str, int | None]] = {
        NATIVE: (NATIVE_SYMBOL.get(trace["chain"], "native"), NATIVE_DECIMALS_OF.get(trace["chain"], NATIVE_DECIMALS))}
    for r in meta_rows:
        symbols[r["asset"]] = (r["symbol"], r["decimals"])
    g = tgraph.build(hops) if hops else None
    exits: list[ExitLine] = []
    for r in exit_rows:
        asset = r["asset"]
        chain = r["chain"] or trace["chain"]
        home = chain == trace["chain"]
        sym, dec = symbols.get(asset, (r["symbol"] or asset[:10], r["decimals"])) if home else (
            r["symbol"] or asset[:10], r["decimals"])
        if asset == NATIVE:
            sym, dec = NATIVE_SYMBOL.get(chain, "native"), NATIVE_DECIMALS_OF.get(chain, NATIVE_DECIMALS)
        amount = int(r["amount"])
        # The totals are in the trace's own chain's units: an exit elsewhere has no share of them.
        total = totals.get(asset, 0) if home else 0
        line = ExitLine(
            address=r["address"], entity=r["entity"], category=r["category"], reason=r["reason"], asset=asset,
            symbol=sym, decimals=dec, amount=amount, share=(amount / total) if total else 0.0, hops=r["hops"],
            first_time=r["first_time"], last_time=r["last_time"], evidence=r["evidence"], chain=chain,
        )
        if g is not None:
            paths = tgraph.paths_to(g, list(trace["seeds"]), r["address"], limit=1)
            if paths:
                line.path = [{"from": s.from_addr, "to": s.to_addr, "tx_hash": s.tx_hash,
                              "block_number": s.block_number} for s in paths[0]]
        exits.append(line)
    stops = [{"address": r["address"], "reason": r["reason"], "entity": r["entity"], "category": r["category"],
              "depth": r["depth"], "amounts": r["amounts"], "chain": r["chain"]} for r in stop_rows]
    return Report(trace_id, trace["status"], trace["chain"], list(trace["seeds"]), totals, symbols, exits, stops,
                  {k: int(v) for k, v in counts.items()}, trace["error"])


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
            how = "deposit address (sweeps)" if e.reason == "deposit_address" else (e.reason or "")
            if e.chain and e.chain != report.chain:
                how = f"{e.chain}: {how}"
            lines.append(f"{i:>3}  {(e.entity or '?')[:18]:<18} {how[:22]:<22} {_short(e.address):<17} "
                         f"{format_amount(e.amount, e.decimals, 4):>18} {e.symbol[:6]:<6} {e.share:>6.1%}  {e.hops}")
            if e.path:
                chain = " → ".join([_short(e.path[0]["from"])] + [_short(s["to"]) for s in e.path])
                lines.append(f"       path ({len(e.path)} hops): {chain}")
        if len(report.exits) > max_exits:
            lines.append(f"  … {len(report.exits) - max_exits} more exits (use --json for all)")
    if report.stops:
        reasons: dict[str, int] = {}
        for s in report.stops:
            reasons[s["reason"]] = reasons.get(s["reason"], 0) + 1
        lines.append("")
        lines.append("Stopped at: " + ", ".join(f"{n} × {r}" for r, n in sorted(reasons.items())))
    return "\n".join(lines)
