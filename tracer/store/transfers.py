"""SQL for chain transfers (facts shared by every trace) and the block ranges fetched per address."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal

import asyncpg

from tracer.domain.records import StoredTransfer
from tracer.domain.transfers import Transfer, TransferKind
from tracer.store.sql import Conn


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


async def require_stored(conn: Conn, ids: Iterable[int | None]) -> None:
    """Fail as the foreign keys into transfers did before migration 026 (hops and mixer rows live
    with their trace on Citus, transfers with their transaction, so no key can join them): a batch that
    read transfers a reorg has since deleted must not write rows naming them."""
    wanted = sorted({i for i in ids if i is not None})
    if wanted and await conn.fetchval(
            "SELECT count(*) FROM transfers WHERE id = ANY($1::bigint[])", wanted) != len(wanted):
        raise asyncpg.ForeignKeyViolationError("a transfer the batch read is no longer stored (a reorg removed it)")


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


async def stored_by_id(conn: Conn, ids: Sequence[int]) -> list[StoredTransfer]:
    """Stored transfers by id (a backward trace reads the linked mixer deposits of its sources so)."""
    rows = await conn.fetch("SELECT * FROM transfers WHERE id = ANY($1::bigint[]) ORDER BY id", list(ids))
    return [_transfer(r) for r in rows]


async def token_units(conn: Conn, chain: str, assets: Sequence[str]) -> dict[str, tuple[str, int | None]]:
    """(symbol, decimals) of the assets of `chain` some stored transfer names a symbol for."""
    rows = await conn.fetch(
        """SELECT DISTINCT ON (asset) asset, symbol, decimals FROM transfers
           WHERE chain = $1 AND asset = ANY($2::text[]) AND symbol IS NOT NULL""",
        chain, list(assets),
    )
    return {r["asset"]: (r["symbol"], r["decimals"]) for r in rows}
