"""SQL for indirect-exposure screening: the labels' version, so a cached answer is recomputed as
soon as a label is added, changed, published or removed."""

from __future__ import annotations

from tracer.store.sql import Conn


async def labels_version(conn: Conn) -> str:
    """Changes whenever the labels table does: a new or updated row moves max(updated_at) or
    max(id), a deleted one lowers the count."""
    row = await conn.fetchrow(
        "SELECT count(*) AS n, coalesce(max(id), 0) AS top, coalesce(max(updated_at)::text, '') AS at FROM labels")
    assert row is not None
    return f"{row['n']}:{row['top']}:{row['at']}"
