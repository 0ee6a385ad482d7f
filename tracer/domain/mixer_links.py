"""What a trace inferred through a mixer, as read back: each flagged deposit with its candidate
withdrawals, best first (store.mixers.mixer_links; the API, the demo and truth_check read it).

A link's `status` is a LinkStatus and a deposit's a DepositStatus (the trace's words for them, not
HopStatus; stored as their text). Amounts are raw integer units of the deposit's asset.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class LinkStatus(StrEnum):
    FOLLOWED = "followed"  # the deposit's best link, sure enough: the trace goes on through it
    CANDIDATE = "candidate"


class DepositStatus(StrEnum):
    LINKED = "linked"  # one of its links is followed
    UNLINKED = "unlinked"


@dataclass(frozen=True, slots=True)
class LinkReason:
    """One heuristic behind a link's confidence."""

    heuristic: str
    detail: str
    weight: float  # likelihood ratio (anonymity_set: the prior odds), as stored


@dataclass(frozen=True, slots=True)
class CandidateWithdrawal:
    """A withdrawal that may spend the deposit, with the confidence and the flagged part it carries."""

    withdrawal_tx: str
    withdrawal_log_index: int
    withdrawal_transfer_id: int | None  # None: its payment was not among the transfers read
    withdrawal_block: int
    withdrawal_time: int
    recipient: str
    relayer: str | None
    fee: int | None
    withdrawn: int | None  # None: the payment was outside the window read
    confidence: float
    carried: int
    status: str  # a LinkStatus
    reasons: tuple[LinkReason, ...]

    @property
    def followed(self) -> bool:
        return self.status == LinkStatus.FOLLOWED


@dataclass(frozen=True, slots=True)
class DepositRow:
    """A flagged deposit into a pool as a trace writes it (store.mixers.write_outcomes)."""

    transfer_id: int
    pool: str
    asset: str
    denomination: int
    depositor: str
    flagged: int  # the flagged part of the denomination
    anonymity_set: int
    candidates: int
    status: str  # a DepositStatus


@dataclass(frozen=True, slots=True)
class MixerDeposit(DepositRow):
    """A deposit as read back: the transfer it was and its candidates best first."""

    tx_hash: str
    position: str
    block_number: int
    block_time: int
    symbol: str | None
    decimals: int | None
    links: tuple[CandidateWithdrawal, ...]

    @property
    def followed(self) -> list[CandidateWithdrawal]:
        return [lk for lk in self.links if lk.followed]
