"""Subscriptions: creating one at an exact cut of the event sequence, reading, deleting, watching.

A new subscription gets every event numbered after it exists; with from_start, a trace
subscription also gets the trace's earlier events (queued in the same transaction).
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from tracer.domain.alerts import Deleted, NewSubscription, Subscription
from tracer.store import traces as trace_store
from tracer.store.event_filter import EVENT_COLUMNS, MATCH
from tracer.store.traces import Conn

__all__ = ["Deleted", "NewSubscription", "Subscription", "delete_subscription", "delivery_counts",
           "get_subscription", "insert_subscription", "list_subscriptions", "watch_trace"]


async def insert_subscription(conn: Conn, sub: NewSubscription) -> int:
    """Create a subscription; it gets every event numbered after it exists (with from_start, a
    trace subscription also gets the trace's earlier events)."""
    async with conn.transaction():
        # FOR SHARE waits for a running sequencing round and holds the next one off until we
        # commit, so the cut between "before" and "after" the subscription is exact.
        start: int = await conn.fetchval("SELECT last_seq FROM alert_state WHERE id = 1 FOR SHARE")
        # What the foreign keys into traces did before migration 026 (a reference table cannot
        # hold one on Citus): the trace must exist, and stays until we commit.
        for tid in sorted({t for t in (sub.trace_id, sub.watch_trace_id) if t is not None}):
            if await conn.fetchval("SELECT id FROM traces WHERE id = $1 FOR KEY SHARE", tid) is None:
                raise asyncpg.ForeignKeyViolationError(f"subscription names trace {tid}, which does not exist")
        sid: int = await conn.fetchval(
            """INSERT INTO subscriptions (name, delivery, url, secret, chain, trace_id, addresses, watch,
                   watch_trace_id, categories, entities, event_types, min_amount, created_by, api_key_id, start_seq,
                   min_usd, screen_depth, screen_confirmations)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::jsonb, $14, $15, $16, $17, $18, $19)
               RETURNING id""",
            sub.name, sub.delivery, sub.url, sub.secret, sub.chain, sub.trace_id, sub.addresses, sub.watch,
            sub.watch_trace_id, sub.categories, [e.lower() for e in sub.entities] if sub.entities else None,
            sub.event_types, {k: str(v) for k, v in sub.min_amount.items()} if sub.min_amount else None,
            sub.created_by, sub.api_key_id, 0 if sub.from_start else start, sub.min_usd, sub.screen_depth,
            sub.confirmations,
        )
        if sub.from_start and sub.delivery == "webhook" and start > 0:
            await conn.execute(
                """INSERT INTO deliveries (subscription_id, seq, event_id, trace_key)
                   SELECT s.id, ev.seq, ev.id, coalesce(ev.trace_id, 0)
                   FROM (SELECT """ + EVENT_COLUMNS + """ FROM events e
                         WHERE e.seq <= $2 AND ($3::bigint IS NULL OR e.trace_id = $3)) ev
                   JOIN subscriptions s ON s.id = $1 AND """ + MATCH + """
                   ON CONFLICT DO NOTHING""",
                sid, start, sub.trace_id,
            )
    return sid


_SUB_COLUMNS = """s.id, s.name, s.delivery, s.url, s.chain, s.trace_id, s.addresses, s.watch, s.watch_trace_id,
    s.categories, s.entities, s.event_types, s.min_amount, s.min_usd, s.created_by, s.created_at, s.start_seq,
    s.last_success_at, s.last_failure_at, s.last_error, s.api_key_id, s.screen_depth"""


async def get_subscription(conn: Conn, subscription_id: int) -> Subscription | None:
    row = await conn.fetchrow(f"SELECT {_SUB_COLUMNS} FROM subscriptions s WHERE s.id = $1", subscription_id)
    return _subscription(row) if row is not None else None


async def list_subscriptions(conn: Conn, *, before_id: int | None, limit: int,
                             trace_id: int | None = None) -> list[Subscription]:
    rows = await conn.fetch(
        f"""SELECT {_SUB_COLUMNS} FROM subscriptions s
            WHERE ($1::bigint IS NULL OR s.id < $1) AND ($2::bigint IS NULL OR s.trace_id = $2)
            ORDER BY s.id DESC LIMIT $3""",
        before_id, trace_id, limit,
    )
    return [_subscription(r) for r in rows]


def _subscription(r: asyncpg.Record) -> Subscription:
    return Subscription(
        id=r["id"], name=r["name"], delivery=r["delivery"], url=r["url"], chain=r["chain"], trace_id=r["trace_id"],
        addresses=r["addresses"], watch=r["watch"], watch_trace_id=r["watch_trace_id"], categories=r["categories"],
        entities=r["entities"], event_types=r["event_types"], min_amount=r["min_amount"], min_usd=r["min_usd"],
        created_by=r["created_by"], created_at=r["created_at"], start_seq=r["start_seq"],
        last_success_at=r["last_success_at"], last_failure_at=r["last_failure_at"], last_error=r["last_error"],
        api_key_id=r["api_key_id"], screen_depth=r["screen_depth"],
    )


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


async def delete_subscription(conn: Conn, subscription_id: int) -> Deleted | None:
    """Delete a subscription with its queue; returns it (None if unknown)."""
    async with conn.transaction():
        # A fan-out round in progress may have read this subscription: wait for it, and keep the
        # next one from starting until we commit (deliveries hold no key into it: migration 029).
        await conn.execute("SELECT 1 FROM alert_state WHERE id = 1 FOR SHARE")
        row = await conn.fetchrow("DELETE FROM subscriptions WHERE id = $1 RETURNING id, watch_trace_id",
                                  subscription_id)
        await conn.execute("DELETE FROM deliveries WHERE subscription_id = $1", subscription_id)
    return Deleted(row["id"], row["watch_trace_id"]) if row is not None else None


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
