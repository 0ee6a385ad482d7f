"""A Tron laundering history traced end to end: POST /v1/traces with chain "tron" and a `T...`
seed on a real API server, real workers reading the Tron devchain (java-tron's HTTP API and
JSON-RPC) through TronChain, results read back over HTTP in Tron's own address form and checked
against the generator's truth."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.api_support import Api, conforms, running_api
from tracer.addresses import tron_base58
from tracer.api.context import Settings
from tracer.chains.retry import RetryPolicy, TransportOptions
from tracer.chains.tron import TronChain
from tracer.demo import load_scenario_labels
from tracer.devchain.tron import USDT, TronStory, address, generate
from tracer.devchain.tron_server import TronServer
from tracer.domain.transfers import NATIVE
from tracer.labels import importer
from tracer.store import outbox
from tracer.store.db import Database

pytestmark = pytest.mark.asyncio(loop_scope="session")
T = tron_base58


@pytest.fixture(scope="module")
def story() -> TronStory:
    return generate()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def api(db: Database, story: TronStory) -> AsyncIterator[Api]:
    server = TronServer(story)
    await server.start()
    client = TronChain(server.jsonrpc_url, transport=TransportOptions(policy=RetryPolicy(backoff=0.01)))
    try:
        await client.connect()
        await load_scenario_labels(db.pool, story)  # type: ignore[arg-type]  # duck-typed: chain + labels
        async with running_api(db, {"tron": client}, Settings(workers=2, worker_lease_seconds=10.0)) as a:
            yield a
    finally:
        await client.close()
        await server.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def trace(api: Api, story: TronStory) -> dict[str, Any]:
    return await api.run_trace({"chain": "tron", "seeds": [T(story.seeds[0])], "label": "tron laundering"})


async def test_the_trace_reaches_every_deposit_address_with_exact_amounts(
    api: Api, trace: dict[str, Any], story: TronStory
) -> None:
    assert trace["status"] == "done", trace
    assert trace["seeds"] == [T(story.seeds[0])]  # shown as Tron shows it
    totals = {t["asset"]: t for t in trace["totals"]}
    assert totals[NATIVE]["symbol"] == "TRX" and totals[NATIVE]["decimals"] == 6

    _, exits, _ = await api.call("GET", f"/v1/traces/{trace['id']}/exits", expect=200)
    conforms("exit-list", exits)
    got: dict[tuple[str, str], dict[str, Any]] = {(e["address"], e["asset"]): e for e in exits["items"]}
    for o in story.truth.offramps:
        shown = o.asset if o.asset == NATIVE or o.asset.startswith("trc10:") else T(o.asset)
        e = got.get((T(o.address), shown))
        assert e is not None, f"deposit {T(o.address)} ({o.entity}) not reached with {o.asset}: {sorted(got)}"
        assert int(e["amount_raw"]) == o.amount, (o, e)
        assert e["entity"] == o.entity


async def test_the_usdt_freeze_is_a_stop_with_its_block(api: Api, trace: dict[str, Any], story: TronStory) -> None:
    f = story.truth.freeze
    _, hops, _ = await api.call("GET", f"/v1/traces/{trace['id']}/hops?limit=500", expect=200)
    into = [h for h in hops["items"] if h["to"] == T(f.address)]
    assert into and all(h["status"] == "stopped" for h in into), into
    assert int(into[0]["amount_raw"]) == f.held and into[0]["asset"] == T(USDT)
    _, node, _ = await api.call("GET", f"/v1/addresses/tron/{T(f.address)}", expect=200)
    assert node["address"] == T(f.address)
    (mine,) = [t for t in node["traces"] if t["trace_id"] == trace["id"]]
    assert mine["role"] == "stopped", mine
    assert (mine["reason"], mine["entity"], mine["category"]) == (f"frozen by issuer at block {f.block}", "Tether",
                                                                   "frozen")
    assert into[0]["reason"] == mine["reason"]


async def test_tron_addresses_across_the_api(api: Api, db: Database, trace: dict[str, Any], story: TronStory,
                                             tmp_path: Path) -> None:
    """OFAC's per-asset TRX list, screening, a subscription's filter, graph exports and the default
    labels all take and show Tron addresses as T..."""
    thief, layer_e = T(story.seeds[0]), T(address(24, "layer_e"))
    trx = tmp_path / "sanctioned_addresses_TRX.txt"
    trx.write_text(f"{thief}\n", encoding="utf-8")
    async with db.pool.acquire() as conn:
        imported = await importer.import_file(conn, trx, list_date=datetime(2026, 1, 5, tzinfo=UTC))
    assert imported.stats["added"] == 1
    _, screened, _ = await api.call("GET", f"/v1/screen?address={thief}", expect=200)
    assert screened["chain"] == "tron" and screened["address"] == thief, screened
    assert screened["sanctioned"] and [h["source"] for h in screened["hits"]] == ["ofac-sdn:TRX"], screened

    _, sub, _ = await api.call("POST", "/v1/subscriptions", expect=201, json={
        "delivery": "stream", "watch": False, "addresses": [layer_e], "event_types": ["hop_added"]})
    conforms("subscription", sub)
    assert (sub["chain"], sub["addresses"]) == ("tron", [layer_e])

    listed = await api.run_trace({"chain": "tron", "from_list": {"list": "ofac"}})
    assert listed["seeds"] == [thief]
    async with db.pool.acquire() as conn:
        while await outbox.sequence_round(conn):
            pass
    _, events, _ = await api.call("GET", f"/v1/subscriptions/{sub['id']}/events", expect=200)
    conforms("event-page", events)
    hops = {(e["hop"]["from"], e["hop"]["to"]) for e in events["items"]}
    assert hops == {(T(address(24, "layer_b")), layer_e), (layer_e, T(address(24, "dep_okx_1")))}, hops

    for fmt in ("csv", "json", "graphml"):
        status, body, _ = await api.call("GET", f"/v1/traces/{listed['id']}/graph?format={fmt}")
        text = body if isinstance(body, str) else json.dumps(body)
        assert status == 200 and thief in text and T(story.truth.offramps[0].address) in text, fmt
        assert "0x41" not in text, (fmt, text[max(0, text.find("0x41") - 200):text.find("0x41") + 80])  # no hex leaks

    # The default label set's Tron hot wallets (GraphSense tagpacks, with their provenance).
    from tracer.labels.defaults import load_default_labels

    async with db.pool.acquire() as conn:
        await load_default_labels(conn)
    binance = "TAzsQ9Gx8eqFNFSKbeXrbi45CuVPHzA8wr"
    _, node, _ = await api.call("GET", f"/v1/addresses/tron/{binance}", expect=200)
    assert node["address"] == binance
    assert any(lb["entity"] == "Binance" and lb["category"] == "exchange" for lb in node["labels"]), node
    status, bad, _ = await api.call("POST", "/v1/traces", json={"chain": "tron", "seeds": [binance[:-1] + "x"]})
    assert status == 400 and bad["field"] == "seeds[0]" and "checksum" in bad["detail"], bad
