"""Swaps: a wallet pays one asset into a transaction and gets another one back out of it.

Whatever sits in between (a Uniswap V2 or V3 pool, an aggregator routing through ten pools, a
router unwrapping WETH into ETH), the robust rule is the one investigators use: what the traced
wallet sent into the transaction and what it got out of it (DOMAIN.md, "Mixers, swaps, bridges").
A transaction where the wallet sends asset A and receives asset B != A exchanged A for B at that
transaction's own rate, so the flagged share of A carries over to B.

Pure functions over one wallet's moves; the taint models (taint.py) call them per transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

from tracer.domain.transfers import Movement


@dataclass(frozen=True, slots=True)
class SwapSplit:
    """One transaction of a wallet seen as a swap: indexes into its moves."""

    paid: tuple[int, ...]  # outflows (the assets swapped away)
    received: tuple[int, ...]  # inflows of assets the wallet did not pay: what the swap bought


def split(moves: Sequence[Movement]) -> SwapSplit | None:
    """The swap in one transaction's moves of one wallet, or None when there is none.

    Inflows of an asset the wallet also paid (a refund, change from a router) are not what the
    swap bought: they stay ordinary inflows. Moves without a transaction hash never form a swap.
    """
    if len(moves) < 2 or not moves[0].tx:
        return None
    paid_assets = {m.asset for m in moves if not m.incoming and m.amount > 0}
    if not paid_assets:
        return None
    paid = tuple(i for i, m in enumerate(moves) if not m.incoming and m.amount > 0)
    received = tuple(i for i, m in enumerate(moves) if m.incoming and m.amount > 0 and m.asset not in paid_assets)
    if not received:
        return None
    return SwapSplit(paid, received)


def flagged_share(paid: Mapping[str, tuple[int, int]]) -> Fraction:
    """The flagged share of what a swap paid, from {asset: (flagged part, amount paid)}.

    One asset paid (the usual case): exactly flagged / amount, so the bought asset carries the
    traced share at the swap's own rate. Several assets paid: their values are unknown without
    prices, so the shares are averaged (exact when the legs are worth the same).
    """
    shares = [Fraction(flagged, amount) for flagged, amount in paid.values() if amount > 0]
    if not shares:
        return Fraction(0)
    return min(Fraction(1), sum(shares, Fraction(0)) / len(shares))


def converted(amount: int, share: Fraction) -> int:
    """Flagged part of `amount` received at `share`, rounded down so no taint is created."""
    return amount * share.numerator // share.denominator


def bought_assets(moves: Sequence[Movement]) -> set[str]:
    """Assets a wallet bought in swaps within its moves (grouped by transaction): the worker asks
    for the wallet's prior balance of them, so clean holdings dilute the swapped-in taint."""
    by_tx: dict[str, list[Movement]] = {}
    for m in moves:
        if m.tx:
            by_tx.setdefault(m.tx, []).append(m)
    out: set[str] = set()
    for group in by_tx.values():
        found = split(group)
        if found is not None:
            out.update(group[i].asset for i in found.received)
    return out
