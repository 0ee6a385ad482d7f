"""SQL for USD prices and registered price feeds (schemas/migrations/014_prices.sql)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tracer.chains.feeds import Feed
from tracer.store.sql import Conn


@dataclass(frozen=True, slots=True)
class PriceRow:
    chain: str
    asset: str
    block_number: int | None
    day: dt.date | None
    time: int | None
    usd: Decimal | None
    source: str  # feed | par | file | unavailable
    feed: str | None = None
    round_id: int | None = None
    file: str | None = None
    note: str | None = None
    block_time: int | None = None  # the block's own time (read-side check that it is the same block)


@dataclass(frozen=True, slots=True)
class PriceKey:
    """An asset at a block of its chain, with the block's time: what a hop needs priced."""

    chain: str
    asset: str
    block_number: int
    time: int


@dataclass(frozen=True, slots=True)
class SwapLeg:
    """A stored transfer of a swap transaction that paid or paid out `wallet` (a hop's end)."""

    wallet: str
    chain: str
    tx_hash: str
    id: int
    from_addr: str
    to_addr: str
    asset: str
    amount: int
    decimals: int | None
    block_number: int
    block_time: int


async def register_feed(conn: Conn, feed: Feed) -> None:
    await conn.execute(
        """INSERT INTO price_feeds (chain, asset, feed_chain, feed, pair, provenance) VALUES ($1,$2,$3,$4,$5,$6)
           ON CONFLICT (chain, asset) DO UPDATE SET feed_chain = EXCLUDED.feed_chain, feed = EXCLUDED.feed,
               pair = EXCLUDED.pair, provenance = EXCLUDED.provenance""",
        feed.chain, feed.asset, feed.feed_chain, feed.feed, feed.pair, feed.provenance)


async def registered_feeds(conn: Conn) -> list[Feed]:
    rows = await conn.fetch("SELECT chain, asset, feed_chain, feed, pair, provenance FROM price_feeds")
    return [Feed(r["chain"], r["asset"], r["feed_chain"], r["feed"], r["pair"], r["provenance"]) for r in rows]


async def save_prices(conn: Conn, rows: Iterable[PriceRow]) -> int:
    """Insert or replace prices (same asset, source and block or day): a re-import corrects."""
    data = [(r.chain, r.asset, r.block_number, r.day, r.time, r.usd, r.source, r.feed, r.round_id, r.file, r.note,
             r.block_time) for r in rows]
    if not data:
        return 0
    await conn.executemany(
        """INSERT INTO prices (chain, asset, block_number, day, time, usd, source, feed, round_id, file, note,
                                block_time)
           VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)
           ON CONFLICT (chain, asset, source, coalesce(block_number, -1), coalesce(block_time, -1),
                        coalesce(day, DATE '1970-01-01'))
           DO UPDATE SET time = EXCLUDED.time, usd = EXCLUDED.usd, feed = EXCLUDED.feed,
               round_id = EXCLUDED.round_id, file = EXCLUDED.file, note = EXCLUDED.note, created_at = now()""",
        data)
    return len(data)


_COLUMNS = ("p.chain, p.asset, p.block_number, p.day, p.time, p.usd, p.source, p.feed, p.round_id, p.file, p.note, "
            "p.block_time")


def _rows(rows: Iterable[Any]) -> list[PriceRow]:
    return [PriceRow(r["chain"], r["asset"], r["block_number"], r["day"], r["time"], r["usd"], r["source"],
                     r["feed"], None if r["round_id"] is None else int(r["round_id"]), r["file"], r["note"],
                     r["block_time"])
            for r in rows]


async def prices_of(conn: Conn, assets: Sequence[tuple[str, str]]) -> list[PriceRow]:
    """Every stored price of these (chain, asset) pairs."""
    if not assets:
        return []
    rows = await conn.fetch(
        f"""SELECT {_COLUMNS}
           FROM prices p JOIN unnest($1::text[], $2::text[]) AS w(chain, asset)
             ON p.chain = w.chain AND p.asset = w.asset""",
        [c for c, _ in assets], [a for _, a in assets])
    return _rows(rows)


async def prices_at(conn: Conn, keys: Sequence[PriceKey]) -> list[PriceRow]:
    """The stored prices that can value these keys: those at their blocks, and file prices of their
    UTC days. A page of hops reads these, not every price its assets ever had.

    One index probe per distinct (asset, block) and per distinct (asset, day), each fenced with
    OFFSET 0: asyncpg prepares statements, and after five runs Postgres may switch to a generic
    plan that joined the day branch through prices_key on (chain, asset) alone, reading every
    price of the asset for each key (39 ms a page of hops at 6,000 stored prices)."""
    if not keys:
        return []
    chains, assets = [k.chain for k in keys], [k.asset for k in keys]
    days = [dt.datetime.fromtimestamp(k.time, dt.UTC).date() for k in keys]
    rows = await conn.fetch(
        f"""SELECT {_COLUMNS}
            FROM (SELECT DISTINCT chain, asset, block FROM unnest($1::text[], $2::text[], $3::bigint[])
                    AS w(chain, asset, block)) w
            CROSS JOIN LATERAL (SELECT * FROM prices p WHERE p.chain = w.chain AND p.asset = w.asset
                                  AND p.block_number = w.block OFFSET 0) p
            UNION ALL
            SELECT {_COLUMNS}
            FROM (SELECT DISTINCT chain, asset, day FROM unnest($1::text[], $2::text[], $4::date[])
                    AS w(chain, asset, day)) w
            CROSS JOIN LATERAL (SELECT * FROM prices p WHERE p.chain = w.chain AND p.asset = w.asset
                                  AND p.block_number IS NULL AND p.day = w.day OFFSET 0) p""",
        chains, assets, [k.block_number for k in keys], days)
    return _rows(rows)


async def hop_price_keys(conn: Conn, trace_id: int) -> list[PriceKey]:
    """The distinct (chain, asset, block) of a trace's hops, with the blocks' times."""
    rows = await conn.fetch(
        """SELECT DISTINCT h.chain, h.asset, t.block_number, t.block_time FROM hops h
           JOIN transfers t ON t.id = h.transfer_id WHERE h.trace_id = $1""", trace_id)
    return [PriceKey(r["chain"], r["asset"], int(r["block_number"]), int(r["block_time"] or 0)) for r in rows]


async def swap_transfers(conn: Conn, trace_id: int) -> list[SwapLeg]:
    """Every stored transfer of the transactions a trace saw as swaps (its hops with reason swap),
    with the wallets that swapped (the hops' ends): the legs a swap rate is read from."""
    rows = await conn.fetch(
        """WITH sw AS (
               SELECT DISTINCT t.chain, t.tx_hash, unnest(ARRAY[h.from_addr, h.to_addr]) AS wallet
               FROM hops h JOIN transfers t ON t.id = h.transfer_id
               WHERE h.trace_id = $1 AND h.reason = 'swap')
           SELECT DISTINCT sw.wallet, x.chain, x.tx_hash, x.id, x.from_addr, x.to_addr, x.asset, x.amount,
                  x.decimals, x.block_number, x.block_time
           FROM sw JOIN transfers x ON x.chain = sw.chain AND x.tx_hash = sw.tx_hash
                                   AND (x.from_addr = sw.wallet OR x.to_addr = sw.wallet)
           ORDER BY x.block_number, x.tx_hash, sw.wallet, x.id""", trace_id)
    return [SwapLeg(r["wallet"], r["chain"], r["tx_hash"], int(r["id"]), r["from_addr"], r["to_addr"], r["asset"],
                    int(r["amount"]), r["decimals"], int(r["block_number"]), int(r["block_time"] or 0)) for r in rows]
