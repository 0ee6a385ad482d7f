"""SQL for indirect-exposure screening: the labels' version, so a cached answer is recomputed as
soon as a label is added, changed, published or removed; and the subscriptions that screen their
addresses' new inflows (tracer/alerts/screening.py)."""

from __future__ import annotations

from dataclasses import dataclass

from tracer.store.sql import Conn


async def labels_version(conn: Conn) -> str:
    """Changes whenever the labels table does: a new or updated row moves max(updated_at) or
    max(id), a deleted one lowers the count."""
    row = await conn.fetchrow(
        "SELECT count(*) AS n, coalesce(max(id), 0) AS top, coalesce(max(updated_at)::text, '') AS at FROM labels")
    assert row is not None
    return f"{row['n']}:{row['top']}:{row['at']}"


@dataclass(frozen=True, slots=True)
class ScreeningWatch:
    """A subscription that screens its addresses' new inflows (migration 024)."""

    id: int
    addresses: list[str]
    depth: int
    confirmations: int
    screened_to: int | None  # None: never looked yet


async def watches(conn: Conn, chain: str) -> list[ScreeningWatch]:
    rows = await conn.fetch(
        """SELECT id, addresses, screen_depth, screen_confirmations, screened_to FROM subscriptions
           WHERE chain = $1 AND screen_depth IS NOT NULL AND addresses IS NOT NULL ORDER BY id""", chain)
    return [ScreeningWatch(r["id"], list(r["addresses"]), r["screen_depth"], r["screen_confirmations"],
                           r["screened_to"]) for r in rows]


async def move_screened(conn: Conn, subscription_id: int, old: int | None, new: int) -> bool:
    """Record that inflows up to block `new` were screened, if nobody did since `old` was read
    (two monitors, or a monitor that lost its lead, never screen one range twice)."""
    done = await conn.fetchval(
        """UPDATE subscriptions SET screened_to = $3 WHERE id = $1 AND screened_to IS NOT DISTINCT FROM $2
           RETURNING id""", subscription_id, old, new)
    return done is not None
