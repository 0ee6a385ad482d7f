"""What the read side hands out about a trace (tracer.store.reads): the report, the API and the CLI
read these records' attributes, never a database row's string keys.

A chain of None means the trace's own chain, as on the trace's records (tracer.domain.records).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from tracer.domain.verdicts import Role


@dataclass(frozen=True, slots=True)
class Stop:
    """An address the trace stopped at without reaching an off-ramp (a hub, a mixer, a limit), with
    what reached it (a backward trace's stops are senders: what they paid)."""

    address: str
    reason: str | None
    entity: str | None
    category: str | None
    depth: int
    chain: str | None
    amounts: Mapping[str, str]  # asset -> raw amount (decimal string)


@dataclass(frozen=True, slots=True)
class BridgeVerdict:
    """A bridge the trace deposited into, with the destinations and continuations its evidence
    lists (the verdict's free-form evidence JSON)."""

    address: str
    chain: str | None
    entity: str | None
    evidence: Any


@dataclass(frozen=True, slots=True)
class StoredTrace:
    """A trace as stored: what was asked (seeds, window, policy), how far it got, who owns it."""

    id: int
    chain: str
    seeds: list[str]
    policy: Mapping[str, Any]  # the trace's Policy as JSON (tracer.engine.policy.Policy.from_json)
    label: str | None
    status: str  # queued | running | done | failed | cancelled | watching
    error: str | None
    from_block: int
    to_block: int
    totals: Mapping[str, Any]  # asset -> raw amount leaving (forward) or reaching (backward) the seeds
    created_by: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    hop_count: int
    hop_limit_reached: bool
    balance_method: str | None
    balance_method_reason: str | None
    owner_key_id: int | None
    owner_team: str | None
    direction: str  # forward | backward


@dataclass(frozen=True, slots=True)
class TraceVersion:
    """What a cached page of a trace depends on: every change of a finished trace's hops moves
    updated_at (tracer.api.pages)."""

    chain: str
    status: str
    updated_at: datetime
    hop_count: int


@dataclass(frozen=True, slots=True)
class Received:
    """Flagged money that reached an address in one asset (raw units)."""

    asset: str
    amount: int
    decimals: int | None
    symbol: str | None


@dataclass(frozen=True, slots=True)
class WalletVerdict:
    """What a trace made of an address it reached (its job): whether it is a seed, the role and
    reason of the verdict and the label's entity and category. Role and reason are None while the
    address is unjudged (a running trace's frontier; a recipient below the threshold never is)."""

    is_seed: bool
    role: str | None
    reason: str | None
    entity: str | None
    category: str | None

    @property
    def shown_role(self) -> str:
        """The role views show: seed, the verdict's role, or reached. Plain text, not the enum member:
        networkx's GraphML and GEXF writers look attribute types up by exact type."""
        if self.is_seed:
            return Role.SEED.value
        return self.role or Role.REACHED.value


@dataclass(frozen=True, slots=True)
class AddressTrace:
    """A trace that reached an address (or started from it): what the trace made of it and the
    flagged amount per asset that reached it."""

    id: int
    status: str
    label: str | None
    created_at: datetime
    depth: int
    verdict: WalletVerdict
    received: tuple[Received, ...]  # by asset


@dataclass(frozen=True, slots=True)
class GraphNode:
    """An address at either end of a hop, with the trace's verdict on it when it has one
    (recipients below the threshold were never judged)."""

    address: str
    chain: str | None
    depth: int | None
    verdict: WalletVerdict


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredHop:
    """A hop as the trace wrote it, with its transfer's facts (hash, position, time, token): what
    pages, exports, paths, reports and dollars read. `chain` is the hop's own chain."""

    transfer_id: int
    from_addr: str
    to_addr: str
    asset: str
    amount: int  # raw units
    depth: int
    status: str  # a HopStatus
    reason: str
    share: float
    kind: str
    block_number: int
    tx_hash: str
    position: str
    block_time: int
    decimals: int | None
    symbol: str | None
    chain: str
    confidence: float
    evidence: dict[str, Any] | None  # why an inferred hop exists (free-form JSON)
    parents: tuple[int, ...] = ()  # only all_hops reads them


@dataclass(frozen=True, slots=True)
class WalkedWallet:
    """A wallet a backward trace walked, with its role (followed, exit, stopped) and depth."""

    address: str
    chain: str
    depth: int
    verdict: WalletVerdict
    evidence: dict[str, Any] | None  # the verdict's free-form evidence JSON


@dataclass(frozen=True, slots=True)
class Held:
    """Money a walked wallet already held when the window opened that reached the seeds."""

    address: str
    chain: str
    depth: int
    asset: str
    amount: int  # raw units


class BridgeCrossing(NamedTuple):
    """A bridge crossing a backward walk followed: the payout on one chain, the deposit it pays out."""

    payout_transfer_id: int
    deposit_transfer_id: int
    deposit_chain: str
    confidence: float
    evidence: dict[str, Any]  # the match's free-form evidence JSON


class ExitLine(NamedTuple):
    """One off-ramp as GET /exits sends it (tracer.store.exits): `line` is its JSON up to the dollars
    (without the closing brace), the rest what the API computes those from. `no_checksum`: a row
    written before the store kept checksums (`"address_checksum":null` in `line`); `tron`: a stored
    Tron address may be in the line (the API shows those as T...)."""

    chain: str
    address: str
    asset: str
    amount: int  # raw units
    no_checksum: bool
    line: str
    tron: bool


@dataclass(frozen=True, slots=True)
class ExitItems:
    """The items array of GET /exits as one JSON text in UTF-8 (tracer.store.exits.exit_items),
    whether a stored Tron address may be in it, and what reached the exits in each asset (raw units)."""

    items: bytes
    tron: bool
    reached: Mapping[str, int]
