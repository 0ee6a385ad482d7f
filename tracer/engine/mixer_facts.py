"""What the mixer linker reads and what it returns: flagged deposits, the facts fetched for them
(tracer/engine/mixer_scope.py), its parameters, and the scored links with their reasons."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tracer.engine.mixer_events import PoolEvent


@dataclass(frozen=True, slots=True)
class FlaggedDeposit:
    """A deposit into a pool that carried flagged money (one hop of the trace)."""

    transfer_id: int
    pool: str
    asset: str
    denomination: int  # what the deposit put in (the transfer's whole amount)
    flagged: int  # the flagged part of it
    depositor: str
    tx_hash: str
    block_number: int
    block_time: int
    decimals: int | None = None
    symbol: str | None = None


@dataclass
class LinkFacts:
    """What the linker reads; the caller fetches it in batches.

    `events` holds each pool's events from the first flagged deposit to the end of the window,
    `before` the counts (deposits, withdrawals) of each pool before them. `peers` maps depositors
    and candidate recipients to the wallets they transacted with; `services` are addresses never
    counted as a shared wallet (labelled services, the pools themselves). `deposits_by` lists
    every deposit event each depositor made into the pools, flagged or not: its notes.
    """

    events: Mapping[str, Sequence[PoolEvent]]
    before: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    denominations: Mapping[str, int] = field(default_factory=dict)
    gas_prices: Mapping[str, int] = field(default_factory=dict)
    peers: Mapping[str, set[str]] = field(default_factory=dict)
    services: set[str] = field(default_factory=set)
    deposits_by: Mapping[str, Sequence[PoolEvent]] = field(default_factory=dict)
    # Candidate recipients' wallets when the caller reads them over another window than the
    # depositors' (an address can be both); empty: `peers` serves both roles.
    recipient_peers: Mapping[str, set[str]] = field(default_factory=dict)
    # Deposits candidate recipients made into the pools themselves (read from their transfers):
    # a recipient's own note explains its withdrawal as well as ours would (same address).
    recipient_notes: Mapping[str, Sequence[PoolEvent]] = field(default_factory=dict)
    # Other wallets' notes in the pools that compete with the depositors' own for their candidate
    # withdrawals (mixer_scope.own_facts keeps those of wallets tied to a candidate's recipient
    # through a wallet the depositor shares with it; their peers are in `peers`).
    rival_notes: Mapping[str, Sequence[PoolEvent]] = field(default_factory=dict)

    def peers_of_recipient(self, address: str) -> set[str]:
        source = self.recipient_peers if self.recipient_peers else self.peers
        return source.get(address, set())


@dataclass(frozen=True)
class LinkParams:
    window_seconds: int = 90 * 86_400  # withdrawals this long after a deposit are candidates
    multi_window_seconds: int = 86_400  # the multi-denomination heuristic looks this far around
    max_candidates: int = 400  # nearest withdrawals per deposit (a busy pool has thousands)
    keep: int = 5  # links reported per deposit (the best; only one can pass a threshold >= 0.5)
    min_reported: float = 0.01


@dataclass(frozen=True, slots=True)
class Reason:
    heuristic: str  # same_address | direct_interaction | shared_peers | gas_price | multi_denomination |
    #                 timing | anonymity_set | same_recipient | recipient_own_note
    detail: str
    weight: float  # likelihood ratio (anonymity_set: the prior odds)

    def to_json(self) -> dict[str, Any]:
        return {"heuristic": self.heuristic, "detail": self.detail, "weight": round(self.weight, 6)}


@dataclass(frozen=True, slots=True)
class Link:
    deposit: FlaggedDeposit
    withdrawal: PoolEvent
    confidence: float
    odds: float
    reasons: tuple[Reason, ...]

    def carried(self, withdrawn: int) -> int:
        """Flagged amount this link carries: the deposit's flagged amount scaled by the
        confidence, never more than the recipient got out of the pool."""
        return min(withdrawn, int(self.deposit.flagged * self.confidence))


@dataclass
class DepositOutcome:
    deposit: FlaggedDeposit
    anonymity_set: int  # notes unspent in the pool right after this deposit (ours included)
    candidates: int  # withdrawals considered
    links: list[Link]  # best first, at most LinkParams.keep

    def best(self, threshold: float) -> Link | None:
        return self.links[0] if self.links and self.links[0].confidence >= threshold else None
