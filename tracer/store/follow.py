"""Live following, for the monitor: watching traces and their live addresses, moving a trace's
window forward, the followed blocks' hashes, retracting what a reorg replaced, and the per-chain
leader lock."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg

from tracer.domain.alerts import Extend, Retraction, WatchingTrace
from tracer.store.hops import refresh_exits
from tracer.store.jobs import enqueue_traces
from tracer.store.outbox import EVENTS_CHANNEL
from tracer.store.traces import Conn


async def watching_traces(conn: Conn, chain: str) -> list[WatchingTrace]:
    rows = await conn.fetch(
        """SELECT id, seeds, policy, from_block, to_block FROM traces
           WHERE chain = $1 AND status = 'watching' ORDER BY id""",
        chain,
    )
    return [WatchingTrace(int(r["id"]), tuple(r["seeds"]), r["policy"] or {}, int(r["from_block"]),
                          int(r["to_block"])) for r in rows]


async def live_addresses(conn: Conn, trace_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    """trace id -> address -> depth of the addresses the traces follow (money may still sit there):
    their new outflows extend the trace."""
    rows = await conn.fetch(
        """SELECT trace_id, address, depth FROM jobs j
           WHERE trace_id = ANY($1::bigint[]) AND kind = 'address' AND role = 'followed'
             -- the monitor follows the trace's own chain; chains it continued into keep their window
             AND chain = (SELECT chain FROM traces t WHERE t.id = j.trace_id)""",
        list(trace_ids),
    )
    live: dict[int, dict[str, int]] = defaultdict(dict)
    for r in rows:
        live[int(r["trace_id"])][r["address"]] = int(r["depth"])
    return dict(live)


async def extend_traces(conn: Conn, old_to: int, new_to: int, traces: Sequence[Extend]) -> list[int]:
    """Move watching traces' windows from `old_to` to `new_to` in one transaction; addresses with
    new outflows go back on the frontier (the trace runs again until it catches up). Returns the
    traces moved: one that changed meanwhile (no longer watching, or another window) is left."""
    if not traces:
        return []
    async with conn.transaction():
        rows = await conn.fetch(
            """SELECT id, totals FROM traces WHERE id = ANY($1::bigint[]) AND status = 'watching' AND to_block = $2
               ORDER BY id FOR UPDATE""",
            [t.trace_id for t in traces], old_to,
        )
        found = {int(r["id"]): r["totals"] or {} for r in rows}
        moved = [t for t in traces if t.trace_id in found]
        if not moved:
            return []
        totals: list[dict[str, str]] = []
        for t in moved:
            sums = {k: int(v) for k, v in found[t.trace_id].items()}
            for asset, amount in t.seed_outflows.items():
                # The seeds' totals grow with what they send: thresholds stay relative to the theft.
                sums[asset] = sums.get(asset, 0) + amount
            totals.append({k: str(v) for k, v in sums.items()})
        await enqueue_traces(conn, [(t.trace_id, a, d) for t in moved for a, d in t.wake])
        await conn.execute(
            """UPDATE traces t SET to_block = $2, totals = u.totals::jsonb, updated_at = now(),
                      status = CASE WHEN u.woken THEN 'running' ELSE t.status END
               FROM unnest($1::bigint[], $3::text[], $4::bool[]) AS u(id, totals, woken)
               WHERE t.id = u.id""",
            [t.trace_id for t in moved], new_to, [json.dumps(x) for x in totals], [bool(t.wake) for t in moved],
        )
    return [t.trace_id for t in moved]


async def recorded_blocks(conn: Conn, chain: str, limit: int) -> list[tuple[int, str]]:
    """The highest followed blocks of a chain with their hashes, highest first."""
    rows = await conn.fetch(
        "SELECT number, hash FROM chain_blocks WHERE chain = $1 ORDER BY number DESC LIMIT $2", chain, limit)
    return [(r["number"], r["hash"]) for r in rows]


async def record_blocks(conn: Conn, chain: str, blocks: Mapping[int, str], keep: int) -> None:
    """Remember followed blocks' hashes (a hash already recorded stays: if it differs, the next
    check sees the reorg) and forget all but the `keep` highest."""
    if not blocks:
        return
    numbers = sorted(blocks)
    await conn.execute(
        """INSERT INTO chain_blocks (chain, number, hash)
           SELECT $1, n, h FROM unnest($2::bigint[], $3::text[]) AS b(n, h)
           ON CONFLICT (chain, number) DO NOTHING""",
        chain, numbers, [blocks[n] for n in numbers],
    )
    await conn.execute(
        """DELETE FROM chain_blocks WHERE chain = $1 AND number <
             (SELECT min(number) FROM (SELECT number FROM chain_blocks WHERE chain = $1
                                       ORDER BY number DESC LIMIT $2) k)""",
        chain, keep,
    )


async def retract_after(conn: Conn, chain: str, fork_block: int, *, old_hash: str | None,
                        new_hash: str | None) -> Retraction:
    """A reorg replaced every block after `fork_block`: forget what we knew of them.

    In one transaction: the hops of every trace on transfers in those blocks are deleted, each
    with a `hop_retracted` event (the hop as it was announced) and one `hops_retracted` summary per
    trace; jobs only those hops reached are dropped; the transfers, the address coverage past the
    fork and the recorded block hashes go, so the replacement blocks are fetched afresh; watching
    and finished traces end at the fork (the monitor extends watching ones again).

    A trace still in its historical pass keeps its window: a batch that read the old blocks fails
    on the deleted transfers (`transfers.require_stored`) and is retried on the new chain, but a worker that
    fetched the old blocks just before this commit may still store them afterwards. Reorgs deeper
    than the confirmation depth are rare enough to leave that case to re-running the trace.
    """
    async with conn.transaction():
        gone = await conn.fetch(
            """DELETE FROM hops h USING transfers t
               WHERE t.id = h.transfer_id AND t.chain = $1 AND t.block_number > $2
               RETURNING h.trace_id, h.transfer_id, h.from_addr, h.to_addr, h.asset, h.amount, h.depth, h.kind,
                         h.status, h.reason, h.share, t.tx_hash, t.position, t.block_number, t.block_time,
                         t.tx_index, t.amount AS transfer_amount, t.symbol, t.decimals""",
            chain, fork_block,
        )
        traces = sorted({int(r["trace_id"]) for r in gone})
        for trace_id in traces:  # the exits those hops reached, in this transaction
            await refresh_exits(conn, trace_id, [(chain, r["to_addr"]) for r in gone
                                                 if r["trace_id"] == trace_id and r["status"] == "exit"])
        verdicts: dict[tuple[int, str], asyncpg.Record] = {}
        if gone:
            rows = await conn.fetch(
                """SELECT trace_id, address, entity, category FROM jobs
                   WHERE (trace_id, address) IN (SELECT * FROM unnest($1::bigint[], $2::text[]))""",
                [r["trace_id"] for r in gone], [r["to_addr"] for r in gone],
            )
            verdicts = {(r["trace_id"], r["address"]): r for r in rows}
        events: list[tuple[int, str, dict[str, Any]]] = []
        ordered = sorted(gone, key=lambda r: (r["trace_id"], r["block_number"], r["tx_index"], r["position"]))
        for r in ordered:
            v = verdicts.get((r["trace_id"], r["to_addr"]))
            events.append((r["trace_id"], "hop_retracted", {
                "transfer_id": r["transfer_id"], "tx_hash": r["tx_hash"], "position": r["position"],
                "block_number": r["block_number"], "block_time": r["block_time"], "from": r["from_addr"],
                "to": r["to_addr"], "asset": r["asset"], "amount": str(int(r["amount"])),
                "transfer_amount": str(int(r["transfer_amount"])), "symbol": r["symbol"], "decimals": r["decimals"],
                "depth": r["depth"], "kind": r["kind"], "status": r["status"], "reason": r["reason"],
                "share": r["share"], "to_entity": v["entity"] if v else None,
                "to_category": v["category"] if v else None, "chain": chain,
            }))
        for trace_id in traces:
            mine = [r for r in gone if r["trace_id"] == trace_id]
            events.append((trace_id, "hops_retracted", {
                "chain": chain, "fork_block": fork_block, "count": len(mine),
                "from_block": min(r["block_number"] for r in mine), "old_hash": old_hash, "new_hash": new_hash,
                "transfer_ids": sorted(r["transfer_id"] for r in mine)[:1000],
            }))
        if events:
            await conn.execute(
                """INSERT INTO events (trace_id, trace_key, type, payload)
                   SELECT t, t, ty, p::jsonb FROM unnest($1::bigint[], $2::text[], $3::text[]) WITH ORDINALITY
                        AS e(t, ty, p, n) ORDER BY n""",
                [e[0] for e in events], [e[1] for e in events], [json.dumps(e[2]) for e in events],
            )
            await conn.execute("SELECT pg_notify($1, $2)", EVENTS_CHANNEL, ",".join(map(str, traces)))
        if traces:
            # Addresses only the retracted hops reached are no longer part of those traces.
            await conn.execute(
                """DELETE FROM jobs j WHERE j.trace_id = ANY($1::bigint[]) AND j.kind = 'address'
                     AND NOT j.is_seed AND j.state = 'done'
                     AND NOT EXISTS (SELECT 1 FROM hops h WHERE h.trace_id = j.trace_id AND h.to_addr = j.address)""",
                traces,
            )
        deleted = await conn.execute(
            "DELETE FROM transfers WHERE chain = $1 AND block_number > $2", chain, fork_block)
        await conn.execute("DELETE FROM address_coverage WHERE chain = $1 AND from_block > $2", chain, fork_block)
        await conn.execute(
            "UPDATE address_coverage SET to_block = $2 WHERE chain = $1 AND to_block > $2", chain, fork_block)
        await conn.execute("DELETE FROM chain_blocks WHERE chain = $1 AND number > $2", chain, fork_block)
        await conn.execute(
            """UPDATE traces SET to_block = GREATEST(from_block, $2), updated_at = now()
               WHERE chain = $1 AND to_block > $2 AND status IN ('watching', 'done')""",
            chain, fork_block,
        )
    return Retraction(fork_block, len(gone), frozenset(traces), int(deleted.split()[-1]))


# One monitor acts per chain: a session advisory lock, held on a connection kept for that purpose
# (it goes with the session when that connection dies, and a standby takes over).


async def try_lead_chain(conn: Conn, chain: str) -> bool:
    """Take the monitor's lock of `chain` on this session, if nobody holds it."""
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock(hashtext('tracer.monitor'), hashtext($1))", chain))


async def give_up_leads(conn: Conn) -> None:
    """Release every advisory lock this session holds."""
    await conn.execute("SELECT pg_advisory_unlock_all()")

