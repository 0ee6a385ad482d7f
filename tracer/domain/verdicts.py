"""What a trace decides about an address and writes on its hops, in the words it stores.

The values are the exact strings in the database, the API's JSON and the golden hops; a StrEnum
member equals its string, so rows read back as plain text compare equal to the members.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class HopStatus(StrEnum):
    """A hop's status, which is also the role the verdict on its receiving address gives it."""

    FOLLOWED = "followed"  # flagged money goes on from the receiver
    EXIT = "exit"  # the money reached someone who knows the customer (or a bridge out)
    STOPPED = "stopped"  # the trace does not go on from here (a service, too little, too deep)


class Role(StrEnum):
    """An address's role in a trace as views show it: its verdict, or seed / reached."""

    FOLLOWED = "followed"
    EXIT = "exit"
    STOPPED = "stopped"
    SEED = "seed"  # a flagged wallet the trace started from
    REACHED = "reached"  # money arrived, no verdict yet (a running trace's frontier)


class Reason(StrEnum):
    """Why a hop has its status. Spellings are historical and stored: keep them exactly.

    A few reasons carry data and are built by functions below: `label:<source>` (an exit a label
    decided), `entered <category>` (a service money passes through), `frozen by issuer at block N`.
    """

    SEED = "seed"
    FLAGGED_FUNDS = "flagged funds"  # the ordinary followed hop
    BELOW_THRESHOLD = "below_threshold"  # too little of the trace's money to follow
    MAX_DEPTH = "max_depth"  # left unexpanded at policy.max_depth (a shorter path lifts it)
    MAX_HOPS = "max_hops"  # left unexpanded once the trace holds policy.max_hops hops
    HUB = "hub"  # an unlabelled service: far more counterparties than a laundering wallet
    DEPOSIT_ADDRESS = "deposit_address"  # an exchange deposit address recognised by its sweeps
    SWAP = "swap"  # the other side of a same-transaction swap
    BRIDGE = "bridge"  # a bridge deposit (an exit), or the payout hop it continued into
    CROSSING = "crossing"  # a bridge deposit the trace continued on the far chain: not an exit
    ENTERED_MIXER = "entered mixer"
    ENTERED_DEX = "entered dex"
    MIXER_DEPOSIT = "mixer deposit"  # linked: the money went on through a withdrawal
    MIXER_LINK = "mixer link"  # the withdrawal hop a link created
    MIXER_LINK_DROPPED = "mixer link dropped"  # a link a later batch outweighed
    CHANGE = "change"  # UTXO: the payer's change output (a peel chain goes on through it)
    ENTERED_COINJOIN = "entered CoinJoin"  # UTXO: a CoinJoin output no link is sure enough to follow
    COINJOIN_LINK = "coinjoin link"  # UTXO: a CoinJoin output a scored link follows
    SOURCE_OF_FUNDS = "source of funds"  # backward: a walked wallet, and the hops between walked wallets
    MINT = "mint"  # backward: a source that is the zero address (the token was minted to the walk)
    WALK_BUDGET = "walk_budget"  # backward: a wallet left unwalked once the trace walked MAX_WALKED


LABEL_REASON_PREFIX = "label:"
FROZEN = "frozen by issuer"
"""How the reason of the verdict on a frozen address starts (category "frozen"): the block follows."""


def label_reason(source: str) -> str:
    """The reason of an exit a label decided: `label:<source>`."""
    return f"{LABEL_REASON_PREFIX}{source}"


def entered(category: str) -> str:
    """The reason of a stop at a service money passes through: `entered <category>`."""
    return f"entered {category}"


def frozen_reason(block_number: int) -> str:
    return f"{FROZEN} at block {block_number}"


@dataclass(frozen=True)
class Verdict:
    """The decision on one address: the role it gets and why."""

    role: str  # a HopStatus
    reason: str  # a Reason, or one built by the functions above
    entity: str | None = None
    category: str | None = None
    evidence: dict[str, Any] | None = field(default=None)

    @property
    def hop_status(self) -> str:
        return self.role


FOLLOW = Verdict(HopStatus.FOLLOWED, Reason.FLAGGED_FUNDS)


@dataclass(frozen=True, slots=True)
class Judged:
    """What a trace holds on an address it reached (its job): the verdict, None while unjudged,
    and the depth it was reached at."""

    role: str | None
    reason: str | None
    category: str | None = None
    evidence: dict[str, Any] | None = None
    entity: str | None = None
    depth: int = 0

    @property
    def liftable(self) -> bool:
        """A max_depth stop: a shorter path found later lifts it (tracer.engine.depth)."""
        return self.role == HopStatus.STOPPED and self.reason == Reason.MAX_DEPTH

    @property
    def final(self) -> bool:
        """Hops into the address must copy the verdict: an exit or a stop that is not liftable."""
        return self.copied is not None

    @property
    def copied(self) -> tuple[str, str] | None:
        """(role, reason) of a final verdict, which hops into the address copy; None otherwise."""
        if self.role in (HopStatus.EXIT, HopStatus.STOPPED) and self.reason is not None and not self.liftable:
            return (self.role, self.reason)
        return None
