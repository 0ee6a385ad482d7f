"""The trace's records: its frontier jobs, the transfers it stored and the hops it wrote.

A chain of None on a job or a hop means the trace's own chain (the one it started on); a trace that
continues across a bridge names the far chain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tracer.domain.errors import UserError
from tracer.domain.transfers import Transfer


class UnknownTrace(UserError, KeyError):
    """A trace id that names no trace (never made, or deleted). A KeyError, which callers that
    look traces up already expect; its message is a sentence, not a quoted number."""

    def __init__(self, trace_id: int) -> None:
        super().__init__(trace_id)
        self.trace_id = trace_id

    def __str__(self) -> str:
        return f"no trace {self.trace_id}"


@dataclass(frozen=True, slots=True)
class Job:
    """An address on a trace's frontier, as a worker claimed it."""

    trace_id: int
    address: str
    kind: str  # "start" (read the seeds' totals) or "address" (expand one address)
    depth: int
    is_seed: bool
    generation: int
    attempts: int
    chain: str | None = None  # the chain the address is on; None: the trace's own chain


@dataclass(frozen=True, slots=True)
class StoredTransfer:
    id: int
    transfer: Transfer

    def transfer_row(self) -> tuple[int, int, int | None, str | None]:
        """(id, block_time, decimals, symbol): what describe_transfers fills in."""
        return (self.id, self.transfer.block_time, self.transfer.decimals, self.transfer.symbol)


@dataclass(frozen=True, slots=True, kw_only=True)
class HopRow:
    """One hop the trace followed, stopped at or exited through. `status` is a HopStatus and
    `reason` mostly a Reason (tracer.domain.verdicts); both are stored as their text. Built by
    keyword: fifteen fields in a row are too many to read by position."""

    transfer_id: int
    from_addr: str
    to_addr: str
    asset: str
    block_number: int
    depth: int
    amount: int
    share: float
    kind: str
    status: str
    reason: str
    parents: list[int]
    confidence: float = 1.0
    chain: str | None = None  # None: the trace's own chain
    evidence: dict[str, Any] | None = None  # why an inferred hop exists (a bridge payout's match)


@dataclass(frozen=True, slots=True)
class WrittenHop:
    """A hop a commit wrote or changed (store.hops.upsert_hops, reopen_hops_into): its recipient
    may need another look, and it gets an event."""

    transfer_id: int
    to_addr: str
    asset: str
    amount: int
    status: str  # a HopStatus
    depth: int
    chain: str
    inserted: bool  # new, not an update


@dataclass(frozen=True, slots=True)
class Inflow:
    """Flagged money a hop brought to an address: what a batch reads before expanding it."""

    transfer_id: int
    to_addr: str
    asset: str
    amount: int  # the flagged part, raw units
    depth: int
    block_number: int


@dataclass(frozen=True, slots=True)
class ChainWindow:
    """The blocks a trace reads on one chain."""

    chain: str
    from_block: int
    to_block: int


@dataclass(frozen=True, slots=True)
class ExitRow:
    """One off-ramp a trace reached: the sums of its exit hops into one address in one asset
    (trace_exits), the trace's verdict on the address (jobs) and its first and last transfer."""

    chain: str
    address: str
    asset: str
    amount: int  # raw units
    hops: int
    senders: int
    depth: int
    first_block: int
    last_block: int
    first_time: int | None
    last_time: int | None
    decimals: int | None
    symbol: str | None
    reason: str | None
    entity: str | None
    category: str | None
    evidence: dict[str, Any] | None
