"""Price paths for generated chains: what a Chainlink-compatible aggregator answered over time.

A generated case gets, per priced asset, a path of rounds (one an hour, a bounded random walk from
a plausible start, deterministic by seed) served at the real feed addresses of
`tracer.chains.feeds` (and, for the case's own stablecoin tokens, at the USDT/USD feed address, to
be registered for that token). The devchain answers `latestRoundData()` / `getRoundData()` /
`decimals()` / `description()` at a block from the path, as the aggregator would have then; the
Anvil run places `PriceFeed.sol` there with the same rounds. `usd_at` is the ground truth the demo
checks the trace's dollars against.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode

from tracer.chains import feeds
from tracer.devchain.scenario import KIND_SWAP
from tracer.domain.transfers import NATIVE

DECIMALS = 8
HEARTBEAT = 3600  # seconds between rounds
# Start prices and the largest step of the walk per round (a fraction of the price).
_START = {"ETH / USD": (2000, 0.004), "BTC / USD": (60000, 0.004), "AVAX / USD": (30, 0.006),
          "BNB / USD": (600, 0.005), "MATIC / USD": (0.7, 0.006), "USDT / USD": (1, 0.0002)}

_LATEST, _GET_ROUND = "0xfeaf968c", "0x9a6fc8f5"
_DECIMALS_SEL, _DESCRIPTION, _VERSION = "0x313ce567", "0x7284e416", "0x54fd4d50"


@dataclass(frozen=True)
class PricePath:
    """Rounds 1..n of one feed: round i+1 was published at times[i] with answers[i]."""

    chain: str  # the priced asset's chain
    asset: str  # "native" or a token address
    feed_chain: str
    feed: str
    pair: str
    times: tuple[int, ...]
    answers: tuple[int, ...]
    decimals: int = DECIMALS

    def round_at(self, timestamp: int) -> int:
        """The round id the aggregator's latest round was at `timestamp` (0: none yet)."""
        return bisect.bisect_right(self.times, timestamp)

    def usd_at(self, timestamp: int) -> Decimal | None:
        r = self.round_at(timestamp)
        return None if r == 0 else Decimal(self.answers[r - 1]).scaleb(-self.decimals)

    def answer_call(self, data: str, timestamp: int) -> str | None:
        """The aggregator's return data for call `data` in a block at `timestamp`; None: it reverts."""
        sel = data[:10].lower()
        if sel == _DECIMALS_SEL:
            return "0x" + abi_encode(["uint8"], [self.decimals]).hex()
        if sel == _VERSION:
            return "0x" + abi_encode(["uint256"], [4]).hex()
        if sel == _DESCRIPTION:
            return "0x" + abi_encode(["string"], [self.pair]).hex()
        if sel == _LATEST:
            r = self.round_at(timestamp)
        elif sel == _GET_ROUND and len(data) >= 10 + 64:
            (r,) = abi_decode(["uint80"], bytes.fromhex(data[10:74]))
            if not 1 <= r <= self.round_at(timestamp):
                return None  # "No data present": that round had not been published at this block
        else:
            return None
        if r == 0:
            return None
        t, a = self.times[r - 1], self.answers[r - 1]
        return "0x" + abi_encode(["uint80", "int256", "uint256", "uint256", "uint80"], [r, a, t, t, r]).hex()


def walk(pair: str, start_time: int, end_time: int, *, seed: int, heartbeat: int = HEARTBEAT
         ) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Hourly rounds from `start_time` to past `end_time`: a bounded walk from the pair's start price
    (stablecoins stay within 0.1 % of a dollar)."""
    rng = random.Random(f"{pair}/{seed}")
    start, step = _START.get(pair, (1, 0.004))
    price = float(start) * (1 + rng.uniform(-0.05, 0.05)) if "USDT" not in pair else 1.0
    times, answers = [], []
    t = start_time
    while True:
        times.append(t)
        answers.append(round(price * 10**DECIMALS))
        if t > end_time:
            break
        t += heartbeat
        price *= 1 + rng.uniform(-step, step)
        if "USDT" in pair:
            price = min(1.001, max(0.999, price))
    return tuple(times), tuple(answers)


def paths_for(chain: str, start_time: int, end_time: int, *, seed: int,
              tokens: Sequence[str] = (), btc: bool = False, heartbeat: int = HEARTBEAT) -> list[PricePath]:
    """The feeds a generated `chain` serves: its native coin's (if a known feed exists), USDT/USD for
    each of `tokens` (the case's stablecoins; registered for them by the caller), BTC/USD when
    `btc` (Bitcoin hops are priced from it)."""
    t0 = start_time - HEARTBEAT  # a round already exists at genesis
    out: list[PricePath] = []
    native = feeds.known_feed(chain, NATIVE)
    if native is not None and native.feed_chain == chain:
        out.append(PricePath(chain, NATIVE, chain, native.feed, native.pair,
                             *walk(native.pair, t0, end_time, seed=seed, heartbeat=heartbeat)))
    usdt = feeds.known_feed("ethereum", feeds.USDT)
    for tok in tokens:
        assert usdt is not None
        out.append(PricePath(chain, tok, chain, usdt.feed, usdt.pair,
                             *walk(usdt.pair, t0, end_time, seed=seed, heartbeat=heartbeat)))
    btc_feed = feeds.known_feed("bitcoin", NATIVE)
    if btc and btc_feed is not None:
        out.append(PricePath("bitcoin", NATIVE, chain, btc_feed.feed, btc_feed.pair,
                             *walk(btc_feed.pair, t0, end_time, seed=seed, heartbeat=heartbeat)))
    return out


def by_feed(paths: Iterable[PricePath]) -> dict[str, PricePath]:
    return {p.feed: p for p in paths}


def case_paths(home: Any, far: Sequence[Any] = (), *, bitcoin: Any = None, seed: int = 1,
               sats_per_ether: int = 5_000_000) -> dict[str, list[PricePath]]:
    """The price paths of a generated case by the chain that serves them: the home chain's native
    coin (bent to the prices its swaps paid) and stablecoin tokens, BTC/USD when the case reaches
    Bitcoin, each far EVM chain's native coin. The far coins follow the home coin at the bridge's
    rate (crosschain: `rate` units per ether, `sats_per_ether` for Bitcoin), as arbitrage keeps a
    bridge's quote and the markets together. One time span for all."""
    times = [home.genesis_time, *(b.timestamp for b in home.blocks[-1:])]
    for sc in far:
        times += [sc.genesis_time, *(b.timestamp for b in sc.blocks[-1:])]
    if bitcoin is not None:
        times += [bitcoin.genesis_time, *(b.timestamp for b in bitcoin.blocks[-1:])]
    lo, hi = min(times), max(times)
    home_paths = paths_for(home.chain, lo, hi, seed=seed, tokens=[t.address for t in home.tokens],
                           btc=bitcoin is not None)
    anchors = swap_prices(home)
    native = next(p for p in home_paths if p.chain == home.chain and p.asset == NATIVE)
    native = anchored(native, anchors)
    out = {home.chain: [native if p is not None and p.chain == home.chain and p.asset == NATIVE
                        else _follow(p, native, Fraction(sats_per_ether, 10**8)) if p.chain == "bitcoin" else p
                        for p in home_paths]}
    for sc in far:
        rate = Fraction(str(sc.params.get("crosschain", {}).get("rate", "1")))
        out[sc.chain] = [_follow(p, native, rate) if p.asset == NATIVE else p
                         for p in paths_for(sc.chain, lo, hi, seed=seed)]
    return out


def _follow(path: PricePath, leader: PricePath, units_per_leader: Fraction) -> PricePath:
    """`path` answering the leader's price divided by a fixed rate, round by round."""
    answers = tuple(round(Fraction(a) / units_per_leader) for a in leader.answers)
    return PricePath(path.chain, path.asset, path.feed_chain, path.feed, path.pair, leader.times, answers,
                     path.decimals)


def swap_prices(sc: Any) -> list[tuple[int, Decimal]]:
    """(time, USD per native coin) the case's swaps paid: stablecoin in, native coin out."""
    decimals = {t.address: t.decimals for t in sc.tokens}
    out = []
    for block in sc.blocks:
        for tx in block.txs:
            if tx.kind != KIND_SWAP or not tx.ok or not tx.value or tx.token not in decimals:
                continue
            paid = sum(amount for _, amount in tx.payouts)
            if paid:
                out.append((block.timestamp, Decimal(tx.value).scaleb(-decimals[tx.token]) / Decimal(paid).scaleb(-18)))
    return out


def anchored(path: PricePath, anchors: Sequence[tuple[int, Decimal]]) -> PricePath:
    """`path` bent (by a factor interpolated between anchors) to answer each anchor's price at its
    time: the feed agrees with the swaps the case made, as arbitrage keeps a market and its oracle."""
    if not anchors:
        return path
    points = sorted((t, float(price) / float(path.usd_at(t) or price)) for t, price in anchors)

    def factor(t: int) -> float:
        if t <= points[0][0]:
            return points[0][1]
        for (t0, f0), (t1, f1) in itertools.pairwise(points):
            if t <= t1:
                return f0 + (f1 - f0) * (t - t0) / max(1, t1 - t0)
        return points[-1][1]

    answers = tuple(round(a * factor(t)) for t, a in zip(path.times, path.answers, strict=True))
    return PricePath(path.chain, path.asset, path.feed_chain, path.feed, path.pair, path.times, answers,
                     path.decimals)
