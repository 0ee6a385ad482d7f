"""Read-side SQL for the API: keyset pages of traces and hops, exits, graphs, an address's traces.

Every page is a keyset page: the next page starts strictly after the last row's sort key, so a
page costs the same on page 1 and page 10,000 and rows inserted meanwhile never shift it. Each
sort order matches an index of schemas/migrations/001_init.sql (hops_block, hops_amount) read
forwards or backwards, and every query is scoped by trace_id first (the distribution column).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, fields
from decimal import Decimal
from typing import Any

import asyncpg

from tracer.domain.records import ExitRow
from tracer.domain.transfers import NATIVE
from tracer.domain.views import (
    AddressTrace,
    BridgeVerdict,
    GraphNode,
    Received,
    Stop,
    StoredHop,
    StoredTrace,
    TraceVersion,
    WalletVerdict,
)
from tracer.store.exits import RESOLVED
from tracer.store.sql import Conn

NATIVE_DECIMALS = 18
HOP_SORTS = ("block", "-block", "amount", "-amount")

# amount as text: decoding numeric(78,0) into Decimal costs more than the rest of the row, and the
# API turns it into an exact decimal string anyway.
_HOP_COLUMNS = """h.transfer_id, h.from_addr, h.to_addr, h.asset, h.amount::text AS amount, h.depth, h.status, h.reason,
                  h.share, h.kind, h.block_number, t.tx_hash, t.position, t.block_time, t.decimals, t.symbol,
                  h.chain, h.confidence, h.evidence::text AS evidence"""


# ---------------------------------------------------------------- traces


async def list_traces(
    conn: Conn,
    *,
    statuses: Sequence[str] | None,
    seed: str | None,
    label: str | None,
    before_id: int | None,
    limit: int,
) -> list[StoredTrace]:
    """Newest first; `before_id` is the keyset (the last id of the previous page)."""
    rows = await conn.fetch(
        f"""SELECT {_TRACE_COLUMNS} FROM traces
           WHERE ($1::text[] IS NULL OR status = ANY($1::text[]))
             AND ($2::text IS NULL OR seeds @> ARRAY[$2::text])
             AND ($3::text IS NULL OR label = $3)
             AND ($4::bigint IS NULL OR id < $4)
           ORDER BY id DESC LIMIT $5""",
        list(statuses) if statuses else None, seed, label, before_id, limit,
    )
    return [_trace(r) for r in rows]


async def get_trace(conn: Conn, trace_id: int) -> StoredTrace | None:
    """The trace, None when there is no such trace."""
    row = await conn.fetchrow(f"SELECT {_TRACE_COLUMNS} FROM traces WHERE id = $1", trace_id)
    return _trace(row) if row is not None else None


_TRACE_COLUMNS = ", ".join(f.name for f in fields(StoredTrace))


def _trace(r: asyncpg.Record) -> StoredTrace:
    return StoredTrace(*r)


async def trace_version(conn: Conn, trace_id: int) -> TraceVersion | None:
    """What a cached page of the trace depends on: its chain, status, updated_at and hop count (every
    store function that changes a finished trace's hops moves updated_at: reorg retraction, watching
    again); None when there is no such trace. One primary-key probe."""
    row = await conn.fetchrow("SELECT chain, status, updated_at, hop_count FROM traces WHERE id = $1", trace_id)
    return TraceVersion(row["chain"], row["status"], row["updated_at"], row["hop_count"]) if row is not None else None


async def trace_counters(conn: Conn, trace_id: int) -> dict[str, int]:
    """Progress counters of one trace, in one round trip."""
    row = await conn.fetchrow(
        """SELECT
             (SELECT count(*) FROM hops WHERE trace_id = $1) AS hops,
             (SELECT count(*) FROM hops WHERE trace_id = $1 AND status = 'exit') AS exit_hops,
             (SELECT count(*) FROM jobs WHERE trace_id = $1 AND kind = 'address') AS addresses,
             (SELECT count(*) FROM jobs WHERE trace_id = $1 AND state <> 'done') AS frontier,
             -- A bridge whose every deposit crossed (followed on the far chain) is no exit. A
             -- backward trace's exits are its sources: the senders of its exit hops.
             (SELECT count(*) FROM jobs j WHERE j.trace_id = $1 AND j.role = 'exit' AND (EXISTS (
                SELECT 1 FROM hops h WHERE h.trace_id = $1 AND h.to_addr = j.address AND h.chain = j.chain
                  AND h.status = 'exit') OR (t.direction = 'backward' AND EXISTS (
                SELECT 1 FROM hops h WHERE h.trace_id = $1 AND h.from_addr = j.address AND h.chain = j.chain
                  AND h.status = 'exit')))) AS exits,
             (SELECT count(*) FROM jobs WHERE trace_id = $1 AND role = 'stopped') AS stops
           FROM traces t WHERE t.id = $1""",
        trace_id,
    )
    return {k: int(v) for k, v in dict(row).items()} if row else {}


async def asset_meta(conn: Conn, chain: str, seeds: Sequence[str], assets: Sequence[str]) -> dict[str, tuple[
        str | None, int | None]]:
    """(symbol, decimals) of token assets a trace's seeds sent. The seeds' totals come from their own
    outgoing transfers, so every asset of a trace's totals is found through the transfers_from
    index without scanning the transfers table for the asset."""
    tokens = [a for a in assets if a != NATIVE]
    if not tokens:
        return {}
    rows = await conn.fetch(
        """SELECT DISTINCT ON (asset) asset, symbol, decimals FROM transfers
           WHERE chain = $1 AND from_addr = ANY($2::text[]) AND asset = ANY($3::text[])
           ORDER BY asset, (symbol IS NULL), (decimals IS NULL)""",
        chain, list(seeds), tokens,
    )
    return {r["asset"]: (r["symbol"], r["decimals"]) for r in rows}


# ---------------------------------------------------------------- hops


@dataclass(frozen=True)
class HopFilter:
    depth: int | None = None
    min_depth: int | None = None
    max_depth: int | None = None
    min_amount: Decimal | None = None  # in the asset's display units (ETH, USDT), not raw
    asset: str | None = None
    address: str | None = None  # sender or recipient
    from_addr: str | None = None
    to_addr: str | None = None
    kind: str | None = None
    status: str | None = None


# Each filter field that is set adds its condition, `{0}` standing for its value's parameter.
_HOP_CONDITIONS = (
    ("depth", "h.depth = {0}"),
    ("min_depth", "h.depth >= {0}"),
    ("max_depth", "h.depth <= {0}"),
    ("asset", "h.asset = {0}"),
    ("address", "(h.from_addr = {0} OR h.to_addr = {0})"),
    ("from_addr", "h.from_addr = {0}"),
    ("to_addr", "h.to_addr = {0}"),
    ("kind", "h.kind = {0}"),
    ("status", "h.status = {0}"),
    # Display units to raw units per row: native has the decimals its transfers carry (8 on
    # Bitcoin), else 18, a token those of its contract (unknown decimals: the amount is raw).
    ("min_amount", f"h.amount >= {{0}}::numeric * power(10::numeric, CASE WHEN h.asset = '{NATIVE}' "
                   f"THEN coalesce(t.decimals, {NATIVE_DECIMALS}) ELSE coalesce(t.decimals, 0) END)"),
)


def _hop_where(f: HopFilter, args: list[Any]) -> str:
    parts = ["h.trace_id = $1"]
    for name, condition in _HOP_CONDITIONS:
        value = getattr(f, name)
        if value is not None:
            args.append(value)
            parts.append(condition.format(f"${len(args)}"))
    return " AND ".join(parts)


# The keyset condition and order of each sort. Mixed directions (amount DESC, transfer_id ASC)
# cannot use a row comparison, so they use an index-friendly bound plus a tie-breaker.
_SORTS: dict[str, tuple[str, str]] = {
    "block": ("(h.block_number, h.transfer_id) > ({k0}::bigint, {k1}::bigint)",
              "h.block_number, h.transfer_id"),
    "-block": ("(h.block_number, h.transfer_id) < ({k0}::bigint, {k1}::bigint)",
               "h.block_number DESC, h.transfer_id DESC"),
    "-amount": ("h.amount <= {k0}::numeric AND (h.amount < {k0}::numeric OR h.transfer_id > {k1}::bigint)",
                "h.amount DESC, h.transfer_id"),
    "amount": ("h.amount >= {k0}::numeric AND (h.amount > {k0}::numeric OR h.transfer_id < {k1}::bigint)",
               "h.amount, h.transfer_id DESC"),
}


def hop_sort_key(sort: str, row: StoredHop) -> list[str]:
    """The keyset of a row for `sort`, as strings (it goes into a cursor)."""
    first = row.block_number if sort.endswith("block") else row.amount
    return [str(first), str(row.transfer_id)]


def _hop(r: asyncpg.Record, parents: tuple[int, ...] = ()) -> StoredHop:
    evidence = r["evidence"]
    return StoredHop(
        transfer_id=r["transfer_id"], from_addr=r["from_addr"], to_addr=r["to_addr"], asset=r["asset"],
        amount=int(r["amount"]), depth=r["depth"], status=r["status"], reason=r["reason"], share=r["share"],
        kind=r["kind"], block_number=r["block_number"], tx_hash=r["tx_hash"], position=r["position"],
        block_time=r["block_time"], decimals=r["decimals"], symbol=r["symbol"], chain=r["chain"],
        confidence=r["confidence"], evidence=json.loads(evidence) if evidence is not None else None, parents=parents,
    )


async def hops_page(
    conn: Conn, trace_id: int, f: HopFilter, *, sort: str, after: Sequence[str] | None, limit: int
) -> list[StoredHop]:
    if sort not in _SORTS:
        raise ValueError(f"unknown sort {sort!r}")
    args: list[Any] = [trace_id]
    where = _hop_where(f, args)
    cond, order = _SORTS[sort]
    if after is not None:
        first = Decimal(after[0]) if sort.endswith("amount") else int(after[0])
        args.extend([first, int(after[1])])
        where += " AND " + cond.format(k0=f"${len(args) - 1}", k1=f"${len(args)}")
    args.append(limit)
    rows = await conn.fetch(
        f"""SELECT {_HOP_COLUMNS} FROM hops h JOIN transfers t ON t.id = h.transfer_id
            WHERE {where} ORDER BY {order} LIMIT ${len(args)}""",
        *args,
    )
    return [_hop(r) for r in rows]


async def trace_assets(conn: Conn, trace_id: int) -> list[tuple[str, str]]:
    """The (chain, asset) pairs a trace's hops move."""
    rows = await conn.fetch("SELECT DISTINCT chain, asset FROM hops WHERE trace_id = $1", trace_id)
    return [(r["chain"], r["asset"]) for r in rows]


async def iter_hops(conn: Conn, trace_id: int, *, prefetch: int = 2000) -> AsyncIterator[StoredHop]:
    """Every hop of a trace through a server-side cursor (the caller holds a transaction), so an
    export of millions of hops streams in constant memory."""
    async for row in conn.cursor(
        f"""SELECT {_HOP_COLUMNS} FROM hops h JOIN transfers t ON t.id = h.transfer_id
            WHERE h.trace_id = $1 ORDER BY h.block_number, h.transfer_id""",
        trace_id, prefetch=prefetch,
    ):
        yield _hop(row)


async def hop_count(conn: Conn, trace_id: int) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM hops WHERE trace_id = $1", trace_id))


# ---------------------------------------------------------------- exits and paths


async def exits(conn: Conn, trace_id: int, *, asset: str | None = None,
                category: str | None = None) -> list[ExitRow]:
    """Every off-ramp reached, one row per (chain, address, asset), largest first.

    The sums come from trace_exits (kept with the hops, tracer.store.hops.refresh_exits), so the
    cost follows the number of exits, not of hops into them, for running traces too. So do the
    times of the first and last block and the token's name, once known (kept there when the row is
    written and when the worker fills them in: tracer.store.described); a row whose values were not
    known yet looks them up in one transfer of that block (index transfers_to), as stored ones were.
    GET /exits reads the same rows as JSON lines (tracer.store.exits)."""
    rows = await conn.fetch(
        f"""SELECT r.chain, r.address, r.asset, r.amount::text AS amount, r.hops, r.senders, r.depth, r.first_block,
                   r.last_block, r.first_time, r.last_time, r.decimals, r.symbol, r.reason, r.entity, r.category,
                   r.evidence::text AS evidence
            FROM ({RESOLVED}) r ORDER BY r.amount DESC, r.address, r.asset""",
        trace_id, asset, category,
    )
    return [ExitRow(r["chain"], r["address"], r["asset"], int(r["amount"]), r["hops"], r["senders"], r["depth"],
                    r["first_block"], r["last_block"], r["first_time"], r["last_time"], r["decimals"], r["symbol"],
                    r["reason"], r["entity"], r["category"],
                    json.loads(r["evidence"]) if r["evidence"] is not None else None)
            for r in rows]


async def bridge_verdicts(conn: Conn, trace_id: int) -> list[BridgeVerdict]:
    """The bridges a trace deposited into (labelled or recognised by event), with the destinations
    and continuations their evidence lists; a deposit continued on the far chain is no exit, so
    these are read apart from `exits`."""
    rows = await conn.fetch(
        """SELECT address, chain, entity, evidence FROM jobs
           WHERE trace_id = $1 AND role = 'exit' AND reason = 'bridge' ORDER BY chain, address""",
        trace_id,
    )
    return [BridgeVerdict(r["address"], r["chain"], r["entity"], r["evidence"]) for r in rows]


async def stops(conn: Conn, trace_id: int) -> list[Stop]:
    """Addresses where the trace stopped without reaching an off-ramp (hubs, mixers, limits), with
    what reached them; a backward trace's stops are senders (unknown sources): what they paid."""
    rows = await conn.fetch(
        """SELECT j.address, j.reason, j.entity, j.category, j.depth, j.chain,
                  coalesce((SELECT jsonb_object_agg(asset, amount::text) FROM
                     (SELECT asset, sum(amount) AS amount FROM hops h WHERE h.trace_id = j.trace_id
                        AND h.chain = j.chain
                        AND (CASE WHEN t.direction = 'backward' THEN h.from_addr ELSE h.to_addr END) = j.address
                      GROUP BY asset) s), '{}'::jsonb) AS amounts
           FROM jobs j JOIN traces t ON t.id = j.trace_id
           WHERE j.trace_id = $1 AND j.role = 'stopped' ORDER BY j.depth, j.address""",
        trace_id,
    )
    return [Stop(r["address"], r["reason"], r["entity"], r["category"], r["depth"], r["chain"], r["amounts"])
            for r in rows]


async def all_hops(conn: Conn, trace_id: int) -> list[StoredHop]:
    """Every hop of the trace, with the hops each was paid out of (`parents`)."""
    rows = await conn.fetch(
        f"""SELECT {_HOP_COLUMNS}, h.parents
            FROM hops h JOIN transfers t ON t.id = h.transfer_id WHERE h.trace_id = $1""",
        trace_id,
    )
    return [_hop(r, tuple(r["parents"])) for r in rows]


async def ancestor_hops(conn: Conn, trace_id: int, target: str, *, max_hops: int) -> list[StoredHop]:
    """The hops that can lead to `target`: walk backwards over followed hops from the hops into it,
    and across bridges from a payout on another chain to the wallets whose deposits it pays out
    (named in the payout hop's evidence; `graph.build` links them).

    Only this part of the trace graph is loaded for a path query, not the whole trace. Returns at
    most max_hops + 1 rows, so the caller can tell when the sub-graph is too big.
    """
    rows = await conn.fetch(
        f"""WITH RECURSIVE up(address) AS (
               SELECT $2::text
               UNION
               SELECT x.address FROM hops h JOIN up ON h.to_addr = up.address
               CROSS JOIN LATERAL (
                   SELECT h.from_addr AS address
                   UNION ALL
                   SELECT d->>'from' FROM jsonb_array_elements(coalesce(h.evidence->'deposits', '[]'::jsonb)) d
               ) x
               WHERE h.trace_id = $1 AND (h.status = 'followed' OR h.to_addr = $2) AND x.address IS NOT NULL
           )
           SELECT {_HOP_COLUMNS}
           FROM hops h JOIN transfers t ON t.id = h.transfer_id
           WHERE h.trace_id = $1 AND h.to_addr IN (SELECT address FROM up)
             AND (h.status = 'followed' OR h.to_addr = $2)
           LIMIT $3""",
        trace_id, target, max_hops + 1,
    )
    return [_hop(r) for r in rows]


# ---------------------------------------------------------------- addresses


async def address_traces(conn: Conn, chain: str, address: str, *, limit: int) -> list[AddressTrace]:
    """The traces an address was reached by (or started from), newest first, with what the trace
    made of it and the flagged amount per asset that reached it."""
    rows = await conn.fetch(
        """SELECT tr.id, tr.status, tr.label, tr.created_at, j.depth, j.is_seed, j.role, j.reason, j.entity,
                  j.category,
                  coalesce((SELECT jsonb_agg(jsonb_build_object('asset', s.asset, 'amount', s.amount::text,
                                                                'decimals', s.decimals, 'symbol', s.symbol)
                                             ORDER BY s.asset)
                            FROM (SELECT h.asset, sum(h.amount) AS amount, max(t.decimals) AS decimals,
                                         max(t.symbol) AS symbol
                                  FROM hops h JOIN transfers t ON t.id = h.transfer_id
                                  WHERE h.trace_id = tr.id AND h.to_addr = $2 AND h.chain = $1
                                  GROUP BY h.asset) s),
                           '[]'::jsonb)::text AS received
           FROM jobs j JOIN traces tr ON tr.id = j.trace_id
           -- the address on this chain, in traces started here or continued here through a bridge
           WHERE j.address = $2 AND j.chain = $1 AND j.kind = 'address'
           ORDER BY tr.id DESC LIMIT $3""",
        chain, address, limit,
    )
    return [AddressTrace(r["id"], r["status"], r["label"], r["created_at"], r["depth"], wallet_verdict(r),
                         tuple(Received(x["asset"], int(x["amount"]), x.get("decimals"), x.get("symbol"))
                               for x in json.loads(r["received"])))
            for r in rows]


def wallet_verdict(r: asyncpg.Record) -> WalletVerdict:
    """The verdict columns of a job row (is_seed, role, reason, entity, category)."""
    return WalletVerdict(r["is_seed"], r["role"], r["reason"], r["entity"], r["category"])


async def traces_seeded_by(conn: Conn, chain: str, address: str, *, limit: int) -> list[int]:
    """Traces that list the address as a seed (also before a worker has started them)."""
    rows = await conn.fetch(
        "SELECT id FROM traces WHERE chain = $1 AND seeds @> ARRAY[$2::text] ORDER BY id DESC LIMIT $3",
        chain, address, limit,
    )
    return [int(r["id"]) for r in rows]


async def job_states(conn: Conn) -> dict[str, int]:
    """Unfinished jobs by state, for /metrics (reads the partial index jobs_claim only)."""
    rows = await conn.fetch("SELECT state, count(*) AS n FROM jobs WHERE state <> 'done' GROUP BY state")
    return {r["state"]: int(r["n"]) for r in rows}


async def trace_statuses(conn: Conn) -> dict[str, int]:
    rows = await conn.fetch("SELECT status, count(*) AS n FROM traces GROUP BY status")
    return {r["status"]: int(r["n"]) for r in rows}


async def iter_graph_nodes(conn: Conn, trace_id: int, *, prefetch: int = 2000) -> AsyncIterator[GraphNode]:
    """Every address at either end of a hop, with the trace's verdict on it when it has one
    (recipients below the threshold were never judged). Server-side cursor: constant memory.
    A hop's sender is on the hop's chain, except a bridge payout's (the vault pays on the
    destination chain too, so it is a node of that chain: one (chain, address) per node)."""
    async for row in conn.cursor(
        """SELECT a.address, a.chain, j.depth, coalesce(j.is_seed, false) AS is_seed, j.role, j.reason, j.entity,
                  j.category
           FROM (SELECT from_addr AS address, chain FROM hops WHERE trace_id = $1
                 UNION SELECT to_addr, chain FROM hops WHERE trace_id = $1) a
           LEFT JOIN jobs j ON j.trace_id = $1 AND j.chain = a.chain AND j.address = a.address
           ORDER BY a.address, a.chain""",
        trace_id, prefetch=prefetch,
    ):
        yield GraphNode(row["address"], row["chain"], row["depth"], wallet_verdict(row))
