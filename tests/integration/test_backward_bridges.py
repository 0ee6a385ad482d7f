"""Backward traces through bridges (issue 20): from the exchange deposit address on the far chain
that a bridge payout reached, a backward trace goes back through the payout to the deposit its
event names on the home chain (THORChain's TransferOut memo OUT:<deposit hash>) and walks on there
from the depositor, in the same trace, to the thieves' wallets: with the forward trace's amount for
that exit at the bridge's own rate. Generated cross-chain scenario (tracer.devchain.crosschain),
two devchain JSON-RPC servers, real workers, real Postgres."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
import pytest_asyncio

from tracer.chains.evm import EvmChain
from tracer.demo import load_scenario_labels
from tracer.devchain.crosschain import CrossChain, PayoutTruth, destination
from tracer.devchain.scenario import Scenario, ScenarioParams, generate
from tracer.domain.labels import Label
from tracer.domain.transfers import NATIVE
from tracer.engine.service import create_trace
from tracer.runner import run_with_workers
from tracer.store import backward as back_store
from tracer.store import labels as label_store
from tracer.store.db import Database

pytestmark = pytest.mark.asyncio(loop_scope="session")
DEST, DEST_ID = "avalanche", 43114
THIEF = ("hacker", "VictimDAO exploiter")


@pytest.fixture(scope="module")
def home() -> Scenario:
    return generate(replace(ScenarioParams.for_size(1000, seed=11, services=True), n_bridges=9))


@pytest.fixture(scope="module")
def cross(home: Scenario) -> CrossChain:
    return destination(home, DEST, DEST_ID, decoys=2, memos=1)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def chains(home: Scenario, cross: CrossChain, devchain_factory: Any) -> AsyncIterator[dict[str, EvmChain]]:
    out: dict[str, EvmChain] = {}
    for sc in (home, cross.scenario):
        server = await devchain_factory(sc if sc is home else cross.chain())
        client = EvmChain(server.url, chain=sc.chain, expected_chain_id=sc.chain_id)
        await client.connect()
        out[sc.chain] = client
    yield out
    for client in out.values():
        await client.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def forward(db: Database, chains: dict[str, EvmChain], home: Scenario, cross: CrossChain) -> int:
    """The forward trace across both chains, then the thieves' wallets labelled (the walk stops there)."""
    await load_scenario_labels(db.pool, home)
    await load_scenario_labels(db.pool, cross.scenario)
    tid = await create_trace(db.pool, chains[home.chain], chain=home.chain, seeds=home.seeds,
                             policy={"max_depth": 40}, label="forward")
    assert await run_with_workers(db.pool, chains, tid, workers=2, progress=False) == "done"
    async with db.pool.acquire() as conn:
        await label_store.upsert_labels(conn, [Label(
            chain=home.chain, address=seed, entity=THIEF[1], category=THIEF[0], source="investigator")
            for seed in home.seeds])
    return tid


async def check_bridge(db: Database, chains: dict[str, Any], home: Scenario, p: PayoutTruth,
                       forward: int) -> tuple[int, int, int]:
    """Backward from the payout's exchange deposit address: (trace, forward amount, backward amount
    at the bridge's rate)."""
    [row] = await db.pool.fetch("SELECT sum(amount)::text AS amount FROM hops WHERE trace_id = $1 AND chain = $2 "
                                "AND to_addr = $3 AND status = 'exit'", forward, DEST, p.deposit_address)
    want = int(row["amount"])
    tid = await create_trace(db.pool, chains[DEST], chain=DEST, seeds=[p.deposit_address], direction="backward",
                             policy={"from_block": 1, "max_depth": 60})
    assert await run_with_workers(db.pool, chains, tid, workers=2, progress=False) == "done"
    async with db.pool.acquire() as conn:
        sources = await back_store.sources(conn, tid, DEST)
    found: dict[str, int] = defaultdict(int)
    for s in sources:
        if s.address in home.seeds:
            assert (s.chain, s.category, s.entity) == (home.chain, *THIEF)
            found[s.asset] += s.amount
    assert set(found) == {NATIVE}, (found, [(s.chain, s.address, s.amount) for s in sources])
    # The thieves' ETH at the bridge's own rate (what the payout paid for the deposit) is the AVAX
    # the forward trace saw reach the exit.
    return tid, want, found[NATIVE] * p.amount // p.deposit.amount


async def test_backward_through_a_bridge_payout_finds_the_thief_on_the_origin_chain(
        db: Database, chains: dict[str, Any], home: Scenario, cross: CrossChain, forward: int) -> None:
    [p] = [p for p in cross.payouts if p.memo is not None]
    tid, want, got = await check_bridge(db, chains, home, p, forward)
    assert want > 0 and abs(got - want) <= 100 + want // 10**12, (got, want)
    hops = await db.pool.fetch("SELECT chain, from_addr, to_addr, status, reason, confidence, depth FROM hops "
                               "WHERE trace_id = $1 AND reason IN ('bridge', 'crossing')", tid)
    # The payout on the far chain and the deposit on the home chain, as a forward trace says them.
    payout = [h for h in hops if h["reason"] == "bridge"]
    deposit = [h for h in hops if h["reason"] == "crossing"]
    assert [(h["chain"], h["from_addr"], h["to_addr"], h["status"], h["confidence"]) for h in payout] == [
        (DEST, p.payer, p.address, "followed", 1.0)]
    assert [(h["chain"], h["from_addr"], h["status"]) for h in deposit] == [(home.chain, p.deposit.sender, "followed")]
    assert deposit[0]["depth"] == payout[0]["depth"] + 1
    async with db.pool.acquire() as conn:
        sources = {(s.chain, s.address) for s in await back_store.sources(conn, tid, DEST)}
        windows = await db.pool.fetch("SELECT chain FROM trace_chains WHERE trace_id = $1", tid)
    # The bridge is no source on either side; the trace has a window on the home chain.
    assert not sources & {(DEST, p.payer), (home.chain, deposit[0]["to_addr"])}
    assert [w["chain"] for w in windows] == [home.chain]
    print(f"bridge: forward {want} AVAX wei, backward {got} at the bridge's rate (gap {abs(got - want)})")
