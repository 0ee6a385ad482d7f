"""SQL for traces, their jobs (the frontier), hops, chain transfers and the event outbox.

Every write here is idempotent (ON CONFLICT on natural keys) and batched: one statement per batch
of rows, never one round trip per row.

Lookups of a batch of addresses probe an index once per address (`unnest` of the list, then a
LATERAL subquery fenced with OFFSET 0 so the planner cannot flatten it), rather than `col =
ANY($list)`. With `= ANY` the plan depends on statistics: before the first ANALYZE of tables that
grow during a trace (every new database, or autovacuum off) the planner prefers scanning all of
the trace's rows through a shorter index, so each batch read the whole trace and a trace slowed
down quadratically (load_transfers took 240 ms a batch at 30k transfers instead of 1 ms).
"""


from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from tracer.domain.records import ChainWindow
from tracer.store.hops import (
    hop_evidence,
    inflow_hops,
    mark_hops_into,
    refresh_exits,
    reopen_hops_into,
    upsert_hops,
)
from tracer.store.jobs import (
    any_runnable,
    claim_jobs,
    complete_jobs,
    enqueue,
    extend_leases,
    lower_depths,
    node_verdicts,
    release_jobs,
    set_verdicts,
    still_ours,
)
from tracer.store.reads import all_hops, bridge_verdicts, exits, get_trace, hop_count, stops
from tracer.store.sql import Conn
from tracer.store.transfers import coverage, load_transfers, set_coverage, store_transfers

# The trace tables' SQL lives in one module per table (jobs, hops, transfers; reads for reading
# results); callers keep importing it from here as `store`.
__all__ = [
    "Conn",
    "add_hop_count",
    "all_hops",
    "any_runnable",
    "bridge_verdicts",
    "cancel_trace",
    "chain_window",
    "chain_windows",
    "claim_jobs",
    "complete_jobs",
    "coverage",
    "delete_trace",
    "enqueue",
    "exits",
    "extend_leases",
    "fail_trace",
    "get_trace",
    "hop_count",
    "hop_evidence",
    "inflow_hops",
    "insert_events",
    "insert_trace",
    "load_transfers",
    "lower_depths",
    "mark_hops_into",
    "node_verdicts",
    "note_hop_limit",
    "open_chain_window",
    "refresh_exits",
    "release_jobs",
    "reopen_hops_into",
    "set_coverage",
    "set_verdicts",
    "start_trace",
    "still_ours",
    "stops",
    "store_transfers",
    "trace_progress",
    "try_finish_trace",
    "upsert_hops",
]


# ---------------------------------------------------------------- traces


async def insert_trace(
    conn: Conn,
    *,
    chain: str,
    seeds: Sequence[str],
    policy: dict[str, Any],
    label: str | None,
    from_block: int,
    to_block: int,
    created_by: str | None = None,
) -> int:
    """Create a queued trace and its start job in one transaction."""
    async with conn.transaction():
        trace_id: int = await conn.fetchval(
            """INSERT INTO traces (chain, seeds, policy, label, from_block, to_block, created_by)
               VALUES ($1, $2, $3::jsonb, $4, $5, $6, $7) RETURNING id""",
            chain, list(seeds), policy, label, from_block, to_block, created_by,
        )
        await conn.execute(
            "INSERT INTO jobs (trace_id, chain, address, kind, depth) VALUES ($1, $2, '', 'start', 0)", trace_id, chain
        )
        await insert_events(conn, [(trace_id, "trace_created", {"seeds": list(seeds)})])
    return trace_id


async def trace_progress(conn: Conn, trace_id: int) -> dict[str, int]:
    row = await conn.fetchrow(
        """SELECT
             (SELECT count(*) FROM jobs WHERE trace_id = $1 AND kind = 'address') AS addresses,
             (SELECT count(*) FROM jobs WHERE trace_id = $1 AND state <> 'done') AS frontier,
             (SELECT count(*) FROM hops WHERE trace_id = $1) AS hops,
             (SELECT count(*) FROM hops WHERE trace_id = $1 AND status = 'exit') AS exit_hops""",
        trace_id,
    )
    return dict(row) if row else {}


async def start_trace(conn: Conn, trace_id: int, totals: dict[str, int], seed_jobs: Sequence[str]) -> None:
    """Record the seeds' totals and put the seeds on the frontier."""
    await conn.execute(
        """UPDATE traces SET totals = $2::jsonb, status = 'running', started_at = coalesce(started_at, now()),
                  updated_at = now() WHERE id = $1 AND status IN ('queued', 'running')""",
        trace_id, {k: str(v) for k, v in totals.items()},
    )
    await conn.execute(
        """INSERT INTO jobs (trace_id, chain, address, kind, depth, is_seed)
           SELECT $1, (SELECT chain FROM traces WHERE id = $1), a, 'address', 0, true FROM unnest($2::text[]) AS a
           ON CONFLICT (trace_id, chain, address) DO NOTHING""",
        trace_id, list(seed_jobs),
    )


async def fail_trace(conn: Conn, trace_id: int, error: str) -> None:
    async with conn.transaction():
        updated = await conn.fetchval(
            """UPDATE traces SET status = 'failed', error = $2, finished_at = now(), updated_at = now()
               WHERE id = $1 AND status IN ('queued', 'running') RETURNING id""",
            trace_id, error,
        )
        if updated:
            await conn.execute("UPDATE jobs SET state = 'done', lease_until = NULL WHERE trace_id = $1", trace_id)
            await insert_events(conn, [(trace_id, "trace_failed", {"error": error})])


async def try_finish_trace(conn: Conn, trace_id: int) -> bool:
    """Mark the trace done when its frontier is empty. Run after the caller's own commit, so the
    last worker to commit always sees every other worker's finished jobs.

    A trace whose policy says `watch` is not done: it becomes `watching` (caught up with its
    window) and the alert monitor extends its window as new blocks are confirmed."""
    async with conn.transaction():
        row = await conn.fetchrow(
            """UPDATE traces SET
                   status = CASE WHEN coalesce((policy->>'watch')::boolean, false) THEN 'watching' ELSE 'done' END,
                   finished_at = CASE WHEN coalesce((policy->>'watch')::boolean, false) THEN NULL ELSE now() END,
                   updated_at = now()
               WHERE id = $1 AND status = 'running'
                 AND NOT EXISTS (SELECT 1 FROM jobs WHERE trace_id = $1 AND state <> 'done')
               RETURNING status, hop_limit_reached, to_block""",
            trace_id,
        )
        status = row["status"] if row is not None else None
        if row is not None:
            counts: dict[str, Any] = dict(await trace_progress(conn, trace_id))
            if row["hop_limit_reached"]:
                # Addresses were left unexpanded (jobs stopped with reason max_hops): the result is partial.
                counts["hop_limit_reached"] = True
            if status == "watching":
                counts["to_block"] = row["to_block"]
            await insert_events(conn, [(trace_id, "trace_finished" if status == "done" else "trace_watching", counts)])
    return bool(status)


async def trace_status(conn: Conn, trace_id: int) -> str | None:
    """The trace's status; None when there is no such trace."""
    status: str | None = await conn.fetchval("SELECT status FROM traces WHERE id = $1", trace_id)
    return status


async def cancel_trace(conn: Conn, trace_id: int) -> bool:
    """Stop a queued or running trace: workers only claim jobs of queued/running traces, so once
    this commits no new batch starts (a batch in flight still commits what it found)."""
    async with conn.transaction():
        done = await conn.fetchval(
            """UPDATE traces SET status = 'cancelled', finished_at = now(), updated_at = now()
               WHERE id = $1 AND status IN ('queued', 'running', 'watching') RETURNING id""",
            trace_id,
        )
        if done:
            await conn.execute(
                "UPDATE jobs SET state = 'done', lease_until = NULL WHERE trace_id = $1 AND state <> 'done'",
                trace_id)
            await insert_events(conn, [(trace_id, "trace_cancelled", {})])
    return bool(done)


async def delete_trace(conn: Conn, trace_id: int) -> bool:
    """Delete a trace with its jobs, hops (ON DELETE CASCADE), events and their deliveries, the
    subscriptions to it, and the link of a watchlist subscription to it; chain facts stay."""
    async with conn.transaction():
        if not await conn.fetchval("DELETE FROM traces WHERE id = $1 RETURNING id", trace_id):
            return False
        # No fan-out round runs until we commit (deliveries hold no keys: migration 029).
        await conn.execute("SELECT 1 FROM alert_state WHERE id = 1 FOR SHARE")
        # Events are keyed by trace_key, not held by a key into traces (migration 028).
        await conn.execute("DELETE FROM events WHERE trace_key = $1", trace_id)
        await conn.execute("DELETE FROM deliveries WHERE trace_key = $1", trace_id)
        # Subscriptions are a reference table on Citus, which cannot hold a foreign key into the
        # distributed traces (migration 026): what their keys did on delete is done here.
        await conn.execute(
            """WITH gone AS (DELETE FROM subscriptions WHERE trace_id = $1 RETURNING id)
               DELETE FROM deliveries WHERE subscription_id IN (SELECT id FROM gone)""", trace_id)
        await conn.execute("UPDATE subscriptions SET watch_trace_id = NULL WHERE watch_trace_id = $1", trace_id)
    return True


# ---------------------------------------------------------------- chain windows


async def chain_window(conn: Conn, trace_id: int, chain: str) -> ChainWindow | None:
    """The block window of `chain` in the trace: the trace's own for its own chain, else the one
    recorded when the trace first continued there (None: it never did)."""
    row = await conn.fetchrow(
        """SELECT chain, from_block, to_block FROM traces WHERE id = $1 AND chain = $2
           UNION ALL
           SELECT chain, from_block, to_block FROM trace_chains WHERE trace_id = $1 AND chain = $2""",
        trace_id, chain,
    )
    return ChainWindow(row["chain"], row["from_block"], row["to_block"]) if row else None


async def open_chain_window(conn: Conn, trace_id: int, chain: str, from_block: int, to_block: int) -> ChainWindow:
    """Record the window of a chain the trace continues into. The first continuation fixes the
    end (that chain's head then), so every worker reads the same blocks; an earlier deposit only
    moves the start back."""
    row = await conn.fetchrow(
        """INSERT INTO trace_chains (trace_id, chain, from_block, to_block) VALUES ($1, $2, $3, $4)
           ON CONFLICT (trace_id, chain) DO UPDATE SET from_block = LEAST(trace_chains.from_block, excluded.from_block)
           RETURNING chain, from_block, to_block""",
        trace_id, chain, from_block, to_block,
    )
    return ChainWindow(row["chain"], row["from_block"], row["to_block"])


async def chain_windows(conn: Conn, trace_id: int) -> list[ChainWindow]:
    """The windows of the chains a trace continued into (not its own)."""
    rows = await conn.fetch(
        "SELECT chain, from_block, to_block FROM trace_chains WHERE trace_id = $1 ORDER BY chain", trace_id)
    return [ChainWindow(r["chain"], r["from_block"], r["to_block"]) for r in rows]


async def add_hop_count(conn: Conn, trace_id: int, inserted: int) -> None:
    """Count hops a commit inserted (policy.max_hops is checked against the count)."""
    if inserted:
        await conn.execute("UPDATE traces SET hop_count = hop_count + $2 WHERE id = $1", trace_id, inserted)


async def note_hop_limit(conn: Conn, trace_id: int) -> bool:
    """Record that the trace hit policy.max_hops; True the first time only."""
    return bool(await conn.fetchval(
        """UPDATE traces SET hop_limit_reached = true, updated_at = now()
           WHERE id = $1 AND NOT hop_limit_reached RETURNING id""", trace_id))


# ---------------------------------------------------------------- events (outbox)


async def insert_events(conn: Conn, events: Sequence[tuple[int | None, str, dict[str, Any]]]) -> None:
    if not events:
        return
    await conn.execute(
        """INSERT INTO events (trace_id, trace_key, type, payload)
           SELECT t, coalesce(t, 0), ty, p::jsonb FROM unnest($1::bigint[], $2::text[], $3::text[]) AS e(t, ty, p)""",
        [e[0] for e in events], [e[1] for e in events], [json.dumps(e[2]) for e in events],
    )
    await conn.execute("SELECT pg_notify('tracer_events', $1)", ",".join(sorted({str(e[0]) for e in events})))
