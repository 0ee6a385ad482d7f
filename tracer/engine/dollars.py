"""A trace in dollars: every hop at its block's price (engine/pricing.py), summed the way a person
reads the trace: what left the seeds, what reached each exit (one share of the seeds' dollars,
across assets and chains), what stopped (hubs, mixers, limits) and what is still held at addresses
followed (flagged in, not yet out). A sum with an unpriced hop is unknown, and says how many."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import asyncpg

from tracer.domain.records import UnknownTrace
from tracer.domain.verdicts import HopStatus
from tracer.domain.views import StoredHop
from tracer.engine import pricing, swap_prices
from tracer.engine import report as treport
from tracer.engine.pricing import PricingRun, Value, usd_text
from tracer.store import backward as back_store
from tracer.store import traces as store


@dataclass
class Usd:
    """A sum of hop values; `unpriced` hops had no price, so `usd` is None when any did."""

    priced: Decimal = Decimal(0)
    unpriced: int = 0
    hops: int = 0

    def add(self, v: Value, sign: int = 1) -> None:
        self.hops += 1
        if v.usd is None:
            self.unpriced += 1
        else:
            self.priced += sign * v.usd

    @property
    def usd(self) -> Decimal | None:
        return None if self.unpriced else self.priced

    def to_json(self) -> dict[str, Any]:
        return {"usd": usd_text(self.usd), "unpriced_hops": self.unpriced}


@dataclass
class TraceDollars:
    seeds: Usd
    exits: dict[tuple[str, str, str], Usd]  # (chain, address, asset)
    stopped: Usd
    held: Usd  # flagged dollars in minus out at addresses followed (seeds excluded)
    values: dict[int, Value]  # by transfer id
    pricing: PricingRun | None = None
    sources: dict[str, int] = field(default_factory=dict)

    def exit_usd(self, chain: str, address: str, asset: str) -> Decimal | None:
        u = self.exits.get((chain, address, asset))
        return None if u is None else u.usd

    def share(self, usd: Decimal | None) -> float | None:
        seeds = self.seeds.usd
        if usd is None or not seeds:
            return None
        return float(usd / seeds)

    @functools.cached_property
    def unpriced_hops(self) -> int:
        """Hops without a price (counted once: a 1M-hop trace's exits are asked for many times)."""
        return sum(1 for v in self.values.values() if v.usd is None)

    @property
    def exits_total(self) -> Usd:
        total = Usd()
        for u in self.exits.values():
            total.priced += u.priced
            total.unpriced += u.unpriced
            total.hops += u.hops
        return total

    def to_json(self) -> dict[str, Any]:
        ex = self.exits_total
        return {"seeds": self.seeds.to_json(), "exits": ex.to_json(), "exits_share": self.share(ex.usd),
                "stopped": self.stopped.to_json(), "held": self.held.to_json(),
                "price_sources": self.sources, "notes": self.pricing.notes if self.pricing else []}


async def trace_dollars(pool: asyncpg.Pool, trace_id: int, chains: Mapping[str, Any] | None = None,
                        hops: Sequence[StoredHop] | None = None) -> TraceDollars:
    """The trace's dollars; with `chains`, prices still missing are read from their feeds first."""
    run = await pricing.price_trace(pool, chains, trace_id) if chains else None
    async with pool.acquire() as conn:
        trace = await store.get_trace(conn, trace_id)
        if trace is None:
            raise UnknownTrace(trace_id)
        if hops is None:
            hops = await store.all_hops(conn, trace_id)
        values = await pricing.hop_values(conn, hops, run)
        # Tokens with no feed: the rate of the swaps the trace saw them traded in.
        await swap_prices.price_by_swaps(conn, trace_id, hops, values)
    home = trace.chain
    seeds = {s for s in trace.seeds}
    backward = trace.direction == back_store.BACKWARD
    out = TraceDollars(Usd(), {}, Usd(), Usd(), values, run)
    for h in hops:
        v = values[int(h.transfer_id)]
        if v.source:
            out.sources[v.source] = out.sources.get(v.source, 0) + 1
        chain = h.chain or home
        from_seed = chain == home and h.from_addr in seeds
        into_seed = chain == home and h.to_addr in seeds
        if backward:
            # Source of funds: `seeds` is what the seeds received, an exit (a source) is the sender
            # of its hops, as /exits lists it; money held along the way is no hop.
            if into_seed:
                out.seeds.add(v)
            if h.status == HopStatus.EXIT:
                out.exits.setdefault((chain, h.from_addr, h.asset), Usd()).add(v)
            elif h.status == HopStatus.STOPPED:
                out.stopped.add(v)
            continue
        if from_seed and not into_seed:
            out.seeds.add(v)
        if into_seed:
            continue
        if h.status == HopStatus.EXIT:
            out.exits.setdefault((chain, h.to_addr, h.asset), Usd()).add(v)
        elif h.status == HopStatus.STOPPED:
            out.stopped.add(v)
        else:
            out.held.add(v)
        if not from_seed:
            # Out of an address followed, or a bridge's payout on the far chain (its vault is no
            # address of the trace): the value leaves what is held there, or at the bridge, whose
            # deposit was counted held when it crossed.
            out.held.add(v, -1)
    return out


def usd(value: Decimal | None) -> str:
    text = usd_text(value)
    if text is None:
        return "unknown"
    whole, _, cents = text.partition(".")
    return f"${int(whole):,}.{cents}"


def render_dollars(report: treport.Report, d: TraceDollars, *, max_exits: int = 40) -> str:
    """The report's exits in dollars at the time of each hop, largest first, one share each."""
    ex = d.exits_total
    share = d.share(ex.usd)
    lines = [f"In dollars at the time of each hop: {usd(d.seeds.usd)} left the seeds; "
             f"{usd(ex.usd)} reached exits" + (f" ({share:.1%})" if share is not None else "")
             + f"; {usd(d.stopped.usd)} stopped; {usd(d.held.usd)} held at addresses followed"]
    for note in (d.pricing.notes if d.pricing else []):
        lines.append(f"  prices: {note}")
    srcs = ", ".join(f"{n} hops by {k}" for k, n in sorted(d.sources.items()))
    lines.append(f"  prices from: {srcs or 'nowhere'}")
    rows: list[tuple[Decimal, Any]] = []
    for x in report.exits:
        rows.append((d.exit_usd(x.chain or report.chain, x.address, x.asset) or Decimal(-1), x))
    rows.sort(key=lambda r: -r[0])
    lines.append(f"{'#':>3}  {'entity':<18} {'chain':<9} {'address':<17} {'amount':>18} {'asset':<6} "
                 f"{'USD':>16} {'share':>6}")
    for i, (value, x) in enumerate(rows[:max_exits], 1):
        v = None if value < 0 else value
        sh = d.share(v)
        lines.append(f"{i:>3}  {(x.entity or '?')[:18]:<18} {(x.chain or report.chain)[:9]:<9} "
                     f"{x.address[:8]}…{x.address[-6:]:<6}  {treport.format_amount(x.amount, x.decimals, 4):>18} "
                     f"{x.symbol[:6]:<6} {usd(v):>16} {'' if sh is None else f'{sh:.1%}':>6}")
    if len(rows) > max_exits:
        lines.append(f"  … {len(rows) - max_exits} more exits")
    return "\n".join(lines)
