"""Backward through a CoinJoin on Bitcoin (issue 20): the thief's CoinJoin change, paid into an
exchange, goes back to the thief along the forward trace's change link (confidence x the output),
not to the round's 26 inputs pro rata; the CoinJoin's other participants are not walked. Real
Postgres, the devchain's Esplora server, the API and its workers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
import pytest_asyncio

from tests.api_support import Api, conforms
from tests.bitcoin_support import SETTINGS, bitcoin_api, running_esplora
from tests.integration.test_backward_bitcoin import backward, label_thief
from tracer.devchain.bitcoin.records import BitcoinScenario, BitcoinScenarioParams
from tracer.devchain.bitcoin.story import generate
from tracer.devchain.esplora import EsploraServer
from tracer.engine import utxo
from tracer.store.db import Database

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(scope="module")
def scenario() -> BitcoinScenario:
    return generate(BitcoinScenarioParams(seed=7, peel_hops=4, coinjoin=True))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def esplora(scenario: BitcoinScenario) -> AsyncIterator[EsploraServer]:
    async with running_esplora(scenario) as server:
        yield server


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def api(db: Database, esplora: EsploraServer, scenario: BitcoinScenario) -> AsyncIterator[Api]:
    async with bitcoin_api(db, esplora, scenario, replace(SETTINGS, page_max=500)) as a:
        yield a


async def test_the_coinjoin_change_goes_back_to_the_thief_along_the_forward_link(
        api: Api, db: Database, scenario: BitcoinScenario) -> None:
    trace = await api.run_trace({"chain": "bitcoin", "seeds": scenario.seeds, "label": "coinjoin"})
    _, exits, _ = await api.call("GET", f"/v1/traces/{trace['id']}/exits", expect=200)
    forward = {e["address"]: int(e["amount_raw"]) for e in exits["items"]}
    change_offramp = scenario.truth.postmix_offramps[0]
    assert change_offramp.address in forward
    thief = await label_thief(db, scenario)
    (cj,) = scenario.truth.coinjoins
    got = await backward(api, [change_offramp.address], {"trace": trace})
    (line,) = [i for i in got["exits"]["items"] if i["address"] == thief]
    want = forward[change_offramp.address]
    # The forward link's float arithmetic rounds the carried amount: a few satoshis.
    assert abs(int(line["amount_raw"]) - want) <= 10, (int(line["amount_raw"]), want)
    hops = [h async for page in api.pages(f"/v1/traces/{got['trace']['id']}/hops?limit=500") for h in page["items"]]
    into = [h for h in hops if h["tx_hash"] == cj.txid]
    for h in hops:
        conforms("hop", h)
    # Only the thief's coins go back out of the round: the other participants are no senders.
    assert any(h["status"] == "followed" for h in into) and {h["from"] for h in into} <= set(scenario.truth.launderers)
    assert all(h["reason"] == "coinjoin link" and h["confidence"] == pytest.approx(utxo.CHANGE_LINK_SAME_TYPE)
               for h in into if h["status"] != "exit"), into
    print("bitcoin backward through a CoinJoin: thief", int(line["amount_raw"]), "forward", want)
