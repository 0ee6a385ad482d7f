"""A Bitcoin peel chain traced end to end: POST /v1/traces with chain "bitcoin" on a real API
server, real workers reading a real Esplora server (the devchain's) through EsploraChain, results
read back over HTTP and checked against the generator's ground truth."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.alerts_support import wait_until
from tests.api_support import Api, conforms
from tests.bitcoin_support import SETTINGS, bitcoin_api, running_esplora
from tests.fixtures_db import temporary_database
from tracer.alerts.monitor import Monitor, MonitorSettings
from tracer.chains.bitcoin import EsploraChain
from tracer.demo import load_scenario_labels
from tracer.devchain.bitcoin.records import BitcoinScenario, BitcoinScenarioParams
from tracer.devchain.bitcoin.story import generate
from tracer.devchain.esplora import EsploraServer
from tracer.domain.transfers import NATIVE
from tracer.engine import service
from tracer.labels import importer
from tracer.store import labels as label_store
from tracer.store.db import Database
from tracer.workers.trace import Worker, WorkerSettings

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(scope="module")
def scenario() -> BitcoinScenario:
    # No CoinJoin here: what follows one is another test's subject (the engine's CoinJoin handling).
    return generate(BitcoinScenarioParams(seed=11, peel_hops=15, coinjoin=False))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def esplora(scenario: BitcoinScenario) -> AsyncIterator[EsploraServer]:
    # Small pages, and the client told so (bitcoin_api passes the server's page size): a client
    # expecting 25 would take every 4-transaction page for the last. The walked wallets' histories
    # here fit one page; paging itself is tested in test_bitcoin_chain.py (the `paged` server).
    async with running_esplora(scenario, page_size=4) as server:
        yield server


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def api(db: Database, esplora: EsploraServer, scenario: BitcoinScenario) -> AsyncIterator[Api]:
    async with bitcoin_api(db, esplora, scenario, replace(SETTINGS, page_max=500)) as a:
        yield a


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def trace(api: Api, scenario: BitcoinScenario) -> dict[str, Any]:
    return await api.run_trace({"chain": "bitcoin", "seeds": scenario.seeds, "label": "peel chain"})


async def test_peel_chain_reaches_every_exchange_deposit_with_its_payment(
    api: Api, trace: dict[str, Any], scenario: BitcoinScenario
) -> None:
    truth = scenario.truth
    assert trace["chain"] == "bitcoin" and trace["seeds"] == scenario.seeds
    totals = {t["asset"]: t for t in trace["totals"]}
    # What left the seed: the stolen coins less the fee of the first hop.
    first = truth.peel[0]
    assert int(totals[NATIVE]["amount_raw"]) == first.payment + first.change

    _, exits, _ = await api.call("GET", f"/v1/traces/{trace['id']}/exits", expect=200)
    conforms("exit-list", exits)
    got = {e["address"]: e for e in exits["items"]}
    assert len(truth.offramps) == 15
    for o in truth.offramps:
        e = got.get(o.address)
        assert e is not None, f"deposit address {o.address} ({o.entity}) not reached"
        # Every peel hop is wholly stolen money: the flagged amount is the payment, to the satoshi.
        assert int(e["amount_raw"]) == o.amount, (o, e)
        assert e["entity"] == o.entity
        assert e["recognised_by"]["method"] == "behaviour"  # found by its sweep, not by a label
    # Nothing else is an exit: the change addresses were followed, not stopped.
    assert set(got) == {o.address for o in truth.offramps}
    assert not set(got) & set(truth.noise_offramps)

    _, hops, _ = await api.call("GET", f"/v1/traces/{trace['id']}/hops?limit=500", expect=200)
    by_to = {h["to"]: h for h in hops["items"]}
    for hop in truth.peel:
        h = by_to[hop.change_address]
        assert h["status"] == "followed" and int(h["amount_raw"]) == hop.change
        assert h["tx_hash"] == hop.txid
    # Hop i pays deposit address i at depth i: the peel chain is followed along its change.
    assert [got[h.deposit_address]["depth"] for h in truth.peel] == list(range(1, len(truth.peel) + 1))


async def test_amounts_are_shown_in_btc(api: Api, trace: dict[str, Any], scenario: BitcoinScenario) -> None:
    totals = {t["asset"]: t for t in trace["totals"]}
    t = totals[NATIVE]
    assert t["decimals"] == 8 and t["symbol"] == "BTC", t
    assert Decimal(t["amount"]) * 10**8 == int(t["amount_raw"])


async def test_bad_bitcoin_seeds_are_a_400(api: Api) -> None:
    for bad, why in [("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t5", "checksum"),
                     ("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNb", "checksum"),
                     ("0x098b716b8aaf21512996dc57eb0615e2383e2f96", "")]:
        status, body, _ = await api.call("POST", "/v1/traces", json={"chain": "bitcoin", "seeds": [bad]})
        assert status == 400, body
        assert body["field"].startswith("seeds"), body
        assert why in body["detail"], body


async def test_the_address_view_takes_bitcoin_addresses(api: Api, trace: dict[str, Any],
                                                        scenario: BitcoinScenario) -> None:
    d = scenario.truth.offramps[0].address
    _, body, _ = await api.call("GET", f"/v1/addresses/bitcoin/{d}", expect=200)
    assert body["address"] == d and body["chain"] == "bitcoin"
    assert any(t["trace_id"] == trace["id"] and t["role"] == "exit" for t in body["traces"])
    status, body, _ = await api.call("GET", "/v1/addresses/bitcoin/bc1qnotanaddress")
    assert status == 400 and body["field"] == "address"


async def test_ofac_xbt_and_tagpack_bitcoin_labels_drive_a_trace(
    api: Api, db: Database, trace: dict[str, Any], scenario: BitcoinScenario, tmp_path: Path
) -> None:
    """Bitcoin labels from the formats of the shipped sources: an OFAC per-asset XBT list names the
    thief (a trace starts from the list), a GraphSense tagpack names one deposit address's owner
    (the exit is then recognised by its label)."""
    thief = scenario.seeds[0]
    typo = thief[:-1] + ("q" if thief[-1] != "q" else "p")  # a bech32 checksum error
    xbt = tmp_path / "sanctioned_addresses_XBT.txt"
    xbt.write_text(f"{thief}\n{typo}\nTUCsTq7TofTCJRRoHk6RvhMoS2mJLm5Yzq\n", encoding="utf-8")
    labelled = scenario.truth.offramps[2]
    pack = tmp_path / "tags.csv"
    pack.write_text(
        "tagpack,address,currency,network,label,category,abuse,actor,source,confidence,lastmod,is_public,context\n"
        f"packs/exchanges.yaml,{labelled.address.upper() if labelled.address.startswith('bc1') else labelled.address},"
        f"BTC,,{labelled.entity} deposit,exchange,,{labelled.entity.lower()},https://example.org,ownership,,,\n"
        "packs/exchanges.yaml,1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNb,BTC,,bad,exchange,,nobody,,service_data,,,\n",
        encoding="utf-8")
    async with db.pool.acquire() as conn:
        sanctions = await importer.import_file(conn, xbt, list_date=datetime(2026, 8, 20, tzinfo=UTC))
        tags = await importer.import_file(conn, pack)
    assert sanctions.stats["invalid"] == 1  # the checksum typo; the Tron key is filed under tron
    assert tags.stats["invalid"] == 1
    async with db.pool.acquire() as conn:
        assert thief in await label_store.screen(conn, "bitcoin", [thief])
        found = await label_store.lookup(conn, "bitcoin", [labelled.address])
        assert any(lb.category == "exchange" for lb in found[labelled.address])

    second = await api.run_trace({"chain": "bitcoin", "from_list": {"list": "ofac"}, "label": "from OFAC XBT"})
    assert second["seeds"] == [thief]
    _, exits, _ = await api.call("GET", f"/v1/traces/{second['id']}/exits", expect=200)
    got = {e["address"]: e for e in exits["items"]}
    assert {a: int(e["amount_raw"]) for a, e in got.items()} == {o.address: o.amount for o in scenario.truth.offramps}
    assert got[labelled.address]["recognised_by"]["method"] == "label"
    assert all(e["recognised_by"]["method"] == "behaviour" for a, e in got.items() if a != labelled.address)


async def test_cli_trace_and_worker_configured_for_bitcoin(api: Api, db: Database, esplora: EsploraServer,
                                                           scenario: BitcoinScenario) -> None:
    """`tracer trace --chain bitcoin` and a `tracer worker`, configured only by
    TRACER_RPC_URL_BITCOIN, build their client through the factory (EsploraChain)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACER_RPC_URL")}
    env["TRACER_LOG_LEVEL"] = "WARNING"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tracer.cli", "trace", "--chain", "bitcoin",
        "--database-url", db.url, "--workers", "2", "--json", *scenario.seeds,
        env={**env, "TRACER_RPC_URL_BITCOIN": esplora.url}, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()[-2000:]
    report = json.loads(out)
    exits = {e["address"]: int(e["amount_raw"]) for e in report["exits"]}
    assert {e["symbol"] for e in report["exits"]} == {"BTC"}
    assert exits == {o.address: o.amount for o in scenario.truth.offramps}

    async with db.pool.acquire() as conn:
        head = await conn.fetchval("SELECT max(to_block) FROM traces WHERE chain = 'bitcoin'")
    client = EsploraChain(esplora.url)
    await client.connect()
    try:
        trace_id = await service.create_trace(db.pool, client, chain="bitcoin", seeds=scenario.seeds,
                                              label="worker process")
    finally:
        await client.close()
    assert head == scenario.head
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tracer.cli", "worker", "--database-url", db.url,
        env={**env, "TRACER_RPC_URL_BITCOIN": esplora.url},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        assert await service.wait_for(db.pool, trace_id, timeout=120) == "done"
    finally:
        worker.terminate()
        _, werr = await asyncio.wait_for(worker.communicate(), 30)
    exit_rows = await db.pool.fetch("SELECT to_addr, sum(amount) AS amount FROM hops WHERE trace_id = $1 "
                                    "AND status = 'exit' GROUP BY to_addr", trace_id)
    assert {r["to_addr"]: int(r["amount"]) for r in exit_rows} == exits, werr.decode()[-2000:]


async def test_filters_take_bitcoin_addresses(api: Api, trace: dict[str, Any], scenario: BitcoinScenario) -> None:
    hop = scenario.truth.peel[4]
    tid = trace["id"]
    _, page, _ = await api.call("GET", f"/v1/traces/{tid}/hops?to={hop.change_address}", expect=200)
    assert [int(h["amount_raw"]) for h in page["items"]] == [hop.change]
    _, page, _ = await api.call("GET", f"/v1/traces/{tid}/hops?from={hop.from_address}", expect=200)
    assert {int(h["amount_raw"]) for h in page["items"]} == {hop.change, hop.payment}
    _, paths, _ = await api.call("GET", f"/v1/traces/{tid}/paths?to={hop.deposit_address}", expect=200)
    conforms("paths", paths)
    (best,) = paths["paths"][:1]
    chain = [scenario.seeds[0]] + [h.change_address for h in scenario.truth.peel[:4]] + [hop.deposit_address]
    assert best["addresses"] == chain
    _, listed, _ = await api.call("GET", f"/v1/traces?seed={scenario.seeds[0]}", expect=200)
    assert tid in [t["id"] for t in listed["items"]]
    status, body, _ = await api.call("GET", f"/v1/traces/{tid}/hops?to=bc1qbadbadbad")
    assert status == 400 and body["field"] == "to"


async def test_a_chain_this_server_does_not_follow_is_a_400(api: Api) -> None:
    status, body, _ = await api.call("POST", "/v1/traces", json={
        "chain": "ethereum", "seeds": ["0x098b716b8aaf21512996dc57eb0615e2383e2f96"]})
    assert status == 400 and body["field"] == "chain" and "bitcoin" in body["detail"], body


async def test_min_amount_is_in_btc(api: Api, trace: dict[str, Any], scenario: BitcoinScenario) -> None:
    payments = sorted(h.payment for h in scenario.truth.peel)
    cut = Decimal(payments[len(payments) // 2]) / 10**8
    _, page, _ = await api.call("GET", f"/v1/traces/{trace['id']}/hops?status=exit&min_amount={cut}&limit=500",
                                expect=200)
    assert sorted(int(h["amount_raw"]) for h in page["items"]) == [p for p in payments if p >= cut * 10**8]


async def test_the_web_form_starts_a_bitcoin_trace(api: Api, scenario: BitcoinScenario) -> None:
    """The investigator's page takes Bitcoin seeds (and refuses a malformed one before posting)."""
    from tests.acceptance.test_web_e2e import CHROMIUM_ARGS, find_chromium

    chromium = find_chromium()
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        pytest.skip("Playwright for Python is not installed")
    if chromium is None:
        pytest.skip("no Chromium found")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        try:
            page = await browser.new_page()
            page.set_default_timeout(60_000)
            await page.goto(api.base + "/ui")
            await page.fill("#f-seeds", "bc1qnot-an-address")
            await page.click("#f-submit")
            await page.wait_for_selector("#form-error:text('Not an address: bc1qnot-an-address')")
            await page.fill("#f-seeds", scenario.seeds[0])
            await page.fill("#f-label", "browser bitcoin")
            await page.click("#f-submit")
            await page.wait_for_url(re.compile(r"/ui\?trace=\d+$"))
            trace_id = int(page.url.rsplit("=", 1)[1])
            await page.wait_for_function("() => document.querySelector('#trace-status').textContent === 'done'")
        finally:
            await browser.close()
    _, trace, _ = await api.call("GET", f"/v1/traces/{trace_id}", expect=200)
    assert trace["chain"] == "bitcoin" and trace["label"] == "browser bitcoin"
    _, exits, _ = await api.call("GET", f"/v1/traces/{trace_id}/exits", expect=200)
    assert {e["address"] for e in exits["items"]} == {o.address for o in scenario.truth.offramps}


async def test_graph_exports_and_events_of_a_bitcoin_trace(api: Api, trace: dict[str, Any],
                                                            scenario: BitcoinScenario) -> None:
    tid = trace["id"]
    _, graph, _ = await api.call("GET", f"/v1/traces/{tid}/graph?format=json", expect=200)
    conforms("graph", graph)
    text = json.dumps(graph)
    assert all(o.address in text for o in scenario.truth.offramps)
    for fmt in ("csv", "dot", "graphml", "gexf"):
        _, body, _ = await api.call("GET", f"/v1/traces/{tid}/graph?format={fmt}", expect=200)
        assert scenario.seeds[0] in body and scenario.truth.offramps[0].address in body
    _, events, _ = await api.call("GET", f"/v1/traces/{tid}/events?limit=500", expect=200)
    exits = [e for e in events["items"] if e["type"] == "exit_reached"]
    assert {e["data"]["address"] for e in exits} >= {o.address for o in scenario.truth.offramps}


async def test_a_watching_bitcoin_trace_follows_new_blocks(pg_server_url: str, migrated_template: str) -> None:
    """Live following on Bitcoin: the Esplora devchain grows (its tip is raised block by block)
    under a watching trace; the monitor records the new blocks' hashes through EsploraChain,
    wakes the addresses that moved and the workers follow the peel chain as it is mined, until
    the trace holds every deposit address the finished chain has, with the same amounts."""
    sc = generate(BitcoinScenarioParams(seed=23, peel_hops=6, coinjoin=False, tail_blocks=15))
    truth = sc.truth
    first_hop = truth.peel[0].block
    server = EsploraServer(sc, tip=first_hop + 1)  # the theft and the first hop only, so far
    await server.start()
    async with temporary_database(pg_server_url, template=migrated_template) as url:
        db = await Database.connect(url, migrate=False)
        client = EsploraChain(server.url)
        await client.connect()
        stop = asyncio.Event()
        chains = {"bitcoin": client}
        quick = WorkerSettings(idle_sleep=0.05)
        tasks = [asyncio.create_task(w.run(stop)) for w in
                 (Worker(db.pool, chains, name=f"btc-live-{i}", settings=quick) for i in range(2))]
        tasks.append(asyncio.create_task(Monitor(db.pool, chains, settings=MonitorSettings(poll=0.05)).run(stop)))
        try:
            await load_scenario_labels(db.pool, sc)  # type: ignore[arg-type]
            tid = await service.create_trace(db.pool, client, chain="bitcoin", seeds=sc.seeds,
                                             policy={"watch": True, "confirmations": 1})

            async def exits() -> dict[str, int]:
                rows = await db.pool.fetch("SELECT to_addr, sum(amount) AS a FROM hops WHERE trace_id = $1 AND "
                                           "status = 'exit' GROUP BY to_addr", tid)
                return {r["to_addr"]: int(r["a"]) for r in rows}

            async def watching() -> bool:
                return bool(await db.pool.fetchval("SELECT status = 'watching' FROM traces WHERE id = $1", tid))

            await wait_until(watching, what="the historical pass")
            assert await exits() == {}  # the first deposit address has not been swept yet
            while server.tip is not None and server.tip < sc.head:
                server.tip += 1
                await asyncio.sleep(0.02)
            expected = {o.address: o.amount for o in truth.offramps}
            await wait_until(lambda: _same(exits(), expected), timeout=60, what="every deposit address, live")
            await wait_until(lambda: _same(db.pool.fetchval("SELECT to_block FROM traces WHERE id = $1", tid),
                                           sc.head - 1), what="the window at the confirmed head")
            await wait_until(watching, what="caught up")
            assert await exits() == expected
        finally:
            stop.set()
            await asyncio.gather(*tasks)
            await client.close()
            await db.close()
    await server.stop()


async def _same(got: Any, expected: Any) -> bool:
    return bool(await got == expected)
