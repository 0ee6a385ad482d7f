"""Backward traces through services (issue 20, item 2): from an exchange deposit address the money
reached only through a DEX swap or a mixer, a backward trace walks on behind the service (a
swap's bought leg back to what its wallet paid in the same transaction; a mixer withdrawal back
to the deposits the forward linker ties to it) and finds the thieves' wallets with the amount the
forward trace gave that exit: through a swap at the swap's own rate, through a mixer the linker's
carried amount. The service is no source; its hops say what they were (swap, mixer link with its
confidence). Generated scenario with services, real workers, real Postgres, the devchain."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
import pytest_asyncio

from tests.backward_support import forward_trace
from tracer.chains import feeds
from tracer.chains.evm import EvmChain
from tracer.devchain.prices import paths_for
from tracer.devchain.scenario import Scenario, ScenarioParams, generate
from tracer.domain.labels import Label
from tracer.domain.transfers import NATIVE
from tracer.engine import dollars
from tracer.engine.service import create_trace
from tracer.runner import run_with_workers
from tracer.store import backward as back_store
from tracer.store import labels as label_store
from tracer.store import mixers as mixer_store
from tracer.store import prices as price_store
from tracer.store.db import Database

pytestmark = pytest.mark.asyncio(loop_scope="session")
THIEF = ("hacker", "VictimDAO exploiter")


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return generate(ScenarioParams.for_size(1000, seed=11, services=True))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client(db: Database, scenario: Scenario, devchain_factory: Any) -> AsyncIterator[EvmChain]:
    ts = [scenario.genesis_time] + [b.timestamp for b in scenario.blocks]
    paths = paths_for(scenario.chain, ts[0], ts[-1], seed=11, tokens=[t.address for t in scenario.tokens])
    server = await devchain_factory(scenario, prices=paths)
    c = EvmChain(server.url, chain=scenario.chain, expected_chain_id=scenario.chain_id)
    await c.connect()
    async with db.pool.acquire() as conn:  # ETH has a price feed; USDT is priced by the swaps seen
        for p in paths:
            if p.asset == NATIVE:
                await price_store.register_feed(conn, feeds.Feed(p.chain, p.asset, p.feed_chain, p.feed, p.pair,
                                                                 "test: devchain price path"))
    yield c
    await c.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def forward(db: Database, client: EvmChain, scenario: Scenario) -> int:
    return await trace_forward(db, client, scenario)


async def trace_forward(db: Database, client: EvmChain, scenario: Scenario) -> int:
    """The forward trace, then the thieves' wallets labelled (where the backward walk stops)."""
    tid = await forward_trace(db, client, scenario)
    async with db.pool.acquire() as conn:  # the investigator labels the thieves' wallets: the walk stops there
        await label_store.upsert_labels(conn, [Label(
            chain=scenario.chain, address=seed, entity=THIEF[1], category=THIEF[0], source="investigator")
            for seed in scenario.seeds])
    return tid


async def exit_amounts(db: Database, tid: int, address: str) -> dict[str, int]:
    rows = await db.pool.fetch("SELECT asset, sum(amount)::text AS amount FROM hops WHERE trace_id = $1 "
                               "AND to_addr = $2 AND status = 'exit' GROUP BY asset", tid, address)
    return {r["asset"]: int(r["amount"]) for r in rows}


async def backward_from(db: Database, client: EvmChain, scenario: Scenario, forward: int,
                        address: str) -> tuple[int, dict[str, int]]:
    """A backward trace from `address` over the forward trace's window: its id, and per asset
    what it says reached the address from the thieves' wallets."""
    row = await db.pool.fetchrow("SELECT from_block, to_block FROM traces WHERE id = $1", forward)
    tid = await create_trace(db.pool, client, chain=scenario.chain, seeds=[address], direction="backward",
                             policy={"from_block": max(1, row["from_block"]), "to_block": row["to_block"],
                                     "max_depth": 12})
    assert await run_with_workers(db.pool, {scenario.chain: client}, tid, workers=2, progress=False) == "done"
    async with db.pool.acquire() as conn:
        sources = await back_store.sources(conn, tid, scenario.chain)
    found: dict[str, int] = defaultdict(int)
    for s in sources:
        if s.address in scenario.seeds:
            assert (s.category, s.entity) == THIEF
            found[s.asset] += s.amount
    return tid, dict(found)


async def check_swap(db: Database, client: EvmChain, scenario: Scenario, forward: int) -> int:
    """Backward from the swap's off-ramp: the thief's USDT at the swap's rate is the forward ETH."""
    [swap] = scenario.truth.swaps
    offramp = next(o for o in scenario.truth.through_offramps if o.amount == swap.flagged_out)
    want = await exit_amounts(db, forward, offramp.address)
    assert set(want) == {NATIVE}, want
    tid, found = await backward_from(db, client, scenario, forward, offramp.address)
    # Behind the swap the thieves paid USDT: at the swap's own rate it is the ETH the forward trace
    # saw reach the exit (plus any ETH of theirs that came the plain way).
    assert swap.asset_in in found, found
    rate = swap.amount_out / swap.amount_in
    converted = found.get(NATIVE, 0) + found[swap.asset_in] * rate
    gap = abs(converted - want[NATIVE])
    assert gap <= 100 + 10 * rate, (found, want, rate)
    legs = await db.pool.fetch("SELECT from_addr, to_addr, asset, status FROM hops WHERE trace_id = $1 "
                               "AND reason = 'swap'", tid)
    assert {(h["asset"], h["status"]) for h in legs} == {(swap.asset_in, "followed"), (NATIVE, "followed")}
    pair = next(h["to_addr"] for h in legs if h["asset"] == swap.asset_in)
    async with db.pool.acquire() as conn:
        assert pair not in {s.address for s in await back_store.sources(conn, tid, scenario.chain)}
    print(f"swap: forward {want[NATIVE]} wei, backward {found} -> {converted:.0f} wei (gap {gap:.0f})")
    return tid


async def test_backward_through_a_swap_finds_the_thief_at_the_swaps_rate(
        db: Database, client: EvmChain, scenario: Scenario, forward: int) -> None:
    tid = await check_swap(db, client, scenario, forward)
    # Dollars at the time of each hop, summed by source as /exits lists them: the thief's USDT at
    # its price, what the seeds received the whole (tracer/engine/dollars.py).
    d = await dollars.trace_dollars(db.pool, tid, {scenario.chain: client})
    async with db.pool.acquire() as conn:
        lines = [d.exit_usd(s.chain, s.address, s.asset) for s in await back_store.sources(conn, tid, scenario.chain)]
    assert lines and None not in lines and d.exits_total.usd == sum(lines, Decimal(0)), (lines, d.exits_total)
    assert d.seeds.usd is not None and 0 < d.exits_total.usd <= d.seeds.usd * Decimal("1.000001")


async def test_backward_through_a_mixer_finds_the_thief_with_the_linkers_carried_amount(
        db: Database, client: EvmChain, scenario: Scenario, forward: int) -> None:
    await check_mixers(db, client, scenario, forward)


async def check_mixers(db: Database, client: EvmChain, scenario: Scenario, forward: int, *,
                       out_of_band: float = 0.0) -> int:
    """Backward from the off-ramps reached only through mixers: the forward amounts; the max gap.
    `out_of_band`: the relative gap allowed for money no transfer explains (Anvil's gas top-ups)."""
    # The scenario's off-ramps reached only through a mixer (or the swap, tested above).
    [swap] = scenario.truth.swaps
    exits = [o.address for o in scenario.truth.through_offramps if o.amount != swap.flagged_out]
    assert len(exits) >= 3
    gaps = []
    for address in exits:
        want = await exit_amounts(db, forward, address)
        tid, found = await backward_from(db, client, scenario, forward, address)
        assert set(found) == set(want), (address, found, want)
        for asset, v in want.items():
            gaps.append(abs(found[asset] - v))
            # The forward linker carries int(flagged * confidence) in floats: about 1e-16 of the amount.
            assert abs(found[asset] - v) <= 100 + v // 10**15 + v * out_of_band, (address, asset, v, found[asset])
        links = await db.pool.fetch("SELECT from_addr, status, confidence FROM hops WHERE trace_id = $1 "
                                    "AND reason = 'mixer link'", tid)
        assert links and all(h["status"] == "followed" and 0.5 <= h["confidence"] <= 1.0 for h in links)
        async with db.pool.acquire() as conn:
            sources = {s.address for s in await back_store.sources(conn, tid, scenario.chain)}
            stored = await mixer_store.mixer_links(conn, tid, limit=100)
        assert not sources & {h["from_addr"] for h in links}, "a linked pool is no source"
        assert stored and all(d.status == "linked" for d in stored)
    print(f"mixer: {len(gaps)} exits behind mixer links, max gap {max(gaps)} wei")
    return max(gaps)
