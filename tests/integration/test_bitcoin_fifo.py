"""FIFO taint on Bitcoin, end to end: POST /v1/traces with policy {"taint_model": "fifo"} on a
real API server, real workers reading the devchain's Esplora server through EsploraChain.

The history (tracer.devchain.bitcoin_fifo): wallet W holds 0.50001 BTC of its own, receives the
thief's 0.4 BTC, then pays 0.5 BTC from its older coin to Binance and 0.39999 BTC from the stolen
coin to Kraken (1,000 sat fee each). FIFO and haircut must disagree, by hand:

- W's prior balance (block 1) is 50,001,000 clean; the stolen 40,000,000 arrives after it.
- FIFO: the Binance payment (50,000,000) is the first 50,000,000 of the clean lot: nothing
  flagged, so no hop. The Kraken payment (39,999,000) takes the clean lot's last 1,000 (the first
  fee, which no transfer shows leaving) and 39,998,000 of the stolen lot: 39,998,000 flagged.
- Haircut: Binance gets 50,000,000 x 40,000,000 // 90,001,000 = 22,221,975; W keeps 17,778,025
  flagged of 40,001,000, so Kraken gets 39,999,000 x 17,778,025 // 40,001,000 = 17,777,136.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.api_support import Api, conforms
from tests.bitcoin_support import fifo_api_fixture, fifo_story_fixture  # noqa: F401  (fixtures "api", "story")
from tracer.devchain.bitcoin.records import BitcoinScenario
from tracer.devchain.bitcoin_fifo import FifoTruth
from tracer.store.db import Database

pytestmark = pytest.mark.asyncio(loop_scope="session")

FIFO_KRAKEN = 39_998_000
HAIRCUT_BINANCE = 22_221_975
HAIRCUT_KRAKEN = 17_777_136


async def _run(api: Api, seeds: list[str], model: str) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    trace = await api.run_trace({"chain": "bitcoin", "seeds": seeds, "policy": {"taint_model": model}})
    assert trace["policy"]["taint_model"] == model
    _, page, _ = await api.call("GET", f"/v1/traces/{trace['id']}/hops?limit=500", expect=200)
    conforms("hop-page", page)
    _, exits, _ = await api.call("GET", f"/v1/traces/{trace['id']}/exits", expect=200)
    conforms("exit-list", exits)
    return page["items"], {e["address"]: e for e in exits["items"]}


def _hop_amounts(hops: list[dict[str, Any]], sender: str) -> dict[str, int]:
    return {h["to"]: int(h["amount_raw"]) for h in hops if h["from"] == sender}


async def test_fifo_pays_the_older_clean_coin_out_first(api: Api, story: tuple[BitcoinScenario, FifoTruth]) -> None:
    scenario, t = story
    hops, exits = await _run(api, scenario.seeds, "fifo")
    assert _hop_amounts(hops, t.thief) == {t.wallet: 40_000_000}
    # Binance got W's own older coin: not a hop at all. Kraken got the stolen coin.
    assert _hop_amounts(hops, t.wallet) == {t.second_exchange: FIFO_KRAKEN}
    (kraken,) = [h for h in hops if h["to"] == t.second_exchange]
    assert kraken["tx_hash"] == t.second_txid and kraken["status"] == "exit"
    assert set(exits) == {t.second_exchange}
    assert exits[t.second_exchange]["entity"] == "Kraken"
    assert int(exits[t.second_exchange]["amount_raw"]) == FIFO_KRAKEN


async def test_haircut_splits_the_same_payments_in_proportion(
    api: Api, story: tuple[BitcoinScenario, FifoTruth]
) -> None:
    scenario, t = story
    hops, exits = await _run(api, scenario.seeds, "haircut")
    assert _hop_amounts(hops, t.wallet) == {t.first_exchange: HAIRCUT_BINANCE, t.second_exchange: HAIRCUT_KRAKEN}
    assert {a: int(e["amount_raw"]) for a, e in exits.items()} == {
        t.first_exchange: HAIRCUT_BINANCE, t.second_exchange: HAIRCUT_KRAKEN}
    # Both models conserve: neither lets more out of W than the 40,000,000 that came in flagged.
    assert HAIRCUT_BINANCE + HAIRCUT_KRAKEN <= 40_000_000 and FIFO_KRAKEN <= 40_000_000


async def test_an_unknown_taint_model_is_a_400_naming_the_field(
    api: Api, story: tuple[BitcoinScenario, FifoTruth]
) -> None:
    scenario, _ = story
    status, body, _ = await api.call("POST", "/v1/traces", expect=400,
                                     json={"chain": "bitcoin", "seeds": scenario.seeds,
                                           "policy": {"taint_model": "lifo"}})
    assert status == 400 and body["field"] == "policy.taint_model"
    assert "fifo" in body["detail"]


async def test_fifo_conserves_taint_on_a_generated_evm_laundering_scenario(database_url: str, db: Database) -> None:
    # The same model on the other chain family, over a whole generated case (peel chains, swaps,
    # mixers, deposit addresses): no address sends more flagged money than reached it, and the
    # exits hold at most what left the seeds (the check of tests/integration/test_reliability_conservation.py).
    from tests.integration.test_reliability_conservation import check_conservation

    assert await check_conservation(database_url, 250, 11, "fifo") > 0


async def test_full_poison_flags_all_that_leaves_and_is_not_conserved(
    api: Api, story: tuple[BitcoinScenario, FifoTruth]
) -> None:
    # The literature's poison: W received stolen coin, so all it pays afterwards is flagged in
    # full, its older clean coin too: the exchanges get more than was stolen.
    scenario, t = story
    hops, exits = await _run(api, scenario.seeds, "full_poison")
    paid = [h for h in hops if h["from"] == t.wallet]
    assert {h["to"] for h in paid} == {t.first_exchange, t.second_exchange}
    assert all(h["share"] == 1.0 for h in paid), paid
    assert sum(int(e["amount_raw"]) for e in exits.values()) > 40_000_000
    assert all(int(exits[a]["amount_raw"]) >= v for a, v in
               {t.first_exchange: HAIRCUT_BINANCE, t.second_exchange: HAIRCUT_KRAKEN}.items())


async def test_policy_value_poison_still_means_flagged_first(
    api: Api, story: tuple[BitcoinScenario, FifoTruth]
) -> None:
    # "poison" was flagged_first's name before full_poison existed: clients sending it keep the
    # same model (the trace's policy says the new name), and the amounts are flagged_first's.
    scenario, _ = story
    _, made, _ = await api.call("POST", "/v1/traces", expect=201, json={
        "chain": "bitcoin", "seeds": scenario.seeds, "policy": {"taint_model": "poison"}})
    assert made["policy"]["taint_model"] == "flagged_first"
    await api.wait_done(int(made["id"]))
    _, old, _ = await api.call("GET", f"/v1/traces/{made['id']}/exits", expect=200)
    _, first = await _run(api, scenario.seeds, "flagged_first")
    assert {e["address"]: e["amount_raw"] for e in old["items"]} == {a: e["amount_raw"] for a, e in first.items()}
