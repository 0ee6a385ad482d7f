"""Taint models: how much flagged money each outflow of one address carries.

Pure functions over one address's timeline; no I/O. Amounts are integers in raw units, and every
model but full_poison conserves taint per asset: an outflow never carries more than is flagged in
the wallet at that moment. The one way taint moves between assets is a swap (swaps.py): in a transaction where
the wallet pays asset A and receives asset B, the flagged share of what it paid carries over to
what it received, at the swap's own rate. So per asset, what leaves never exceeds what arrived
flagged plus what swaps converted into it.

Models (policy.taint_model):
- haircut (default): every outflow carries the flagged share of the balance it leaves from.
- flagged_first: flagged money leaves before clean money: every outflow carries as much flagged
  money as is left, up to its amount. Conserved. Before it had this name it was called "poison";
  the policy still accepts `poison` and reads it as flagged_first (POLICY_ALIASES), since traces
  and clients use that value. It is not the literature's poison, which is full_poison below.
- full_poison: the literature's poison. Once an address has received flagged money (any asset,
  in execution order), every later outflow of it (any asset) is flagged in full; before that,
  none is. NOT conserved: one flagged wei makes all that leaves afterwards flagged, so exits can
  add up to more than was stolen and shares of the stolen total can exceed 100%. The upper bound
  of exposure (where could any of it have gone), not an amount.
- fifo: the wallet keeps its coins as lots in arrival order, the clean prior balance first, then
  each inflow with its flagged part; an outflow consumes lots from the front and carries the
  flagged part of what it consumed (a lot consumed in part gives up its flagged share of the part,
  rounded down, and its last coins take what is left: integers, nothing created or lost).
  So a wallet that held clean money before the theft money came in pays the clean money out first.
  On Bitcoin this is the order in which an address's coins arrived: a transaction's flattened
  transfers ("io:<vin>:<vout>", tracer.chains.bitcoin.flatten) are walked in vin order, then vout
  order (compared as numbers, so vin 10 comes after vin 2), so a wallet whose older clean coin is
  spent first passes no taint. It is the rule an investigator applies to one address's coins, not
  UTXO-exact tracking (which coin an input spends is not in the flattened transfers).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from tracer.domain.transfers import Movement
from tracer.engine import swaps

_MAX_PARENTS = 8
MODELS = ("haircut", "flagged_first", "fifo", "full_poison")
CLEAN_MONEY_MODELS = frozenset({"haircut", "fifo"})  # the models a wallet's clean prior balance changes


@dataclass(slots=True)
class TaintedOut:
    """A flagged outflow; or, with swap == "in", the asset a swap paid back to the wallet."""

    transfer_id: int
    asset: str
    amount: int  # flagged part
    total: int  # whole transfer
    parents: list[int] = field(default_factory=list)
    swap: str | None = None  # "out": paid into a swap; "in": bought by a swap (an inflow of the wallet)


@dataclass(slots=True)
class _Lot:
    """What is left of the coins of one arrival (fifo), and the flagged part of it."""

    transfer_id: int  # 0: the prior balance
    left: int
    flagged: int

    def take(self, amount: int) -> int:
        """Consume `amount` (at most what is left); return the flagged part of it: the lot's
        flagged share, rounded down, and all that is left of it with the lot's last coins. This
        is haircut inside one lot, so the part never shrinks when the lot's flagged part grows:
        a cumulative floor (flagged x consumed // amount) would be as exact but can give one
        unit less to a slice when the lot gets more taint, and the workers' fixed point needs
        taint that only grows (docs/ARCHITECTURE.md, "How a trace runs")."""
        part = self.flagged * amount // self.left
        self.flagged -= part
        self.left -= amount
        return part


@dataclass(slots=True)
class _Wallet:
    balance: int = 0
    flagged: int = 0
    # (transfer_id, flagged amount) of inflows that put flagged money here, newest last
    sources: list[tuple[int, int]] = field(default_factory=list)
    lots: deque[_Lot] = field(default_factory=deque)  # fifo only, oldest first


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

    A transaction that is a swap (swaps.split) is taken as a unit: its outflows first, then what
    it bought, credited with the converted taint and returned as TaintedOut(swap="in"); flagged_in
    is ignored for those inflows, since their taint is exactly this conversion (re-reading it from
    the hop a previous run wrote would count it twice).
    """
    wallets: dict[str, _Wallet] = {}
    out: list[TaintedOut] = []
    poisoned = False  # full_poison: flagged money has reached the address (any asset)

    def wallet_of(asset: str) -> _Wallet:
        wallet = wallets.get(asset)
        if wallet is None:
            wallet = wallets[asset] = _Wallet(balance=max(0, prior_balance.get(asset, 0)))
            if fifo and wallet.balance:
                wallet.lots.append(_Lot(0, wallet.balance, 0))
        return wallet

    def receive(move: Movement, flagged: int) -> None:
        nonlocal poisoned
        wallet = wallet_of(move.asset)
        wallet.balance += move.amount
        flagged = max(0, min(move.amount, flagged))
        if fifo and move.amount > 0:
            wallet.lots.append(_Lot(move.transfer_id, move.amount, flagged))
        if flagged > 0:
            wallet.flagged += flagged
            wallet.sources.append((move.transfer_id, flagged))
            poisoned = True

    def send(move: Movement, swap: str | None) -> int:
        wallet = wallet_of(move.asset)
        parents: list[int] | None = None
        if fully_flagged or (full_poison and poisoned):
            carried = move.amount
        elif full_poison:
            carried = 0
        elif fifo:
            carried, parents = _consume(wallet, move.amount)
        else:
            carried = _carried(wallet, move.amount, model)
        # Our balance can fall short of the node's (gas refunds, rewards we do not see); never
        # let it go negative, which would turn later shares into nonsense.
        wallet.balance = max(0, wallet.balance - move.amount)
        if not fully_flagged and not full_poison:
            wallet.flagged -= carried
            wallet.flagged = min(wallet.flagged, wallet.balance)
        if carried > 0:
            out.append(TaintedOut(move.transfer_id, move.asset, carried, move.amount,
                                  _parents(wallet) if parents is None else parents, swap))
        return carried

    if model not in MODELS:
        raise ValueError(f"unknown taint model {model!r}")
    fifo = model == "fifo"
    full_poison = model == "full_poison"
    ordered = sorted(timeline, key=_execution_order)
    i = 0
    while i < len(ordered):
        # Moves of one transaction are contiguous in execution order.
        j = i + 1
        if ordered[i].tx:
            while j < len(ordered) and ordered[j].tx == ordered[i].tx:
                j += 1
        group = ordered[i:j]
        i = j
        found = swaps.split(group)
        if found is None:
            for move in group:
                if move.incoming:
                    receive(move, flagged_in.get(move.transfer_id, 0))
                else:
                    send(move, None)
            continue
        # Inside one transaction the node's order (top-level value, internal calls, logs) says
        # nothing about what paid for what: settle everything the wallet paid first.
        bought = set(found.received)
        paid: dict[str, tuple[int, int]] = {}
        parents: list[int] = []
        for k, move in enumerate(group):
            if k in bought:
                continue
            if move.incoming:
                receive(move, flagged_in.get(move.transfer_id, 0))
                continue
            carried = send(move, "out")
            f, a = paid.get(move.asset, (0, 0))
            paid[move.asset] = (f + carried, a + move.amount)
            if carried:
                parents.append(move.transfer_id)
        share = swaps.flagged_share(paid)
        for k in found.received:
            move = group[k]
            flagged = swaps.converted(move.amount, share)
            receive(move, flagged)
            if flagged > 0:
                out.append(TaintedOut(move.transfer_id, move.asset, flagged, move.amount,
                                      parents[:_MAX_PARENTS], "in"))
    return out


def _execution_order(move: Movement) -> tuple[int, int, int, tuple[int, ...], str]:
    """Movement.order, with a Bitcoin "io:<vin>:<vout>" position compared as numbers: as text,
    "io:10:0" would sort before "io:2:0" and fifo would spend a later input's coins first."""
    block, tx_index, rank, position = move.order
    numbers: tuple[int, ...] = ()
    if position.startswith("io:"):
        parts = position[3:].split(":")
        if all(p.isdigit() for p in parts):
            numbers = tuple(int(p) for p in parts)
    return (block, tx_index, rank, numbers, position)


def _consume(wallet: _Wallet, amount: int) -> tuple[int, list[int]]:
    """fifo: take `amount` from the oldest lots; the flagged part taken, and the flagged lots it
    came from (biggest first). An outflow larger than every lot we know of (money we did not
    see arrive) empties them all, like the other models when the balance falls short."""
    carried = 0
    sources: list[tuple[int, int]] = []
    left = amount
    while left > 0 and wallet.lots:
        lot = wallet.lots[0]
        step = min(left, lot.left)
        part = lot.take(step)
        left -= step
        if part > 0:
            carried += part
            sources.append((lot.transfer_id, part))
        if lot.left <= 0:
            wallet.lots.popleft()
    biggest = sorted(sources, key=lambda s: -s[1])[:_MAX_PARENTS]
    return carried, [tid for tid, _ in biggest]


def _carried(wallet: _Wallet, amount: int, model: str) -> int:
    if wallet.flagged <= 0:
        return 0
    if model == "flagged_first":
        return min(amount, wallet.flagged)
    if wallet.balance <= amount:
        return min(amount, wallet.flagged)
    # haircut: the flagged share of the balance, rounded down so taint is never created
    return min(wallet.flagged, amount * wallet.flagged // wallet.balance)


def _parents(wallet: _Wallet) -> list[int]:
    biggest = sorted(wallet.sources, key=lambda s: -s[1])[:_MAX_PARENTS]
    return [tid for tid, _ in biggest]


def totals_by_asset(outs: Iterable[TaintedOut]) -> dict[str, int]:
    """Flagged amount per asset leaving the wallet (swap purchases are inflows, not counted)."""
    totals: dict[str, int] = {}
    for o in outs:
        if o.swap == "in":
            continue
        totals[o.asset] = totals.get(o.asset, 0) + o.amount
    return totals
