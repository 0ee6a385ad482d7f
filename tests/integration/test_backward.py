"""Source of funds against the forward trace on a generated laundering case: walking backward
from each exchange deposit address the forward trace reached through plain wallets finds the
thieves' wallets with the amounts the forward trace gave that exit (the haircut model run both
ways agrees up to integer rounding). Real workers, real Postgres, the devchain over JSON-RPC."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.api_support import conforms, running_api
from tests.backward_support import devchain_client, forward_trace
from tracer.chains.evm import EvmChain
from tracer.devchain.scenario import Scenario
from tracer.domain.labels import Label
from tracer.domain.transfers import TransferQuery
from tracer.engine import backward
from tracer.store import labels as label_store
from tracer.store.db import Database

pytestmark = pytest.mark.asyncio(loop_scope="session")
ROOT = Path(__file__).resolve().parents[2]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client(small_scenario: Scenario, devchain_factory: Any) -> AsyncIterator[EvmChain]:
    async with devchain_client(devchain_factory, small_scenario) as c:
        yield c


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def forward(db: Database, client: EvmChain, small_scenario: Scenario) -> int:
    return await forward_trace(db, client, small_scenario)


def label_lookup(db: Database, chain: str) -> backward.LabelLookup:
    async def lookup(addresses: Sequence[str]) -> dict[str, backward.SourceLabel]:
        async with db.pool.acquire() as conn:
            found = await label_store.lookup(conn, chain, list(addresses))
        return {a: backward.SourceLabel(lbs[0].entity, lbs[0].category) for a, lbs in found.items() if lbs}
    return lookup


async def plain_exits(db: Database, tid: int) -> dict[str, dict[str, int]]:
    """Exits whose flagged money came only through wallets the forward trace followed as plain
    wallets (no swap, mixer link or bridge on the way): asset -> amount the forward trace gave."""
    hops = await db.pool.fetch("SELECT from_addr, to_addr, asset, amount, status, reason FROM hops "
                               "WHERE trace_id = $1 AND amount > 0", tid)
    into: dict[str, list[Any]] = defaultdict(list)
    for h in hops:
        into[h["to_addr"]].append(h)
    seeds = set(await db.pool.fetchval("SELECT seeds FROM traces WHERE id = $1", tid))

    def plain(address: str, seen: frozenset[str]) -> bool:
        if address in seeds or address in seen:
            return True
        return all(h["status"] == "followed" and h["reason"] == "flagged funds"
                   and plain(h["from_addr"], seen | {address}) for h in into[address])

    out: dict[str, dict[str, int]] = {}
    for h in hops:
        if h["status"] == "exit" and h["reason"] in ("deposit_address", "label:scenario") \
                and plain(h["from_addr"], frozenset({h["to_addr"]})):
            out.setdefault(h["to_addr"], defaultdict(int))[h["asset"]] += int(h["amount"])
    return out


async def check_backward(db: Database, client: EvmChain, small_scenario: Scenario, forward: int) -> None:
    """Backward from every plain exit: the thieves' wallets with the forward trace's amounts."""
    trace = await db.pool.fetchrow("SELECT from_block, to_block, seeds FROM traces WHERE id = $1", forward)
    exits = await plain_exits(db, forward)
    assert len(exits) >= 5, "the scenario has exits reached through plain wallets"
    lookup = label_lookup(db, small_scenario.chain)
    window = {"from_block": max(1, trace["from_block"]), "to_block": trace["to_block"]}

    # Unlabelled, the thieves' wallets are walked through: the money goes back to the victim.
    first, amounts = sorted(exits.items())[0]
    result = await backward.source_of_funds(client, small_scenario.chain, lookup, first, depth=12, **window)
    victim = [s for s in result.sources if s.label is not None and s.label.entity == "VictimDAO Treasury"]
    assert victim and victim[0].path[1] in trace["seeds"], "the evidence path runs through a thief's wallet"

    # The investigator labels the thieves' wallets (stolen funds): the walk stops there.
    async with db.pool.acquire() as conn:
        await label_store.upsert_labels(conn, [Label(
            chain=small_scenario.chain, address=seed, entity="VictimDAO exploiter", category="hacker",
            source="investigator") for seed in trace["seeds"]])
    for exit_address, amounts in sorted(exits.items()):
        result = await backward.source_of_funds(client, small_scenario.chain, lookup, exit_address, depth=12,
                                                **window)
        from_seeds: dict[str, int] = defaultdict(int)
        for src in result.sources:
            if src.address in trace["seeds"]:
                assert src.how == "label" and src.flagged and src.label is not None
                assert src.label.category == "hacker"
                assert src.path[0] == src.address and src.path[-1] == exit_address
                for asset, v in src.amounts.items():
                    from_seeds[asset] += v
        assert not result.truncated
        for asset, v in amounts.items():
            # Integer rounding: at most a few base units per hop and colour.
            assert abs(from_seeds[asset] - v) <= 100, (exit_address, asset, v, from_seeds[asset])
        assert set(from_seeds) <= set(amounts), "no asset the forward trace did not give this exit"
        exposure = backward.flagged_exposure(result)
        assert [(e["category"], e["entity"]) for e in exposure] == [("hacker", "VictimDAO exploiter")]


async def check_screen(db: Database, client: EvmChain, small_scenario: Scenario, forward: int) -> None:
    """/v1/screen with depth: the stolen share of deposit addresses that got clean money too."""
    trace = await db.pool.fetchrow("SELECT from_block, to_block, seeds FROM traces WHERE id = $1", forward)
    exits = await plain_exits(db, forward)
    async with db.pool.acquire() as conn:
        await label_store.upsert_labels(conn, [Label(
            chain=small_scenario.chain, address=seed, entity="VictimDAO exploiter", category="hacker",
            source="investigator") for seed in trace["seeds"]])
    window = f"from_block={max(1, trace['from_block'])}&to_block={trace['to_block']}"
    async with running_api(db, {small_scenario.chain: client}) as api:
        checked = 0
        answers: dict[str, Any] = {}
        relabel: tuple[str, str] | None = None
        for address, amounts in sorted(exits.items()):
            if "native" not in amounts:
                continue
            # What the address received in the window, straight from the node.
            inflows = await client.transfers(TransferQuery([address], max(1, trace["from_block"]), trace["to_block"],
                                             outgoing=False, incoming=True))
            received = sum(t.amount for t in inflows if t.asset == "native" and t.to_address == address)
            if received <= amounts["native"]:
                continue  # only stolen money came in: not the case this test is about
            _, body, _ = await api.call("GET", f"/v1/screen?address={address}&depth=10&{window}", expect=200)
            conforms("screen", body)
            exp = body["exposure"]
            assert not exp["cached"] and not exp["truncated"]
            assert [(f["category"], f["entity"]) for f in exp["flagged"]] == [("hacker", "VictimDAO exploiter")]
            native = next(a for a in exp["flagged"][0]["amounts"] if a["asset"] == "native")
            assert abs(int(native["amount_raw"]) - amounts["native"]) <= 100
            assert native["share"] == pytest.approx(amounts["native"] / received, rel=1e-9)
            assert 0 < native["share"] < 1, "clean and stolen money both came in"
            assert next(int(a["amount_raw"]) for a in exp["received"] if a["asset"] == "native") == received
            hacker = [s for s in exp["sources"] if s["category"] == "hacker"]
            assert hacker and all(s["path"][0] in trace["seeds"] and s["path"][-1] == address for s in hacker)
            checked += 1
            answers[address] = exp
            longer = [s["path"] for s in hacker if len(s["path"]) >= 3]
            if longer:
                relabel = (address, longer[0][-2])
        assert checked >= 2, "deposit addresses with clean and stolen money"
        assert relabel is not None, "a stolen path with a wallet between thief and deposit address"
        address, middle = relabel

        # Cached until a label changes; then recomputed with the new label.
        _, again, _ = await api.call("GET", f"/v1/screen?address={address}&depth=10&{window}", expect=200)
        assert again["exposure"]["cached"] and again["exposure"]["flagged"] == answers[address]["flagged"]
        async with db.pool.acquire() as conn:
            await label_store.upsert_labels(conn, [Label(
                chain=small_scenario.chain, address=middle, entity="Launderer", category="scam",
                source="investigator")])
        _, fresh, _ = await api.call("GET", f"/v1/screen?address={address}&depth=10&{window}", expect=200)
        assert not fresh["exposure"]["cached"]
        assert "scam" in {f["category"] for f in fresh["exposure"]["flagged"]}

        _, plain, _ = await api.call("GET", f"/v1/screen?address={address}", expect=200)
        assert "exposure" not in plain
        for query, field in (("depth=11", "depth"), ("depth=2&from_block=5&to_block=4", "from_block"),
                             ("depth=2&to_block=99999999", "to_block"), ("depth=x", "depth")):
            _, p, _ = await api.call("GET", f"/v1/screen?address={address}&{query}", expect=400)
            assert p["field"] == field


async def test_backward_from_deposit_addresses_finds_the_thieves_with_the_forward_amounts(
        db: Database, client: EvmChain, small_scenario: Scenario, forward: int) -> None:
    await check_backward(db, client, small_scenario, forward)


async def test_screen_with_depth_reports_the_stolen_share_of_a_deposit_address(
        db: Database, client: EvmChain, small_scenario: Scenario, forward: int) -> None:
    await check_screen(db, client, small_scenario, forward)


async def test_screen_bench_smoke(tmp_path: Path) -> None:
    """bench/screen.py runs end to end (its figures are never pass/fail)."""
    out = tmp_path / "screen.json"
    run = await asyncio.to_thread(
        subprocess.run, [sys.executable, str(ROOT / "bench" / "screen.py"), "--smoke", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["smoke"] is True and [r["depth"] for r in report["runs"]] == [1, 2]
    assert all(r["walked_max"] >= 1 and r["rpc_requests_median"] > 0 for r in report["runs"])


async def test_a_screening_walk_past_its_budget_is_a_503(db: Database, client: EvmChain, small_scenario: Scenario,
                                                         forward: int, monkeypatch: pytest.MonkeyPatch) -> None:
    exits = sorted(await plain_exits(db, forward))
    monkeypatch.setenv("TRACER_SCREEN_BUDGET", "0.001")
    async with running_api(db, {small_scenario.chain: client}) as api:
        _, p, headers = await api.call("GET", f"/v1/screen?address={exits[-1]}&depth=9", expect=503)
        assert "TRACER_SCREEN_BUDGET" in p["detail"] and headers["Retry-After"] == "60"
