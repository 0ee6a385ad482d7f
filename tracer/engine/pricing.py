"""USD values of a trace's hops: prices fetched once per (asset, block) and kept, values computed
when read.

`price_trace` finds the (chain, asset, block) of every hop that has no stored price yet and reads
the asset's feed (tracer/chains/feeds.py, or one registered in `price_feeds`) at those blocks, one
JSON-RPC batch per feed chain. A feed on another chain than the asset (Bitcoin's BTC by Ethereum's
BTC/USD) is read at that chain's last block at or before the hop's time. A node without the old
state, a feed that reverts, an asset with no feed: the price is stored as `unavailable` with the
reason, and the value falls back to an imported file price (by block, else by UTC day), else it is
unknown (None, never 0). Known stablecoins with no feed answer are valued at par, flagged `par`.

`hop_values` is the read side: each hop's USD with the price's source, for reports and the API.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from typing import Any, Protocol

import asyncpg

from tracer.chains import feeds as known
from tracer.chains.errors import ChainError
from tracer.chains.prices import FeedMiss, FeedRound, latest_rounds
from tracer.domain.chains import native_decimals
from tracer.domain.transfers import NATIVE
from tracer.domain.views import StoredHop
from tracer.engine.service import block_at_time
from tracer.store import prices as store
from tracer.store.prices import PriceKey, PriceRow

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class HopAmount:
    """A hop to value that is no stored hop (a hop event's payload); `transfer_id`: the key of its value."""

    transfer_id: int
    chain: str
    asset: str
    amount: int
    block_number: int
    block_time: int
    decimals: int | None


# What valuing a hop reads (transfer_id, chain, asset, amount, block_number, block_time, decimals):
# a hop as stored, or an event's amount.
PricedHop = StoredHop | HopAmount



class _FeedChain(Protocol):
    rpc: Any

    async def head(self) -> int: ...

    async def block_times(self, numbers: Sequence[int]) -> dict[int, int]: ...


@dataclass
class PricingRun:
    """What `price_trace` did: prices stored by source, and why some are unknown."""

    asked: int = 0
    stored: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    misses: dict[tuple[str, str, int], str] = field(default_factory=dict)  # why a price is unknown
    #: The stored prices that value the keys asked (read before, plus those just stored): a caller
    #: values its hops from these without reading the prices again.
    rows: list[PriceRow] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Value:
    """A coin amount in USD at its block's price; usd None when no price is known."""

    usd: Decimal | None
    price: Decimal | None
    source: str | None  # feed | par | file
    detail: str  # feed address and round, file name, or why unknown
    time: int | None  # when the price stood (the feed round's time, the file day's start)

    def to_json(self) -> dict[str, Any]:
        return {"usd": usd_text(self.usd), "price": None if self.price is None else str(self.price),
                "source": self.source, "detail": self.detail, "time": self.time}


def usd_text(value: Decimal | None) -> str | None:
    """USD as a decimal string with cents (None stays None)."""
    if value is None:
        return None
    return format(value.quantize(Decimal("0.01")), "f")


def feed_of(chain: str, asset: str, registered: Sequence[known.Feed]) -> known.Feed | None:
    for f in registered:
        if f.chain == chain and f.asset == asset:
            return f
    return known.known_feed(chain, asset)


async def price_trace(pool: asyncpg.Pool, chains: Mapping[str, Any], trace_id: int) -> PricingRun:
    """Fetch and store the prices a trace's hops still lack (see the module doc)."""
    async with pool.acquire() as conn:
        keys = await store.hop_price_keys(conn, trace_id)
    return await price_keys(pool, chains, keys)


def keys_of(hops: Iterable[PricedHop]) -> list[PriceKey]:
    """The price keys of hops (chain, asset, block_number, block_time)."""
    return list({PriceKey(h.chain, h.asset, int(h.block_number), int(h.block_time or 0)): None for h in hops})


async def price_keys(pool: asyncpg.Pool, chains: Mapping[str, Any], keys: Sequence[PriceKey],
                     registered: Sequence[known.Feed] | None = None) -> PricingRun:
    """Fetch and store the prices of `keys` not stored yet; `registered`: the feeds of
    `price_feeds` when the caller keeps them (else they are read)."""
    run = PricingRun()
    if not keys:
        return run
    async with pool.acquire() as conn:
        if registered is None:
            registered = await store.registered_feeds(conn)
        have = await store.prices_at(conn, keys)
    done = {(p.chain, p.asset, p.block_number, p.block_time) for p in have
            if p.source in ("feed", "par", "unavailable")}
    todo = [k for k in keys if (k.chain, k.asset, k.block_number, k.time) not in done]
    run.asked = len(todo)
    rows: list[PriceRow] = []
    by_feed_chain: dict[str, list[tuple[PriceKey, known.Feed]]] = defaultdict(list)
    for k in todo:
        f = feed_of(k.chain, k.asset, registered)
        if f is None:
            rows.append(_par_or_unknown(k, "no price feed known for this asset"))
        else:
            by_feed_chain[f.feed_chain].append((k, f))
    for feed_chain, items in by_feed_chain.items():
        client = chains.get(feed_chain)
        if client is None or not hasattr(client, "rpc"):
            note = f"no {feed_chain} node configured to read its price feeds"
            run.notes.append(note)
            rows += [_par_or_unknown(k, note) for k, _ in items]
            continue
        try:
            rows += await _read_feeds(client, feed_chain, items, run)
        except ChainError as exc:
            note = f"{feed_chain} node failed reading price feeds: {exc}"
            log.warning("prices: %s", note)
            # Not stored: a node that failed now may answer the next read.
            run.notes.append(note)
    # Only prices are kept: why one is unknown depends on the node, the feeds registered and the
    # files imported, any of which can change before the next read.
    for r in rows:
        if r.usd is None:
            assert r.block_number is not None
            run.misses[(r.chain, r.asset, r.block_number)] = r.note or "no price"
    kept = [r for r in rows if r.usd is not None]
    run.rows = [*have, *kept]
    if kept:
        async with pool.acquire() as conn, conn.transaction():
            await store.save_prices(conn, kept)
    for r in kept:
        run.stored[r.source] = run.stored.get(r.source, 0) + 1
    return run


async def _read_feeds(client: _FeedChain, feed_chain: str, items: list[tuple[PriceKey, known.Feed]],
                      run: PricingRun) -> list[PriceRow]:
    # A feed on another chain is read at that chain's block of the hop's time (once per time).
    at: dict[tuple[str, str, int], int] = {}
    foreign = sorted({k.time for k, f in items if k.chain != feed_chain})
    if foreign:
        head = await client.head()
        for t in foreign:
            at[("", "", t)] = await block_at_time(client, t, head, after=False)
    queries = []
    for k, f in items:
        block = k.block_number if k.chain == feed_chain else at[("", "", k.time)]
        queries.append((f.feed, block))
    answers = await latest_rounds(client.rpc, [q for q in queries if q[1] >= 0])
    out: list[PriceRow] = []
    no_state = 0
    for (k, f), q in zip(items, queries, strict=True):
        ans = answers.get(q) if q[1] >= 0 else FeedMiss(f.feed, None, "reverted", "no block that early")
        if isinstance(ans, FeedRound):
            out.append(PriceRow(k.chain, k.asset, k.block_number, None, ans.updated_at, ans.usd, "feed",
                                feed=f.feed, round_id=ans.round_id,
                                note=f"{f.pair} on {feed_chain} at block {q[1]}", block_time=k.time))
        else:
            assert ans is not None
            if ans.reason == "no_state":
                no_state += 1
            out.append(_par_or_unknown(k, f"{f.pair} feed {f.feed} at {feed_chain} block {q[1]}: "
                                          f"{ans.reason} ({ans.detail})"))
    if no_state:
        run.notes.append(f"the {feed_chain} node keeps no state at {no_state} of the blocks asked: "
                         "those prices come from imported price files, else are unknown")
    return out


def _par_or_unknown(k: PriceKey, why: str) -> PriceRow:
    symbol = known.STABLECOINS.get((k.chain, k.asset))
    if symbol is not None:
        return PriceRow(k.chain, k.asset, k.block_number, None, k.time, Decimal(1), "par",
                        note=f"{symbol} valued at 1 USD (par): {why}", block_time=k.time)
    return PriceRow(k.chain, k.asset, k.block_number, None, k.time, None, "unavailable", note=why, block_time=k.time)


class PriceBook:
    """Stored prices of some assets, looked up as a hop needs: feed or par at its block, else a
    file price for that block, else a file price for its UTC day."""

    def __init__(self, rows: Iterable[PriceRow], misses: Mapping[tuple[str, str, int], str] | None = None) -> None:
        self.misses = misses or {}
        self.at_block: dict[tuple[str, str, int, int | None], PriceRow] = {}
        self.file_block: dict[tuple[str, str, int], PriceRow] = {}
        self.file_day: dict[tuple[str, str, dt.date], PriceRow] = {}
        for r in rows:
            if r.source == "file":
                if r.block_number is not None:
                    self.file_block[(r.chain, r.asset, r.block_number)] = r
                elif r.day is not None:
                    self.file_day[(r.chain, r.asset, r.day)] = r
            elif r.block_number is not None:
                self.at_block[(r.chain, r.asset, r.block_number, r.block_time)] = r

    def price(self, chain: str, asset: str, block: int, time: int) -> tuple[PriceRow | None, str]:
        row = self.at_block.get((chain, asset, block, time))
        if row is not None and row.usd is not None:
            return row, ""
        why = (row.note or "" if row is not None else self.misses.get((chain, asset, block), "not priced yet"))
        hit = self.file_block.get((chain, asset, block))
        if hit is None:
            day = dt.datetime.fromtimestamp(time, dt.UTC).date()
            hit = self.file_day.get((chain, asset, day))
        return (hit, why) if hit is not None else (None, why)

    def value(self, chain: str, asset: str, block: int, time: int, amount: int, decimals: int | None) -> Value:
        row, why = self.price(chain, asset, block, time)
        if row is None or row.usd is None:
            return Value(None, None, None, why or "no price", None)
        if asset == NATIVE:
            decimals = native_decimals(chain)
        if decimals is None:
            return Value(None, row.usd, row.source, "the token's decimals are unknown", row.time)
        with localcontext() as ctx:
            ctx.prec = 100
            usd = Decimal(amount).scaleb(-decimals) * row.usd
        if row.source == "feed":
            detail = f"feed {row.feed} round {row.round_id}"
        elif row.source == "file":
            detail = f"file {row.file}"
        else:
            detail = row.note or row.source
        when = row.time
        if row.source == "file" and row.day is not None and row.block_number is None:
            when = int(dt.datetime.combine(row.day, dt.time(), dt.UTC).timestamp())
        return Value(usd, row.usd, row.source, detail, when)


async def price_book(conn: Any, assets: Iterable[tuple[str, str]],
                     misses: Mapping[tuple[str, str, int], str] | None = None) -> PriceBook:
    return PriceBook(await store.prices_of(conn, sorted(set(assets))), misses)


async def priced_hop_values(pool: asyncpg.Pool, chains: Mapping[str, Any], hops: Sequence[PricedHop],
                            registered: Sequence[known.Feed] | None = None) -> dict[int, Value]:
    """USD of hop rows, reading the prices still missing first: one read of the stored prices for
    both steps (a page of hops is valued with one query, whatever its size, when the caller keeps
    the registered feeds)."""
    run = await price_keys(pool, chains, keys_of(hops), registered)
    return _values(PriceBook(run.rows, run.misses), hops)


def _values(book: PriceBook, hops: Sequence[PricedHop]) -> dict[int, Value]:
    return {int(h.transfer_id): book.value(h.chain, h.asset, int(h.block_number), int(h.block_time or 0),
                                           int(h.amount), h.decimals)
            for h in hops}


async def hop_values(conn: Any, hops: Sequence[PricedHop], run: PricingRun | None = None) -> dict[int, Value]:
    """USD of each hop, by transfer id; `run`: the pricing that preceded, for why a price is unknown."""
    return _values(PriceBook(await store.prices_at(conn, keys_of(hops)), run.misses if run else None), hops)
