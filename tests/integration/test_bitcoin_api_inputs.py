"""Bitcoin addresses where the API takes addresses: POST /v1/labels, GET /v1/labels and
/v1/screen, subscriptions' address filters and watchlists, and trace seeds of the wrong network.

A real API server with a Bitcoin node (the devchain's Esplora server, mainnet, read through
EsploraChain): a label posted for a Bitcoin address is screened as Bitcoin's, a subscription
filtering on a Bitcoin address receives the hop events of a Bitcoin trace touching it, and a
testnet or regtest seed on this mainnet server is a 400 at creation instead of a failed trace.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from tests.api_support import Api, conforms
from tests.bitcoin_support import fifo_api_fixture, fifo_story_fixture  # noqa: F401  (fixtures "api", "story")
from tracer.addresses import encode_btc_base58, encode_btc_segwit
from tracer.chains.bitcoin import EsploraChain
from tracer.devchain.bitcoin.records import BitcoinScenario
from tracer.devchain.bitcoin_fifo import FifoTruth
from tracer.engine import service
from tracer.store import outbox
from tracer.store.db import Database

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _program(tag: str, size: int = 20) -> bytes:
    return hashlib.sha256(tag.encode()).digest()[:size]


MAIN_BECH32 = encode_btc_segwit("bc", 0, _program("main"))
MAIN_P2PKH = encode_btc_base58(0x00, _program("p2pkh"))
MAIN_P2SH = encode_btc_base58(0x05, _program("p2sh"))
TEST_BECH32 = encode_btc_segwit("tb", 0, _program("test"))
TEST_P2PKH = encode_btc_base58(0x6F, _program("test-p2pkh"))
REGTEST_BECH32 = encode_btc_segwit("bcrt", 0, _program("regtest"))
EVM = "0x" + "42" * 20


# ---------------------------------------------------------------- labels and screening


async def test_a_label_for_a_bitcoin_address_takes_the_chain_from_its_shape(api: Api) -> None:
    # bech32 in capitals (QR codes use them) is stored lowercase; base58 keeps its case.
    _, made, _ = await api.call("POST", "/v1/labels", expect=201, json={
        "address": MAIN_BECH32.upper(), "entity": "Lazarus Group", "category": "sanctioned", "note": "case 7"})
    conforms("label-item", made)
    assert (made["chain"], made["address"], made["source"]) == ("bitcoin", MAIN_BECH32, "investigator")
    _, made, _ = await api.call("POST", "/v1/labels", expect=201, json={
        "chain": "bitcoin", "address": MAIN_P2PKH, "entity": "OTC desk", "category": "otc"})
    assert (made["chain"], made["address"]) == ("bitcoin", MAIN_P2PKH)
    # An EVM address without a chain is still Ethereum's.
    _, made, _ = await api.call("POST", "/v1/labels", expect=201, json={
        "address": EVM.upper().replace("0X", "0x"), "entity": "Someone", "category": "exchange"})
    assert (made["chain"], made["address"]) == ("ethereum", EVM)

    _, page, _ = await api.call("GET", f"/v1/labels?address={MAIN_BECH32}", expect=200)
    conforms("label-page", page)
    assert [(i["chain"], i["entity"]) for i in page["items"]] == [("bitcoin", "Lazarus Group")]
    _, page, _ = await api.call("GET", f"/v1/labels?chain=bitcoin&address={MAIN_P2PKH}", expect=200)
    assert [i["entity"] for i in page["items"]] == ["OTC desk"]


@pytest.mark.parametrize(("body", "field", "words"), [
    # a bech32 checksum typo, a base58 checksum typo, mixed-case bech32
    ({"address": MAIN_BECH32[:-1] + ("q" if MAIN_BECH32[-1] != "q" else "p")}, "address", "checksum"),
    ({"address": MAIN_P2SH[:-1] + ("1" if MAIN_P2SH[-1] != "1" else "2")}, "address", "checksum"),
    ({"address": MAIN_BECH32[:10] + MAIN_BECH32[10:].upper()}, "address", "mixed-case"),
    # the chain says EVM, the address is Bitcoin's (and the other way round)
    ({"chain": "ethereum", "address": MAIN_BECH32}, "address", "0x"),
    ({"chain": "bitcoin", "address": EVM}, "address", "invalid address"),
    ({"address": "not an address"}, "address", ""),
])
async def test_bad_bitcoin_labels_are_400s_naming_the_address(
    api: Api, body: dict[str, Any], field: str, words: str
) -> None:
    status, problem, _ = await api.call("POST", "/v1/labels", json={"entity": "X", "category": "exchange", **body})
    assert status == 400 and problem["field"] == field, problem
    assert words in problem["detail"]


async def test_screening_a_bitcoin_address(api: Api) -> None:
    _, hit, _ = await api.call("GET", f"/v1/screen?address={MAIN_BECH32}", expect=200)
    conforms("screen", hit)
    assert (hit["chain"], hit["address"], hit["sanctioned"]) == ("bitcoin", MAIN_BECH32, True)
    assert [h["entity"] for h in hit["hits"]] == ["Lazarus Group"]
    _, clean, _ = await api.call("GET", f"/v1/screen?chain=bitcoin&address={MAIN_P2SH}", expect=200)
    assert (clean["chain"], clean["sanctioned"], clean["hits"]) == ("bitcoin", False, [])
    _, evm, _ = await api.call("GET", f"/v1/screen?address={EVM}", expect=200)
    assert evm["chain"] == "ethereum"
    for query in (f"address={MAIN_BECH32[:-2]}", f"chain=ethereum&address={MAIN_BECH32}", "chain=bitcoin"):
        status, problem, _ = await api.call("GET", f"/v1/screen?{query}")
        assert status == 400 and problem["field"] == "address", (query, problem)


# ---------------------------------------------------------------- subscriptions


async def _sequence(db: Database) -> None:
    async with db.pool.acquire() as conn:
        while await outbox.sequence_round(conn):
            pass


async def test_a_subscription_filters_on_a_bitcoin_address(
    api: Api, db: Database, story: tuple[BitcoinScenario, FifoTruth]
) -> None:
    scenario, t = story
    _, sub, _ = await api.call("POST", "/v1/subscriptions", expect=201, json={
        "delivery": "stream", "watch": False, "addresses": [t.wallet.upper()], "event_types": ["hop_added"]})
    conforms("subscription", sub)
    assert (sub["chain"], sub["addresses"], sub["watch"]) == ("bitcoin", [t.wallet], False)

    await api.run_trace({"chain": "bitcoin", "seeds": scenario.seeds})
    await _sequence(db)
    _, got, _ = await api.call("GET", f"/v1/subscriptions/{sub['id']}/events", expect=200)
    conforms("event-page", got)
    # Every hop into or out of W, and no other (the trace has no other hops than these three).
    hops = {(e["hop"]["from"], e["hop"]["to"]) for e in got["items"]}
    assert all(e["chain"] == "bitcoin" for e in got["items"])
    assert hops == {(t.thief, t.wallet), (t.wallet, t.first_exchange), (t.wallet, t.second_exchange)}


@pytest.mark.parametrize(("body", "field"), [
    ({"addresses": [MAIN_BECH32, EVM]}, "addresses[1]"),  # one subscription, one chain
    ({"chain": "ethereum", "addresses": [MAIN_BECH32]}, "addresses[0]"),
    ({"chain": "bitcoin", "addresses": [EVM]}, "addresses[0]"),
    ({"addresses": [MAIN_BECH32[:-1] + "x"]}, "addresses[0]"),
    ({"chain": "dogecoin", "addresses": [MAIN_BECH32]}, "chain"),  # not a chain we know: no rules to read by
])
async def test_bad_subscription_addresses_are_400s(api: Api, body: dict[str, Any], field: str) -> None:
    status, problem, _ = await api.call("POST", "/v1/subscriptions", json={"delivery": "stream", "watch": False,
                                                                          **body})
    assert status == 400 and problem["field"].startswith(field.split("[")[0]), problem
    if "[" in field:
        assert problem["field"] == field, problem


async def test_a_bitcoin_watchlist_starts_a_watching_bitcoin_trace(api: Api) -> None:
    _, sub, _ = await api.call("POST", "/v1/subscriptions", expect=201,
                               json={"delivery": "stream", "addresses": [MAIN_P2SH, MAIN_BECH32], "confirmations": 1})
    assert sub["chain"] == "bitcoin" and sub["watch"] is True and sub["watch_trace_id"]
    _, trace, _ = await api.call("GET", f"/v1/traces/{sub['watch_trace_id']}", expect=200)
    assert trace["chain"] == "bitcoin" and sorted(trace["seeds"]) == sorted([MAIN_P2SH, MAIN_BECH32])
    await api.call("DELETE", f"/v1/subscriptions/{sub['id']}", expect=204)
    # A watchlist of testnet addresses on this mainnet server is refused like a trace's seeds.
    status, problem, _ = await api.call("POST", "/v1/subscriptions", json={"delivery": "stream",
                                                                          "addresses": [TEST_BECH32]})
    assert status == 400 and problem["field"].startswith("addresses") and "testnet" in problem["detail"]


# ---------------------------------------------------------------- a seed of another network


@pytest.mark.parametrize(("seed", "kind"), [
    (TEST_BECH32, "testnet/signet"), (TEST_P2PKH, "testnet/signet/regtest"), (REGTEST_BECH32, "regtest")])
async def test_a_testnet_seed_on_a_mainnet_trace_is_refused_at_creation(
    api: Api, story: tuple[BitcoinScenario, FifoTruth], seed: str, kind: str
) -> None:
    scenario, _ = story
    status, problem, _ = await api.call("POST", "/v1/traces", json={"chain": "bitcoin",
                                                                    "seeds": [*scenario.seeds, seed]})
    assert status == 400 and problem["field"] == "seeds[1]", problem
    assert f"a {kind} address" in problem["detail"] and "mainnet" in problem["detail"]
    assert "TRACER_BITCOIN_NETWORK" in problem["detail"]
    _, listed, _ = await api.call("GET", "/v1/traces?seed=" + seed, expect=200)
    assert listed["items"] == []  # nothing was queued


async def test_seeds_are_checked_against_the_configured_network() -> None:
    for address in (MAIN_BECH32, MAIN_P2PKH, MAIN_P2SH):
        assert service.parse_seeds([address], "bitcoin", "mainnet") == [address]
    for network in ("testnet", "testnet4", "signet"):
        assert service.parse_seeds([TEST_BECH32, TEST_P2PKH], "bitcoin", network) == sorted([TEST_BECH32, TEST_P2PKH])
        with pytest.raises(service.TraceInputError, match="a regtest address"):
            service.parse_seeds([REGTEST_BECH32], "bitcoin", network)
    assert service.parse_seeds([REGTEST_BECH32, TEST_P2PKH], "bitcoin", "regtest") == sorted(
        [REGTEST_BECH32, TEST_P2PKH])
    with pytest.raises(service.TraceInputError, match="a mainnet address") as exc:
        service.parse_seeds([TEST_P2PKH, MAIN_P2SH], "bitcoin", "regtest")
    assert exc.value.field == "seeds[1]"
    # No network to check against (a client told not to check): any valid address passes.
    assert service.parse_seeds([TEST_BECH32], "bitcoin", None) == [TEST_BECH32]


async def test_the_network_comes_from_the_client_else_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert service.bitcoin_network(EsploraChain("http://127.0.0.1:9", network="signet")) == "signet"
    assert service.bitcoin_network(EsploraChain("http://127.0.0.1:9", network=None)) is None
    monkeypatch.setenv("TRACER_BITCOIN_NETWORK", "regtest")
    assert service.bitcoin_network(None) == "regtest"
    monkeypatch.delenv("TRACER_BITCOIN_NETWORK")
    assert service.bitcoin_network(None) == "mainnet"


async def test_screening_with_depth_says_bitcoin_is_not_walked_back_yet(
        api: Api, story: tuple[BitcoinScenario, FifoTruth]) -> None:
    scenario, _ = story
    seed = scenario.seeds[0]
    _, p, _ = await api.call("GET", f"/v1/screen?chain=bitcoin&address={seed}&depth=2", expect=400)
    assert p["field"] == "depth" and "EVM chains only" in p["detail"]
    _, body, _ = await api.call("GET", f"/v1/screen?chain=bitcoin&address={seed}", expect=200)
    assert "exposure" not in body
