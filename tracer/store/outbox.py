"""The events outbox: events written by workers, numbered in commit order, read back in seq order.

1. Workers write events in the transaction of the hops they describe (`insert_hop_events` here and
   `traces.insert_events`), so a rolled-back batch announces nothing; the commit sends
   `EVENTS_CHANNEL`.
2. The sequencer (`sequence_round`) numbers committed events in commit order (`events.seq`, see
   schemas/migrations/005_alerts.sql for why ids are not enough) and, in the same transaction, fans
   them out to the matching webhook subscriptions as `deliveries` rows, one statement per round
   for every event and subscription; the commit sends `ALERTS_CHANNEL`.
3. Streams and event pages read numbered events after a cursor (`trace_events`,
   `subscription_events`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import asyncpg

from tracer.domain.alerts import EventRow, Round, WrittenEvent
from tracer.domain.records import WrittenHop
from tracer.store.event_filter import EVENT_COLUMNS, MATCH
from tracer.store.prices import PriceKey
from tracer.store.traces import Conn

#: pg_notify channel the sequencer announces numbered events on ("<last seq>:<trace ids>|*").
ALERTS_CHANNEL = "tracer_alerts"
#: pg_notify channel `traces.insert_events` announces new (not yet numbered) events on.
EVENTS_CHANNEL = "tracer_events"
_NOTIFY_MAX = 7000  # pg_notify payloads must stay under 8000 bytes


async def insert_hop_events(conn: Conn, trace_id: int, changed: Sequence[WrittenHop]) -> list[WrittenEvent]:
    """One event per hop written or changed by a batch (`traces.upsert_hops` rows), in chain order.

    Called inside the worker's batch transaction after the recipients' verdicts are written, so
    the payload has the hop's final status and the recipient's entity and category. Dust below the
    policy threshold is not announced: it is recorded as a stopped hop and nobody acts on it.
    Returns the events written (id, payload), for their dollars (`set_event_usd`).
    """
    if not changed:
        return []
    rows = await conn.fetch(
        """INSERT INTO events (trace_id, trace_key, type, payload)
           SELECT $1, $1, CASE WHEN c.ins THEN 'hop_added' ELSE 'hop_updated' END, """ + _HOP_JSON + """
           FROM unnest($2::bigint[], $3::bool[]) AS c(tid, ins)
           JOIN hops h ON h.trace_id = $1 AND h.transfer_id = c.tid
           JOIN transfers t ON t.id = c.tid
           LEFT JOIN jobs j ON j.trace_id = $1 AND j.address = h.to_addr AND j.chain = h.chain
           WHERE h.reason <> 'below_threshold'
           ORDER BY t.block_number, t.tx_index, t.position
           RETURNING id, payload""",
        trace_id, [r.transfer_id for r in changed], [r.inserted for r in changed],
    )
    await conn.execute("SELECT pg_notify($1, $2)", EVENTS_CHANNEL, str(trace_id))
    return [WrittenEvent(r["id"], r["payload"]) for r in rows]


async def set_event_usd(conn: Conn, values: Sequence[tuple[int, str | None, str | None]]) -> None:
    """Write hop events' dollars into their payloads ((event id, usd decimal string, source)),
    before the sequencer fans them out: subscriptions' min_usd reads `usd` there."""
    if not values:
        return
    await conn.execute(
        """UPDATE events e SET payload = e.payload || jsonb_build_object('usd', v.usd, 'usd_source', v.src)
           FROM unnest($1::bigint[], $2::text[], $3::text[]) AS v(id, usd, src) WHERE e.id = v.id""",
        [v[0] for v in values], [v[1] for v in values], [v[2] for v in values])


async def any_min_usd(conn: Conn) -> bool:
    """Whether a subscription filters on dollars (then workers read missing prices before commit)."""
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM subscriptions WHERE min_usd IS NOT NULL)"))


async def transfer_price_keys(conn: Conn, transfer_ids: Sequence[int]) -> list[PriceKey]:
    """The distinct (chain, asset, block) of some transfers, with the blocks' times."""
    rows = await conn.fetch(
        """SELECT DISTINCT chain, asset, block_number, block_time FROM transfers WHERE id = ANY($1::bigint[])""",
        list(transfer_ids))
    return [PriceKey(r["chain"], r["asset"], int(r["block_number"]), int(r["block_time"] or 0)) for r in rows]


# A hop as events carry it (aliases: h hops, t transfers, j the recipient's job row).
_HOP_JSON = """jsonb_build_object(
    'transfer_id', h.transfer_id, 'tx_hash', t.tx_hash, 'position', t.position,
    'block_number', t.block_number, 'block_time', t.block_time, 'from', h.from_addr, 'to', h.to_addr,
    'asset', h.asset, 'amount', h.amount::text, 'transfer_amount', t.amount::text,
    'symbol', t.symbol, 'decimals', t.decimals, 'depth', h.depth, 'kind', h.kind,
    'status', h.status, 'reason', h.reason, 'share', h.share,
    'to_entity', j.entity, 'to_category', j.category, 'chain', h.chain)"""


async def sequence_round(conn: Conn, limit: int = 5000) -> Round | None:
    """Number up to `limit` committed, unnumbered events and fan them out to webhook subscriptions.

    The row lock on alert_state makes rounds run one at a time (a second sequencer waits, then
    finds the events numbered), which is what makes seq a commit-order cursor: when a reader sees
    seq N committed, every seq below N committed in an earlier round. None when nothing waited.
    """
    async with conn.transaction():
        last: int = await conn.fetchval("SELECT last_seq FROM alert_state WHERE id = 1 FOR UPDATE")
        rows = await conn.fetch(
            """WITH picked AS (
                   SELECT id, row_number() OVER (ORDER BY id) AS rn
                   FROM (SELECT id FROM events WHERE seq IS NULL ORDER BY id LIMIT $2) x
               )
               UPDATE events e SET seq = $1 + p.rn FROM picked p WHERE e.id = p.id
               RETURNING e.trace_id""",
            last, limit,
        )
        if not rows:
            return None
        new_last = last + len(rows)
        # Fan-out, one statement for every event of the round and every subscription. A new
        # delivery is never due before the ones queued ahead of it for the same trace (next_at
        # never decreases along a queue, so the last one's is the queue's greatest): only queues
        # held back by a retry in the future matter, and those are few, found in one scan of the
        # pending rows (deliveries_chain) instead of one probe per new row. No ON CONFLICT: the
        # seqs were given out just now, under the alert_state lock, and a subscription's from_start
        # backfill only takes seqs up to its start_seq, which this skips; the arbiter check cost a
        # third of the statement (20 of 60 ms for 10,000 rows), and a conflict would be a bug to see.
        result = await conn.execute(
            """WITH held AS (
                   SELECT subscription_id, trace_key, max(next_at) AS next_at FROM deliveries
                   WHERE state = 'pending' AND next_at > now() GROUP BY subscription_id, trace_key)
               INSERT INTO deliveries (subscription_id, seq, event_id, trace_key, next_at)
               SELECT s.id, ev.seq, ev.id, coalesce(ev.trace_id, 0), GREATEST(now(), coalesce(h.next_at, now()))
               FROM (SELECT """ + EVENT_COLUMNS + """ FROM events e WHERE e.seq > $1 AND e.seq <= $2) ev
               JOIN subscriptions s ON s.delivery = 'webhook' AND s.start_seq < ev.seq AND """ + MATCH + """
               LEFT JOIN held h ON h.subscription_id = s.id AND h.trace_key = coalesce(ev.trace_id, 0)
               ORDER BY s.id, ev.seq""",
            last, new_last,
        )
        await conn.execute("UPDATE alert_state SET last_seq = $1, updated_at = now() WHERE id = 1", new_last)
        traces = frozenset(int(r["trace_id"]) for r in rows if r["trace_id"] is not None)
        await conn.execute("SELECT pg_notify($1, $2)", ALERTS_CHANNEL, notify_payload(new_last, traces))
    return Round(last + 1, new_last, traces, int(result.split()[-1]))


def notify_payload(last_seq: int, trace_ids: Iterable[int]) -> str:
    ids = ",".join(str(t) for t in sorted(trace_ids))
    return f"{last_seq}:{ids if len(ids) <= _NOTIFY_MAX else '*'}"


def parse_notify(payload: str) -> tuple[int, frozenset[int] | None]:
    """(last seq, trace ids) of an ALERTS_CHANNEL payload; None: any trace may have events."""
    head, _, tail = payload.partition(":")
    last = int(head) if head.isdigit() else 0
    if tail == "*":
        return last, None
    return last, frozenset(int(t) for t in tail.split(",") if t.isdigit())


async def unsequenced(conn: Conn) -> bool:
    """Whether committed events wait for a number (a sequencer that lost a race looks again)."""
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM events WHERE seq IS NULL)"))


async def last_seq(conn: Conn) -> int:
    return int(await conn.fetchval("SELECT last_seq FROM alert_state WHERE id = 1"))


def _event(r: asyncpg.Record) -> EventRow:
    return EventRow(int(r["seq"]), r["trace_id"], r["type"], r["payload"] or {}, r["created_at"], r["chain"])


async def trace_events(conn: Conn, trace_id: int, after: int, limit: int) -> list[EventRow]:
    """Numbered events of one trace after seq `after`, in seq order."""
    rows = await conn.fetch(
        """SELECT e.seq, e.trace_id, e.type, e.payload, e.created_at, t.chain
           FROM events e JOIN traces t ON t.id = e.trace_id
           WHERE e.trace_id = $1 AND e.seq > $2 AND e.seq IS NOT NULL ORDER BY e.seq LIMIT $3""",
        trace_id, after, limit,
    )
    return [_event(r) for r in rows]


async def subscription_events(
    conn: Conn, subscription_id: int, after: int, limit: int, window: int = 20000
) -> tuple[list[EventRow], int]:
    """Events a subscription's filter matches after seq `after`, scanning at most `window` seqs.

    Returns the events and the seq scanned up to, so a stream of a narrow filter moves on even
    when nothing in the window matched.
    """
    top = await last_seq(conn)
    upto = min(top, after + window)
    rows = await conn.fetch(
        """SELECT ev.seq, ev.trace_id, ev.type, ev.payload, ev.created_at, t.chain
           FROM (SELECT """ + EVENT_COLUMNS + """ FROM events e WHERE e.seq > $2 AND e.seq <= $3) ev
           JOIN subscriptions s ON s.id = $1 AND """ + MATCH + """
           LEFT JOIN traces t ON t.id = ev.trace_id
           ORDER BY ev.seq LIMIT $4""",
        subscription_id, after, upto, limit,
    )
    if len(rows) == limit:
        upto = int(rows[-1]["seq"])
    return [_event(r) for r in rows], upto


async def events_by_id(conn: Conn, event_ids: Sequence[int]) -> dict[int, EventRow]:
    """Numbered events by id, with their trace's chain (a delivery worker renders each once)."""
    rows = await conn.fetch(
        """SELECT e.id, e.seq, e.trace_id, e.type, e.payload, e.created_at, t.chain
           FROM events e LEFT JOIN traces t ON t.id = e.trace_id WHERE e.id = ANY($1::bigint[])""",
        list(event_ids))
    return {int(r["id"]): _event(r) for r in rows}


async def trace_stream_over(conn: Conn, trace_id: int, after: int, final: Sequence[str]) -> bool:
    """Whether a trace's event stream is over at cursor `after`: the trace's status is one of
    `final` and every event it wrote is numbered and at or below the cursor (its last event is
    committed with its final status, but may not have been numbered yet)."""
    return bool(await conn.fetchval(
        """SELECT t.status = ANY($3::text[]) AND NOT EXISTS (
               SELECT 1 FROM events e WHERE e.trace_id = t.id AND (e.seq IS NULL OR e.seq > $2))
           FROM traces t WHERE t.id = $1""",
        trace_id, after, list(final)))
