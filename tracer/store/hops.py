"""SQL for a trace's hops: written by the worker's commit (idempotent, one statement per batch),
with the exits table (trace_exits) kept in the same transaction."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

import asyncpg

from tracer.addresses import checksum
from tracer.domain.records import HopRow, Inflow, WrittenHop
from tracer.domain.transfers import NATIVE
from tracer.store.sql import TRACE_CHAIN, Conn
from tracer.store.transfers import require_stored


async def inflow_hops(conn: Conn, trace_id: int, addresses: Sequence[str],
                      chain: str | None = None) -> list[Inflow]:
    """Flagged money that reached the addresses (on `chain`): hops into them, with their block."""
    rows = await conn.fetch(
        f"""SELECT h.transfer_id, h.to_addr, h.asset, h.amount, h.depth, h.block_number
           FROM (SELECT DISTINCT a FROM unnest($2::text[]) AS a) a
           CROSS JOIN LATERAL (SELECT transfer_id, to_addr, asset, amount, depth, block_number FROM hops
                               WHERE trace_id = $1 AND to_addr = a.a AND chain = {TRACE_CHAIN.format(arg="$3")}
                               OFFSET 0) h""",
        trace_id, list(addresses), chain,
    )
    return [Inflow(r["transfer_id"], r["to_addr"], r["asset"], int(r["amount"]), r["depth"], r["block_number"])
            for r in rows]


async def upsert_hops(conn: Conn, trace_id: int, hops: Sequence[HopRow]) -> list[WrittenHop]:
    """Write hops; return the ones that are new or whose amount grew (their recipients need
    another look). Unchanged hops are not rewritten. A hop without a chain is on the trace's own."""
    if not hops:
        return []
    await require_stored(conn, (h.transfer_id for h in hops))
    rows = await conn.fetch(
        f"""INSERT INTO hops (trace_id, transfer_id, from_addr, to_addr, asset, block_number, depth, amount, share,
                             kind, status, reason, parents, confidence, chain, evidence)
           SELECT $1, h.tid, h.fa, h.ta, h.asset, h.block, h.depth, h.amount, h.share, h.kind, h.status, h.reason,
                  CASE WHEN h.parents = '' THEN '{{}}'::bigint[] ELSE string_to_array(h.parents, ',')::bigint[] END,
                  h.conf, {TRACE_CHAIN.format(arg="h.chain")}, h.evidence::jsonb
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
    # An inserted hop matters to the exits only as an exit; an updated one may have been one.
    await refresh_exits(conn, trace_id, [(r["chain"], r["to_addr"]) for r in rows
                                         if r["status"] == "exit" or not r["inserted"]])
    return _written(rows)


async def mark_hops_into(conn: Conn, trace_id: int, addresses: Sequence[str], status: str, reason: str,
                         chain: str | None = None) -> None:
    """Once an address (of `chain`) is classified (exit by behaviour, hub, ...), the hops into it say
    why; the exits of the addresses whose hops changed follow in the same transaction."""
    changed = await conn.fetch(
        f"""UPDATE hops SET status = $3, reason = $4, updated_at = now(),
               -- what a followed hop said before a max_depth stop, which a shorter path may lift
               -- (reopen_hops_into restores it); kept for that stop only, since for any other the
               -- value would say which worker happened to write the hop before the verdict
               followed_reason = CASE WHEN $3 <> 'stopped' OR $4 <> 'max_depth' THEN NULL
                                      WHEN hops.status = 'followed' THEN hops.reason
                                      ELSE hops.followed_reason END
           FROM (SELECT DISTINCT a FROM unnest($2::text[]) AS a) a
           CROSS JOIN LATERAL (SELECT transfer_id FROM hops WHERE trace_id = $1 AND to_addr = a.a
                                 AND chain = {TRACE_CHAIN.format(arg="$5")}
                                 AND (status, reason) IS DISTINCT FROM ($3, $4) AND status <> 'stopped'
                               OFFSET 0) x
           WHERE hops.trace_id = $1 AND hops.transfer_id = x.transfer_id
             -- repeated on the row updated: re-checked if a concurrent writer changed it first
             AND (hops.status, hops.reason) IS DISTINCT FROM ($3, $4) AND hops.status <> 'stopped'
           RETURNING hops.chain, hops.to_addr""",
        trace_id, list(addresses), status, reason, chain,
    )
    await refresh_exits(conn, trace_id, [(r["chain"], r["to_addr"]) for r in changed])


async def reopen_hops_into(conn: Conn, trace_id: int, addresses: Sequence[str], reason: str,
                           chain: str | None = None) -> list[WrittenHop]:
    """Hops into addresses (of `chain`) that a stop with `reason` marked, followed again with the
    reason they had before it (an address stopped at max_depth that a shorter path reached).
    Returns them as upsert_hops does (for their events)."""
    if not addresses:
        return []
    rows = await conn.fetch(
        f"""UPDATE hops SET status = 'followed', reason = coalesce(hops.followed_reason, 'flagged funds'),
                   followed_reason = NULL, updated_at = now()
           FROM (SELECT DISTINCT a FROM unnest($2::text[]) AS a) a
           CROSS JOIN LATERAL (SELECT transfer_id FROM hops WHERE trace_id = $1 AND to_addr = a.a
                                 AND chain = {TRACE_CHAIN.format(arg="$4")} AND status = 'stopped' AND reason = $3
                               OFFSET 0) x
           WHERE hops.trace_id = $1 AND hops.transfer_id = x.transfer_id AND hops.status = 'stopped'
             AND hops.reason = $3
           RETURNING hops.transfer_id, hops.to_addr, hops.asset, hops.amount, hops.status, hops.depth, hops.chain,
                     false AS inserted""",
        trace_id, list(addresses), reason, chain,
    )
    return _written(rows)


def _written(rows: Sequence[asyncpg.Record]) -> list[WrittenHop]:
    return [WrittenHop(r["transfer_id"], r["to_addr"], r["asset"], int(r["amount"]), r["status"], r["depth"],
                       r["chain"], r["inserted"]) for r in rows]


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


async def refresh_exits(conn: Conn, trace_id: int, keys: Iterable[tuple[str, str]]) -> None:
    """Recompute the trace_exits rows of these (chain, address) from their exit hops: one statement,
    an index probe per address (hops_exit_cover, trace_exits' key). Run by every function that
    writes hops, in the caller's transaction, so the exits always match the hops committed. Each
    row gets its address's display form here (a keccak per address written, not per line read)."""
    pairs = sorted(set(keys))
    if not pairs:
        return
    # The upsert and the delete touch different rows (an (address, asset) is in `fresh` or not),
    # so they can share one statement and one snapshot.
    await conn.execute(
        f"""WITH k AS (SELECT DISTINCT chain, address, shown
                      FROM unnest($2::text[], $3::text[], $4::text[]) AS k(chain, address, shown)),
           fresh AS (
               SELECT h.chain, h.to_addr, h.asset, k.shown, sum(h.amount) AS amount, count(*) AS hops,
                      count(DISTINCT h.from_addr) AS senders, min(h.depth) AS depth,
                      min(h.block_number) AS first_block, max(h.block_number) AS last_block
               FROM k CROSS JOIN LATERAL (
                   SELECT chain, to_addr, asset, amount, from_addr, depth, block_number FROM hops
                   WHERE trace_id = $1 AND to_addr = k.address AND chain = k.chain AND status = 'exit'
                   OFFSET 0) h
               GROUP BY h.chain, h.to_addr, h.asset, k.shown),
           up AS (
               INSERT INTO trace_exits (trace_id, chain, address, asset, amount, hops, senders, depth,
                                        first_block, last_block, first_time, last_time, decimals, symbol,
                                        address_checksum)
               SELECT $1, s.chain, s.to_addr, s.asset, s.amount, s.hops, s.senders, s.depth, s.first_block,
                      s.last_block, f.block_time, l.block_time, f.decimals, f.symbol, s.shown
               FROM fresh s
               LEFT JOIN LATERAL ({EXIT_FIRST.format(e='s', addr='to_addr')}) f ON true
               LEFT JOIN LATERAL ({EXIT_LAST.format(e='s', addr='to_addr')}) l ON true
               ON CONFLICT (trace_id, chain, address, asset) DO UPDATE SET
                   amount = excluded.amount, hops = excluded.hops, senders = excluded.senders,
                   depth = excluded.depth, first_block = excluded.first_block, last_block = excluded.last_block,
                   first_time = excluded.first_time, last_time = excluded.last_time,
                   decimals = excluded.decimals, symbol = excluded.symbol,
                   address_checksum = excluded.address_checksum
               RETURNING 1)
           DELETE FROM trace_exits x USING k
           WHERE x.trace_id = $1 AND x.chain = k.chain AND x.address = k.address
             AND NOT EXISTS (SELECT 1 FROM fresh f
                             WHERE f.chain = x.chain AND f.to_addr = x.address AND f.asset = x.asset)""",
        trace_id, [c for c, _ in pairs], [a for _, a in pairs], [checksum(a) for _, a in pairs],
    )


# One transfer into an exit in its first (last) block, one with a time (and a token name) first:
# the worker stores the other transfers of a block without them (it names only hops). The exits
# query (store.reads.exits) repeats these lookups for a row whose values were not known yet.
EXIT_FIRST = """SELECT t.block_time, t.decimals, t.symbol FROM transfers t
                WHERE t.chain = {e}.chain AND t.to_addr = {e}.{addr} AND t.block_number = {e}.first_block
                  AND t.asset = {e}.asset
                ORDER BY t.block_time < 0, t.symbol IS NULL LIMIT 1"""
EXIT_LAST = """SELECT t.block_time FROM transfers t
               WHERE t.chain = {e}.chain AND t.to_addr = {e}.{addr} AND t.block_number = {e}.last_block
                 AND t.asset = {e}.asset
               ORDER BY t.block_time < 0 LIMIT 1"""

# A row whose first (last) block's values were not known when it was written: the reads and
# tracer.store.described look those up again.
FIRST_UNKNOWN = f"e.first_time IS NULL OR e.first_time < 0 OR (e.asset <> '{NATIVE}' AND e.symbol IS NULL)"
LAST_UNKNOWN = "e.last_time IS NULL OR e.last_time < 0"
