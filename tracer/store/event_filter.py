"""A subscription's filter as SQL: which events it wants.

One predicate (`MATCH`, subscription `s` against event `ev`) serves the webhook fan-out, the
from_start backfill of a new subscription and the stream of a subscription, so a webhook and a
stream of the same filter carry the same events. `ev` is a row of `EVENT_COLUMNS` over events `e`.
"""

from __future__ import annotations

# Per-event values the filters look at, from the payload conventions of hop and exit events:
# hop events carry from/to/asset/amount and the recipient's to_entity/to_category; exit events
# carry address/entity/category. Entity names compare case-insensitively.
EVENT_COLUMNS = """
    e.id, e.seq, e.trace_id, e.type, e.payload, e.created_at,
    array_remove(ARRAY[e.payload->>'from', e.payload->>'to', e.payload->>'address'], NULL) AS addrs,
    array_remove(ARRAY[e.payload->>'category', e.payload->>'to_category'], NULL) AS cats,
    array_remove(ARRAY[lower(e.payload->>'entity'), lower(e.payload->>'to_entity')], NULL) AS ents,
    e.payload->>'asset' AS asset,
    CASE WHEN e.payload ? 'amount' THEN (e.payload->>'amount')::numeric END AS amount,
    CASE WHEN jsonb_typeof(e.payload->'usd') = 'string' THEN (e.payload->>'usd')::numeric END AS usd
"""

# Does subscription `s` want event `ev`? NULL filters match everything; min_amount only applies
# to events that carry an amount (hop events), per asset, 0 for assets it does not name; min_usd
# only to hop events priced when they were committed (an unknown price lets the event through:
# money is never kept from a receiver because its price is unknown). A screening result is made
# for one subscription (its depth and confirmations): it goes to that one only.
MATCH = """
    (s.trace_id IS NULL OR s.trace_id = ev.trace_id)
    AND (s.event_types IS NULL OR ev.type = ANY (s.event_types))
    AND (s.addresses IS NULL OR ev.trace_id = s.watch_trace_id OR ev.addrs && s.addresses)
    AND (s.categories IS NULL OR ev.cats && s.categories)
    AND (s.entities IS NULL OR ev.ents && s.entities)
    AND (s.min_amount IS NULL OR ev.amount IS NULL
         OR ev.amount >= coalesce((s.min_amount ->> ev.asset)::numeric, 0))
    AND (s.min_usd IS NULL OR ev.usd IS NULL OR ev.usd >= s.min_usd)
    AND (ev.type <> 'screening_result' OR (ev.payload->>'subscription_id')::bigint = s.id)
"""
