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
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any, TypeAlias

import asyncpg

from tracer.domain.records import ChainWindow, HopRow, Job, StoredTransfer
from tracer.domain.transfers import Transfer, TransferKind

Conn: TypeAlias = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy


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


async def get_trace(conn: Conn, trace_id: int) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow("SELECT * FROM traces WHERE id = $1", trace_id)
    return row


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
        status = await conn.fetchval(
            """UPDATE traces SET
                   status = CASE WHEN coalesce((policy->>'watch')::boolean, false) THEN 'watching' ELSE 'done' END,
                   finished_at = CASE WHEN coalesce((policy->>'watch')::boolean, false) THEN NULL ELSE now() END,
                   updated_at = now()
               WHERE id = $1 AND status = 'running'
                 AND NOT EXISTS (SELECT 1 FROM jobs WHERE trace_id = $1 AND state <> 'done')
               RETURNING status""",
            trace_id,
        )
        if status:
            counts: dict[str, Any] = dict(await trace_progress(conn, trace_id))
            if await conn.fetchval("SELECT hop_limit_reached FROM traces WHERE id = $1", trace_id):
                # Addresses were left unexpanded (jobs stopped with reason max_hops): the result is partial.
                counts["hop_limit_reached"] = True
            if status == "watching":
                counts["to_block"] = await conn.fetchval("SELECT to_block FROM traces WHERE id = $1", trace_id)
            await insert_events(conn, [(trace_id, "trace_finished" if status == "done" else "trace_watching", counts)])
    return bool(status)


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
    """Delete a trace with its jobs, hops and events (ON DELETE CASCADE); chain facts stay."""
    return bool(await conn.fetchval("DELETE FROM traces WHERE id = $1 RETURNING id", trace_id))


# ---------------------------------------------------------------- jobs


async def claim_jobs(
    conn: Conn, worker: str, limit: int, lease_seconds: float, chains: Sequence[str] | None = None
) -> list[Job]:
    """Claim up to `limit` runnable jobs of one trace in one statement.

    Lapsed leases (a killed worker) are runnable again. Claims stay within one trace and one of
    its chains so a batch shares one chain, one block window and one policy; start jobs go first
    so a trace's seeds get going. `chains` limits the claim to the chains the worker has a node
    for: in a fleet where only some workers read Bitcoin, the others leave its jobs alone instead
    of failing them.
    """
    rows = await conn.fetch(
        """WITH pick AS (
               SELECT j.trace_id, j.chain FROM jobs j JOIN traces t ON t.id = j.trace_id
               WHERE j.state <> 'done' AND (j.lease_until IS NULL OR j.lease_until < now())
                 AND t.status IN ('queued', 'running')
                 AND ($4::text[] IS NULL OR j.chain = ANY($4::text[]))
               ORDER BY j.trace_id, (j.chain = t.chain) DESC, j.chain LIMIT 1
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
        limit, worker, lease_seconds, list(chains) if chains is not None else None,
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


_CHAIN = "coalesce({arg}::text, (SELECT chain FROM traces WHERE id = $1))"
"""SQL for a chain argument: None means the trace's own chain."""


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
           SELECT $1, {_CHAIN.format(arg="$4")}, a, 'address', d FROM unnest($2::text[], $3::int[]) AS c(a, d)
           ON CONFLICT (trace_id, chain, address) DO UPDATE SET
               depth = LEAST(jobs.depth, excluded.depth),
               generation = jobs.generation + 1,
               state = CASE WHEN jobs.state = 'done' AND jobs.role IS DISTINCT FROM 'exit'
                            THEN 'pending' ELSE jobs.state END,
               updated_at = now()""",
        trace_id, [a for a, _ in pairs], [d for _, d in pairs], chain,
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
           SELECT $1, {_CHAIN.format(arg="$9")}, v.a, 'address', v.d, 'done', v.role, v.reason, v.entity,
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
                        chain: str | None = None) -> dict[str, asyncpg.Record]:
    rows = await conn.fetch(
        f"""SELECT j.* FROM (SELECT DISTINCT a FROM unnest($2::text[]) AS a) a
           CROSS JOIN LATERAL (SELECT * FROM jobs WHERE trace_id = $1 AND chain = {_CHAIN.format(arg="$3")}
                                 AND address = a.a OFFSET 0) j""",
        trace_id, list(addresses), chain,
    )
    return {r["address"]: r for r in rows}


# ---------------------------------------------------------------- transfers (chain facts)


async def store_transfers(conn: Conn, transfers: Sequence[Transfer]) -> None:
    """Insert chain transfers, skipping ones already known (but giving a time to one stored without:
    the worker fetches without reading headers); one COPY and one INSERT per batch."""
    if not transfers:
        return
    async with conn.transaction():
        await conn.execute(
            """CREATE TEMP TABLE IF NOT EXISTS transfers_in
               (LIKE transfers INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"""
        )
        await conn.copy_records_to_table(
            "transfers_in",
            columns=["chain", "tx_hash", "position", "block_number", "block_time", "tx_index", "from_addr",
                     "to_addr", "asset", "amount", "kind", "decimals", "symbol"],
            records=[(t.chain, t.tx_hash, t.position, t.block_number, t.block_time, t.tx_index, t.from_address,
                      t.to_address, t.asset, Decimal(t.amount), str(t.kind), t.decimals, t.symbol)
                     for t in transfers],
        )
        await conn.execute(
            """INSERT INTO transfers (chain, tx_hash, position, block_number, block_time, tx_index, from_addr,
                                      to_addr, asset, amount, kind, decimals, symbol)
               SELECT DISTINCT ON (chain, tx_hash, position)
                      chain, tx_hash, position, block_number, block_time, tx_index, from_addr, to_addr, asset,
                      amount, kind, decimals, symbol FROM transfers_in
               ORDER BY chain, tx_hash, position, block_time DESC
               ON CONFLICT (chain, tx_hash, position) DO UPDATE SET block_time = excluded.block_time
               WHERE transfers.block_time < 0 AND excluded.block_time >= 0"""
        )


async def coverage(conn: Conn, chain: str, addresses: Sequence[str]) -> dict[str, tuple[int, int]]:
    rows = await conn.fetch(
        """SELECT c.address, c.from_block, c.to_block FROM (SELECT DISTINCT a FROM unnest($2::text[]) AS a) a
           CROSS JOIN LATERAL (SELECT * FROM address_coverage WHERE chain = $1 AND address = a.a OFFSET 0) c""",
        chain, list(addresses),
    )
    return {r["address"]: (r["from_block"], r["to_block"]) for r in rows}


async def set_coverage(conn: Conn, chain: str, addresses: Sequence[str], from_block: int, to_block: int) -> None:
    """Widen each address's known range; only contiguous or overlapping ranges are merged, since
    a gap would claim blocks we never fetched."""
    await conn.execute(
        """INSERT INTO address_coverage (chain, address, from_block, to_block)
           SELECT $1, a, $3, $4 FROM unnest($2::text[]) AS a
           ON CONFLICT (chain, address) DO UPDATE SET
             from_block = CASE WHEN excluded.to_block + 1 >= address_coverage.from_block
                                AND excluded.from_block <= address_coverage.to_block + 1
                               THEN LEAST(address_coverage.from_block, excluded.from_block)
                               ELSE excluded.from_block END,
             to_block = CASE WHEN excluded.to_block + 1 >= address_coverage.from_block
                              AND excluded.from_block <= address_coverage.to_block + 1
                             THEN GREATEST(address_coverage.to_block, excluded.to_block)
                             ELSE excluded.to_block END""",
        chain, list(addresses), from_block, to_block,
    )


def _transfer(r: asyncpg.Record) -> StoredTransfer:
    return StoredTransfer(
        r["id"],
        Transfer(
            chain=r["chain"], block_number=r["block_number"], block_time=r["block_time"], tx_hash=r["tx_hash"],
            tx_index=r["tx_index"], position=r["position"], from_address=r["from_addr"], to_address=r["to_addr"],
            asset=r["asset"], amount=int(r["amount"]), kind=TransferKind(r["kind"]), decimals=r["decimals"],
            symbol=r["symbol"],
        ),
    )


async def load_transfers(
    conn: Conn, chain: str, addresses: Sequence[str], from_block: int, to_block: int
) -> list[StoredTransfer]:
    """All stored transfers into or out of the addresses within the block range (each once)."""
    # Two index probes per address; a transfer between two listed addresses (or to itself) comes
    # from its sender's probe only, so no de-duplicating sort of every column is needed.
    rows = await conn.fetch(
        """SELECT t.* FROM (SELECT DISTINCT a FROM unnest($2::text[]) AS a) a
           CROSS JOIN LATERAL (
               SELECT * FROM transfers WHERE chain = $1 AND from_addr = a.a AND block_number BETWEEN $3 AND $4
               UNION ALL
               SELECT * FROM transfers WHERE chain = $1 AND to_addr = a.a AND block_number BETWEEN $3 AND $4
                 AND from_addr <> ALL($2::text[])
               OFFSET 0) t""",
        chain, list(addresses), from_block, to_block,
    )
    return [_transfer(r) for r in rows]


# ---------------------------------------------------------------- hops


async def inflow_hops(conn: Conn, trace_id: int, addresses: Sequence[str],
                      chain: str | None = None) -> list[asyncpg.Record]:
    """Flagged money that reached the addresses (on `chain`): hops into them, with their block."""
    rows: list[asyncpg.Record] = await conn.fetch(
        f"""SELECT h.transfer_id, h.to_addr, h.asset, h.amount, h.depth, h.block_number
           FROM (SELECT DISTINCT a FROM unnest($2::text[]) AS a) a
           CROSS JOIN LATERAL (SELECT transfer_id, to_addr, asset, amount, depth, block_number FROM hops
                               WHERE trace_id = $1 AND to_addr = a.a AND chain = {_CHAIN.format(arg="$3")}
                               OFFSET 0) h""",
        trace_id, list(addresses), chain,
    )
    return rows


async def upsert_hops(conn: Conn, trace_id: int, hops: Sequence[HopRow]) -> list[asyncpg.Record]:
    """Write hops; return the ones that are new or whose amount grew (their recipients need
    another look). Unchanged hops are not rewritten. A hop without a chain is on the trace's own."""
    if not hops:
        return []
    rows: list[asyncpg.Record] = await conn.fetch(
        f"""INSERT INTO hops (trace_id, transfer_id, from_addr, to_addr, asset, block_number, depth, amount, share,
                             kind, status, reason, parents, confidence, chain, evidence)
           SELECT $1, h.tid, h.fa, h.ta, h.asset, h.block, h.depth, h.amount, h.share, h.kind, h.status, h.reason,
                  CASE WHEN h.parents = '' THEN '{{}}'::bigint[] ELSE string_to_array(h.parents, ',')::bigint[] END,
                  h.conf, {_CHAIN.format(arg="h.chain")}, h.evidence::jsonb
           FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::int[], $8::numeric[],
                       $9::float8[], $10::text[], $11::text[], $12::text[], $13::text[], $14::float8[], $15::text[],
                       $16::text[])
                AS h(tid, fa, ta, asset, block, depth, amount, share, kind, status, reason, parents, conf, chain,
                     evidence)
           ON CONFLICT (trace_id, transfer_id) DO UPDATE SET
               amount = excluded.amount, share = excluded.share, depth = LEAST(hops.depth, excluded.depth),
               status = excluded.status, reason = excluded.reason, parents = excluded.parents,
               confidence = excluded.confidence, evidence = excluded.evidence, updated_at = now()
           WHERE (hops.amount, hops.status, hops.reason, hops.depth, hops.evidence)
                 IS DISTINCT FROM (excluded.amount, excluded.status, excluded.reason, LEAST(hops.depth, excluded.depth),
                                   excluded.evidence)
           RETURNING transfer_id, to_addr, asset, amount, status, depth, chain, (xmax = 0) AS inserted""",
        trace_id,
        [h.transfer_id for h in hops], [h.from_addr for h in hops], [h.to_addr for h in hops],
        [h.asset for h in hops], [h.block_number for h in hops], [h.depth for h in hops],
        [Decimal(h.amount) for h in hops], [h.share for h in hops], [h.kind for h in hops],
        [h.status for h in hops], [h.reason for h in hops], [",".join(map(str, h.parents)) for h in hops],
        [h.confidence for h in hops], [h.chain for h in hops],
        [json.dumps(h.evidence) if h.evidence is not None else None for h in hops],
    )
    return rows


async def mark_hops_into(conn: Conn, trace_id: int, addresses: Sequence[str], status: str, reason: str,
                         chain: str | None = None) -> None:
    """Once an address (of `chain`) is classified (exit by behaviour, hub, ...), the hops into it say why."""
    await conn.execute(
        f"""UPDATE hops SET status = $3, reason = $4, updated_at = now(),
               -- what a followed hop said before the stop: a lifted max_depth stop restores it
               followed_reason = CASE WHEN hops.status = 'followed' THEN hops.reason ELSE hops.followed_reason END
           FROM (SELECT DISTINCT a FROM unnest($2::text[]) AS a) a
           CROSS JOIN LATERAL (SELECT transfer_id FROM hops WHERE trace_id = $1 AND to_addr = a.a
                                 AND chain = {_CHAIN.format(arg="$5")}
                                 AND (status, reason) IS DISTINCT FROM ($3, $4) AND status <> 'stopped'
                               OFFSET 0) x
           WHERE hops.trace_id = $1 AND hops.transfer_id = x.transfer_id
             -- repeated on the row updated: re-checked if a concurrent writer changed it first
             AND (hops.status, hops.reason) IS DISTINCT FROM ($3, $4) AND hops.status <> 'stopped'""",
        trace_id, list(addresses), status, reason, chain,
    )


async def reopen_hops_into(conn: Conn, trace_id: int, addresses: Sequence[str], reason: str,
                           chain: str | None = None) -> list[asyncpg.Record]:
    """Hops into addresses (of `chain`) that a stop with `reason` marked, followed again with the
    reason they had before it (an address stopped at max_depth that a shorter path reached).
    Returns them as upsert_hops does (for their events)."""
    if not addresses:
        return []
    rows: list[asyncpg.Record] = await conn.fetch(
        f"""UPDATE hops SET status = 'followed', reason = coalesce(hops.followed_reason, 'flagged funds'),
                   followed_reason = NULL, updated_at = now()
           FROM (SELECT DISTINCT a FROM unnest($2::text[]) AS a) a
           CROSS JOIN LATERAL (SELECT transfer_id FROM hops WHERE trace_id = $1 AND to_addr = a.a
                                 AND chain = {_CHAIN.format(arg="$4")} AND status = 'stopped' AND reason = $3
                               OFFSET 0) x
           WHERE hops.trace_id = $1 AND hops.transfer_id = x.transfer_id AND hops.status = 'stopped'
             AND hops.reason = $3
           RETURNING hops.transfer_id, hops.to_addr, hops.asset, hops.amount, hops.status, hops.depth, hops.chain,
                     false AS inserted""",
        trace_id, list(addresses), reason, chain,
    )
    return rows


async def hop_evidence(conn: Conn, trace_id: int, transfer_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """The evidence recorded on hops (inferred hops merge what earlier batches found)."""
    rows = await conn.fetch(
        """SELECT transfer_id, evidence FROM hops
           WHERE trace_id = $1 AND transfer_id = ANY($2::bigint[]) AND evidence IS NOT NULL""",
        trace_id, list(transfer_ids),
    )
    out: dict[int, dict[str, Any]] = {}
    for r in rows:
        ev = r["evidence"]
        out[r["transfer_id"]] = json.loads(ev) if isinstance(ev, str) else dict(ev)
    return out


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


async def hop_count(conn: Conn, trace_id: int) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM hops WHERE trace_id = $1", trace_id))


# ---------------------------------------------------------------- events (outbox)


async def insert_events(conn: Conn, events: Sequence[tuple[int | None, str, dict[str, Any]]]) -> None:
    if not events:
        return
    await conn.execute(
        """INSERT INTO events (trace_id, type, payload)
           SELECT t, ty, p::jsonb FROM unnest($1::bigint[], $2::text[], $3::text[]) AS e(t, ty, p)""",
        [e[0] for e in events], [e[1] for e in events], [json.dumps(e[2]) for e in events],
    )
    await conn.execute("SELECT pg_notify('tracer_events', $1)", ",".join(sorted({str(e[0]) for e in events})))


# ---------------------------------------------------------------- reading results


async def exits(conn: Conn, trace_id: int) -> list[asyncpg.Record]:
    """Every off-ramp reached: one row per (address, asset), amounts summed over hops into it."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT h.to_addr AS address, h.asset, sum(h.amount) AS amount, count(*) AS hops,
                  min(t.block_time) AS first_time, max(t.block_time) AS last_time,
                  min(h.depth) AS depth, max(t.decimals) AS decimals, max(t.symbol) AS symbol,
                  j.reason, j.entity, j.category, j.evidence, h.chain
           FROM hops h JOIN transfers t ON t.id = h.transfer_id
           LEFT JOIN jobs j ON j.trace_id = h.trace_id AND j.chain = h.chain AND j.address = h.to_addr
           WHERE h.trace_id = $1 AND h.status = 'exit'
           GROUP BY h.chain, h.to_addr, h.asset, j.reason, j.entity, j.category, j.evidence
           ORDER BY sum(h.amount) DESC, h.to_addr""",
        trace_id,
    )
    return rows


async def bridge_verdicts(conn: Conn, trace_id: int) -> list[asyncpg.Record]:
    """The bridges a trace deposited into (labelled or recognised by event), with the destinations
    and continuations their evidence lists; a deposit continued on the far chain is no exit, so
    these are read apart from `exits`."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT address, chain, entity, evidence FROM jobs
           WHERE trace_id = $1 AND role = 'exit' AND reason = 'bridge' ORDER BY chain, address""",
        trace_id,
    )
    return rows


async def stops(conn: Conn, trace_id: int) -> list[asyncpg.Record]:
    """Addresses where the trace stopped without reaching an off-ramp (hubs, mixers, limits)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT j.address, j.reason, j.entity, j.category, j.depth, j.chain,
                  coalesce((SELECT jsonb_object_agg(asset, amount::text) FROM
                     (SELECT asset, sum(amount) AS amount FROM hops h WHERE h.trace_id = j.trace_id
                        AND h.chain = j.chain AND h.to_addr = j.address GROUP BY asset) s), '{}'::jsonb) AS amounts
           FROM jobs j WHERE j.trace_id = $1 AND j.role = 'stopped' ORDER BY j.depth, j.address""",
        trace_id,
    )
    return rows


async def all_hops(conn: Conn, trace_id: int) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT h.transfer_id, h.from_addr, h.to_addr, h.asset, h.amount, h.depth, h.status, h.reason,
                  h.share, h.confidence, h.kind, t.tx_hash, t.block_number, t.block_time, t.decimals, t.symbol,
                  t.position, h.chain, h.evidence, h.parents
           FROM hops h JOIN transfers t ON t.id = h.transfer_id WHERE h.trace_id = $1""",
        trace_id,
    )
    return rows


async def add_hop_count(conn: Conn, trace_id: int, inserted: int) -> None:
    """Count hops a commit inserted (policy.max_hops is checked against the count)."""
    if inserted:
        await conn.execute("UPDATE traces SET hop_count = hop_count + $2 WHERE id = $1", trace_id, inserted)


async def note_hop_limit(conn: Conn, trace_id: int) -> bool:
    """Record that the trace hit policy.max_hops; True the first time only."""
    return bool(await conn.fetchval(
        """UPDATE traces SET hop_limit_reached = true, updated_at = now()
           WHERE id = $1 AND NOT hop_limit_reached RETURNING id""", trace_id))
