"""Backward traces on Bitcoin (issue 20): a stored backward trace from the exchange deposit
addresses a forward trace reached on the generated peel chain walks each transaction's outputs
back to the inputs that funded them (the haircut run in reverse over the flattened transactions)
and finds the thief's address with the amount the forward trace gave that exit. Real Postgres, the
devchain's Esplora server over HTTP, the API over a real socket, its embedded workers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
import pytest_asyncio

from tests.api_support import Api, conforms
from tests.bitcoin_support import SETTINGS, bitcoin_api, running_esplora
from tracer.devchain.bitcoin.records import BitcoinScenario, BitcoinScenarioParams
from tracer.devchain.bitcoin.story import generate
from tracer.devchain.esplora import EsploraServer
from tracer.domain.labels import Label
from tracer.domain.transfers import NATIVE
from tracer.store import backward as back_store
from tracer.store import labels as label_store
from tracer.store.db import Database

pytestmark = pytest.mark.asyncio(loop_scope="session")
THIEF = ("hacker", "HackedEx thief")


@pytest.fixture(scope="module")
def scenario() -> BitcoinScenario:
    return generate(BitcoinScenarioParams(seed=23, peel_hops=8, coinjoin=False))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def esplora(scenario: BitcoinScenario) -> AsyncIterator[EsploraServer]:
    async with running_esplora(scenario) as server:  # pages of 25, as the client reads them
        yield server


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def api(db: Database, esplora: EsploraServer, scenario: BitcoinScenario) -> AsyncIterator[Api]:
    async with bitcoin_api(db, esplora, scenario, replace(SETTINGS, page_max=500)) as a:
        yield a


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def forward(api: Api, scenario: BitcoinScenario) -> dict[str, Any]:
    trace = await api.run_trace({"chain": "bitcoin", "seeds": scenario.seeds, "label": "peel chain"})
    _, exits, _ = await api.call("GET", f"/v1/traces/{trace['id']}/exits", expect=200)
    return {"trace": trace, "exits": {e["address"]: int(e["amount_raw"]) for e in exits["items"]}}


async def backward(api: Api, seeds: list[str], forward: dict[str, Any], max_depth: int = 30) -> dict[str, Any]:
    window = {"from_block": 1, "to_block": forward["trace"]["to_block"]}
    trace = await api.run_trace({"chain": "bitcoin", "seeds": seeds, "direction": "backward",
                                 "policy": {**window, "max_depth": max_depth}, "label": "source of funds"})
    conforms("trace", trace)
    assert trace["direction"] == "backward" and trace["status"] == "done", trace
    _, exits, _ = await api.call("GET", f"/v1/traces/{trace['id']}/exits", expect=200)
    conforms("exit-list", exits)
    return {"trace": trace, "exits": exits}


async def label_thief(db: Database, scenario: BitcoinScenario) -> str:
    thief = scenario.seeds[0]
    async with db.pool.acquire() as conn:  # the investigator labels the thief: the walk stops there
        await label_store.upsert_labels(conn, [Label(chain="bitcoin", address=thief, entity=THIEF[1],
                                                     category=THIEF[0], source="investigator")])
    return thief


async def test_backward_from_a_deposit_address_finds_the_thief_with_the_forward_amount(
        api: Api, db: Database, forward: dict[str, Any], scenario: BitcoinScenario) -> None:
    exits = forward["exits"]
    assert {o.address for o in scenario.truth.offramps} <= set(exits)
    thief = await label_thief(db, scenario)
    gaps = []
    for o in [scenario.truth.offramps[0], scenario.truth.offramps[-1]]:
        got = await backward(api, [o.address], forward)
        lines = [i for i in got["exits"]["items"] if i["address"] == thief]
        assert len(lines) == 1, got["exits"]["items"]
        line = lines[0]
        assert (line["category"], line["entity"]) == THIEF and line["asset"] == NATIVE
        assert line["path"][0] == thief and line["path"][-1] == o.address, line
        gaps.append(abs(int(line["amount_raw"]) - exits[o.address]))
        # Integer rounding only: a satoshi per transaction of the path at most.
        assert gaps[-1] <= len(scenario.truth.peel), (o, line, exits[o.address])
        received = {t["asset"]: int(t["amount_raw"]) for t in got["trace"]["totals"]}
        assert received[NATIVE] == o.amount
    # One trace from every deposit address of the peel chain: the thief's line is the forward exits' sum.
    seeds = sorted(o.address for o in scenario.truth.offramps)
    both = await backward(api, seeds, forward)
    (line,) = [i for i in both["exits"]["items"] if i["address"] == thief]
    want = sum(exits[a] for a in seeds)
    gaps.append(abs(int(line["amount_raw"]) - want))
    assert gaps[-1] <= len(seeds) * len(scenario.truth.peel), (int(line["amount_raw"]), want)
    assert both["trace"]["progress"]["exits"] == len({i["address"] for i in both["exits"]["items"]})
    _, report, _ = await api.call("GET", f"/v1/traces/{both['trace']['id']}/report", expect=200)
    assert "Source of funds" in report and thief in report
    print("bitcoin backward vs forward gaps (sat):", gaps)


async def test_money_first_mined_stops_at_the_coinbase_and_nothing_is_lost(
        api: Api, db: Database, forward: dict[str, Any], scenario: BitcoinScenario) -> None:
    """A customer's deposit address: its money came from exchange withdrawals (labelled hot wallets:
    sources) and from coins its wallets got from coinbase transactions (new coins: the walk stops,
    the miner's verdict carries what of them reached the seed, with the path). With the window open
    from block 1 nothing was held before, so sources, depth stops and mined coins add up to what the
    deposit address received."""
    for address in scenario.truth.noise_offramps:
        got = await backward(api, [address], forward, max_depth=8)
        tid = got["trace"]["id"]
        async with db.pool.acquire() as conn:
            walk = await back_store.walk(conn, tid)
            paid = await conn.fetchval("SELECT coalesce(sum(amount), 0) FROM hops WHERE trace_id = $1 "
                                       "AND status IN ('exit', 'stopped')", tid)
            hops = await conn.fetchval("SELECT count(*) FROM hops WHERE trace_id = $1", tid)
        mined = {r.address: back_store.evidence_of(r) for r in walk if "coinbase" in back_store.evidence_of(r)}
        received = sum(int(t["amount_raw"]) for t in got["trace"]["totals"])
        coinbase = sum(int(ev["coinbase"][NATIVE]) for ev in mined.values())
        for miner, ev in mined.items():
            assert ev["coinbase_path"][0] == miner and ev["coinbase_path"][-1] == address, ev
        # Integer rounding only: a satoshi per hop at most.
        assert abs(int(paid) + coinbase - received) <= hops, (address, paid, coinbase, received)
        if mined and paid:  # one paid both by a labelled source and by mined coins is the case asked for
            print("bitcoin backward: received", received, "from sources", paid, "mined", coinbase)
            return
    pytest.fail("no customer's deposit address was funded both by a coinbase and by a labelled source")
