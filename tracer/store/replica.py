"""WAL positions of the primary and of a streaming replica: what read-your-writes routing compares."""

from __future__ import annotations

from tracer.store.traces import Conn


async def written_lsn(conn: Conn) -> int:
    """The primary's WAL insert position (bytes): every commit so far lies before it. Not
    pg_current_wal_lsn(), the write position: with asynchronous commit a commit record can still
    sit in the WAL buffers, past it, and a replica at that position would not show it yet."""
    return int(await conn.fetchval("SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint"))


async def replayed_lsn(conn: Conn) -> int:
    """How far a standby has replayed the primary's WAL (bytes). A server that is not in recovery
    (a URL that reaches the primary itself) has everything: its own current position."""
    value = await conn.fetchval(
        """SELECT (CASE WHEN pg_is_in_recovery() THEN COALESCE(pg_last_wal_replay_lsn(), '0/0'::pg_lsn)
                        ELSE pg_current_wal_lsn() END - '0/0'::pg_lsn)::bigint""")
    return int(value)
