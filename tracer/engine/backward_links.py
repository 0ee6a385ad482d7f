"""What a backward trace carries across a service instead of stopping at it (issue 20): a swap's
bought leg back to the legs its wallet paid in the same transaction, a mixer withdrawal back to the
deposits the linker gives it. Pure: the walk and the colouring (backward_jobs.py) both read them,
so a wallet behind a swap or a mixer is walked and coloured by the same rule.

The rule for a swap is the forward one (swaps.py) run backward. Forward, what a wallet bought takes
the flagged share of what it paid (averaged over the assets paid). So a coin paid into the swap
reaches the seeds with the share the bought coins reach them (averaged over the assets bought),
divided by the number of assets paid: in the paid asset's units, and the forward amount in the
bought asset is this times the swap's own rate. A mixer deposit reaches the seeds with the share
its linked withdrawal does, times the link's confidence (forward: flagged * confidence carried).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence, Set
from dataclasses import dataclass, field
from typing import Any

from tracer.domain.mixer_links import DepositRow
from tracer.domain.records import StoredTransfer
from tracer.domain.transfers import Movement, Transfer
from tracer.domain.verdicts import Reason
from tracer.engine import swaps
from tracer.store.mixers import LinkRow

# The reasons forward traces give the same hops: both legs of a swap, a linked deposit, its withdrawal.
SWAP, MIXER_DEPOSIT, MIXER_LINK = Reason.SWAP, Reason.MIXER_DEPOSIT, Reason.MIXER_LINK


@dataclass(frozen=True, slots=True)
class SwapPaid:
    """A leg a walked wallet paid into a swap: what it bought there (wallet, assets)."""

    wallet: str
    bought: tuple[str, ...]  # the assets bought in the transaction
    paid_assets: int  # how many assets the wallet paid in it


@dataclass(frozen=True, slots=True)
class Through:
    """Indexes into one list of transfers: the swap legs, and mixer deposits -> withdrawals."""

    bought: frozenset[int] = frozenset()  # inflows a swap paid a walked wallet (their sender is no source)
    paid: dict[int, SwapPaid] = field(default_factory=dict)
    # deposit index -> [(withdrawal index, confidence as a fixed-point share)]
    deposits: dict[int, list[tuple[int, int]]] = field(default_factory=dict)
    # A bridge deposit whose payout on another chain was coloured first: index -> its share (fixed point).
    fixed: dict[int, int] = field(default_factory=dict)
    watch: frozenset[int] = frozenset()  # bridge payouts whose share the deposit side needs
    # a CoinJoin's transfer into a walked wallet -> fixed-point factor on its share (backward_utxo)
    coinjoin: dict[int, int] = field(default_factory=dict)

    @property
    def withdrawals(self) -> set[int]:
        return {j for links in self.deposits.values() for j, _ in links}


@dataclass(frozen=True, slots=True)
class BackLink:
    """A deposit the mixer linker ties to a withdrawal a walked wallet received."""

    withdrawal: StoredTransfer  # pool -> the walked wallet
    deposit: StoredTransfer  # depositor -> pool
    confidence: float


@dataclass(frozen=True, slots=True)
class BridgeCrossing:
    """A bridge payout a walked wallet received and the deposit on `chain` its event names
    (engine/step/back_bridges.py)."""

    payout: StoredTransfer  # payer -> the walked wallet (the walk's chain)
    deposit: StoredTransfer  # depositor -> the bridge (on `chain`)
    chain: str
    confidence: float
    evidence: dict[str, Any]


@dataclass(frozen=True, slots=True)
class BackLinks:
    """What the reverse linker found (engine/step/back_mixers.py) and the rows the trace stores."""

    links: list[BackLink] = field(default_factory=list)
    deposits: list[DepositRow] = field(default_factory=list)
    rows: list[LinkRow] = field(default_factory=list)


def swap_legs(transfers: Sequence[Transfer], wallets: Set[str]) -> Through:
    """The swaps of `wallets` among their transfers (swaps.split per wallet and transaction)."""
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, t in enumerate(transfers):
        if t.from_address == t.to_address or not t.tx_hash:
            continue
        if t.from_address in wallets:
            groups[(t.from_address, t.tx_hash)].append(i)
        if t.to_address in wallets:
            groups[(t.to_address, t.tx_hash)].append(i)
    bought: set[int] = set()
    paid: dict[int, SwapPaid] = {}
    for (wallet, _tx), idx in sorted(groups.items()):
        if len(idx) < 2:
            continue
        moves = [_move(i, transfers[i], wallet) for i in idx]
        found = swaps.split(moves)
        if found is None:
            continue
        got = tuple(sorted({moves[k].asset for k in found.received}))
        n_paid = len({moves[k].asset for k in found.paid})
        bought.update(idx[k] for k in found.received)
        for k in found.paid:
            paid[idx[k]] = SwapPaid(wallet, got, n_paid)
    return Through(frozenset(bought), paid)


def _move(i: int, t: Transfer, wallet: str) -> Movement:
    incoming = t.to_address == wallet
    return Movement(i, t.order, t.asset, t.amount, incoming, t.from_address if incoming else t.to_address, t.tx_hash)


def bought_senders(transfers: Sequence[Transfer], through: Through) -> dict[str, set[str]]:
    """Per walked wallet, the senders that paid it only swap purchases: not who the money came
    from (the wallet's own payment into the swap is)."""
    other: dict[str, set[str]] = defaultdict(set)
    swapped: dict[str, set[str]] = defaultdict(set)
    for i, t in enumerate(transfers):
        (swapped if i in through.bought else other)[t.to_address].add(t.from_address)
    return {w: s - other.get(w, set()) for w, s in swapped.items()}


def with_mixers(through: Through, transfers: Sequence[StoredTransfer], links: Sequence[tuple[int, int, float]],
                scale: int) -> Through:
    """`through` with the trace's followed mixer links (deposit id, withdrawal id, confidence)
    among `transfers` added; a link whose either end is missing is left out."""
    at = {st.id: i for i, st in enumerate(transfers)}
    # Forward, a link carries flagged * confidence, and the links into one withdrawal together never
    # more than it paid: the weights (a share of the withdrawal's share, per unit of the deposit)
    # keep that cap.
    into: dict[int, list[tuple[int, float]]] = defaultdict(list)
    for dep, wid, confidence in links:
        if dep in at and wid in at:
            into[at[wid]].append((at[dep], confidence))
    deposits: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for j, feeding in into.items():
        w = transfers[j].transfer.amount
        weights = [(i, int(c * scale)) for i, c in feeding]
        total = sum(transfers[i].transfer.amount * k for i, k in weights) // scale
        for i, k in weights:
            deposits[i].append((j, k * w // total if total > w else k))
    return Through(through.bought, through.paid, dict(deposits), through.fixed, through.watch)
