"""A stored backward trace (source of funds) against the forward trace, on the generated case: POST
/v1/traces with direction backward from an exchange deposit address the forward trace reached
through plain wallets, run by real workers through Postgres jobs, finds the thieves' wallets among
its exits (its sources) with the amounts the forward trace gave that exit; one trace from every
such deposit address at once gives the sums. Hops, graph export and report read it as they read a
forward trace. Real Postgres, the devchain over JSON-RPC, the API over a real socket."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tests.api_support import Api, conforms, running_api
from tests.backward_support import devchain_client, forward_trace
from tests.integration.test_backward import plain_exits
from tracer.api.context import Settings
from tracer.chains.evm import EvmChain
from tracer.devchain.scenario import Scenario
from tracer.domain.labels import Label
from tracer.domain.records import Job
from tracer.engine import report as treport
from tracer.engine.service import create_trace
from tracer.runner import run_with_workers
from tracer.store import backward as back_store
from tracer.store import labels as label_store
from tracer.store import traces as traces_store
from tracer.store.db import Database
from tracer.workers.trace import Worker, WorkerSettings

pytestmark = pytest.mark.asyncio(loop_scope="session")
THIEF = ("hacker", "VictimDAO exploiter")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client(small_scenario: Scenario, devchain_factory: Any) -> AsyncIterator[EvmChain]:
    async with devchain_client(devchain_factory, small_scenario) as c:
        yield c


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def forward(db: Database, client: EvmChain, small_scenario: Scenario) -> int:
    return await forward_trace(db, client, small_scenario)


async def backward_trace(api: Api, chain: str, seeds: list[str], window: dict[str, int],
                         max_depth: int = 12) -> dict[str, Any]:
    trace = await api.run_trace({"chain": chain, "seeds": seeds, "direction": "backward",
                                 "policy": {**window, "max_depth": max_depth}, "label": "source of funds"})
    conforms("trace", trace)
    assert trace["direction"] == "backward"
    _, exits, _ = await api.call("GET", f"/v1/traces/{trace['id']}/exits", expect=200)
    conforms("exit-list", exits)
    assert exits["direction"] == "backward"
    return {"trace": trace, "exits": exits}


def from_thieves(exits: dict[str, Any], thieves: set[str], seeds: set[str]) -> dict[str, int]:
    """Per asset, what the exits list says reached `seeds` from the thieves' wallets."""
    got: dict[str, int] = defaultdict(int)
    for item in exits["items"]:
        if item["address"] in thieves:
            assert (item["category"], item["entity"]) == THIEF, item
            assert item["recognised_by"]["method"] == "label"
            assert item["path"][0] == item["address"] and item["path"][-1] in seeds, item
            got[item["asset"]] += int(item["amount_raw"])
    return dict(got)


async def check_stored_backward(db: Database, client: EvmChain, scenario: Scenario, forward: int) -> dict[str, Any]:
    """Backward traces through the API agree with the forward trace; returns the figures."""
    row = await db.pool.fetchrow("SELECT from_block, to_block, seeds FROM traces WHERE id = $1", forward)
    thieves = set(row["seeds"])
    exits = await plain_exits(db, forward)
    assert len(exits) >= 5, "the scenario has exits reached through plain wallets"
    async with db.pool.acquire() as conn:  # the investigator labels the thieves' wallets: the walk stops there
        await label_store.upsert_labels(conn, [Label(
            chain=scenario.chain, address=seed, entity=THIEF[1], category=THIEF[0], source="investigator")
            for seed in sorted(thieves)])
    window = {"from_block": max(1, row["from_block"]), "to_block": row["to_block"]}
    gaps: list[int] = []
    async with running_api(db, {scenario.chain: client}, Settings(workers=2)) as api:
        for address, amounts in sorted(exits.items())[:3]:
            got = await backward_trace(api, scenario.chain, [address], window)
            found = from_thieves(got["exits"], thieves, {address})
            assert set(found) == set(amounts), (address, found, amounts)
            for asset, v in amounts.items():
                gaps.append(abs(found[asset] - v))
                # Integer rounding: at most a base unit per transfer and model.
                assert abs(found[asset] - v) <= 100, (address, asset, v, found[asset])
            received = {t["asset"]: int(t["amount_raw"]) for t in got["trace"]["totals"]}
            assert all(received[a] >= v for a, v in found.items()), "no more stolen money than came in"
            assert got["trace"]["progress"]["hops"] > 0

        # One trace from every such deposit address: the thieves' amounts are the forward trace's sums.
        seeds = sorted(exits)
        both = await backward_trace(api, scenario.chain, seeds, window)
        found = from_thieves(both["exits"], thieves, set(seeds))
        total: dict[str, int] = defaultdict(int)
        for amounts in exits.values():
            for asset, v in amounts.items():
                total[asset] += v
        for asset, v in total.items():
            assert abs(found[asset] - v) <= 100 * len(seeds), (asset, v, found[asset])
        tid = both["trace"]["id"]
        # Progress and the report count a backward trace's sources by sender (its exits list's lines).
        sources = {i["address"] for i in both["exits"]["items"]}
        assert both["trace"]["progress"]["exits"] == len(sources) > 0
        shallow = await backward_trace(api, scenario.chain, seeds, window, max_depth=2)
        rep = await treport.build(db.pool, shallow["trace"]["id"])
        # Cut at the depth limit: unknown sources, with what they paid (read by recipient: nothing).
        assert rep.stops and all(stop["amounts"] for stop in rep.stops)
        assert shallow["trace"]["progress"]["stops"] == len(rep.stops)

        # Read like a forward trace: hops run source -> seed, graph export, report.
        hops = [h async for page in api.pages(f"/v1/traces/{tid}/hops?limit=500") for h in page["items"]]
        for h in hops:
            conforms("hop", h)
        assert {h["from"] for h in hops if h["status"] == "exit"} >= set(found_addresses(both["exits"], thieves))
        assert {h["to"] for h in hops} & set(seeds)
        _, graph, _ = await api.call("GET", f"/v1/traces/{tid}/graph", expect=200)
        conforms("graph", graph)
        _, report, _ = await api.call("GET", f"/v1/traces/{tid}/report", expect=200)
        assert "Source of funds" in report and found_addresses(both["exits"], thieves)[0] in report
    return {"exits_checked": 3, "max_gap_base_units": max(gaps), "multi_seed_exits": len(seeds)}


def found_addresses(exits: dict[str, Any], thieves: set[str]) -> list[str]:
    return sorted({i["address"] for i in exits["items"] if i["address"] in thieves})


async def test_a_stored_backward_trace_finds_the_thieves_with_the_forward_amounts(
        db: Database, client: EvmChain, small_scenario: Scenario, forward: int) -> None:
    figures = await check_stored_backward(db, client, small_scenario, forward)
    assert figures["max_gap_base_units"] <= 100
    print("backward vs forward:", figures)


async def test_direction_is_checked(db: Database, client: EvmChain, small_scenario: Scenario) -> None:
    async with running_api(db, {small_scenario.chain: client}) as api:
        _, p, _ = await api.call("POST", "/v1/traces", expect=400, json={
            "chain": small_scenario.chain, "seeds": small_scenario.seeds[:1], "direction": "sideways"})
        assert p["field"] == "direction"
        _, p, _ = await api.call("POST", "/v1/traces", expect=400, json={
            "chain": small_scenario.chain, "seeds": small_scenario.seeds[:1], "direction": "backward",
            "policy": {"watch": True}})
        assert p["field"] == "policy.watch"
        _, made, _ = await api.call("POST", "/v1/traces", expect=201, json={
            "chain": small_scenario.chain, "seeds": small_scenario.seeds[:1]})
        assert made["direction"] == "forward"
        await api.call("POST", f"/v1/traces/{made['id']}/cancel", expect=200)


async def test_a_worker_dying_mid_walk_or_before_colouring_changes_nothing(
        db: Database, client: EvmChain, small_scenario: Scenario, forward: int) -> None:
    """Leases lapse, another worker redoes the step from Postgres: the same hops as a clean run."""
    row = await db.pool.fetchrow("SELECT from_block, to_block FROM traces WHERE id = $1", forward)
    address = sorted(await plain_exits(db, forward))[-1]
    policy = {"from_block": max(1, row["from_block"]), "to_block": row["to_block"], "max_depth": 12}
    chains = {small_scenario.chain: client}

    async def start() -> int:
        return await create_trace(db.pool, client, chain=small_scenario.chain, seeds=[address], policy=policy,
                                  direction="backward")

    async def hops(tid: int) -> dict[int, tuple[str, str, int, str]]:
        rows = await db.pool.fetch("SELECT transfer_id, from_addr, to_addr, amount, status FROM hops "
                                   "WHERE trace_id = $1", tid)
        return {r["transfer_id"]: (r["from_addr"], r["to_addr"], int(r["amount"]), r["status"]) for r in rows}

    clean = await start()
    assert await run_with_workers(db.pool, chains, clean, workers=1, progress=False) == "done"
    want = await hops(clean)
    assert want

    for dies_at in ("walk", "colour"):
        tid = await start()
        # One job a batch: the colour job (claimed last) then never rides along with the walk's last jobs.
        live = Worker(db.pool, chains, name="live", settings=WorkerSettings(batch_size=1))
        while True:  # one batch at a time until the step where the other worker dies
            async with db.pool.acquire() as conn:
                walking = await back_store.walk_pending(conn, tid)
                depth = await conn.fetchval("SELECT max(depth) FROM jobs WHERE trace_id = $1 AND kind = 'address'",
                                            tid)
            if (dies_at == "walk" and walking and depth is not None and depth >= 1) or (
                    dies_at == "colour" and not walking):
                break
            assert await live.run_once() > 0
        claimed: list[Job] = []
        for _ in range(50):  # the dying worker claims a batch (the colour job may be waiting a moment) ...
            async with db.pool.acquire() as conn:
                claimed = await traces_store.claim_jobs(conn, "dies", 50, 0.3, [small_scenario.chain])
            if claimed:
                break
            await asyncio.sleep(0.1)
        assert claimed and all(j.trace_id == tid for j in claimed)
        walk_jobs = [j for j in claimed if j.kind == "address"]
        assert bool(walk_jobs) == (dies_at == "walk") and any(j.kind == "colour" for j in claimed)
        assert await hops(tid) == {}, "nothing written before the colouring commits"
        await asyncio.sleep(0.5)  # ... and is never heard of again: its leases lapse
        assert await run_with_workers(db.pool, chains, tid, workers=2, progress=False) == "done"
        assert await hops(tid) == want, dies_at
