"""A finished trace of a generated scenario against the generator's ground truth.

`check_trace(pool, trace_id, scenario, far=None)` is the entry point (`tracer demo` prints it and
exits 1 when it fails; any run of a generated scenario can call it, e.g. one executed on Anvil).
`evaluate` is the same check on parts already loaded. A check fails on any disagreement:

- off-ramps: the exact set, no missing, no extra. Expected: the scenario's off-ramps, those it
  reaches only through a mixer or a swap (`truth.through_offramps`), the bridge routers flagged
  money entered, and, with `far`, the exchanges on the bridges' destination chains.
- amounts: each within AMOUNT_TOLERANCE (relative) of the truth, and the exchange named right.
  Behind a mixer the engine carries a note's flagged amount times the confidence of the link it
  followed (a scored guess, by design): there the truth is scaled by the lowest and highest
  confidence of the links to the right recipients on the exit's path, then the tolerance applies.
- mixer notes: each laundering note linked to its own recipient and withdrawal; a followed link
  to any other withdrawal (another launderer's included) is a wrong link.
- swaps: each laundering swap followed into the asset bought, by the wallet that swapped.
- bridges: every deposit's destination decoded; with `far`, every continuation followed and
  matched the way the generator paid it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import asyncpg

from tracer.devchain.scenario import BridgeTruth, Scenario
from tracer.domain.labels import Category
from tracer.domain.mixer_links import MixerDeposit
from tracer.domain.verdicts import Reason
from tracer.domain.views import StoredHop
from tracer.engine import bridges
from tracer.engine import report as treport
from tracer.store import mixers as mixer_store
from tracer.store import traces as trace_store

if TYPE_CHECKING:
    from tracer.demo import FarChains

AMOUNT_TOLERANCE = 0.001  # 0.1 %: integer rounding along a path stays far below it


@dataclass
class TruthCheck:
    """What the check found: summary lines, and one line per disagreement (none: it passed)."""

    tolerance: float
    lines: list[str] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)
    counts: dict[str, tuple[int, int]] = field(default_factory=dict)  # what -> (found right, expected)

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def render(self) -> str:
        out = ["Ground truth check (the generator knows where the money went; amounts within "
               f"{self.tolerance:.1%} of it):", *self.lines]
        if self.ok:
            out.append("  PASSED: the trace agrees with the ground truth")
        else:
            out.append(f"  FAILED: {len(self.mismatches)} disagreement(s)")
            out.extend(f"    - {m}" for m in self.mismatches[:50])
            if len(self.mismatches) > 50:
                out.append(f"    ... and {len(self.mismatches) - 50} more")
        return "\n".join(out)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "amount_tolerance": self.tolerance, "mismatches": self.mismatches,
                "counts": {k: {"found": f, "expected": e} for k, (f, e) in self.counts.items()},
                "lines": self.lines}


async def check_trace(pool: asyncpg.Pool, trace_id: int, scenario: Scenario, far: FarChains | None = None, *,
                      tolerance: float = AMOUNT_TOLERANCE) -> TruthCheck:
    """Check trace `trace_id` (finished) of `scenario`'s seeds against the scenario's truth."""
    rep = await treport.build(pool, trace_id)
    async with pool.acquire() as conn:
        mixer_rows = await mixer_store.mixer_links(conn, trace_id, limit=100_000)
        hops = await trace_store.all_hops(conn, trace_id)
    return evaluate(rep, scenario, mixer_rows=mixer_rows, swap_hops=[h for h in hops if h.reason == Reason.SWAP],
                    far=far, tolerance=tolerance)


def _norm(address: str) -> str:
    return address.lower() if address[:2].lower() == "0x" else address  # base58 is case-sensitive


@dataclass(frozen=True)
class _Expected:
    entity: str | None
    amount: float  # lowest acceptable before the tolerance
    high: float  # highest acceptable before the tolerance
    what: str


def evaluate(rep: treport.Report, scenario: Scenario, *, mixer_rows: Sequence[MixerDeposit] = (),
             swap_hops: Sequence[StoredHop] = (), far: FarChains | None = None,
             tolerance: float = AMOUNT_TOLERANCE) -> TruthCheck:
    truth = scenario.truth
    check = TruthCheck(tolerance)
    if rep.status != "done":
        check.mismatches.append(f"trace {rep.trace_id} is {rep.status}, not done")
    links = _check_mixer_notes(check, scenario, mixer_rows)
    home = rep.chain
    expected: dict[tuple[str, str, str], _Expected] = {}
    for o in truth.offramps:
        expected[(home, _norm(o.address), o.asset)] = _Expected(o.entity, o.amount, o.amount, "off-ramp")
    exits = {(e.chain or home, _norm(e.address), e.asset): e for e in rep.exits}
    for o in truth.through_offramps:
        key = (home, _norm(o.address), o.asset)
        lo, hi = _confidence_band(exits.get(key), links)
        expected[key] = _Expected(o.entity, o.amount * lo, o.amount * hi, "off-ramp behind a mixer or swap")
    # A deposit the trace continues on a served far chain is a crossing, not an exit: the bridge's
    # exit holds only the deposits nobody continued (and is no exit when every one was).
    served = ({c.scenario.chain for c in far.evm} | ({"bitcoin"} if far.bitcoin is not None else set())
              if far is not None else set())
    crossed: dict[str, int] = defaultdict(int)
    for b in truth.bridges:
        if b.dest_chain in served:
            crossed[_norm(b.router)] += b.flagged
    for x in truth.other_exits:
        if x.category == Category.BRIDGE:  # dex and mixer pools are passed through, not exits
            left = x.amount - crossed.get(_norm(x.address), 0)
            if left > x.amount * tolerance:
                expected[(home, _norm(x.address), x.asset)] = _Expected(x.entity, left, left, "bridge deposit")
    for t in _far_exits(far, scenario) if far is not None else []:
        # The deposit's flagged share of the payout, times the confidence of the way the payout can
        # be matched (by timing, only part is passed on), times the part passed on to the exchange.
        amount = t.deposit.flagged * t.payout / t.deposit.amount * bridges.CONFIDENCE[t.match] * t.onward
        prev = expected.get((t.chain, _norm(t.address), t.asset))
        if prev is not None:  # two payouts into one exchange deposit address
            amount += prev.amount
        expected[(t.chain, _norm(t.address), t.asset)] = _Expected(t.exchange, amount, amount, f"{t.chain} exit")

    found_right = 0
    by_kind: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for key, want in sorted(expected.items()):
        by_kind[want.what][1] += 1
        e = exits.get(key)
        chain, address, asset = key
        where = f"{want.what} {address} ({chain}, {asset[:10]})"
        if e is None:
            check.mismatches.append(f"missing {where}: expected {want.amount:.0f}")
            continue
        lo, hi = want.amount * (1 - tolerance), want.high * (1 + tolerance)
        good = True
        if not lo <= e.amount <= hi:
            good = False
            band = f"{want.amount:.0f}" if want.amount == want.high else f"{want.amount:.0f}..{want.high:.0f}"
            err = abs(e.amount - want.amount) / want.amount if want.amount else float("inf")
            check.mismatches.append(f"amount of {where}: {e.amount}, expected {band} ({err:.3%} off)")
        if want.entity is not None and e.entity != want.entity:
            good = False
            check.mismatches.append(f"exchange of {where}: {e.entity}, expected {want.entity}")
        found_right += good
        by_kind[want.what][0] += good
    extra = sorted(k for k in exits if k not in expected)
    noise = {_norm(a) for a in truth.noise_offramps}
    for chain, address, asset in extra:
        e = exits[(chain, address, asset)]
        why = "an unrelated customer's deposit address" if address in noise else "not in the truth"
        check.mismatches.append(f"extra exit {address} ({chain}, {asset[:10]}, {e.entity}, {e.amount}): {why}")
    check.counts["exits"] = (found_right, len(expected))
    check.lines.append(f"  exits found with the right amount and exchange: {found_right} of {len(expected)} ("
                       + ", ".join(f"{k} {f}/{n}" for k, (f, n) in sorted(by_kind.items())) + ")")
    check.lines.append(f"  exits reported that the truth does not have: {len(extra)} "
                       f"(of them unrelated customers' deposit addresses: {sum(1 for k in extra if k[1] in noise)})")
    _check_swaps(check, scenario, swap_hops, tolerance)
    _check_bridges(check, rep, scenario, far)
    return check


# ------------------------------------------------------------------ mixers


@dataclass(frozen=True)
class _Link:
    recipient: str
    confidence: float


def _check_mixer_notes(check: TruthCheck, scenario: Scenario, rows: Sequence[MixerDeposit]) -> list[_Link]:
    """Each laundering note linked to its own withdrawal; returns the right links followed."""
    notes = scenario.truth.mixer_links
    want: dict[tuple[str, str, int], list[tuple[str, int]]] = defaultdict(list)
    for m in notes:
        want[(_norm(m.pool), _norm(m.depositor), m.deposit_block)].append((_norm(m.recipient), m.withdrawal_block))
    got: dict[tuple[str, str, int], list[tuple[str, int, float]]] = defaultdict(list)
    for r in rows:
        for lk in r.followed:
            got[(_norm(r.pool), _norm(r.depositor), r.block_number)].append(
                (_norm(lk.recipient), lk.withdrawal_block, lk.confidence))
    right: list[_Link] = []
    linked = wrong = 0
    for key in sorted(set(want) | set(got)):
        open_notes = list(want.get(key, []))
        for recipient, block, confidence in sorted(got.get(key, [])):
            if (recipient, block) in open_notes:
                open_notes.remove((recipient, block))
                right.append(_Link(recipient, confidence))
                linked += 1
            else:
                wrong += 1
                check.mismatches.append(f"mixer note of {key[1]} in pool {key[0]} (block {key[2]}) followed to "
                                        f"{recipient} (block {block}): the generator withdrew it elsewhere"
                                        if key in want else
                                        f"mixer deposit of {key[1]} in pool {key[0]} (block {key[2]}) followed to "
                                        f"{recipient}: not a laundering note")
        for recipient, block in open_notes:
            check.mismatches.append(f"mixer note of {key[1]} in pool {key[0]} (block {key[2]}) not linked to its "
                                    f"recipient {recipient} (block {block})")
    if notes:
        check.counts["mixer_notes"] = (linked, len(notes))
        check.lines.append(f"  laundering mixer notes linked to their own recipient: {linked} of {len(notes)}; "
                           f"links followed to a wrong withdrawal: {wrong}")
    return right


def _confidence_band(exit_line: treport.ExitLine | None, links: Iterable[_Link]) -> tuple[float, float]:
    """The confidences of the right links whose recipient is on the exit's path: the engine carries
    a note's flagged amount times its link's confidence. (1, 1) when none is (a swap, no mixer)."""
    if exit_line is None:
        return 1.0, 1.0
    on_path = {_norm(str(s.get("from", ""))) for s in exit_line.path} | {_norm(str(s.get("to", "")))
                                                                        for s in exit_line.path}
    cs = [lk.confidence for lk in links if lk.recipient in on_path]
    return (min(cs), max(cs)) if cs else (1.0, 1.0)


# ------------------------------------------------------------------ swaps


def _check_swaps(check: TruthCheck, scenario: Scenario, swap_hops: Sequence[StoredHop],
                 tolerance: float) -> None:
    swaps = scenario.truth.swaps
    if not swaps:
        return
    bought: dict[tuple[str, str], int] = defaultdict(int)  # (wallet, asset) -> flagged bought
    for wallet, hop in swap_wallets(swap_hops):
        if _norm(hop.to_addr) == wallet:
            bought[(wallet, hop.asset)] += int(hop.amount)
    hit = 0
    for s in swaps:
        got = bought.get((_norm(s.wallet), s.asset_out), 0)
        if s.flagged_out and abs(got - s.flagged_out) <= tolerance * s.flagged_out:
            hit += 1
        else:
            check.mismatches.append(f"swap of {s.wallet} (block {s.block}): followed {got} of {s.asset_out[:10]} "
                                    f"bought, expected {s.flagged_out}")
    check.counts["swaps"] = (hit, len(swaps))
    check.lines.append(f"  laundering swaps followed into the asset bought: {hit} of {len(swaps)}")


def swap_wallets(swap_hops: Sequence[StoredHop]) -> list[tuple[str, StoredHop]]:
    """Each swap hop with the wallet that swapped. A swap is two legs of one transaction, wallet ->
    pool and pool -> wallet, so both addresses are sender and recipient; the leg bought names the
    legs paid as its parents, which tells the wallet (its recipient) from the pool."""
    by_tx: dict[str, list[StoredHop]] = defaultdict(list)
    for h in swap_hops:
        by_tx[h.tx_hash].append(h)
    out: list[tuple[str, StoredHop]] = []
    for hops in by_tx.values():
        ids = {int(h.transfer_id) for h in hops}
        wallets = {_norm(h.to_addr) for h in hops if ids & {int(p) for p in h.parents}}
        if not wallets:  # no parents recorded: the sender of the first leg paid into the pool
            first = min(hops, key=lambda h: int(h.transfer_id))
            wallets = {_norm(first.from_addr)}
        wallet = min(wallets)
        out.extend((wallet, h) for h in hops)
    return out


# ------------------------------------------------------------------ bridges


@dataclass(frozen=True)
class FarExit:
    """Where the generator sent one bridge deposit's payout on the destination chain."""

    chain: str
    deposit: BridgeTruth
    recipient: str  # the destination the memo names
    payout: int  # what the bridge paid it (the destination chain's units)
    match: str  # how the engine should find the payout: by memo, or by timing (bridges.MATCH_*)
    address: str  # the exchange deposit address the money ends in
    exchange: str | None
    onward: float  # the part of the payout the destination passed on to `address`
    asset: str = "native"


def _far_exits(far: FarChains, scenario: Scenario) -> list[FarExit]:
    out = [FarExit(c.scenario.chain, p.deposit, p.address, p.amount,
                   bridges.MATCH_MEMO if p.memo else bridges.MATCH_EARLIEST if p.decoy else bridges.MATCH_SINGLE,
                   p.deposit_address, next((lb.entity for lb in c.scenario.labels if lb.address == p.exchange), None),
                   1.0)
           for c in far.evm for p in c.payouts]
    if far.bitcoin is not None:
        by_destination = {b.dest_address: b for b in scenario.truth.bridges if b.dest_chain == "bitcoin"}
        for ho in far.bitcoin.truth.handoffs:
            dep = by_destination.get(ho.address)
            if dep is None or ho.onward_deposit is None or not ho.onward_amount:
                continue
            out.append(FarExit("bitcoin", dep, ho.address, ho.amount, bridges.MATCH_MEMO, ho.onward_deposit,
                               ho.exchange, ho.onward_amount / ho.amount))
    return out


def _check_bridges(check: TruthCheck, rep: treport.Report, scenario: Scenario, far: FarChains | None) -> None:
    deposits = scenario.truth.bridges
    if not deposits:
        return
    # A deposit continued on the far chain is a crossing, not an exit: read the bridges themselves.
    dests = {_norm(str(d.get("address"))) for b in rep.bridges for d in b.destinations}
    hit = sum(1 for b in deposits if _norm(b.dest_address) in dests)
    for b in deposits:
        if _norm(b.dest_address) not in dests:
            check.mismatches.append(f"bridge deposit of {b.sender} (block {b.block}): destination {b.dest_chain} "
                                    f"{b.dest_address} not decoded")
    check.counts["bridge_destinations"] = (hit, len(deposits))
    check.lines.append(f"  bridge destinations decoded: {hit} of {len(deposits)}")
    if far is None:
        return
    served = {c.scenario.chain for c in far.evm} | ({"bitcoin"} if far.bitcoin is not None else set())
    to_served = [b for b in deposits if b.dest_chain in served]
    conts = {(_norm(str(c.deposit.sender)), _norm(c.recipient)): c for c in rep.continuations}
    followed = 0
    for b in to_served:
        c = conts.get((_norm(b.sender), _norm(b.dest_address)))
        if c is not None and c.followed:
            followed += 1
        else:
            check.mismatches.append(f"bridge deposit of {b.sender} to {b.dest_chain} {b.dest_address}: "
                                    "not followed across the bridge")
    elsewhere = len(deposits) - len(to_served)
    check.counts["continuations"] = (followed, len(to_served))
    check.lines.append(f"  continuations followed across the bridge: {followed} of {len(to_served)}"
                       + (f" ({elsewhere} more to chains not served)" if elsewhere else ""))
    wrong = 0
    for t in _far_exits(far, scenario):
        c = conts.get((_norm(t.deposit.sender), _norm(t.recipient)))
        if c is not None and c.paid.match != t.match:
            wrong += 1
            check.mismatches.append(f"payout to {t.recipient} on {t.chain} matched by {c.paid.match}, "
                                    f"the generator paid it so it matches by {t.match}")
    check.lines.append(f"  payouts matched otherwise than the generator paid them (memo / timing): {wrong}")
