"""SQL for mixer pools (events cached from the node) and the links traces infer through them.

Chain facts (`mixer_events`, `mixer_coverage`) are shared by all traces; `mixer_deposits` and
`mixer_links` belong to one trace. Writes are batched (one statement per batch) and idempotent.
`mixer_links()` is the read behind GET /v1/traces/{id}/mixer-links.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg

from tracer.domain.mixer_links import CandidateWithdrawal, DepositRow, LinkReason, MixerDeposit
from tracer.domain.transfers import Transfer, TransferKind
from tracer.store.sql import Conn
from tracer.store.transfers import require_stored


@dataclass(frozen=True, slots=True)
class EventRow:
    pool: str
    kind: str
    block_number: int
    log_index: int
    block_time: int
    tx_hash: str
    note: str
    leaf_index: int | None
    recipient: str | None
    relayer: str | None
    fee: int
    gas_price: int | None


@dataclass(frozen=True, slots=True)
class LinkRow:
    deposit_transfer_id: int
    withdrawal_tx: str
    withdrawal_log_index: int
    withdrawal_transfer_id: int | None
    withdrawal_block: int
    withdrawal_time: int
    recipient: str
    relayer: str | None
    fee: int
    withdrawn: int | None
    confidence: float
    carried: int
    status: str  # followed | candidate
    reasons: list[dict[str, Any]]


# ---------------------------------------------------------------- pool events (chain facts)


async def coverage(conn: Conn, chain: str, pools: Sequence[str]) -> dict[str, int]:
    """Last block whose events are stored, per pool (pools never fetched are absent)."""
    rows = await conn.fetch(
        "SELECT pool, to_block FROM mixer_coverage WHERE chain = $1 AND pool = ANY($2::text[])", chain, list(pools))
    return {r["pool"]: r["to_block"] for r in rows}


async def store_events(conn: Conn, chain: str, events: Sequence[EventRow], covered: Mapping[str, int]) -> None:
    """Insert events (known ones skipped) and move each pool's coverage up to `covered[pool]`."""
    async with conn.transaction():
        if events:
            await conn.execute(
                """INSERT INTO mixer_events (chain, pool, block_number, log_index, block_time, tx_hash, kind, note,
                                             leaf_index, recipient, relayer, fee, gas_price)
                   SELECT $1, e.pool, e.block, e.li, e.t, e.tx, e.kind, e.note, e.leaf, e.recipient, e.relayer, e.fee,
                          e.gas
                   FROM unnest($2::text[], $3::bigint[], $4::int[], $5::bigint[], $6::text[], $7::text[], $8::text[],
                               $9::bigint[], $10::text[], $11::text[], $12::numeric[], $13::numeric[])
                        AS e(pool, block, li, t, tx, kind, note, leaf, recipient, relayer, fee, gas)
                   ON CONFLICT (chain, pool, block_number, log_index) DO NOTHING""",
                chain, [e.pool for e in events], [e.block_number for e in events], [e.log_index for e in events],
                [e.block_time for e in events], [e.tx_hash for e in events], [e.kind for e in events],
                [e.note for e in events], [e.leaf_index for e in events], [e.recipient for e in events],
                [e.relayer for e in events], [Decimal(e.fee) for e in events],
                [Decimal(e.gas_price) if e.gas_price is not None else None for e in events],
            )
        if covered:
            await conn.execute(
                """INSERT INTO mixer_coverage (chain, pool, to_block)
                   SELECT $1, p, b FROM unnest($2::text[], $3::bigint[]) AS c(p, b)
                   ON CONFLICT (chain, pool) DO UPDATE
                   SET to_block = GREATEST(mixer_coverage.to_block, excluded.to_block)""",
                chain, list(covered), list(covered.values()),
            )


def _event(r: asyncpg.Record) -> EventRow:
    return EventRow(r["pool"], r["kind"], r["block_number"], r["log_index"], r["block_time"], r["tx_hash"], r["note"],
                    r["leaf_index"], r["recipient"], r["relayer"], int(r["fee"] or 0),
                    int(r["gas_price"]) if r["gas_price"] is not None else None)


async def events(conn: Conn, chain: str, pools: Sequence[str], from_block: int, to_block: int) -> list[EventRow]:
    """The pools' events in [from_block, to_block], in chain order."""
    rows = await conn.fetch(
        """SELECT * FROM mixer_events WHERE chain = $1 AND pool = ANY($2::text[]) AND block_number BETWEEN $3 AND $4
           ORDER BY block_number, log_index""",
        chain, list(pools), from_block, to_block,
    )
    return [_event(r) for r in rows]


async def counts_before(conn: Conn, chain: str, pools: Sequence[str], block: int) -> dict[str, tuple[int, int]]:
    """(deposits, withdrawals) of each pool before `block`: the start of its unspent-note count."""
    rows = await conn.fetch(
        """SELECT pool, count(*) FILTER (WHERE kind = 'deposit') AS d, count(*) FILTER (WHERE kind = 'withdrawal') AS w
           FROM mixer_events WHERE chain = $1 AND pool = ANY($2::text[]) AND block_number < $3 GROUP BY pool""",
        chain, list(pools), block,
    )
    return {r["pool"]: (int(r["d"]), int(r["w"])) for r in rows}


async def set_gas_prices(conn: Conn, chain: str, prices: Mapping[str, int]) -> None:
    if not prices:
        return
    await conn.execute(
        """UPDATE mixer_events e SET gas_price = g.price
           FROM unnest($2::text[], $3::numeric[]) AS g(tx, price)
           WHERE e.chain = $1 AND e.tx_hash = g.tx AND e.gas_price IS NULL""",
        chain, list(prices), [Decimal(v) for v in prices.values()],
    )


# ---------------------------------------------------------------- a trace's deposits and links


async def write_outcomes(
    conn: Conn, trace_id: int, deposits: Sequence[DepositRow], links: Sequence[LinkRow]
) -> list[int]:
    """Replace what the trace knows of these deposits; return the withdrawal transfer ids whose
    followed total may have changed (before and after), for the caller to re-sum."""
    if not deposits:
        return []
    ids = [d.transfer_id for d in deposits]
    await require_stored(conn, [*ids, *(x.withdrawal_transfer_id for x in links)])
    before = await conn.fetch(
        """SELECT DISTINCT withdrawal_transfer_id FROM mixer_links
           WHERE trace_id = $1 AND deposit_transfer_id = ANY($2::bigint[]) AND status = 'followed'
             AND withdrawal_transfer_id IS NOT NULL""",
        trace_id, ids,
    )
    await conn.execute(
        """INSERT INTO mixer_deposits (trace_id, transfer_id, pool, asset, denomination, depositor, flagged,
                                       anonymity_set, candidates, status)
           SELECT $1, d.tid, d.pool, d.asset, d.denom, d.depositor, d.flagged, d.anon, d.cand, d.status
           FROM unnest($2::bigint[], $3::text[], $4::text[], $5::numeric[], $6::text[], $7::numeric[], $8::int[],
                       $9::int[], $10::text[]) AS d(tid, pool, asset, denom, depositor, flagged, anon, cand, status)
           ON CONFLICT (trace_id, transfer_id) DO UPDATE SET
               flagged = excluded.flagged, anonymity_set = excluded.anonymity_set, candidates = excluded.candidates,
               status = excluded.status, updated_at = now()""",
        trace_id, ids, [d.pool for d in deposits], [d.asset for d in deposits],
        [Decimal(d.denomination) for d in deposits], [d.depositor for d in deposits],
        [Decimal(d.flagged) for d in deposits], [d.anonymity_set for d in deposits],
        [d.candidates for d in deposits], [d.status for d in deposits],
    )
    await conn.execute("DELETE FROM mixer_links WHERE trace_id = $1 AND deposit_transfer_id = ANY($2::bigint[])",
                       trace_id, ids)
    if links:
        await conn.execute(
            """INSERT INTO mixer_links (trace_id, deposit_transfer_id, withdrawal_tx, withdrawal_log_index,
                                        withdrawal_transfer_id, withdrawal_block, withdrawal_time, recipient, relayer,
                                        fee, withdrawn, confidence, carried, status, reasons)
               SELECT $1, l.dep, l.tx, l.li, l.wid, l.block, l.t, l.recipient, l.relayer, l.fee, l.withdrawn, l.conf,
                      l.carried, l.status, l.reasons::jsonb
               FROM unnest($2::bigint[], $3::text[], $4::int[], $5::bigint[], $6::bigint[], $7::bigint[], $8::text[],
                           $9::text[], $10::numeric[], $11::numeric[], $12::float8[], $13::numeric[], $14::text[],
                           $15::text[])
                    AS l(dep, tx, li, wid, block, t, recipient, relayer, fee, withdrawn, conf, carried, status, reasons)
               ON CONFLICT DO NOTHING""",
            trace_id, [x.deposit_transfer_id for x in links], [x.withdrawal_tx for x in links],
            [x.withdrawal_log_index for x in links], [x.withdrawal_transfer_id for x in links],
            [x.withdrawal_block for x in links], [x.withdrawal_time for x in links], [x.recipient for x in links],
            [x.relayer for x in links], [Decimal(x.fee) for x in links],
            [Decimal(x.withdrawn) if x.withdrawn is not None else None for x in links],
            [x.confidence for x in links], [Decimal(x.carried) for x in links], [x.status for x in links],
            [json.dumps(x.reasons) for x in links],
        )
    changed = {r["withdrawal_transfer_id"] for r in before}
    changed.update(x.withdrawal_transfer_id for x in links if x.status == "followed" and x.withdrawal_transfer_id)
    return sorted(changed)


async def followed_into(
    conn: Conn, trace_id: int, withdrawal_ids: Iterable[int]
) -> dict[int, tuple[int, float, list[int], int]]:
    """Per withdrawal transfer: (flagged amount carried by all followed links into it, the
    highest confidence among them, the deposit transfer ids, the smallest depth of their
    deposit hops)."""
    rows = await conn.fetch(
        """SELECT l.withdrawal_transfer_id AS wid, sum(l.carried) AS carried, max(l.confidence) AS conf,
                  array_agg(l.deposit_transfer_id ORDER BY l.deposit_transfer_id) AS deps,
                  coalesce(min(h.depth), 0) AS depth
           FROM mixer_links l
           LEFT JOIN hops h ON h.trace_id = l.trace_id AND h.transfer_id = l.deposit_transfer_id
           WHERE l.trace_id = $1 AND l.withdrawal_transfer_id = ANY($2::bigint[]) AND l.status = 'followed'
           GROUP BY l.withdrawal_transfer_id""",
        trace_id, list(withdrawal_ids),
    )
    return {r["wid"]: (int(r["carried"]), float(r["conf"]), list(r["deps"]), int(r["depth"])) for r in rows}


async def transfers_by_id(conn: Conn, ids: Iterable[int]) -> dict[int, Transfer]:
    """Stored transfers by id (the withdrawals a link hop is written for)."""
    rows = await conn.fetch("SELECT * FROM transfers WHERE id = ANY($1::bigint[])", list(ids))
    return {r["id"]: Transfer(
        chain=r["chain"], block_number=r["block_number"], block_time=r["block_time"], tx_hash=r["tx_hash"],
        tx_index=r["tx_index"], position=r["position"], from_address=r["from_addr"], to_address=r["to_addr"],
        asset=r["asset"], amount=int(r["amount"]), kind=TransferKind(r["kind"]), decimals=r["decimals"],
        symbol=r["symbol"]) for r in rows}


async def lock_trace(conn: Conn, trace_id: int) -> None:
    """Serialise the workers' commits of one trace, until the transaction ends. Link writes need
    it (two workers linking deposits into one withdrawal would each sum without the other's
    links), and so do the job and hop rows every commit touches in no common order."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('tracer.trace_commit'), $1::int)", trace_id % (2**31))


# ---------------------------------------------------------------- reading (the API)


async def mixer_links(
    conn: Conn,
    trace_id: int,
    *,
    status: str | None = None,
    min_confidence: float | None = None,
    after_transfer_id: int | None = None,
    limit: int = 100,
) -> list[MixerDeposit]:
    """A trace's mixer deposits with their candidate withdrawals, one record per deposit.

    Rows are ordered by the deposit's transfer id (keyset: pass the last one as
    `after_transfer_id`). `status` filters deposits ('linked' | 'unlinked'); `min_confidence`
    keeps only links at least that sure (deposits are listed even when none remain); each
    deposit's `links` are best first.
    """
    rows = await conn.fetch(
        """SELECT d.transfer_id, t.tx_hash, t.position, t.block_number, t.block_time, d.pool, d.asset, t.symbol,
                  t.decimals, d.denomination::text AS denomination, d.depositor, d.flagged::text AS flagged,
                  d.anonymity_set, d.candidates, d.status,
                  coalesce((SELECT jsonb_agg(jsonb_build_object(
                              'withdrawal_tx', l.withdrawal_tx, 'withdrawal_log_index', l.withdrawal_log_index,
                              'withdrawal_transfer_id', l.withdrawal_transfer_id,
                              'withdrawal_block', l.withdrawal_block, 'withdrawal_time', l.withdrawal_time,
                              'recipient', l.recipient, 'relayer', l.relayer, 'fee', l.fee::text,
                              'withdrawn', l.withdrawn::text, 'confidence', l.confidence, 'carried', l.carried::text,
                              'status', l.status, 'reasons', l.reasons)
                              ORDER BY l.confidence DESC, l.withdrawal_block, l.withdrawal_log_index)
                            FROM mixer_links l
                            WHERE l.trace_id = d.trace_id AND l.deposit_transfer_id = d.transfer_id
                              AND ($3::float8 IS NULL OR l.confidence >= $3)), '[]'::jsonb) AS links
           FROM mixer_deposits d JOIN transfers t ON t.id = d.transfer_id
           WHERE d.trace_id = $1 AND ($2::text IS NULL OR d.status = $2)
             AND ($4::bigint IS NULL OR d.transfer_id > $4)
           ORDER BY d.transfer_id LIMIT $5""",
        trace_id, status, min_confidence, after_transfer_id, limit,
    )
    return [_deposit(r) for r in rows]


def _deposit(r: asyncpg.Record) -> MixerDeposit:
    links = r["links"]
    if isinstance(links, str):  # jsonb arrives as text unless the pool has a codec for it
        links = json.loads(links)
    return MixerDeposit(
        transfer_id=r["transfer_id"], tx_hash=r["tx_hash"], position=r["position"], block_number=r["block_number"],
        block_time=r["block_time"], pool=r["pool"], asset=r["asset"], symbol=r["symbol"], decimals=r["decimals"],
        denomination=int(r["denomination"]), depositor=r["depositor"], flagged=int(r["flagged"]),
        anonymity_set=r["anonymity_set"], candidates=r["candidates"], status=r["status"],
        links=tuple(_candidate(lk) for lk in links),
    )


def _candidate(lk: dict[str, Any]) -> CandidateWithdrawal:
    return CandidateWithdrawal(
        withdrawal_tx=lk["withdrawal_tx"], withdrawal_log_index=int(lk["withdrawal_log_index"]),
        withdrawal_transfer_id=lk["withdrawal_transfer_id"], withdrawal_block=int(lk["withdrawal_block"]),
        withdrawal_time=int(lk["withdrawal_time"]), recipient=lk["recipient"], relayer=lk["relayer"],
        fee=None if lk["fee"] is None else int(lk["fee"]),
        withdrawn=None if lk["withdrawn"] is None else int(lk["withdrawn"]),
        confidence=float(lk["confidence"]), carried=int(lk["carried"]), status=lk["status"],
        reasons=tuple(LinkReason(x["heuristic"], x["detail"], x["weight"]) for x in lk["reasons"]),
    )
