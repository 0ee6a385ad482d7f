"""SQL for alerting: hop events, the sequencer, subscriptions, webhook deliveries, live following.

Three stages move an event from a worker's commit to a receiver:

1. The worker writes events in the transaction of the hops they describe (the outbox,
   `insert_hop_events` here and `traces.insert_events`), so a rolled-back batch announces nothing.
2. The sequencer (`sequence_round`) numbers committed events in commit order (`events.seq`, see
   schemas/migrations/005_alerts.sql for why ids are not enough) and, in the same transaction, fans
   them out to the matching webhook subscriptions as `deliveries` rows.
3. Delivery workers lease one subscription at a time (`claim_subscriptions`: SKIP LOCKED + lease,
   like jobs) and post its due deliveries in seq order per trace.

A subscription's filter is one SQL predicate (`_MATCH`), used both by the fan-out and by the
stream of a subscription, so a webhook and a stream of the same filter carry the same events.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg

from tracer.store import traces as trace_store
from tracer.store.hops import refresh_exits
from tracer.store.prices import PriceKey
from tracer.store.traces import Conn

#: pg_notify channel the sequencer announces numbered events on ("<last seq>:<trace ids>|*").
ALERTS_CHANNEL = "tracer_alerts"
#: pg_notify channel `traces.insert_events` announces new (not yet numbered) events on.
EVENTS_CHANNEL = "tracer_events"
_NOTIFY_MAX = 7000  # pg_notify payloads must stay under 8000 bytes

# Per-event values the filters look at, from the payload conventions of hop and exit events:
# hop events carry from/to/asset/amount and the recipient's to_entity/to_category; exit events
# carry address/entity/category. Entity names compare case-insensitively.
_EVENT_COLUMNS = """
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
# money is never kept from a receiver because its price is unknown).
_MATCH = """
    (s.trace_id IS NULL OR s.trace_id = ev.trace_id)
    AND (s.event_types IS NULL OR ev.type = ANY (s.event_types))
    AND (s.addresses IS NULL OR ev.trace_id = s.watch_trace_id OR ev.addrs && s.addresses)
    AND (s.categories IS NULL OR ev.cats && s.categories)
    AND (s.entities IS NULL OR ev.ents && s.entities)
    AND (s.min_amount IS NULL OR ev.amount IS NULL
         OR ev.amount >= coalesce((s.min_amount ->> ev.asset)::numeric, 0))
    AND (s.min_usd IS NULL OR ev.usd IS NULL OR ev.usd >= s.min_usd)
"""


# ---------------------------------------------------------------- events written by workers


async def insert_hop_events(conn: Conn, trace_id: int, changed: Sequence[Mapping[str, Any]]) -> list[asyncpg.Record]:
    """One event per hop written or changed by a batch (`traces.upsert_hops` rows), in chain order.

    Called inside the worker's batch transaction after the recipients' verdicts are written, so
    the payload has the hop's final status and the recipient's entity and category. Dust below the
    policy threshold is not announced: it is recorded as a stopped hop and nobody acts on it.
    Returns the events written (id, chain, payload), for their dollars (`set_event_usd`).
    """
    if not changed:
        return []
    rows: list[asyncpg.Record] = await conn.fetch(
        """INSERT INTO events (trace_id, type, payload)
           SELECT $1, CASE WHEN c.ins THEN 'hop_added' ELSE 'hop_updated' END, """ + _HOP_JSON + """
           FROM unnest($2::bigint[], $3::bool[]) AS c(tid, ins)
           JOIN hops h ON h.trace_id = $1 AND h.transfer_id = c.tid
           JOIN transfers t ON t.id = c.tid
           LEFT JOIN jobs j ON j.trace_id = $1 AND j.address = h.to_addr AND j.chain = h.chain
           WHERE h.reason <> 'below_threshold'
           ORDER BY t.block_number, t.tx_index, t.position
           RETURNING id, payload""",
        trace_id, [int(r["transfer_id"]) for r in changed], [bool(r["inserted"]) for r in changed],
    )
    await conn.execute("SELECT pg_notify($1, $2)", EVENTS_CHANNEL, str(trace_id))
    return rows


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


# ---------------------------------------------------------------- the sequencer


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
        # Fan-out. A new delivery is never due before the ones queued ahead of it for the same
        # trace (next_at never decreases along a queue), so "anything due" means "a head is due".
        result = await conn.execute(
            """INSERT INTO deliveries (subscription_id, seq, event_id, trace_key, next_at)
               SELECT s.id, ev.seq, ev.id, coalesce(ev.trace_id, 0),
                      GREATEST(now(), coalesce((
                          SELECT d.next_at FROM deliveries d
                          WHERE d.subscription_id = s.id AND d.trace_key = coalesce(ev.trace_id, 0)
                            AND d.state = 'pending'
                          ORDER BY d.seq DESC LIMIT 1), now()))
               FROM (SELECT """ + _EVENT_COLUMNS + """ FROM events e WHERE e.seq > $1 AND e.seq <= $2) ev
               JOIN subscriptions s ON s.delivery = 'webhook' AND s.start_seq < ev.seq AND """ + _MATCH + """
               ORDER BY s.id, ev.seq
               ON CONFLICT DO NOTHING""",
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


# ---------------------------------------------------------------- reading events


async def trace_events(conn: Conn, trace_id: int, after: int, limit: int) -> list[asyncpg.Record]:
    """Numbered events of one trace after seq `after`, in seq order."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT e.seq, e.trace_id, e.type, e.payload, e.created_at, t.chain
           FROM events e JOIN traces t ON t.id = e.trace_id
           WHERE e.trace_id = $1 AND e.seq > $2 AND e.seq IS NOT NULL ORDER BY e.seq LIMIT $3""",
        trace_id, after, limit,
    )
    return rows


async def subscription_events(
    conn: Conn, subscription_id: int, after: int, limit: int, window: int = 20000
) -> tuple[list[asyncpg.Record], int]:
    """Events a subscription's filter matches after seq `after`, scanning at most `window` seqs.

    Returns the events and the seq scanned up to, so a stream of a narrow filter moves on even
    when nothing in the window matched.
    """
    top = await last_seq(conn)
    upto = min(top, after + window)
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT ev.seq, ev.trace_id, ev.type, ev.payload, ev.created_at, t.chain
           FROM (SELECT """ + _EVENT_COLUMNS + """ FROM events e WHERE e.seq > $2 AND e.seq <= $3) ev
           JOIN subscriptions s ON s.id = $1 AND """ + _MATCH + """
           LEFT JOIN traces t ON t.id = ev.trace_id
           ORDER BY ev.seq LIMIT $4""",
        subscription_id, after, upto, limit,
    )
    if len(rows) == limit:
        upto = int(rows[-1]["seq"])
    return rows, upto


# ---------------------------------------------------------------- subscriptions


@dataclass(frozen=True, slots=True)
class NewSubscription:
    name: str
    delivery: str  # webhook | stream
    url: str | None
    secret: str | None
    chain: str
    trace_id: int | None
    addresses: list[str] | None
    watch: bool
    watch_trace_id: int | None
    categories: list[str] | None
    entities: list[str] | None
    event_types: list[str] | None
    min_amount: dict[str, int] | None
    from_start: bool
    created_by: str | None
    api_key_id: int | None
    min_usd: Decimal | None = None  # hop events priced below it are not delivered


async def insert_subscription(conn: Conn, sub: NewSubscription) -> int:
    """Create a subscription; it gets every event numbered after it exists (with from_start, a
    trace subscription also gets the trace's earlier events)."""
    async with conn.transaction():
        # FOR SHARE waits for a running sequencing round and holds the next one off until we
        # commit, so the cut between "before" and "after" the subscription is exact.
        start: int = await conn.fetchval("SELECT last_seq FROM alert_state WHERE id = 1 FOR SHARE")
        sid: int = await conn.fetchval(
            """INSERT INTO subscriptions (name, delivery, url, secret, chain, trace_id, addresses, watch,
                   watch_trace_id, categories, entities, event_types, min_amount, created_by, api_key_id, start_seq,
                   min_usd)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::jsonb, $14, $15, $16, $17)
               RETURNING id""",
            sub.name, sub.delivery, sub.url, sub.secret, sub.chain, sub.trace_id, sub.addresses, sub.watch,
            sub.watch_trace_id, sub.categories, [e.lower() for e in sub.entities] if sub.entities else None,
            sub.event_types, {k: str(v) for k, v in sub.min_amount.items()} if sub.min_amount else None,
            sub.created_by, sub.api_key_id, 0 if sub.from_start else start, sub.min_usd,
        )
        if sub.from_start and sub.delivery == "webhook" and start > 0:
            await conn.execute(
                """INSERT INTO deliveries (subscription_id, seq, event_id, trace_key)
                   SELECT s.id, ev.seq, ev.id, coalesce(ev.trace_id, 0)
                   FROM (SELECT """ + _EVENT_COLUMNS + """ FROM events e
                         WHERE e.seq <= $2 AND ($3::bigint IS NULL OR e.trace_id = $3)) ev
                   JOIN subscriptions s ON s.id = $1 AND """ + _MATCH + """
                   ON CONFLICT DO NOTHING""",
                sid, start, sub.trace_id,
            )
    return sid


_SUB_COLUMNS = """s.id, s.name, s.delivery, s.url, s.chain, s.trace_id, s.addresses, s.watch, s.watch_trace_id,
    s.categories, s.entities, s.event_types, s.min_amount, s.min_usd, s.created_by, s.created_at, s.start_seq,
    s.last_success_at, s.last_failure_at, s.last_error, s.api_key_id"""


async def get_subscription(conn: Conn, subscription_id: int) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        f"SELECT {_SUB_COLUMNS} FROM subscriptions s WHERE s.id = $1", subscription_id)
    return row


async def list_subscriptions(conn: Conn, *, before_id: int | None, limit: int,
                             trace_id: int | None = None) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        f"""SELECT {_SUB_COLUMNS} FROM subscriptions s
            WHERE ($1::bigint IS NULL OR s.id < $1) AND ($2::bigint IS NULL OR s.trace_id = $2)
            ORDER BY s.id DESC LIMIT $3""",
        before_id, trace_id, limit,
    )
    return rows


async def delivery_counts(conn: Conn, subscription_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    rows = await conn.fetch(
        """SELECT subscription_id, state, count(*) AS n FROM deliveries
           WHERE subscription_id = ANY($1::bigint[]) GROUP BY subscription_id, state""",
        list(subscription_ids),
    )
    out: dict[int, dict[str, int]] = {sid: {"pending": 0, "delivered": 0, "dead": 0} for sid in subscription_ids}
    for r in rows:
        out[r["subscription_id"]][r["state"]] = int(r["n"])
    return out


async def delete_subscription(conn: Conn, subscription_id: int) -> asyncpg.Record | None:
    """Delete a subscription with its queue; returns it (None if unknown)."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "DELETE FROM subscriptions WHERE id = $1 RETURNING id, watch_trace_id", subscription_id)
    return row


async def watch_trace(conn: Conn, trace_id: int, confirmations: int) -> str | None:
    """Make an existing trace follow new blocks: its policy says watch, and a finished trace goes
    back to watching (a queued or running one will when it catches up). Returns the trace's status
    after, or None when it cannot watch (unknown, failed or cancelled)."""
    async with conn.transaction():
        row = await conn.fetchrow(
            """UPDATE traces SET policy = policy || jsonb_build_object('watch', true, 'confirmations', $2::int),
                      status = CASE WHEN status = 'done' THEN 'watching' ELSE status END,
                      finished_at = CASE WHEN status = 'done' THEN NULL ELSE finished_at END, updated_at = now()
               WHERE id = $1 AND status IN ('queued', 'running', 'done', 'watching')
               RETURNING status, to_block, (SELECT status FROM traces WHERE id = $1) AS before""",
            trace_id, confirmations,
        )
        if row is None:
            return None
        if row["before"] == "done":
            await trace_store.insert_events(conn, [(trace_id, "trace_watching", {"to_block": row["to_block"]})])
    status: str = row["status"]
    return status


# ---------------------------------------------------------------- deliveries


@dataclass(frozen=True, slots=True)
class Leased:
    id: int
    name: str
    url: str
    secret: str


async def claim_subscriptions(conn: Conn, worker: str, limit: int, lease_seconds: float) -> list[Leased]:
    """Lease up to `limit` webhook subscriptions that have a delivery due, oldest due first.

    One worker owns a subscription's queue at a time, which keeps its per-trace order without
    locking single deliveries, and bounds what one slow receiver can take: one worker slot.
    """
    rows = await conn.fetch(
        """UPDATE subscriptions s SET lease_until = now() + make_interval(secs => $3), leased_by = $2
           FROM (SELECT s2.id FROM subscriptions s2
                 JOIN (SELECT subscription_id, min(next_at) AS due FROM deliveries
                       WHERE state = 'pending' AND next_at <= now() GROUP BY subscription_id) d
                   ON d.subscription_id = s2.id
                 WHERE s2.delivery = 'webhook' AND (s2.lease_until IS NULL OR s2.lease_until < now())
                 ORDER BY d.due LIMIT $1
                 FOR UPDATE OF s2 SKIP LOCKED) c
           WHERE s.id = c.id AND (s.lease_until IS NULL OR s.lease_until < now())
           RETURNING s.id, s.name, s.url, s.secret""",
        limit, worker, lease_seconds,
    )
    return [Leased(r["id"], r["name"], r["url"], r["secret"]) for r in rows]


async def finish_deliveries(conn: Conn, worker: str, delivered: Sequence[tuple[int, int, int]],
                            released: Sequence[tuple[int, bool]]) -> None:
    """Mark (subscription, seq, HTTP status) delivered and give leases back, (subscription, any
    success), in one transaction: a worker batches these for all its slots, so a delivery costs no
    round trip of its own. Marks are written before the leases go, so nobody re-sends them."""
    async with conn.transaction():
        if delivered:
            await conn.execute(
                """UPDATE deliveries d SET state = 'delivered', attempts = d.attempts + 1, last_status = u.status,
                          last_error = NULL, delivered_at = now(), updated_at = now()
                   FROM unnest($1::bigint[], $2::bigint[], $3::int[]) AS u(sid, seq, status)
                   WHERE d.subscription_id = u.sid AND d.seq = u.seq AND d.state = 'pending'""",
                [d[0] for d in delivered], [d[1] for d in delivered], [d[2] for d in delivered],
            )
        if released:
            await conn.execute(
                """UPDATE subscriptions s SET lease_until = NULL, leased_by = NULL,
                          last_success_at = CASE WHEN u.ok THEN now() ELSE s.last_success_at END
                   FROM unnest($1::bigint[], $2::bool[]) AS u(id, ok)
                   WHERE s.id = u.id AND s.leased_by = $3""",
                [r[0] for r in released], [r[1] for r in released], worker,
            )


async def due_deliveries(conn: Conn, subscription_ids: Sequence[int], per_trace: int) -> list[asyncpg.Record]:
    """The first `per_trace` pending deliveries of each due queue of the subscriptions, with their
    events, in seq order (one query for a whole claim of subscriptions)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT d.subscription_id, d.seq, d.trace_key, d.attempts, d.next_at <= now() AS due,
                  e.id AS event_id, e.trace_id, e.type, e.payload, e.created_at, t.chain
           FROM (SELECT DISTINCT subscription_id, trace_key FROM deliveries
                 WHERE subscription_id = ANY($1::bigint[]) AND state = 'pending' AND next_at <= now()) k
           CROSS JOIN LATERAL (
               SELECT * FROM deliveries d WHERE d.subscription_id = k.subscription_id AND d.trace_key = k.trace_key
                 AND d.state = 'pending' ORDER BY d.seq LIMIT $2) d
           JOIN events e ON e.id = d.event_id
           LEFT JOIN traces t ON t.id = e.trace_id
           ORDER BY d.subscription_id, d.seq""",
        list(subscription_ids), per_trace,
    )
    return rows


async def mark_failed(conn: Conn, subscription_id: int, seq: int, trace_key: int, *, status: int | None,
                      error: str, retry_in: float | None) -> None:
    """A failed attempt. With retry_in (seconds), the whole queue behind it waits that long (so
    nothing overtakes it); without, it and the queue behind it go to dead-letter, in order, for
    replay. Times are the database's clock, like every other lease and due time."""
    async with conn.transaction():
        if retry_in is not None:
            await conn.execute(
                """UPDATE deliveries SET
                       attempts = attempts + CASE WHEN seq = $2 THEN 1 ELSE 0 END,
                       last_status = CASE WHEN seq = $2 THEN $4 ELSE last_status END,
                       last_error = CASE WHEN seq = $2 THEN $5 ELSE last_error END,
                       next_at = GREATEST(next_at, now() + make_interval(secs => $6)), updated_at = now()
                   WHERE subscription_id = $1 AND trace_key = $3 AND state = 'pending' AND seq >= $2""",
                subscription_id, seq, trace_key, status, error, retry_in,
            )
        else:
            await conn.execute(
                """UPDATE deliveries SET state = 'dead',
                       attempts = attempts + CASE WHEN seq = $2 THEN 1 ELSE 0 END,
                       last_status = CASE WHEN seq = $2 THEN $4 ELSE last_status END,
                       last_error = CASE WHEN seq = $2 THEN $5 ELSE 'queued behind dead-lettered event ' || $2 END,
                       updated_at = now()
                   WHERE subscription_id = $1 AND trace_key = $3 AND state = 'pending' AND seq >= $2""",
                subscription_id, seq, trace_key, status, error,
            )
        await conn.execute(
            "UPDATE subscriptions SET last_failure_at = now(), last_error = $2 WHERE id = $1", subscription_id, error)


async def replay_dead(conn: Conn, subscription_id: int) -> int:
    """Put a subscription's dead-lettered deliveries back in its queue, tries reset; returns how many."""
    async with conn.transaction():
        result = await conn.execute(
            """UPDATE deliveries SET state = 'pending', attempts = 0, next_at = now(), last_error = NULL,
                      updated_at = now()
               WHERE subscription_id = $1 AND state = 'dead'""",
            subscription_id,
        )
        count = int(result.split()[-1])
        if count:
            await conn.execute("SELECT pg_notify($1, $2)", ALERTS_CHANNEL, notify_payload(0, ()))
    return count


async def list_deliveries(conn: Conn, subscription_id: int, *, state: str | None, after_seq: int,
                          limit: int) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT d.seq, d.trace_key, d.state, d.attempts, d.next_at, d.last_status, d.last_error, d.created_at,
                  d.delivered_at, e.type
           FROM deliveries d JOIN events e ON e.id = d.event_id
           WHERE d.subscription_id = $1 AND ($2::text IS NULL OR d.state = $2) AND d.seq > $3
           ORDER BY d.seq LIMIT $4""",
        subscription_id, state, after_seq, limit,
    )
    return rows


async def prune_deliveries(conn: Conn, older_than_seconds: float) -> int:
    """Forget delivered rows older than the retention (dead ones stay until replayed or deleted)."""
    result = await conn.execute(
        """DELETE FROM deliveries WHERE state = 'delivered'
             AND delivered_at < now() - make_interval(secs => $1)""",
        older_than_seconds,
    )
    return int(result.split()[-1])


# ---------------------------------------------------------------- live following (monitor)


async def watching_traces(conn: Conn, chain: str) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT id, seeds, policy, from_block, to_block, totals FROM traces
           WHERE chain = $1 AND status = 'watching' ORDER BY id""",
        chain,
    )
    return rows


async def live_addresses(conn: Conn, trace_ids: Sequence[int]) -> list[asyncpg.Record]:
    """Addresses the traces follow (money may still sit there): their new outflows extend the trace."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT trace_id, address, depth FROM jobs j
           WHERE trace_id = ANY($1::bigint[]) AND kind = 'address' AND role = 'followed'
             -- the monitor follows the trace's own chain; chains it continued into keep their window
             AND chain = (SELECT chain FROM traces t WHERE t.id = j.trace_id)""",
        list(trace_ids),
    )
    return rows


async def extend_trace(conn: Conn, trace_id: int, old_to: int, new_to: int, wake: Sequence[tuple[str, int]],
                       seed_outflows: Mapping[str, int]) -> bool:
    """Move a watching trace's window to `new_to`; addresses with new outflows go back on the
    frontier (the trace runs again until it catches up). False if the trace changed meanwhile."""
    async with conn.transaction():
        row = await conn.fetchrow(
            "SELECT totals FROM traces WHERE id = $1 AND status = 'watching' AND to_block = $2 FOR UPDATE",
            trace_id, old_to,
        )
        if row is None:
            return False
        totals = {k: int(v) for k, v in (row["totals"] or {}).items()}
        for asset, amount in seed_outflows.items():
            # The seeds' totals grow with what they send: thresholds stay relative to the theft.
            totals[asset] = totals.get(asset, 0) + amount
        await trace_store.enqueue(conn, trace_id, wake)
        await conn.execute(
            """UPDATE traces SET to_block = $2, totals = $3::jsonb, updated_at = now(),
                      status = CASE WHEN $4 THEN 'running' ELSE status END
               WHERE id = $1""",
            trace_id, new_to, {k: str(v) for k, v in totals.items()}, bool(wake),
        )
    return True


async def recorded_blocks(conn: Conn, chain: str, limit: int) -> list[tuple[int, str]]:
    """The highest followed blocks of a chain with their hashes, highest first."""
    rows = await conn.fetch(
        "SELECT number, hash FROM chain_blocks WHERE chain = $1 ORDER BY number DESC LIMIT $2", chain, limit)
    return [(r["number"], r["hash"]) for r in rows]


async def record_blocks(conn: Conn, chain: str, blocks: Mapping[int, str], keep: int) -> None:
    """Remember followed blocks' hashes (a hash already recorded stays: if it differs, the next
    check sees the reorg) and forget all but the `keep` highest."""
    if not blocks:
        return
    numbers = sorted(blocks)
    await conn.execute(
        """INSERT INTO chain_blocks (chain, number, hash)
           SELECT $1, n, h FROM unnest($2::bigint[], $3::text[]) AS b(n, h)
           ON CONFLICT (chain, number) DO NOTHING""",
        chain, numbers, [blocks[n] for n in numbers],
    )
    await conn.execute(
        """DELETE FROM chain_blocks WHERE chain = $1 AND number <
             (SELECT min(number) FROM (SELECT number FROM chain_blocks WHERE chain = $1
                                       ORDER BY number DESC LIMIT $2) k)""",
        chain, keep,
    )


@dataclass(frozen=True, slots=True)
class Retraction:
    fork_block: int
    hops: int
    traces: frozenset[int]
    transfers: int


async def retract_after(conn: Conn, chain: str, fork_block: int, *, old_hash: str | None,
                        new_hash: str | None) -> Retraction:
    """A reorg replaced every block after `fork_block`: forget what we knew of them.

    In one transaction: the hops of every trace on transfers in those blocks are deleted, each
    with a `hop_retracted` event (the hop as it was announced) and one `hops_retracted` summary per
    trace; jobs only those hops reached are dropped; the transfers, the address coverage past the
    fork and the recorded block hashes go, so the replacement blocks are fetched afresh; watching
    and finished traces end at the fork (the monitor extends watching ones again).

    A trace still in its historical pass keeps its window: a batch that read the old blocks fails
    on the deleted transfers (foreign key) and is retried on the new chain, but a worker that
    fetched the old blocks just before this commit may still store them afterwards. Reorgs deeper
    than the confirmation depth are rare enough to leave that case to re-running the trace.
    """
    async with conn.transaction():
        gone = await conn.fetch(
            """DELETE FROM hops h USING transfers t
               WHERE t.id = h.transfer_id AND t.chain = $1 AND t.block_number > $2
               RETURNING h.trace_id, h.transfer_id, h.from_addr, h.to_addr, h.asset, h.amount, h.depth, h.kind,
                         h.status, h.reason, h.share, t.tx_hash, t.position, t.block_number, t.block_time,
                         t.tx_index, t.amount AS transfer_amount, t.symbol, t.decimals""",
            chain, fork_block,
        )
        traces = sorted({int(r["trace_id"]) for r in gone})
        for trace_id in traces:  # the exits those hops reached, in this transaction
            await refresh_exits(conn, trace_id, [(chain, r["to_addr"]) for r in gone
                                                 if r["trace_id"] == trace_id and r["status"] == "exit"])
        verdicts: dict[tuple[int, str], asyncpg.Record] = {}
        if gone:
            rows = await conn.fetch(
                """SELECT trace_id, address, entity, category FROM jobs
                   WHERE (trace_id, address) IN (SELECT * FROM unnest($1::bigint[], $2::text[]))""",
                [r["trace_id"] for r in gone], [r["to_addr"] for r in gone],
            )
            verdicts = {(r["trace_id"], r["address"]): r for r in rows}
        events: list[tuple[int, str, dict[str, Any]]] = []
        ordered = sorted(gone, key=lambda r: (r["trace_id"], r["block_number"], r["tx_index"], r["position"]))
        for r in ordered:
            v = verdicts.get((r["trace_id"], r["to_addr"]))
            events.append((r["trace_id"], "hop_retracted", {
                "transfer_id": r["transfer_id"], "tx_hash": r["tx_hash"], "position": r["position"],
                "block_number": r["block_number"], "block_time": r["block_time"], "from": r["from_addr"],
                "to": r["to_addr"], "asset": r["asset"], "amount": str(int(r["amount"])),
                "transfer_amount": str(int(r["transfer_amount"])), "symbol": r["symbol"], "decimals": r["decimals"],
                "depth": r["depth"], "kind": r["kind"], "status": r["status"], "reason": r["reason"],
                "share": r["share"], "to_entity": v["entity"] if v else None,
                "to_category": v["category"] if v else None, "chain": chain,
            }))
        for trace_id in traces:
            mine = [r for r in gone if r["trace_id"] == trace_id]
            events.append((trace_id, "hops_retracted", {
                "chain": chain, "fork_block": fork_block, "count": len(mine),
                "from_block": min(r["block_number"] for r in mine), "old_hash": old_hash, "new_hash": new_hash,
                "transfer_ids": sorted(r["transfer_id"] for r in mine)[:1000],
            }))
        if events:
            await conn.execute(
                """INSERT INTO events (trace_id, type, payload)
                   SELECT t, ty, p::jsonb FROM unnest($1::bigint[], $2::text[], $3::text[]) WITH ORDINALITY
                        AS e(t, ty, p, n) ORDER BY n""",
                [e[0] for e in events], [e[1] for e in events], [json.dumps(e[2]) for e in events],
            )
            await conn.execute("SELECT pg_notify($1, $2)", EVENTS_CHANNEL, ",".join(map(str, traces)))
        if traces:
            # Addresses only the retracted hops reached are no longer part of those traces.
            await conn.execute(
                """DELETE FROM jobs j WHERE j.trace_id = ANY($1::bigint[]) AND j.kind = 'address'
                     AND NOT j.is_seed AND j.state = 'done'
                     AND NOT EXISTS (SELECT 1 FROM hops h WHERE h.trace_id = j.trace_id AND h.to_addr = j.address)""",
                traces,
            )
        deleted = await conn.execute(
            "DELETE FROM transfers WHERE chain = $1 AND block_number > $2", chain, fork_block)
        await conn.execute("DELETE FROM address_coverage WHERE chain = $1 AND from_block > $2", chain, fork_block)
        await conn.execute(
            "UPDATE address_coverage SET to_block = $2 WHERE chain = $1 AND to_block > $2", chain, fork_block)
        await conn.execute("DELETE FROM chain_blocks WHERE chain = $1 AND number > $2", chain, fork_block)
        await conn.execute(
            """UPDATE traces SET to_block = GREATEST(from_block, $2), updated_at = now()
               WHERE chain = $1 AND to_block > $2 AND status IN ('watching', 'done')""",
            chain, fork_block,
        )
    return Retraction(fork_block, len(gone), frozenset(traces), int(deleted.split()[-1]))
