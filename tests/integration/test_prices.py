"""USD prices: Chainlink-compatible feeds read with eth_call at blocks (devchain aggregators with
hand-set rounds), the price file importer as hostile input, and a traced case's hops valued at
their blocks' prices (feed, else imported file, else unknown, never 0).

The tests that need nothing outside the process are in tests/unit/test_prices.py.
"""

from __future__ import annotations

from decimal import Decimal, localcontext
from pathlib import Path
from typing import Any

import pytest

from tracer.chains import feeds
from tracer.chains.evm import EvmChain
from tracer.chains.prices import FeedMiss, FeedRound, latest_rounds, rounds_by_id
from tracer.devchain.prices import PricePath, paths_for
from tracer.devchain.scenario import Scenario
from tracer.domain.transfers import NATIVE
from tracer.engine import pricing
from tracer.engine.price_file import parse_price_file
from tracer.engine.service import create_trace
from tracer.runner import run_with_workers
from tracer.store import prices as price_store
from tracer.store.db import Database

ETH_USD = feeds.known_feed("ethereum", NATIVE)
assert ETH_USD is not None


def _hand_path(sc: Scenario) -> PricePath:
    ts = [sc.genesis_time] + [b.timestamp for b in sc.blocks]
    # Hand-set rounds: 2,000.12345678 from block 1, 2,010 from block 10, 1,999.5 from block 20.
    return PricePath("ethereum", NATIVE, "ethereum", ETH_USD.feed, "ETH / USD", (ts[1], ts[10], ts[20]),
                     (200012345678, 201000000000, 199950000000))


@pytest.mark.asyncio(loop_scope="session")
async def test_feed_rounds_at_blocks_match_the_hand_set_rounds(small_scenario: Scenario,
                                                              devchain_factory: Any) -> None:
    sc = small_scenario
    node = await devchain_factory(sc, prices=[_hand_path(sc)])
    client = EvmChain(node.url, chain="ethereum")
    await client.connect()
    try:
        before = client.request_counts["http"]
        got = await latest_rounds(client.rpc, [(ETH_USD.feed, b) for b in (0, 1, 5, 10, 19, 20, 30)])
        assert client.request_counts["http"] - before == 1  # one batch for every block
        ts = [sc.genesis_time] + [b.timestamp for b in sc.blocks]
        want = {1: (1, 200012345678, ts[1]), 5: (1, 200012345678, ts[1]), 10: (2, 201000000000, ts[10]),
                19: (2, 201000000000, ts[10]), 20: (3, 199950000000, ts[20]), 30: (3, 199950000000, ts[20])}
        for block, (round_id, answer, updated) in want.items():
            r = got[(ETH_USD.feed, block)]
            assert isinstance(r, FeedRound), r
            assert (r.round_id, r.answer, r.decimals, r.updated_at) == (round_id, answer, 8, updated)
        assert got[(ETH_USD.feed, 5)].usd == Decimal("2000.12345678")  # type: ignore[union-attr]
        early = got[(ETH_USD.feed, 0)]
        assert isinstance(early, FeedMiss) and early.reason == "reverted"  # no round published yet
        by_id = await rounds_by_id(client.rpc, [(ETH_USD.feed, 2), (ETH_USD.feed, 3), (ETH_USD.feed, 4)])
        assert by_id[(ETH_USD.feed, 2)].usd == Decimal("2010")  # type: ignore[union-attr]
        assert by_id[(ETH_USD.feed, 3)].usd == Decimal("1999.5")  # type: ignore[union-attr]
        assert isinstance(by_id[(ETH_USD.feed, 4)], FeedMiss)
        # Not a feed at all: an account without code answers nothing, which is no price.
        other = await latest_rounds(client.rpc, [(sc.seeds[0], 5)])
        assert isinstance(other[(sc.seeds[0].lower(), 5)], FeedMiss)
    finally:
        await client.close()


@pytest.mark.asyncio(loop_scope="session")
async def test_a_node_without_old_state_says_so_for_feeds(small_scenario: Scenario, devchain_factory: Any) -> None:
    node = await devchain_factory(small_scenario, prices=[_hand_path(small_scenario)], keep_states=1)
    client = EvmChain(node.url, chain="ethereum")
    await client.connect()
    try:
        head = await client.head()
        got = await latest_rounds(client.rpc, [(ETH_USD.feed, 5), (ETH_USD.feed, head)])
        old = got[(ETH_USD.feed, 5)]
        assert isinstance(old, FeedMiss) and old.reason == "no_state"
        assert isinstance(got[(ETH_USD.feed, head)], FeedRound)
    finally:
        await client.close()


def _amounts(rows: Any) -> list[pricing.HopAmount]:
    """Hop rows as pricing reads them."""
    return [pricing.HopAmount(r["transfer_id"], r["chain"], r["asset"], int(r["amount"]), r["block_number"],
                              r["block_time"], r["decimals"]) for r in rows]


def _write(tmp: Path, name: str, text: str | bytes) -> Path:
    p = tmp / name
    p.write_bytes(text.encode() if isinstance(text, str) else text)
    return p


@pytest.mark.asyncio(loop_scope="session")
async def test_a_traced_case_is_valued_at_its_blocks_prices(small_scenario: Scenario, devchain_factory: Any,
                                                          db: Database) -> None:
    sc = small_scenario
    ts = [sc.genesis_time] + [b.timestamp for b in sc.blocks]
    # A round every 2 blocks: a price read at the wrong block shows.
    paths = paths_for("ethereum", ts[0], ts[-1], seed=3, tokens=[t.address for t in sc.tokens], heartbeat=24)
    node = await devchain_factory(sc, prices=paths)
    client = EvmChain(node.url, chain=sc.chain, expected_chain_id=sc.chain_id)
    await client.connect()
    try:
        async with db.pool.acquire() as conn:
            for p in paths:
                if p.asset != NATIVE:
                    await price_store.register_feed(conn, feeds.Feed(p.chain, p.asset, p.feed_chain, p.feed, p.pair,
                                                                     "test: devchain price path"))
        trace_id = await create_trace(db.pool, client, chain=sc.chain, seeds=sc.seeds, policy={"max_depth": 4})
        assert await run_with_workers(db.pool, {sc.chain: client}, trace_id, workers=1, progress=False) == "done"
        before = client.request_counts["http"]
        run = await pricing.price_trace(db.pool, {sc.chain: client}, trace_id)
        assert run.asked > 0 and run.stored.get("feed") == run.asked, run
        assert client.request_counts["http"] - before <= 2  # one batch (cut only by the batch size)
        again = await pricing.price_trace(db.pool, {sc.chain: client}, trace_id)
        assert again.asked == 0  # kept: a second report reads no node
        async with db.pool.acquire() as conn:
            hops = await conn.fetch(
                """SELECT h.transfer_id, h.chain, h.asset, h.amount, t.block_number, t.block_time, t.decimals
                   FROM hops h JOIN transfers t ON t.id = h.transfer_id WHERE h.trace_id = $1""", trace_id)
            values = await pricing.hop_values(conn, _amounts(hops))
        by_asset = {p.asset: p for p in paths}
        assert {h["asset"] for h in hops} - set(by_asset) == set()
        for h in hops:
            v = values[h["transfer_id"]]
            path = by_asset[h["asset"]]
            want_price = path.usd_at(h["block_time"])
            decimals = 18 if h["asset"] == NATIVE else sc.token(h["asset"]).decimals
            assert v.source == "feed" and v.price == want_price
            with localcontext(prec=100):
                assert v.usd == Decimal(int(h["amount"])).scaleb(-decimals) * want_price
            assert v.detail.startswith(f"feed {path.feed} round {path.round_at(h['block_time'])}")
    finally:
        await client.close()


@pytest.mark.asyncio(loop_scope="session")
async def test_without_old_state_prices_fall_back_to_the_file_else_unknown(
        small_scenario: Scenario, devchain_factory: Any, db: Database, tmp_path: Path) -> None:
    sc = small_scenario
    ts = [sc.genesis_time] + [b.timestamp for b in sc.blocks]
    paths = paths_for("ethereum", ts[0], ts[-1], seed=3)  # native only: tokens have no feed here
    node = await devchain_factory(sc, prices=paths, keep_states=1)
    client = EvmChain(node.url, chain=sc.chain, expected_chain_id=sc.chain_id)
    await client.connect()
    try:
        async with db.pool.acquire() as conn:
            await conn.execute("DELETE FROM price_feeds")
            await conn.execute("DELETE FROM prices")  # the archive test's feed prices hold for these blocks too
        trace_id = await create_trace(db.pool, client, chain=sc.chain, seeds=sc.seeds, policy={"max_depth": 2})
        assert await run_with_workers(db.pool, {sc.chain: client}, trace_id, workers=1, progress=False) == "done"
        run = await pricing.price_trace(db.pool, {sc.chain: client}, trace_id)
        assert any("keeps no state" in n for n in run.notes), run.notes
        async with db.pool.acquire() as conn:
            hops = await conn.fetch(
                """SELECT h.transfer_id, h.chain, h.asset, h.amount, t.block_number, t.block_time, t.decimals
                   FROM hops h JOIN transfers t ON t.id = h.transfer_id WHERE h.trace_id = $1""", trace_id)
            values = await pricing.hop_values(conn, _amounts(hops), run)
            native = [h for h in hops if h["asset"] == NATIVE]
            assert native and all(values[h["transfer_id"]].usd is None for h in native)
            assert all("no state" in values[h["transfer_id"]].detail or "BlockOutOfRange" in
                       values[h["transfer_id"]].detail for h in native)
            import datetime as dt
            days = sorted({dt.datetime.fromtimestamp(h["block_time"], dt.UTC).date() for h in native})
            f = _write(tmp_path, "eth.csv", "date,asset,chain,usd\n" + "".join(
                f"{d.isoformat()},native,ethereum,2500.25\n" for d in days))
            await price_store.save_prices(conn, parse_price_file(f))
            values = await pricing.hop_values(conn, _amounts(hops))
        for h in native:
            v = values[h["transfer_id"]]
            assert v.source == "file" and v.price == Decimal("2500.25") and v.detail == "file eth.csv"
            with localcontext(prec=100):
                assert v.usd == Decimal(int(h["amount"])).scaleb(-18) * Decimal("2500.25")
        tokens = [h for h in hops if h["asset"] != NATIVE]
        assert all(values[h["transfer_id"]].usd is None for h in tokens)  # unknown, never 0
    finally:
        await client.close()
