"""Mixer pools: event decoding, the deposit -> withdrawal linker, and traces through real pools.

Unit tests score hand-made pools; the end-to-end tests trace a generated scenario whose
launderers withdraw their Tornado notes leaving one published clue each, over a real devchain
(JSON-RPC) and Postgres, and compare with the generator's ground truth.

The tests that need nothing outside the process are in tests/unit/test_mixers.py.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio

from tracer.chains.evm import EvmChain
from tracer.demo import load_scenario_labels
from tracer.devchain.scenario import Scenario, ScenarioParams, generate
from tracer.domain.mixer_links import CandidateWithdrawal, LinkReason, MixerDeposit
from tracer.engine import report as treport
from tracer.engine.service import create_trace
from tracer.runner import run_with_workers
from tracer.store import mixers as mixer_store
from tracer.store.db import Database
from tracer.workers.trace import Worker, WorkerSettings

CLUE_HEURISTIC = {"gas_price": "gas_price", "address": "same_address", "counterparty": "shared_peers",
                  "multi_denomination": "multi_denomination"}


# -- the linker on hand-made pools ----------------------------------------------------------------


# -- end to end ------------------------------------------------------------------------------------

pytestmark_e2e = pytest.mark.asyncio(loop_scope="session")


@dataclass
class Traced:
    db: Database
    scenario: Scenario
    trace_id: int
    report: treport.Report
    client: EvmChain


@pytest.fixture(scope="module")
def services_scenario() -> Scenario:
    return generate(ScenarioParams.for_size(3000, seed=11, services=True))


async def _trace(db: Database, sc: Scenario, url: str, policy: dict[str, Any] | None = None) -> tuple[int, EvmChain]:
    client = EvmChain(url, chain=sc.chain, expected_chain_id=sc.chain_id)
    await client.connect()
    await load_scenario_labels(db.pool, sc)
    trace_id = await create_trace(db.pool, client, chain=sc.chain, seeds=sc.seeds, policy=policy or {})
    status = await run_with_workers(db.pool, {sc.chain: client}, trace_id, workers=2, progress=False)
    assert status == "done"
    return trace_id, client


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def traced(db: Database, services_scenario: Scenario, devchain_factory: Any) -> AsyncIterator[Traced]:
    server = await devchain_factory(services_scenario)
    trace_id, client = await _trace(db, services_scenario, server.url)
    yield Traced(db, services_scenario, trace_id, await treport.build(db.pool, trace_id), client)
    await client.close()


async def _links(db: Database, trace_id: int) -> list[MixerDeposit]:
    async with db.pool.acquire() as conn:
        return list(await mixer_store.mixer_links(conn, trace_id, limit=10_000))


@pytestmark_e2e
async def test_every_laundering_note_is_linked_with_its_clue(traced: Traced) -> None:
    sc = traced.scenario
    assert len(sc.truth.mixer_links) >= 5
    rows = {(r.depositor, r.pool): r for r in await _links(traced.db, traced.trace_id)}
    recipients = defaultdict(set)
    for m in sc.truth.mixer_links:
        recipients[m.pool].add(m.recipient)
    exact = 0
    for m in sc.truth.mixer_links:
        row = rows[(m.depositor, m.pool)]
        assert row.status == "linked", (m, row.links[:1])
        assert row.anonymity_set >= 2 and row.candidates >= 1
        [best] = [lk for lk in row.links if lk.status == "followed"]
        assert best.confidence >= 0.5
        # Notes of one pool are interchangeable money: a link to another of the launderers' notes
        # of the same pool moves the same flagged money to the same place.
        assert best.recipient in recipients[m.pool]
        exact += best.recipient == m.recipient
        if best.recipient == m.recipient:
            assert CLUE_HEURISTIC[m.clue] in {r.heuristic for r in best.reasons}
        assert all(r.detail and r.weight > 0 for r in best.reasons)
    assert exact >= len(sc.truth.mixer_links) - 2


@pytestmark_e2e
async def test_link_hops_carry_the_deposit_times_confidence_capped_by_the_withdrawal(traced: Traced) -> None:
    db, trace_id = traced.db, traced.trace_id
    rows = await _links(db, trace_id)
    carried: dict[int, int] = defaultdict(int)
    withdrawn: dict[int, int] = {}
    for r in rows:
        for lk in r.links:
            if lk.status != "followed":
                continue
            assert lk.withdrawal_transfer_id is not None and lk.withdrawn is not None
            expected = min(int(r.flagged * lk.confidence), lk.withdrawn)
            assert int(lk.carried) == expected
            carried[lk.withdrawal_transfer_id] += expected
            withdrawn[lk.withdrawal_transfer_id] = lk.withdrawn
    hops = {r["transfer_id"]: r for r in await db.pool.fetch(
        "SELECT * FROM hops WHERE trace_id = $1 AND transfer_id = ANY($2::bigint[])", trace_id, list(carried))}
    assert set(hops) == set(carried)
    for wid, total in carried.items():
        h = hops[wid]
        assert int(h["amount"]) == min(total, withdrawn[wid])
        assert (h["status"], h["reason"]) == ("followed", "mixer link")
        assert 0.5 <= h["confidence"] < 1.0 or h["confidence"] == 1.0
    # Linked deposits are followed through the pool, which itself is never traced as a wallet.
    deposits = await db.pool.fetch(
        """SELECT h.status, h.reason, h.confidence FROM hops h JOIN mixer_deposits d
             ON d.trace_id = h.trace_id AND d.transfer_id = h.transfer_id WHERE h.trace_id = $1""", trace_id)
    assert deposits and all((d["status"], d["reason"]) == ("followed", "mixer deposit") for d in deposits)
    pools = [p.address for p in traced.scenario.mixer_pools]
    assert not await db.pool.fetchval(
        "SELECT count(*) FROM hops WHERE trace_id = $1 AND from_addr = ANY($2::text[]) AND reason <> 'mixer link'",
        trace_id, pools)
    assert {s["address"] for s in traced.report.stops if s["reason"] == "entered mixer"} <= set(pools)
    # Every hop, link hops included, has its block time (the worker fetches transfers without and
    # reads times for the hops' blocks only).
    assert not await db.pool.fetchval(
        "SELECT count(*) FROM hops h JOIN transfers t ON t.id = h.transfer_id WHERE h.trace_id = $1 AND "
        "(t.block_time < 0 OR (h.asset <> 'native' AND t.symbol IS NULL))", trace_id)


@pytestmark_e2e
async def test_money_through_the_mixer_reaches_its_offramps_and_pollutes_nothing(traced: Traced) -> None:
    sc, rep = traced.scenario, traced.report
    found = {(e.address, e.asset): e.amount for e in rep.exits}
    rows = await _links(traced.db, traced.trace_id)
    carried_to: dict[str, int] = defaultdict(int)
    for r in rows:
        for lk in r.links:
            if lk.status == "followed":
                carried_to[lk.recipient] += int(lk.carried)
    mixer_exits = 0
    through = {o.address: o for o in sc.truth.through_offramps}
    for m in {m.recipient: m for m in sc.truth.mixer_links}.values():
        [dep] = [o for o in through.values() if o.address in _sent_to(sc, m.recipient)]
        got = found.get((dep.address, dep.asset), 0)
        # The recipient empties itself into the off-ramp: all the taint the links carried arrives,
        # never more than following the note with certainty would give.
        assert got == carried_to[m.recipient] > 0
        assert got <= dep.amount
        assert got >= dep.amount * 0.5
        mixer_exits += 1
    assert mixer_exits >= 3
    # Uncertain links pollute nothing: every plain off-ramp amount is exact, no noise off-ramp shows up.
    for o in sc.truth.offramps:
        if o.amount < sc.truth.stolen[o.asset] * 0.001:
            continue
        got = found.get((o.address, o.asset), 0)
        assert abs(got - o.amount) <= o.amount * 0.001, (o, got)
    noise = set(sc.truth.noise_offramps)
    assert not [e.address for e in rep.exits if e.address in noise]


def _sent_to(sc: Scenario, sender: str) -> set[str]:
    return {tx.to for _, tx in sc.iter_txs() if tx.sender == sender and tx.ok}


@pytestmark_e2e
async def test_mixer_links_read_shape(traced: Traced) -> None:
    async with traced.db.pool.acquire() as conn:
        page = await mixer_store.mixer_links(conn, traced.trace_id, limit=2)
        rest = await mixer_store.mixer_links(conn, traced.trace_id, after_transfer_id=page[-1].transfer_id)
        unlinked = await mixer_store.mixer_links(conn, traced.trace_id, status="unlinked")
        sure = await mixer_store.mixer_links(conn, traced.trace_id, min_confidence=0.9)
    assert len(page) == 2 and rest and rest[0].transfer_id > page[-1].transfer_id
    assert not unlinked
    assert all(lk.confidence >= 0.9 for r in sure for lk in r.links)
    row = page[0]
    assert isinstance(row, MixerDeposit) and row.links and isinstance(row.links[0], CandidateWithdrawal)
    assert row.links[0].reasons and all(isinstance(r, LinkReason) for r in row.links[0].reasons)
    assert isinstance(row.flagged, int) and isinstance(row.links[0].carried, int)  # raw units, parsed once


@pytestmark_e2e
async def test_a_stricter_policy_follows_fewer_links(traced: Traced, devchain_factory: Any) -> None:
    sc = traced.scenario
    server = await devchain_factory(sc)
    trace_id, client = await _trace(traced.db, sc, server.url, {"min_link_confidence": 0.96})
    try:
        rows = await _links(traced.db, trace_id)
        statuses = {r.status for r in rows}
        assert statuses == {"linked", "unlinked"}
        for r in rows:
            followed = [lk for lk in r.links if lk.status == "followed"]
            assert (r.status == "linked") == bool(followed)
            assert all(lk.confidence >= 0.96 for lk in followed)
        hops = await traced.db.pool.fetch(
            """SELECT h.status, h.reason, d.status AS dep FROM hops h JOIN mixer_deposits d
                 ON d.trace_id = h.trace_id AND d.transfer_id = h.transfer_id WHERE h.trace_id = $1""", trace_id)
        for h in hops:
            want = ("followed", "mixer deposit") if h["dep"] == "linked" else ("stopped", "entered mixer")
            assert (h["status"], h["reason"]) == want
    finally:
        await client.close()


@pytestmark_e2e
async def test_links_do_not_depend_on_how_deposits_were_batched(traced: Traced, devchain_factory: Any) -> None:
    """One address per batch, one worker: every deposit is linked alone, in another order than the
    fixture's two workers with full batches: the same links, confidences and amounts."""
    sc = traced.scenario
    server = await devchain_factory(sc)
    client = EvmChain(server.url, chain=sc.chain, expected_chain_id=sc.chain_id)
    await client.connect()
    try:
        trace_id = await create_trace(traced.db.pool, client, chain=sc.chain, seeds=sc.seeds, policy={})
        await Worker(traced.db.pool, {sc.chain: client}, settings=WorkerSettings(batch_size=1)).run(until_idle=True)
        assert await traced.db.pool.fetchval("SELECT status FROM traces WHERE id = $1", trace_id) == "done"

        def shape(rows: list[MixerDeposit]) -> dict[tuple[Any, ...], CandidateWithdrawal]:
            return {(r.tx_hash, r.depositor, r.pool, r.status, lk.recipient, lk.status): lk
                    for r in rows for lk in r.links}

        alone, together = shape(await _links(traced.db, trace_id)), shape(await _links(traced.db, traced.trace_id))
        assert alone.keys() == together.keys()
        for key, lk in alone.items():
            assert (lk.confidence, lk.carried) == (together[key].confidence, together[key].carried), key
    finally:
        await client.close()


@pytestmark_e2e
async def test_deposits_nobody_withdrew_are_reported_with_their_anonymity_set(
    db: Database, devchain_factory: Any
) -> None:
    # The plain scenario: launderers' notes stay in the pools, which only unrelated users share.
    sc = generate(ScenarioParams.for_size(600, seed=5))
    server = await devchain_factory(sc)
    trace_id, client = await _trace(db, sc, server.url)
    try:
        rows = await _links(db, trace_id)
        assert rows and all(r.status == "unlinked" and not r.links and r.candidates == 0 for r in rows)
        assert all(r.anonymity_set >= 1 for r in rows)
        pools = {m.address for m in sc.truth.mixer_deposits}
        assert {r.pool for r in rows} == pools
        flagged = await db.pool.fetch(
            "SELECT to_addr, status, reason, amount FROM hops WHERE trace_id = $1 AND to_addr = ANY($2::text[])",
            trace_id, list(pools))
        assert flagged and all((h["status"], h["reason"]) == ("stopped", "entered mixer") for h in flagged)
        rep = await treport.build(db.pool, trace_id)
        stops = {s["address"]: s for s in rep.stops}
        for m in sc.truth.mixer_deposits:
            assert stops[m.address]["reason"] == "entered mixer"
            assert int(stops[m.address]["amounts"][m.asset]) == pytest.approx(m.amount, rel=1e-3)
    finally:
        await client.close()
