"""A generated case's trace in dollars, against the generator's own prices.

The generator's price paths (tracer.devchain.prices) are the truth: what left the seeds is valued
from the scenario's transactions at those paths, independently of what the trace read from the
chain's feeds. The check: (1) every hop has a price; (2) the seeds' dollars the trace computed equal
the truth's within TOLERANCE; (3) exits + stopped + held (flagged, still at addresses followed)
sum to the seeds' dollars within a cent a hop (each hop's dollars are counted where the hop ends;
prices move between hops, so this is what "conserved in dollars" can mean).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal, localcontext

from tracer.devchain.prices import PricePath
from tracer.devchain.scenario import Scenario
from tracer.domain.transfers import NATIVE
from tracer.engine import report as treport
from tracer.engine.dollars import TraceDollars, usd

TOLERANCE = Decimal("0.001")  # 0.1 % of the seeds' dollars
# The generator's off-ramp amounts valued at the first arrival: the trace values each hop at its
# own block, and prices move (at most ~0.4 % a round) between the first and the last.
EXIT_TOLERANCE = Decimal("0.01")


def seeds_truth(sc: Scenario, paths: Sequence[PricePath]) -> Decimal:
    """What left the seeds, valued at the generator's prices at each transaction's block."""
    by_asset = {p.asset: p for p in paths if p.chain == sc.chain}
    decimals = {t.address: t.decimals for t in sc.tokens}
    seeds = {s.lower() for s in sc.seeds}
    total = Decimal(0)
    with localcontext() as ctx:
        ctx.prec = 80
        for block in sc.blocks:
            for tx in block.txs:
                for frm, to, asset, amount in tx.transfers():
                    if frm.lower() in seeds and to.lower() not in seeds:
                        price = by_asset[asset].usd_at(block.timestamp)
                        assert price is not None
                        dec = 18 if asset == NATIVE else decimals[asset]
                        total += Decimal(amount).scaleb(-dec) * price
    return total


@dataclass
class DollarCheck:
    ok: bool
    lines: list[str] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)

    def render(self) -> str:
        head = "Dollar check against the generator's prices: " + ("OK" if self.ok else "FAILED")
        return "\n".join([head, *("  " + ln for ln in self.lines), *("  MISMATCH " + m for m in self.mismatches)])


def check_dollars(sc: Scenario, paths: Sequence[PricePath], d: TraceDollars,
                  report: treport.Report) -> DollarCheck:
    out = DollarCheck(ok=True)
    unpriced = sum(1 for v in d.values.values() if v.usd is None)
    if unpriced:
        out.mismatches.append(f"{unpriced} of {len(d.values)} hops have no price")
    truth = seeds_truth(sc, paths)
    seeds = d.seeds.usd
    out.lines.append(f"seeds' dollars: trace {usd(seeds)}, generator {usd(truth)} "
                     f"(tolerance {TOLERANCE:.1%})")
    if seeds is None or truth == 0 or abs(seeds - truth) > TOLERANCE * truth:
        out.mismatches.append(f"seeds' dollars {usd(seeds)} differ from the generator's {usd(truth)}")
    _exits_against_truth(sc, paths, d, report, out)
    parts = d.exits_total.priced + d.stopped.priced + d.held.priced
    slack = Decimal("0.01") * max(1, len(d.values))
    out.lines.append(f"exits {usd(d.exits_total.priced)} + stopped {usd(d.stopped.priced)} + held "
                     f"{usd(d.held.priced)} = {usd(parts)} (seeds {usd(d.seeds.priced)}, slack {usd(slack)})")
    if abs(parts - d.seeds.priced) > slack:
        out.mismatches.append(f"exits + stopped + held = {usd(parts)}, not the seeds' {usd(d.seeds.priced)}")
    out.ok = not out.mismatches
    return out


def _exits_against_truth(sc: Scenario, paths: Sequence[PricePath], d: TraceDollars, report: treport.Report,
                         out: DollarCheck) -> None:
    """The home chain's exits in dollars against the generator's off-ramp amounts at its prices."""
    by_asset = {p.asset: p for p in paths if p.chain == sc.chain}
    decimals = {t.address: t.decimals for t in sc.tokens}
    lines = {(x.address, x.asset): x for x in report.exits if (x.chain or report.chain) == sc.chain}
    truth_usd = traced_usd = Decimal(0)
    matched = 0
    with localcontext() as ctx:
        ctx.prec = 80
        for o in sc.truth.offramps:
            x = lines.get((o.address, o.asset))
            got = d.exit_usd(sc.chain, o.address, o.asset)
            if x is None or got is None or o.asset not in by_asset:
                continue
            price = by_asset[o.asset].usd_at(x.first_time)
            if price is None:
                continue
            dec = 18 if o.asset == NATIVE else decimals.get(o.asset, 18)
            truth_usd += Decimal(o.amount).scaleb(-dec) * price
            traced_usd += got
            matched += 1
    out.lines.append(f"exits the generator knows ({matched}): trace {usd(traced_usd)}, generator {usd(truth_usd)} "
                     f"(tolerance {EXIT_TOLERANCE:.0%})")
    if not matched or abs(traced_usd - truth_usd) > EXIT_TOLERANCE * truth_usd:
        out.mismatches.append(f"exits' dollars {usd(traced_usd)} differ from the generator's {usd(truth_usd)}")
