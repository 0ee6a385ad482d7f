"""SQL for a trace's jobs: the frontier of addresses to expand, their leases, and the verdicts
(role, reason, entity) recorded on them.

Claims and completions are one statement per batch; lookups of a batch of addresses probe an index
once per address (see tracer.store.traces)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from tracer.domain.records import Job
from tracer.domain.verdicts import Judged
from tracer.store.sql import TRACE_CHAIN, Conn


async def claim_jobs(
    conn: Conn, worker: str, limit: int, lease_seconds: float, chains: Sequence[str] | None = None,
    other_than: Sequence[int] = (),
) -> list[Job]:
    """Claim up to `limit` runnable jobs of one trace in one statement.

    Lapsed leases (a killed worker) are runnable again. Claims stay within one trace and one of
    its chains so a batch shares one chain, one block window and one policy; start jobs go first
    so a trace's seeds get going. `chains` limits the claim to the chains the worker has a node
    for: in a fleet where only some workers read Bitcoin, the others leave its jobs alone instead
    of failing them.

    The trace is the one whose runnable job waits longest (updated_at: when it was queued or woken),
    not the lowest id: when a block wakes a hundred watching traces, each gets its step before any
    of them goes a hop further, and a new trace is not starved by older big ones. The job that
    picks it is locked and skipped by concurrent claims, so two claims at once take two traces
    rather than one taking the batch and the other nothing. `other_than`: traces not to pick (those
    the caller is already running a batch of).
    """
    rows = await conn.fetch(
        """WITH pick AS (
               SELECT j.trace_id, j.chain FROM jobs j JOIN traces t ON t.id = j.trace_id
               WHERE j.state <> 'done' AND (j.lease_until IS NULL OR j.lease_until < now())
                 AND t.status IN ('queued', 'running')
                 AND ($4::text[] IS NULL OR j.chain = ANY($4::text[])) AND j.trace_id <> ALL($5::bigint[])
               ORDER BY j.updated_at, j.trace_id, (j.chain = t.chain) DESC, j.chain LIMIT 1
               FOR UPDATE OF j SKIP LOCKED
           ), c AS (
               SELECT j.trace_id, j.chain, j.address FROM jobs j, pick
               WHERE j.trace_id = pick.trace_id AND j.chain = pick.chain AND j.state <> 'done'
                 AND (j.lease_until IS NULL OR j.lease_until < now())
               ORDER BY (j.kind = 'start') DESC, j.depth, j.address
               LIMIT $1 FOR UPDATE OF j SKIP LOCKED
           )
           UPDATE jobs j SET state = 'running', worker = $2, attempts = j.attempts + 1,
                  lease_until = now() + make_interval(secs => $3), updated_at = now()
           FROM c WHERE j.trace_id = c.trace_id AND j.chain = c.chain AND j.address = c.address
           RETURNING j.trace_id, j.address, j.kind, j.depth, j.is_seed, j.generation, j.attempts, j.chain""",
        limit, worker, lease_seconds, list(chains) if chains is not None else None, list(other_than),
    )
    return [Job(r["trace_id"], r["address"], r["kind"], r["depth"], r["is_seed"], r["generation"], r["attempts"],
                r["chain"]) for r in rows]


async def any_runnable(conn: Conn, chains: Sequence[str] | None = None) -> bool:
    """Whether a job of a live trace (on one of `chains`, when given) is still to be done."""
    return bool(await conn.fetchval(
        """SELECT EXISTS (SELECT 1 FROM jobs j JOIN traces t ON t.id = j.trace_id
           WHERE j.state <> 'done' AND t.status IN ('queued', 'running')
             AND ($1::text[] IS NULL OR j.chain = ANY($1::text[])))""",
        list(chains) if chains is not None else None,
    ))


async def extend_leases(conn: Conn, worker: str, jobs: Sequence[Job], lease_seconds: float) -> None:
    await conn.execute(
        """UPDATE jobs SET lease_until = now() + make_interval(secs => $4)
           WHERE trace_id = $1 AND chain = $5 AND address = ANY($2::text[]) AND worker = $3 AND state = 'running'""",
        jobs[0].trace_id, [j.address for j in jobs], worker, lease_seconds, jobs[0].chain,
    )


async def release_jobs(conn: Conn, worker: str, jobs: Sequence[Job], delay_seconds: float) -> None:
    """Give jobs back to the frontier after a transient failure, not before `delay_seconds`."""
    if not jobs:
        return
    await conn.execute(
        """UPDATE jobs SET state = 'pending', worker = NULL,
                  lease_until = now() + make_interval(secs => $4), updated_at = now()
           WHERE trace_id = $1 AND chain = $5 AND address = ANY($2::text[]) AND worker = $3 AND state = 'running'""",
        jobs[0].trace_id, [j.address for j in jobs], worker, delay_seconds, jobs[0].chain,
    )


async def complete_jobs(conn: Conn, worker: str, jobs: Sequence[Job]) -> int:
    """Mark our jobs done, or pending again when new taint arrived while we ran (generation moved).

    Returns how many were still ours: a job whose lease lapsed and that another worker took over
    is left to that worker.
    """
    if not jobs:
        return 0
    result = await conn.execute(
        """UPDATE jobs j SET state = CASE WHEN j.generation = g.gen THEN 'done' ELSE 'pending' END,
                  lease_until = NULL, worker = NULL, updated_at = now()
           FROM unnest($2::text[], $3::int[]) AS g(address, gen)
           WHERE j.trace_id = $1 AND j.chain = $5 AND j.address = g.address AND j.worker = $4
             AND j.state = 'running'""",
        jobs[0].trace_id, [j.address for j in jobs], [j.generation for j in jobs], worker, jobs[0].chain,
    )
    return int(result.split()[-1])


async def still_ours(conn: Conn, worker: str, jobs: Sequence[Job]) -> set[str]:
    """Addresses whose lease we still hold (locked until the caller's transaction ends)."""
    rows = await conn.fetch(
        """SELECT j.address FROM unnest($2::text[]) AS a(address)
           CROSS JOIN LATERAL (SELECT address FROM jobs WHERE trace_id = $1 AND chain = $4 AND address = a.address
                                 AND worker = $3 AND state = 'running' OFFSET 0) s
           JOIN jobs j ON j.trace_id = $1 AND j.chain = $4 AND j.address = s.address
           -- repeated on j: after waiting for a lock, Postgres re-checks j's conditions only
           WHERE j.worker = $3 AND j.state = 'running'
           FOR UPDATE OF j""",
        jobs[0].trace_id, [j.address for j in jobs], worker, jobs[0].chain,
    )
    return {r["address"] for r in rows}


# A job woken again keeps its smallest depth; one running gets its generation bumped (see enqueue).
_WAKE = """ON CONFLICT (trace_id, chain, address) DO UPDATE SET
               depth = LEAST(jobs.depth, excluded.depth),
               generation = jobs.generation + 1,
               state = CASE WHEN jobs.state = 'done' AND jobs.role IS DISTINCT FROM 'exit'
                            THEN 'pending' ELSE jobs.state END,
               updated_at = now()"""


async def enqueue(conn: Conn, trace_id: int, children: Iterable[tuple[str, int]], chain: str | None = None) -> None:
    """Put addresses (of `chain`, default the trace's own) on the frontier, or wake them again
    when new flagged money reached them.

    A waking job keeps its smallest depth; a job that is running gets its generation bumped, so
    the worker finishing it re-queues it instead of marking it done on stale inputs.
    """
    pairs = list(children)
    if not pairs:
        return
    await conn.execute(
        f"""INSERT INTO jobs (trace_id, chain, address, kind, depth)
           SELECT $1, {TRACE_CHAIN.format(arg="$4")}, a, 'address', d FROM unnest($2::text[], $3::int[]) AS c(a, d)
           {_WAKE}""",
        trace_id, [a for a, _ in pairs], [d for _, d in pairs], chain,
    )


async def enqueue_traces(conn: Conn, wakes: Sequence[tuple[int, str, int]]) -> None:
    """`enqueue` for many traces at once, each on its own chain: (trace id, address, depth) in one
    statement (the monitor wakes every watching trace a block moved in one transaction)."""
    if not wakes:
        return
    await conn.execute(
        f"""INSERT INTO jobs (trace_id, chain, address, kind, depth)
           SELECT c.t, tr.chain, c.a, 'address', c.d
           FROM unnest($1::bigint[], $2::text[], $3::int[]) AS c(t, a, d) JOIN traces tr ON tr.id = c.t
           {_WAKE}""",
        [t for t, _, _ in wakes], [a for _, a, _ in wakes], [d for _, _, d in wakes],
    )


async def lower_depths(conn: Conn, trace_id: int, depths: Sequence[tuple[str, int]], chain: str | None = None) -> None:
    """Lower the depth of addresses (of `chain`) already on the trace to these, where smaller.

    A hop into an address judged already (an exit, a stop) wakes nobody, so `enqueue` never sees
    it; its depth must still follow the shortest path however the workers' batches fell, or the
    recorded depth of an exit would say which path a worker happened to find first."""
    if not depths:
        return
    await conn.execute(
        f"""UPDATE jobs SET depth = x.d, updated_at = now()
           FROM unnest($2::text[], $3::int[]) AS x(a, d)
           WHERE jobs.trace_id = $1 AND jobs.chain = {TRACE_CHAIN.format(arg="$4")} AND jobs.address = x.a
             AND jobs.depth > x.d""",
        trace_id, [a for a, _ in depths], [d for _, d in depths], chain,
    )


async def set_verdicts(conn: Conn, trace_id: int, verdicts: Sequence[tuple[str, int, str, str, str | None,
                                                                         str | None, dict[str, Any] | None]],
                       chain: str | None = None) -> None:
    """Record each address's role in the trace: (address, depth, role, reason, entity, category,
    evidence), on `chain` (default the trace's own). Exits found from labels get a finished job
    row so they are never processed."""
    if not verdicts:
        return
    await conn.execute(
        f"""INSERT INTO jobs (trace_id, chain, address, kind, depth, state, role, reason, entity, category, evidence)
           SELECT $1, {TRACE_CHAIN.format(arg="$9")}, v.a, 'address', v.d, 'done', v.role, v.reason, v.entity,
                  v.category, v.evidence::jsonb
           FROM unnest($2::text[], $3::int[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[])
                AS v(a, d, role, reason, entity, category, evidence)
           ON CONFLICT (trace_id, chain, address) DO UPDATE SET
               depth = LEAST(jobs.depth, excluded.depth), role = excluded.role, reason = excluded.reason,
               entity = excluded.entity, category = excluded.category, evidence = excluded.evidence,
               updated_at = now()""",
        trace_id,
        [v[0] for v in verdicts], [v[1] for v in verdicts], [v[2] for v in verdicts],
        [v[3] for v in verdicts], [v[4] for v in verdicts], [v[5] for v in verdicts],
        [json.dumps(v[6]) if v[6] is not None else None for v in verdicts], chain,
    )


async def node_verdicts(conn: Conn, trace_id: int, addresses: Sequence[str],
                        chain: str | None = None) -> dict[str, Judged]:
    """The trace's verdicts on these addresses (of the ones it reached), by address."""
    rows = await conn.fetch(
        f"""SELECT j.* FROM (SELECT DISTINCT a FROM unnest($2::text[]) AS a) a
           CROSS JOIN LATERAL (SELECT * FROM jobs WHERE trace_id = $1 AND chain = {TRACE_CHAIN.format(arg="$3")}
                                 AND address = a.a OFFSET 0) j""",
        trace_id, list(addresses), chain,
    )
    return {r["address"]: Judged(r["role"], r["reason"], r["category"], r["evidence"], r["entity"], r["depth"])
            for r in rows}
