"""Records of alerting that cross layers: events as numbered, subscriptions, deliveries, reorgs.

The store builds them from its rows; alerts/ (sequencer, delivery, monitor, streams) and the API
read their attributes, never a database row's string keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any


@dataclass(frozen=True, slots=True)
class EventRow:
    """A numbered event as webhooks and streams render it. `chain` is the trace's own chain (a hop
    payload may name another: a trace can continue onto other chains)."""

    seq: int
    trace_id: int | None
    type: str
    payload: Mapping[str, Any]
    created_at: datetime | None
    chain: str | None


@dataclass(frozen=True, slots=True)
class WrittenEvent:
    """A hop event a batch just wrote, not numbered yet: the commit prices it from its payload."""

    id: int
    payload: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Round:
    """What one sequencing round did."""

    first_seq: int
    last_seq: int
    trace_ids: frozenset[int]
    deliveries: int

    @property
    def count(self) -> int:
        return self.last_seq - self.first_seq + 1 if self.last_seq >= self.first_seq else 0


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscriptionSpec:
    """What a subscription asks for, the same when it is created and as the API shows it: where it
    delivers, which events it takes (tracer.store.event_filter), who made it."""

    name: str
    delivery: str  # webhook | stream
    url: str | None
    chain: str
    trace_id: int | None
    addresses: list[str] | None
    watch: bool
    watch_trace_id: int | None
    categories: list[str] | None
    entities: list[str] | None
    event_types: list[str] | None
    created_by: str | None
    api_key_id: int | None
    min_usd: Decimal | None = None  # hop events priced below it are not delivered
    screen_depth: int | None = None  # screening_result events for new inflows, exposure this many hops back


@dataclass(frozen=True, slots=True, kw_only=True)
class NewSubscription(SubscriptionSpec):
    secret: str | None
    min_amount: dict[str, int] | None  # asset -> raw amount
    from_start: bool
    confirmations: int = 12  # blocks an inflow waits before it is screened


@dataclass(frozen=True, slots=True)
class Leased:
    """A webhook subscription a delivery worker holds the queue of."""

    id: int
    name: str
    url: str
    secret: str


@dataclass(frozen=True, slots=True)
class DueDelivery:
    """One pending delivery at the head of a subscription's queue for a trace (`trace_key`, 0 for
    events without a trace); `due` says whether its retry time has come."""

    subscription_id: int
    seq: int
    trace_key: int
    attempts: int
    due: bool
    event_id: int


@dataclass(frozen=True, slots=True)
class WatchingTrace:
    id: int
    seeds: tuple[str, ...]
    policy: Mapping[str, Any]
    from_block: int
    to_block: int


@dataclass(frozen=True, slots=True)
class Extend:
    """A watching trace's window moving forward: the addresses that sent money in the new blocks
    (address, depth) go back on its frontier; its seeds' outflows add to its totals."""

    trace_id: int
    wake: tuple[tuple[str, int], ...]
    seed_outflows: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class Retraction:
    fork_block: int
    hops: int
    traces: frozenset[int]
    transfers: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Subscription(SubscriptionSpec):
    """A stored subscription as the API shows it (never its secret)."""

    id: int
    min_amount: Mapping[str, str] | None  # asset -> raw amount (decimal string)
    created_at: datetime
    start_seq: int
    last_success_at: datetime | None
    last_failure_at: datetime | None
    last_error: str | None


@dataclass(frozen=True, slots=True)
class Deleted:
    """A subscription just deleted: its watchlist's own trace, if any, is cancelled with it."""

    id: int
    watch_trace_id: int | None


@dataclass(frozen=True, slots=True)
class Delivery:
    """One row of a subscription's delivery queue, with its event's type."""

    seq: int
    trace_key: int
    state: str  # pending | delivered | dead
    attempts: int
    next_at: datetime
    last_status: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    type: str
