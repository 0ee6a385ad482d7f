"""SQL of backward traces (source of funds): the direction, the walk's jobs and the sources read.

A backward trace keeps the tables of a forward one (tracer/engine/backward_jobs.py says how it
uses them): jobs are the walked wallets (role followed) and the sources the walk stopped at (role
exit: labelled or minted; role stopped: cut by depth or the walk's budget); one `colour` job per
trace writes the hops once the walk is over. Hops run the way the money moved, so a source is the
sender of the hops it paid, and the sources list is the exits list of a forward trace read by
sender instead of by recipient.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from tracer.domain.records import ExitRow, Job
from tracer.domain.views import BridgeCrossing, Held, WalkedWallet
from tracer.store.reads import wallet_verdict
from tracer.store.traces import Conn

FORWARD, BACKWARD = "forward", "backward"
DIRECTIONS = (FORWARD, BACKWARD)
COLOUR = "colour"  # the job kind
COLOUR_ADDRESS = "~colour"  # its address column: no chain's address starts so
_LAST = 2**31 - 1  # the colour job's depth: claimed after every walk job of the trace


async def set_direction(conn: Conn, trace_id: int, direction: str) -> None:
    """Called in the transaction that inserts the trace, before any worker can claim its start."""
    await conn.execute("UPDATE traces SET direction = $2 WHERE id = $1", trace_id, direction)


async def start(conn: Conn, trace_id: int) -> None:
    """The colour job, pending from the start so the trace cannot finish before it ran."""
    await conn.execute(
        """INSERT INTO jobs (trace_id, chain, address, kind, depth)
           SELECT id, chain, $2, 'colour', $3 FROM traces WHERE id = $1
           ON CONFLICT (trace_id, chain, address) DO NOTHING""",
        trace_id, COLOUR_ADDRESS, _LAST,
    )


async def walk_pending(conn: Conn, trace_id: int) -> bool:
    """Whether any job but the colour job is still to be done."""
    return bool(await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM jobs WHERE trace_id = $1 AND state <> 'done' AND kind <> 'colour')", trace_id))


async def postpone(conn: Conn, worker: str, job: Job, delay_seconds: float) -> None:
    """Give the colour job back until the walk is over; waiting is no failed attempt."""
    await conn.execute(
        """UPDATE jobs SET state = 'pending', worker = NULL, attempts = 0,
                  lease_until = now() + make_interval(secs => $4), updated_at = now()
           WHERE trace_id = $1 AND chain = $5 AND address = $2 AND worker = $3 AND state = 'running'""",
        job.trace_id, job.address, worker, delay_seconds, job.chain,
    )


async def walk_size(conn: Conn, trace_id: int) -> int:
    """Wallets walked or queued to be (the walk's budget counts them)."""
    return int(await conn.fetchval(
        """SELECT count(*) FROM jobs WHERE trace_id = $1 AND kind = 'address'
             AND (state <> 'done' OR role = 'followed')""", trace_id))


async def add_senders(conn: Conn, trace_id: int, chain: str, senders: Sequence[tuple[str, int]]) -> None:
    """Queue wallets to walk. One the walk already knows keeps its place, except a wallet cut at
    the depth limit that a shorter path now reaches: it is walked after all (so the walk does not
    depend on which worker got there first)."""
    if not senders:
        return
    await conn.execute(
        """INSERT INTO jobs (trace_id, chain, address, kind, depth)
           SELECT $1, $2, a, 'address', d FROM unnest($3::text[], $4::int[]) AS s(a, d)
           ON CONFLICT (trace_id, chain, address) DO UPDATE SET
               depth = excluded.depth, state = 'pending', role = NULL, reason = NULL, lease_until = NULL,
               updated_at = now()
           WHERE jobs.role = 'stopped' AND jobs.reason = 'max_depth' AND excluded.depth < jobs.depth""",
        trace_id, chain, [a for a, _ in senders], [d for _, d in senders],
    )


async def walk(conn: Conn, trace_id: int) -> list[WalkedWallet]:
    """Every wallet of the walk with its role (followed, exit, stopped) and depth."""
    rows = await conn.fetch(
        """SELECT address, chain, depth, is_seed, role, reason, entity, category, evidence::text AS evidence
           FROM jobs WHERE trace_id = $1 AND kind = 'address' ORDER BY depth, address""", trace_id)
    return [WalkedWallet(r["address"], r["chain"], r["depth"], wallet_verdict(r),
                         json.loads(r["evidence"]) if r["evidence"] is not None else None)
            for r in rows]


async def mixer_feeds(conn: Conn, trace_id: int) -> list[tuple[int, int, float]]:
    """The mixer links the walk followed back: (deposit transfer, withdrawal transfer, confidence)."""
    rows = await conn.fetch(
        """SELECT deposit_transfer_id, withdrawal_transfer_id, confidence FROM mixer_links
           WHERE trace_id = $1 AND status = 'followed' AND withdrawal_transfer_id IS NOT NULL""", trace_id)
    return [(r["deposit_transfer_id"], r["withdrawal_transfer_id"], float(r["confidence"])) for r in rows]


async def add_bridge_links(conn: Conn, trace_id: int,
                           links: Sequence[tuple[int, int, str, float, dict[str, Any]]]) -> None:
    """The bridge crossings the walk followed back: (payout transfer, deposit transfer, the
    deposit's chain, confidence, evidence). Idempotent: a walk batch run again writes the same."""
    if not links:
        return
    await conn.executemany(
        """INSERT INTO backward_bridges (trace_id, payout_transfer_id, deposit_transfer_id, deposit_chain,
                                         confidence, evidence)
           VALUES ($1, $2, $3, $4, $5, $6::jsonb)
           ON CONFLICT (trace_id, payout_transfer_id, deposit_transfer_id) DO NOTHING""",
        [(trace_id, p, d, c, conf, json.dumps(ev)) for p, d, c, conf, ev in links])


async def bridge_links(conn: Conn, trace_id: int) -> list[BridgeCrossing]:
    """The trace's followed bridge crossings, as add_bridge_links wrote them."""
    rows = await conn.fetch(
        """SELECT payout_transfer_id, deposit_transfer_id, deposit_chain, confidence, evidence::text AS evidence
           FROM backward_bridges WHERE trace_id = $1 ORDER BY payout_transfer_id, deposit_transfer_id""", trace_id)
    return [BridgeCrossing(r["payout_transfer_id"], r["deposit_transfer_id"], r["deposit_chain"],
                           float(r["confidence"]), json.loads(r["evidence"])) for r in rows]


async def set_totals(conn: Conn, trace_id: int, received: dict[str, int]) -> None:
    """A backward trace's totals: what its seeds received in the window, per asset."""
    await conn.execute("UPDATE traces SET totals = $2::jsonb, updated_at = now() WHERE id = $1",
                       trace_id, {k: str(v) for k, v in received.items()})


async def sources(conn: Conn, trace_id: int, chain: str, *, asset: str | None = None,
                  category: str | None = None) -> list[ExitRow]:
    """The sources reached (labelled or minted), one row per (address, asset), largest first, as
    the lines of `reads.exits` (read by sender)."""
    rows = await conn.fetch(
        """WITH e AS (
               SELECT h.chain, h.from_addr, h.asset, sum(h.amount) AS amount, count(*) AS hops,
                      count(DISTINCT h.to_addr) AS senders, min(h.depth) AS depth,
                      min(h.block_number) AS first_block, max(h.block_number) AS last_block
               FROM hops h
               WHERE h.trace_id = $1 AND h.status = 'exit' AND ($3::text IS NULL OR h.asset = $3)
               GROUP BY h.from_addr, h.asset, h.chain
           )
           SELECT e.from_addr AS address, e.asset, e.amount::text AS amount, e.hops, e.senders, e.depth,
                  e.first_block, e.last_block, f.block_time AS first_time, l.block_time AS last_time,
                  f.decimals, f.symbol, j.reason, j.entity, j.category, j.evidence::text AS evidence,
                  coalesce(e.chain, $2) AS chain
           FROM e
           LEFT JOIN jobs j ON j.trace_id = $1 AND j.chain = e.chain AND j.address = e.from_addr
           LEFT JOIN LATERAL (
               SELECT t.block_time, t.decimals, t.symbol FROM transfers t
               WHERE t.chain = e.chain AND t.from_addr = e.from_addr AND t.block_number = e.first_block
                 AND t.asset = e.asset
               ORDER BY t.block_time < 0, t.symbol IS NULL LIMIT 1) f ON true
           LEFT JOIN LATERAL (
               SELECT t.block_time FROM transfers t
               WHERE t.chain = e.chain AND t.from_addr = e.from_addr AND t.block_number = e.last_block
                 AND t.asset = e.asset
               ORDER BY t.block_time < 0 LIMIT 1) l ON true
           WHERE ($4::text IS NULL OR j.category = $4)""",
        trace_id, chain, asset, category,
    )
    out = [ExitRow(r["chain"], r["address"], r["asset"], int(r["amount"]), r["hops"], r["senders"], r["depth"],
                   r["first_block"], r["last_block"], r["first_time"], r["last_time"], r["decimals"], r["symbol"],
                   r["reason"], r["entity"], r["category"],
                   json.loads(r["evidence"]) if r["evidence"] is not None else None) for r in rows]
    out.sort(key=lambda r: (-r.amount, r.address, r.asset))
    return out


async def held(conn: Conn, trace_id: int, *, asset: str | None = None) -> list[Held]:
    """Money walked wallets already held when the window opened that reached the seeds (recorded
    on their jobs by the colouring): (address, chain, depth, asset, amount)."""
    rows = await conn.fetch(
        """SELECT j.address, j.chain, j.depth, h.key AS asset, h.value AS amount
           FROM jobs j CROSS JOIN LATERAL jsonb_each_text(j.evidence -> 'held') h
           WHERE j.trace_id = $1 AND j.role = 'followed' AND j.evidence ? 'held'
             AND ($2::text IS NULL OR h.key = $2)""",
        trace_id, asset,
    )
    out = [Held(r["address"], r["chain"], r["depth"], r["asset"], int(r["amount"])) for r in rows]
    out.sort(key=lambda r: (-r.amount, r.address, r.asset))
    return out


def evidence_of(row: ExitRow | WalkedWallet) -> dict[str, Any]:
    """The row's evidence, a copy ({} when it has none)."""
    return dict(row.evidence) if row.evidence is not None else {}
