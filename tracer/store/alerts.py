"""The alerting store, one name away: what used to be this one module is split by what it holds.

- `outbox`: hop events written with their hops, numbering in commit order and the fan-out to
  webhook queues (the sequencer), events read back for streams and pages, the NOTIFY channels;
- `event_filter`: a subscription's filter as one SQL predicate (fan-out, backfill and streams);
- `subscriptions`: creating, reading, deleting subscriptions, making a trace watch;
- `deliveries`: the per-subscription queues the delivery workers lease, mark and retry;
- `follow`: the monitor's watching traces, window extension, block hashes, reorg retraction.

Code outside alerting (the trace worker's commit, the reorg guard) reaches them through the names
re-exported here.
"""

from __future__ import annotations

from tracer.domain.alerts import (
    DueDelivery,
    EventRow,
    Leased,
    LiveAddress,
    NewSubscription,
    Retraction,
    Round,
    WatchingTrace,
)
from tracer.store.deliveries import (
    claim_subscriptions,
    due_deliveries,
    finish_deliveries,
    list_deliveries,
    mark_failed,
    prune_deliveries,
    replay_dead,
)
from tracer.store.follow import (
    extend_traces,
    live_addresses,
    record_blocks,
    recorded_blocks,
    retract_after,
    watching_traces,
)
from tracer.store.outbox import (
    ALERTS_CHANNEL,
    EVENTS_CHANNEL,
    any_min_usd,
    events_by_id,
    insert_hop_events,
    last_seq,
    notify_payload,
    parse_notify,
    sequence_round,
    set_event_usd,
    subscription_events,
    trace_events,
    trace_stream_over,
    transfer_price_keys,
    unsequenced,
)
from tracer.store.subscriptions import (
    delete_subscription,
    delivery_counts,
    get_subscription,
    insert_subscription,
    list_subscriptions,
    watch_trace,
)

__all__ = [
    "ALERTS_CHANNEL", "EVENTS_CHANNEL", "DueDelivery", "EventRow", "Leased", "LiveAddress", "NewSubscription",
    "Retraction", "Round", "WatchingTrace", "any_min_usd", "claim_subscriptions", "delete_subscription",
    "delivery_counts", "due_deliveries", "events_by_id", "extend_traces", "finish_deliveries", "get_subscription",
    "insert_hop_events", "insert_subscription", "last_seq", "list_deliveries", "list_subscriptions", "live_addresses",
    "mark_failed", "notify_payload", "parse_notify", "prune_deliveries", "record_blocks", "recorded_blocks",
    "replay_dead", "retract_after", "sequence_round", "set_event_usd", "subscription_events", "trace_events",
    "trace_stream_over", "transfer_price_keys", "unsequenced", "watch_trace", "watching_traces",
]
