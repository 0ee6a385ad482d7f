"""A generated Bitcoin CoinJoin traced end to end: POST /v1/traces on a real API server, real
workers reading the devchain's Esplora server through EsploraChain, hops read back over HTTP and
checked against the generator's ground truth.

The thief peels its way to a Wasabi-style round (5 of its equal 0.1 BTC outputs among 25, plus
its change), then cashes the change out at one exchange and the consolidated mixed outputs at
another. The trace must report the CoinJoin entry with its anonymity set, follow the change (its
own output, high confidence) to the first exchange, and not spread over the equal outputs; a
policy that accepts 1-in-5 links follows those too, with the taint scaled down. A second history
(tracer.devchain.bitcoin_coinjoin) has the thief enter a Whirlpool 5 x 5 mix, which has no change:
the trace reports it and stops, unless 1-in-5 links are accepted.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
import pytest_asyncio

from tests.api_support import Api, conforms
from tests.bitcoin_support import SETTINGS, bitcoin_api, own_database, running_esplora
from tracer.api.context import Settings
from tracer.chains.bitcoin import EsploraChain
from tracer.devchain.bitcoin.records import BitcoinScenario, BitcoinScenarioParams, CoinJoinTruth
from tracer.devchain.bitcoin.story import generate
from tracer.devchain.bitcoin_coinjoin import whirlpool
from tracer.devchain.esplora import EsploraServer
from tracer.engine import utxo
from tracer.engine.service import create_trace
from tracer.runner import run_with_workers
from tracer.store import traces as store
from tracer.store.db import Database

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(scope="module")
def scenario() -> BitcoinScenario:
    return generate(BitcoinScenarioParams(seed=7, peel_hops=4, coinjoin=True))


@pytest.fixture(scope="module")
def cj(scenario: BitcoinScenario) -> CoinJoinTruth:
    (found,) = scenario.truth.coinjoins
    return found


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def esplora(scenario: BitcoinScenario) -> AsyncIterator[EsploraServer]:
    async with running_esplora(scenario) as server:
        yield server


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def api(db: Database, esplora: EsploraServer, scenario: BitcoinScenario) -> AsyncIterator[Api]:
    async with bitcoin_api(db, esplora, scenario, replace(SETTINGS, page_max=500)) as a:
        yield a


async def _hops(api: Api, trace_id: int) -> list[dict[str, Any]]:
    _, page, _ = await api.call("GET", f"/v1/traces/{trace_id}/hops?limit=500", expect=200)
    conforms("hop-page", page)
    assert page.get("next_cursor") in (None, ""), "more hops than one page"
    items: list[dict[str, Any]] = page["items"]
    return items


async def _exits(api: Api, trace_id: int) -> dict[str, dict[str, Any]]:
    _, exits, _ = await api.call("GET", f"/v1/traces/{trace_id}/exits", expect=200)
    conforms("exit-list", exits)
    return {e["address"]: e for e in exits["items"]}


def _outputs(scenario: BitcoinScenario, txid: str) -> list[tuple[str | None, int]]:
    tx = next(t for _b, _k, t in scenario.iter_txs() if t.txid == txid)
    return [(o.address, o.value) for o in tx.outputs]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def trace(api: Api, scenario: BitcoinScenario) -> dict[str, Any]:
    return await api.run_trace({"chain": "bitcoin", "seeds": scenario.seeds, "label": "coinjoin"})


async def test_the_coinjoin_entry_is_reported_with_its_anonymity_set(
    api: Api, trace: dict[str, Any], scenario: BitcoinScenario, cj: CoinJoinTruth
) -> None:
    outs = _outputs(scenario, cj.txid)
    equal = {outs[v][0] for v in cj.equal_vouts}
    hops = [h for h in await _hops(api, trace["id"]) if h["tx_hash"] == cj.txid]
    entered = [h for h in hops if h["reason"] == "entered CoinJoin"]
    # Every equal output is reported, stopped: the money is in the CoinJoin, not followed out of it.
    assert {h["to"] for h in entered} == equal and len(entered) == cj.anonymity_set == 25
    for h in entered:
        assert h["status"] == "stopped"
        ev = h["evidence"]
        assert ev["coinjoin"] == cj.txid and ev["pattern"] == "wasabi" and ev["anonymity_set"] == 25
        assert ev["denomination"] == str(cj.denomination) and ev["kind"] == "mixed"
        assert "anonymity set 25" in ev["summary"] and ev["summary"].startswith("entered CoinJoin (wasabi)")
        # 5 of the 25 equal outputs are the thief's: each is 1/5 likely, carrying that share of 0.1 BTC.
        assert h["confidence"] == pytest.approx(5 / 25)
        assert int(h["amount_raw"]) == int(cj.denomination * 5 / 25)
    # Other participants' change and the coordinator's fee get no hop at all.
    reached = {h["to"] for h in hops}
    others = {outs[v][0] for v in cj.change_vouts if v != cj.thief_change_vout} | {outs[cj.coordinator_vout][0]}
    assert not reached & others


async def test_the_change_is_followed_to_the_exchange(
    api: Api, trace: dict[str, Any], scenario: BitcoinScenario, cj: CoinJoinTruth
) -> None:
    outs = _outputs(scenario, cj.txid)
    change_address, change_value = outs[cj.thief_change_vout]
    hops = await _hops(api, trace["id"])
    (h,) = [h for h in hops if h["tx_hash"] == cj.txid and h["to"] == change_address]
    assert h["status"] == "followed" and h["reason"] == "coinjoin link"
    assert h["confidence"] == pytest.approx(utxo.CHANGE_LINK_SAME_TYPE)
    assert h["evidence"]["kind"] == "change" and h["evidence"]["vout"] == cj.thief_change_vout
    assert any("change of the tainted inputs" in r for r in h["evidence"]["reasons"])
    # The thief's inputs were wholly stolen money: the change carries its value times the confidence.
    carried = int(change_value * utxo.CHANGE_LINK_SAME_TYPE)
    assert int(h["amount_raw"]) == carried
    # Only the change is followed out of the CoinJoin: no explosion into the equal outputs.
    assert [x["to"] for x in hops if x["tx_hash"] == cj.txid and x["status"] == "followed"] == [change_address]

    exits = await _exits(api, trace["id"])
    via_change, via_mixed = scenario.truth.postmix_offramps
    e = exits.get(via_change.address)
    assert e is not None, "the change's cash-out was not reached"
    assert e["entity"] == via_change.entity and e["recognised_by"]["method"] == "behaviour"
    # The cash-out spent the whole change less a fee: the haircut keeps the confidence's share.
    assert int(e["amount_raw"]) == via_change.amount * carried // change_value
    # The mixed outputs' consolidation is not reached: 1-in-5 links are below the default threshold.
    assert via_mixed.address not in exits
    # And the peel chain before the CoinJoin still reads as one path of change outputs.
    for peel in scenario.truth.peel:
        (ph,) = [x for x in hops if x["tx_hash"] == peel.txid and x["to"] == peel.change_address]
        assert ph["status"] == "followed" and ph["reason"] == "change" and ph["evidence"]["change"] is True
        assert int(ph["amount_raw"]) == peel.change


async def test_a_lower_link_threshold_follows_the_equal_outputs_scaled(
    api: Api, db: Database, scenario: BitcoinScenario, cj: CoinJoinTruth
) -> None:
    trace = await api.run_trace({"chain": "bitcoin", "seeds": scenario.seeds, "label": "coinjoin, 1-in-5 links",
                             "policy": {"min_link_confidence": 0.2, "min_share": 0.00001}})
    outs = _outputs(scenario, cj.txid)
    hops = await _hops(api, trace["id"])
    followed = {h["to"] for h in hops if h["tx_hash"] == cj.txid and h["status"] == "followed"}
    assert followed == {outs[v][0] for v in cj.equal_vouts} | {outs[cj.thief_change_vout][0]}
    exits = await _exits(api, trace["id"])
    via_change, via_mixed = scenario.truth.postmix_offramps
    assert via_change.address in exits
    # The thief's 5 mixed outputs went on to one consolidation and the second exchange: reached,
    # with a fifth of what they held (each 1-in-5 link carries a fifth of its 0.1 BTC).
    e = exits.get(via_mixed.address)
    assert e is not None
    assert 0 < int(e["amount_raw"]) <= via_mixed.amount // 5
    assert int(e["amount_raw"]) >= via_mixed.amount // 5 - 10_000
    # The wallets' verdicts keep what the hops do not: the depositor's CoinJoin entries, and the
    # mixed outputs' consolidation names them as one owner (common inputs, outside the CoinJoin).
    thief_outs = [outs[v][0] or "" for v in cj.thief_equal_vouts]
    depositor = next(h["from"] for h in hops if h["tx_hash"] == cj.txid)
    async with db.pool.acquire() as conn:
        verdicts = await store.node_verdicts(conn, trace["id"], [depositor, *thief_outs], "bitcoin")
    entry = _json(verdicts[depositor].evidence)["coinjoins"][0]
    assert entry["coinjoin"] == cj.txid and entry["anonymity_set"] == cj.anonymity_set
    assert entry["flagged"] == entry["entered"]  # the peel chain's money was all stolen
    for a in thief_outs:
        assert _json(verdicts[a].evidence)["co_spent_with"] == sorted(set(thief_outs) - {a})


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


# -- Whirlpool: a mix with no change -------------------------------------------------------------


@pytest.fixture(scope="module")
def mix_scenario() -> BitcoinScenario:
    return whirlpool()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def mix_api(pg_server_url: str, migrated_template: str, mix_scenario: BitcoinScenario) -> AsyncIterator[Api]:
    # Its own database: the same heights hold other blocks than the first history's.
    async with (running_esplora(mix_scenario) as server, own_database(pg_server_url, migrated_template) as mix_db,
                bitcoin_api(mix_db, server, mix_scenario, Settings(workers=2, page_max=500)) as a):
        yield a


async def test_whirlpool_is_reported_and_the_trace_stops_there(mix_api: Api, mix_scenario: BitcoinScenario) -> None:
    (mix,) = mix_scenario.truth.coinjoins
    trace = await mix_api.run_trace({"chain": "bitcoin", "seeds": mix_scenario.seeds, "label": "whirlpool"})
    hops = [h for h in await _hops(mix_api, trace["id"]) if h["tx_hash"] == mix.txid]
    outs = _outputs(mix_scenario, mix.txid)
    assert {h["to"] for h in hops} == {a for a, _ in outs} and len(hops) == 5
    for h in hops:
        assert (h["status"], h["reason"]) == ("stopped", "entered CoinJoin")
        assert h["evidence"]["pattern"] == "whirlpool" and h["evidence"]["anonymity_set"] == 5
        assert h["confidence"] == pytest.approx(0.2)
        assert int(h["amount_raw"]) == mix.denomination // 5  # the premix was wholly stolen money
    (cashout,) = mix_scenario.truth.postmix_offramps
    assert cashout.address not in await _exits(mix_api, trace["id"])


async def test_whirlpool_with_1_in_5_links_reaches_the_cash_out_with_a_fifth(
    mix_api: Api, mix_scenario: BitcoinScenario
) -> None:
    (mix,) = mix_scenario.truth.coinjoins
    trace = await mix_api.run_trace({"chain": "bitcoin", "seeds": mix_scenario.seeds, "label": "whirlpool 1-in-5",
                                 "policy": {"min_link_confidence": 0.2}})
    hops = [h for h in await _hops(mix_api, trace["id"]) if h["tx_hash"] == mix.txid]
    assert [h["reason"] for h in hops] == ["coinjoin link"] * 5
    (cashout,) = mix_scenario.truth.postmix_offramps
    e = (await _exits(mix_api, trace["id"])).get(cashout.address)
    assert e is not None and e["recognised_by"]["method"] == "behaviour"
    # The postmix output held 0.05 BTC of which a fifth is flagged; the cash-out spent it less a fee.
    assert int(e["amount_raw"]) == cashout.amount * (mix.denomination // 5) // mix.denomination


async def test_more_workers_give_the_same_hops(
    api: Api, db: Database, esplora: EsploraServer, scenario: BitcoinScenario
) -> None:
    """1 and then 4 extra workers (the API's own 2 claim jobs too): batches differ, hops do not."""
    client = EsploraChain(esplora.url, network="mainnet")
    await client.connect()
    try:
        seen = []
        for workers in (1, 4):
            trace_id = await create_trace(db.pool, client, chain="bitcoin", seeds=scenario.seeds,
                                          policy={"min_link_confidence": 0.2, "min_share": 0.00001})
            assert await run_with_workers(db.pool, {"bitcoin": client}, trace_id, workers=workers,
                                          progress=False) == "done"
            seen.append(sorted((h["tx_hash"], h["position"], h["to"], h["status"], h["reason"], h["amount_raw"],
                                h.get("confidence"), json.dumps(h.get("evidence"), sort_keys=True))
                               for h in await _hops(api, trace_id)))
    finally:
        await client.close()
    assert seen[0] == seen[1]
    assert any(h[4] == "coinjoin link" for h in seen[0]) and any(h[4] == "change" for h in seen[0])
