"""trace_exits (migration 019) holds, after every write of hops, exactly what aggregating the
trace's exit hops gives: hops written as exits, amounts that grow, addresses classified later
(exit by behaviour, then stopped), and hops a reorg retracts. Real Postgres, the store functions
the worker's commit calls, each in its own transaction like a commit."""

from __future__ import annotations

from typing import Any

import pytest

from tracer.domain.records import HopRow
from tracer.domain.transfers import Transfer, TransferKind
from tracer.store import follow, reads
from tracer.store import traces as store
from tracer.store.db import Database

pytestmark = pytest.mark.asyncio(loop_scope="session")

CHAIN = "ethereum"
SEED = "0x" + "5e" * 20
EXCHANGE = "0x" + "ee" * 20
DEPOSIT = "0x" + "dd" * 20
TOKEN = "0x" + "70" * 20


def _addr(i: int) -> str:
    return f"0x{i:040x}"


async def _aggregate(db: Database, trace_id: int) -> set[tuple[Any, ...]]:
    """The exits by definition: the trace's exit hops, summed per (chain, address, asset)."""
    rows = await db.pool.fetch(
        """SELECT chain, to_addr, asset, sum(amount)::text, count(*), count(DISTINCT from_addr), min(depth),
                  min(block_number), max(block_number)
           FROM hops WHERE trace_id = $1 AND status = 'exit' GROUP BY chain, to_addr, asset""", trace_id)
    return {tuple(r) for r in rows}


async def _table(db: Database, trace_id: int) -> set[tuple[Any, ...]]:
    rows = await db.pool.fetch(
        """SELECT chain, address, asset, amount::text, hops, senders, depth, first_block, last_block
           FROM trace_exits WHERE trace_id = $1""", trace_id)
    return {tuple(r) for r in rows}


async def test_the_exits_table_follows_every_write_of_hops(db: Database) -> None:
    async with db.pool.acquire() as conn:
        trace_id = await store.insert_trace(conn, chain=CHAIN, seeds=[SEED], policy={}, label="exits-table",
                                            from_block=1, to_block=100)
        transfers = [Transfer(CHAIN, 10 + i, 1_700_000_000 + i, f"0x{0xE0000 + i:064x}", 0, "tx",
                              SEED if i < 3 else _addr(i), EXCHANGE if i % 2 else DEPOSIT,
                              TOKEN if i == 5 else "native", 10**18 + i, TransferKind.TOKEN if i == 5
                              else TransferKind.NATIVE, 6 if i == 5 else None, "USDT" if i == 5 else None)
                     for i in range(6)]
        await store.store_transfers(conn, transfers)
        ids = {r["tx_hash"]: r["id"] for r in await conn.fetch(
            "SELECT id, tx_hash FROM transfers WHERE tx_hash = ANY($1::text[])", [t.tx_hash for t in transfers])}

    def hop(i: int, status: str, amount: int | None = None) -> HopRow:
        t = transfers[i]
        return HopRow(transfer_id=ids[t.tx_hash], from_addr=t.from_address, to_addr=t.to_address, asset=t.asset,
                      block_number=t.block_number, depth=1 + i % 3, amount=amount if amount is not None else t.amount,
                      share=1.0, kind=str(t.kind), status=status,
                      reason="label:test" if status == "exit" else "flagged funds", parents=[])

    async def commit(fn: Any) -> None:
        async with db.pool.acquire() as conn, conn.transaction():
            await fn(conn)

    # Exits into the exchange (two assets), hops into the deposit address still followed.
    await commit(lambda c: store.upsert_hops(c, trace_id, [hop(i, "exit" if i % 2 else "followed")
                                                           for i in range(6)]))
    assert await _table(db, trace_id) == await _aggregate(db, trace_id)
    assert {(r[1], r[2]) for r in await _table(db, trace_id)} == {(EXCHANGE, "native"), (EXCHANGE, TOKEN)}

    # An exit hop's amount grows (more flagged money reached it through a later batch).
    await commit(lambda c: store.upsert_hops(c, trace_id, [hop(1, "exit", 5 * 10**18)]))
    assert await _table(db, trace_id) == await _aggregate(db, trace_id)

    # The deposit address is judged an exit by behaviour: its hops become exits.
    await commit(lambda c: store.mark_hops_into(c, trace_id, [DEPOSIT], "exit", "deposit_address", CHAIN))
    table = await _table(db, trace_id)
    assert table == await _aggregate(db, trace_id)
    assert DEPOSIT in {r[1] for r in table}

    # ... and later stopped (a limit): it is no exit any more.
    await commit(lambda c: store.mark_hops_into(c, trace_id, [DEPOSIT], "stopped", "max_hops", CHAIN))
    table = await _table(db, trace_id)
    assert table == await _aggregate(db, trace_id) and DEPOSIT not in {r[1] for r in table}

    # A reorg past block 12 retracts the later hops: their exits shrink or go.
    async with db.pool.acquire() as conn:
        await follow.retract_after(conn, CHAIN, 12, old_hash=None, new_hash=None)
    assert await _table(db, trace_id) == await _aggregate(db, trace_id)
    assert {r[7] for r in await _table(db, trace_id)} <= {11}

    # The API's read: the same sums, largest first.
    async with db.pool.acquire() as conn:
        lines = await reads.exits(conn, trace_id)
    assert [(x.address, x.asset, x.amount) for x in lines] == sorted(
        [(r[1], r[2], int(r[3])) for r in await _aggregate(db, trace_id)], key=lambda x: (-x[2], x[0], x[1]))
    assert lines and lines[0].first_time == 1_700_000_001 and lines[0].symbol is None


async def _stored(db: Database, trace_id: int) -> dict[str, tuple[Any, ...]]:
    rows = await db.pool.fetch(
        "SELECT asset, first_time, last_time, decimals, symbol FROM trace_exits WHERE trace_id = $1", trace_id)
    return {r["asset"]: tuple(r)[1:] for r in rows}


async def test_exit_times_and_token_names_are_kept_once_the_worker_fills_them_in(db: Database) -> None:
    """Transfers stored without block time (-1) or token name, as the worker stores them: the exits
    say so (looked up, as before); once the worker describes them, the trace_exits row holds the
    times and the name (same transaction), so /exits reads no transfer for them."""
    from tracer.store import described

    async with db.pool.acquire() as conn:
        trace_id = await store.insert_trace(conn, chain=CHAIN, seeds=[SEED], policy={}, label="exit-times",
                                            from_block=1, to_block=100)
        transfers = [Transfer(CHAIN, 40 + i, -1, f"0x{0xE1000 + i:064x}", 0, "tx", SEED, EXCHANGE,
                              TOKEN if i == 2 else "native", 10**18 + i,
                              TransferKind.TOKEN if i == 2 else TransferKind.NATIVE, None, None)
                     for i in range(3)]
        await store.store_transfers(conn, transfers)
        ids = [r["id"] for r in await conn.fetch(
            "SELECT id FROM transfers WHERE tx_hash = ANY($1::text[]) ORDER BY block_number",
            [t.tx_hash for t in transfers])]
        async with conn.transaction():
            await store.upsert_hops(conn, trace_id, [
                HopRow(transfer_id=ids[i], from_addr=SEED, to_addr=EXCHANGE, asset=t.asset,
                       block_number=t.block_number, depth=1, amount=t.amount, share=1.0, kind=str(t.kind),
                       status="exit", reason="label:test", parents=[]) for i, t in enumerate(transfers)])
        before = {x.asset: (x.first_time, x.last_time, x.decimals, x.symbol) for x in await reads.exits(conn, trace_id)}
        assert before == {"native": (-1, -1, None, None), TOKEN: (-1, -1, None, None)}
        async with conn.transaction():
            await described.describe_transfers(conn, [(ids[0], 1_700_000_040, None, None),
                                                      (ids[1], 1_700_000_041, None, None),
                                                      (ids[2], 1_700_000_042, 6, "USDT")])
        after = {x.asset: (x.first_time, x.last_time, x.decimals, x.symbol) for x in await reads.exits(conn, trace_id)}
    expected = {"native": (1_700_000_040, 1_700_000_041, None, None), TOKEN: (1_700_000_042, 1_700_000_042, 6, "USDT")}
    assert after == expected
    # Kept in the table, not looked up: the read's fallback is not what answered.
    assert await _stored(db, trace_id) == expected
