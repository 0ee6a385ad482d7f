"""SQL for how a trace read its prior balances (schemas/migrations/009_balance_method.sql)."""

from __future__ import annotations

from tracer.store.sql import Conn

# A trace's note only moves up this scale: a trace that derived any balance says so, whichever
# batch (or chain) came last.
_RANK_SQL = """CASE {col} WHEN 'not_needed' THEN 0 WHEN 'node_state' THEN 1
                          WHEN 'derived_from_history' THEN 2 ELSE -1 END"""


async def note_balance_method(conn: Conn, trace_id: int, method: str, reason: str, *, replace: bool = False) -> None:
    """Record `method` and its reason on the trace unless it already names one at least as strong
    (or the same method with `replace` false: the first reason stays)."""
    new_rank = _RANK_SQL.format(col="$2::text")
    old_rank = _RANK_SQL.format(col="balance_method")
    await conn.execute(
        f"""UPDATE traces SET balance_method = $2, balance_method_reason = $3
            WHERE id = $1 AND ({new_rank} > {old_rank} OR ($4 AND balance_method = $2))""",
        trace_id, method, reason, replace,
    )
