"""Taint models: how much flagged money each outflow of one address carries.

Pure functions over one address's timeline; no I/O. Amounts are integers in raw units, and every
model conserves taint exactly: an outflow never carries more than is flagged in the wallet at
that moment, so what leaves never exceeds what arrived.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

_MAX_PARENTS = 8


@dataclass(frozen=True, slots=True)
class Movement:
    """One transfer touching the address, reduced to what the models need."""

    transfer_id: int
    order: tuple[int, int, int, str]
    asset: str
    amount: int
    incoming: bool
    counterparty: str


@dataclass(slots=True)
class TaintedOut:
    transfer_id: int
    asset: str
    amount: int  # flagged part
    total: int  # whole transfer
    parents: list[int] = field(default_factory=list)


@dataclass(slots=True)
class _Wallet:
    balance: int = 0
    flagged: int = 0
    # (transfer_id, flagged amount) of inflows that put flagged money here, newest last
    sources: list[tuple[int, int]] = field(default_factory=list)


def propagate(
    timeline: Sequence[Movement],
    flagged_in: Mapping[int, int],
    prior_balance: Mapping[str, int],
    *,
    model: str = "haircut",
    fully_flagged: bool = False,
) -> list[TaintedOut]:
    """Walk the address's transfers in execution order and return its flagged outflows.

    flagged_in maps an inflow's transfer id to the flagged part of it. prior_balance is the
    wallet's balance per asset just before the timeline starts (clean money already there).
    fully_flagged marks a seed: everything it sends in the window is flagged money.
    """
    wallets: dict[str, _Wallet] = {}
    out: list[TaintedOut] = []
    for move in sorted(timeline, key=lambda m: m.order):
        wallet = wallets.get(move.asset)
        if wallet is None:
            wallet = wallets[move.asset] = _Wallet(balance=max(0, prior_balance.get(move.asset, 0)))
        if move.incoming:
            wallet.balance += move.amount
            flagged = min(move.amount, flagged_in.get(move.transfer_id, 0))
            if flagged > 0:
                wallet.flagged += flagged
                wallet.sources.append((move.transfer_id, flagged))
            continue
        if fully_flagged:
            carried = move.amount
        else:
            carried = _carried(wallet, move.amount, model)
        # Our balance can fall short of the node's (gas refunds, rewards we do not see); never
        # let it go negative, which would turn later shares into nonsense.
        wallet.balance = max(0, wallet.balance - move.amount)
        if not fully_flagged:
            wallet.flagged -= carried
            wallet.flagged = min(wallet.flagged, wallet.balance)
        if carried > 0:
            out.append(TaintedOut(move.transfer_id, move.asset, carried, move.amount, _parents(wallet)))
    return out


def _carried(wallet: _Wallet, amount: int, model: str) -> int:
    if wallet.flagged <= 0:
        return 0
    if model == "poison":
        return min(amount, wallet.flagged)
    if wallet.balance <= amount:
        return min(amount, wallet.flagged)
    # haircut: the flagged share of the balance, rounded down so taint is never created
    return min(wallet.flagged, amount * wallet.flagged // wallet.balance)


def _parents(wallet: _Wallet) -> list[int]:
    biggest = sorted(wallet.sources, key=lambda s: -s[1])[:_MAX_PARENTS]
    return [tid for tid, _ in biggest]


def totals_by_asset(outs: Iterable[TaintedOut]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for o in outs:
        totals[o.asset] = totals.get(o.asset, 0) + o.amount
    return totals
