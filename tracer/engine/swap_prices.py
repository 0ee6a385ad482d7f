"""Tokens with no feed, priced through the swaps the trace saw (issue 19: "other tokens through
the swap rate the trace already saw").

A wallet that paid asset A into a transaction and got asset B out of it (engine/swaps.py) traded
them at that transaction's own rate. When every asset one side paid or got is priced (feed, par,
file) and the other side is one asset with no price, that asset's USD price at the swap's block is
the priced side's dollars over its amount. Hops of that asset with no price of their own then take
the rate of the nearest swap in blocks (the one before them when there is one): the value says
`source: swap` and names the transaction, so a reader can judge a rate from a thin pool."""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext
from typing import Any

from tracer.domain.chains import native_decimals
from tracer.domain.transfers import NATIVE
from tracer.domain.views import StoredHop
from tracer.engine.pricing import PriceBook, Value
from tracer.store import prices as store
from tracer.store.prices import SwapLeg


@dataclass(frozen=True, slots=True)
class SwapRate:
    block_number: int
    usd: Decimal  # per whole unit of the asset
    tx_hash: str
    time: int


def _units(amount: int, decimals: int | None, chain: str, asset: str) -> Decimal | None:
    if asset == NATIVE:
        decimals = native_decimals(chain)
    if decimals is None:
        return None
    return Decimal(amount).scaleb(-decimals)


class SwapBook:
    """Swap rates by (chain, asset), in block order."""

    def __init__(self) -> None:
        self.rates: dict[tuple[str, str], list[SwapRate]] = defaultdict(list)

    def add(self, chain: str, asset: str, rate: SwapRate) -> None:
        self.rates[(chain, asset)].append(rate)

    def rate(self, chain: str, asset: str, block: int) -> SwapRate | None:
        rates = self.rates.get((chain, asset))
        if not rates:
            return None
        i = bisect.bisect_right([r.block_number for r in rates], block)
        return rates[i - 1] if i > 0 else rates[0]

    def value(self, chain: str, asset: str, block: int, amount: int, decimals: int | None) -> Value | None:
        r = self.rate(chain, asset, block)
        units = _units(amount, decimals, chain, asset)
        if r is None or units is None:
            return None
        with localcontext() as ctx:
            ctx.prec = 100
            usd = units * r.usd
        return Value(usd, r.usd, "swap", f"swap rate in tx {r.tx_hash} at block {r.block_number}", r.time)


def swap_book(rows: Sequence[SwapLeg], book: PriceBook) -> SwapBook:
    """Rates from `store.swap_transfers` rows, with prices looked up in `book`."""
    with localcontext() as ctx:
        ctx.prec = 100  # as hop values are: a rate read back by hand is the same number
        return _swap_book(rows, book)


def _swap_book(rows: Sequence[SwapLeg], book: PriceBook) -> SwapBook:
    out = SwapBook()
    by_swap: dict[tuple[str, str, str], list[SwapLeg]] = defaultdict(list)
    for r in rows:
        by_swap[(r.chain, r.tx_hash, r.wallet)].append(r)
    for (chain, tx, wallet), legs in by_swap.items():
        paid = [r for r in legs if r.from_addr == wallet and r.amount > 0]
        paid_assets = {r.asset for r in paid}
        got = [r for r in legs if r.to_addr == wallet and r.amount > 0 and r.asset not in paid_assets]
        if not paid or not got:
            continue
        block, time = legs[0].block_number, legs[0].block_time
        for known, unknown in ((paid, got), (got, paid)):
            if len({r.asset for r in unknown}) != 1:
                continue
            total = Decimal(0)
            for r in known:
                v = book.value(chain, r.asset, block, time, r.amount, r.decimals)
                if v.usd is None:
                    break
                total += v.usd
            else:
                asset = unknown[0].asset
                units = sum((_units(r.amount, r.decimals, chain, asset) or Decimal(0)) for r in unknown)
                price, _ = book.price(chain, asset, block, time)
                if units > 0 and total > 0 and (price is None or price.usd is None):
                    out.add(chain, asset, SwapRate(block, total / units, tx, time))
    for rates in out.rates.values():
        rates.sort(key=lambda r: r.block_number)
    return out


async def price_by_swaps(conn: Any, trace_id: int, hops: Sequence[StoredHop], values: dict[int, Value]) -> int:
    """Fill in `values` (by transfer id) of `hops` that have no price from the trace's swap rates;
    returns how many were."""
    missing = [h for h in hops if values[int(h.transfer_id)].usd is None]
    if not missing:
        return 0
    rows = await store.swap_transfers(conn, trace_id)
    if not rows:
        return 0
    book = PriceBook(await store.prices_of(conn, sorted({(r.chain, r.asset) for r in rows})))
    swaps = swap_book(rows, book)
    n = 0
    for h in missing:
        v = swaps.value(h.chain, h.asset, int(h.block_number), int(h.amount), h.decimals)
        if v is not None:
            values[int(h.transfer_id)] = v
            n += 1
    return n
