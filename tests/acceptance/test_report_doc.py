"""The trace report to file over the API: HTML escaped against hostile label names, and a PDF
printed by headless Chromium whose text (pdftotext) holds every exit address, its USD amount and
the transaction hashes of its widest path."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from decimal import Decimal, localcontext
from typing import Any

import pytest
import pytest_asyncio

from tests.api_support import Api, running_api
from tracer.api.context import Settings
from tracer.chains import feeds
from tracer.chains.evm import EvmChain
from tracer.demo import load_scenario_labels
from tracer.devchain.prices import paths_for
from tracer.devchain.scenario import Scenario, ScenarioParams, generate
from tracer.domain.labels import Label
from tracer.domain.transfers import NATIVE
from tracer.engine import report_doc
from tracer.engine.dollars import trace_dollars
from tracer.store import labels as label_store
from tracer.store import prices as price_store
from tracer.store.db import Database

HOSTILE = "Evil <script>alert(1)</script>\x1b[31m\x07 & Co"


@pytest.fixture(scope="module")
def case() -> Scenario:
    return generate(ScenarioParams.for_size(400, seed=11))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def api(db: Database, case: Scenario, devchain_factory: Any) -> AsyncIterator[Api]:
    ts = [case.genesis_time] + [b.timestamp for b in case.blocks]
    paths = paths_for(case.chain, ts[0], ts[-1], seed=11, tokens=[t.address for t in case.tokens])
    node = await devchain_factory(case, prices=paths)
    client = EvmChain(node.url, chain=case.chain, expected_chain_id=case.chain_id)
    await client.connect()
    await load_scenario_labels(db.pool, case)
    async with db.pool.acquire() as conn:
        for p in paths:
            if p.asset != NATIVE:
                await price_store.register_feed(conn, feeds.Feed(p.chain, p.asset, p.feed_chain, p.feed, p.pair,
                                                                 "test: devchain price path"))
    try:
        async with running_api(db, {case.chain: client}, Settings(workers=2, worker_lease_seconds=10.0)) as a:
            yield a
    finally:
        await client.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def trace(api: Api, db: Database, case: Scenario) -> dict[str, Any]:
    done = await api.run_trace({"chain": case.chain, "seeds": case.seeds, "policy": {"max_depth": 8}}, tries=1200)
    _, body, _ = await api.call("GET", f"/v1/traces/{done['id']}/exits", expect=200)
    first = body["items"][0]["address"]
    # A label name from a hostile list on the first exit: markup and terminal escapes.
    async with db.pool.acquire() as conn:
        await label_store.upsert_labels(conn, [Label(
            chain=case.chain, address=first, entity=HOSTILE, category="exchange", source="hostile-list")])
    return done


async def _get(api: Api, path: str) -> tuple[int, bytes, str]:
    async with api.session.get(api.base + path) as r:
        return r.status, await r.read(), r.headers.get("Content-Type", "")


@pytest.mark.asyncio(loop_scope="session")
async def test_html_report_escapes_label_names_and_shows_dollars(api: Api, db: Database, trace: dict[str, Any]) -> None:
    status, raw, ctype = await _get(api, f"/v1/traces/{trace['id']}/report?format=html")
    assert status == 200 and ctype.startswith("text/html")
    text = raw.decode()
    assert "<script" not in text and "\x1b" not in text and "\x07" not in text
    assert "Evil &lt;script&gt;alert(1)&lt;/script&gt;[31m &amp; Co" in text
    d = await trace_dollars(db.pool, trace["id"])
    assert d.seeds.usd is not None and d.seeds.usd > 0
    assert d.sources.get("feed", 0) > 0 and "unavailable" not in d.sources
    for (_, address, _), usd in d.exits.items():
        assert address in text and usd.usd is not None
        assert report_doc._usd(usd.usd) in text
    # The parts always sum to the seeds' dollars (every hop priced, each counted where it ends).
    total = d.exits_total.priced + d.stopped.priced + d.held.priced
    assert abs(total - d.seeds.priced) <= Decimal("0.01") * max(1, len(d.values))
    status, _, _ = await _get(api, f"/v1/traces/{trace['id']}/report?format=docx")
    assert status == 400
    status, _, _ = await _get(api, "/v1/traces/999999/report")
    assert status == 404


@pytest.mark.asyncio(loop_scope="session")
async def test_pdf_report_text_has_every_exit_its_dollars_and_path_hashes(api: Api, db: Database,
                                                                       trace: dict[str, Any]) -> None:
    if report_doc.find_chromium() is None or shutil.which("pdftotext") is None:
        pytest.skip("needs chromium and pdftotext (poppler-utils)")
    status, raw, ctype = await _get(api, f"/v1/traces/{trace['id']}/report?format=pdf")
    assert status == 200 and ctype == "application/pdf" and raw.startswith(b"%PDF")
    proc = await asyncio.create_subprocess_exec("pdftotext", "-raw", "-", "-", stdin=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate(raw)
    flat = "".join(out.decode().split())  # long hashes wrap inside table cells
    doc = await report_doc.build_document(db.pool, trace["id"])
    assert doc.report.exits
    for x in doc.report.exits:
        assert x.address in flat.lower() or x.address in flat
        usd = doc.dollars.exit_usd(x.chain or doc.report.chain, x.address, x.asset)
        assert "".join(report_doc._usd(usd).split()) in flat
        for step in x.path:
            assert step["tx_hash"] in flat
    assert doc.hop_set_sha256 in flat


@pytest.mark.asyncio(loop_scope="session")
async def test_api_hops_and_exits_carry_usd(api: Api, db: Database, trace: dict[str, Any]) -> None:
    from tests.api_support import conforms

    tid = trace["id"]
    d = await trace_dollars(db.pool, tid)
    _, body, _ = await api.call("GET", f"/v1/traces/{tid}/exits", expect=200)
    conforms("exit-list", body)
    assert body["usd"]["seeds"] == f"{d.seeds.usd:.2f}" and body["usd"]["unpriced_hops"] == 0
    for item in body["items"]:
        want = d.exit_usd(item["chain"], item["address"], item["asset"])
        assert item["usd"] == f"{want:.2f}" and item["usd_share"] == pytest.approx(float(want / d.seeds.usd))
    _, by_usd, _ = await api.call("GET", f"/v1/traces/{tid}/exits?sort=usd", expect=200)
    values = [Decimal(i["usd"]) for i in by_usd["items"]]
    assert values == sorted(values, reverse=True) and len(values) == len(body["items"])
    cut = values[len(values) // 2]
    _, rich, _ = await api.call("GET", f"/v1/traces/{tid}/exits?min_usd={cut}", expect=200)
    assert rich["items"] and all(Decimal(i["usd"]) >= cut for i in rich["items"])
    assert len(rich["items"]) < len(values) or values[-1] >= cut
    await api.call("GET", f"/v1/traces/{tid}/exits?min_usd=-1", expect=400)
    seen = 0
    async for page in api.pages(f"/v1/traces/{tid}/hops?limit=100"):
        conforms("hop-page", page)
        for h in page["items"]:
            assert h["usd_source"] == "feed" and Decimal(h["usd"]) > 0
            seen += 1
    assert seen == len(d.values)


@pytest.mark.asyncio(loop_scope="session")
async def test_graph_exports_carry_usd(api: Api, db: Database, trace: dict[str, Any]) -> None:
    from tests.api_support import conforms

    tid = trace["id"]
    d = await trace_dollars(db.pool, tid)
    by_tx = {}
    async with db.pool.acquire() as conn:
        for h in await conn.fetch("""SELECT h.transfer_id, t.tx_hash, t.position FROM hops h
                                     JOIN transfers t ON t.id = h.transfer_id WHERE h.trace_id = $1""", tid):
            by_tx[(h["tx_hash"], h["position"])] = d.values[h["transfer_id"]].usd
    _, graph, _ = await api.call("GET", f"/v1/traces/{tid}/graph?format=json", expect=200)
    conforms("graph", graph)
    assert graph["edges"]
    for e in graph["edges"]:
        assert e["usd"] == f"{by_tx[(e['tx_hash'], e['position'])]:.2f}"
    _, csv_text, _ = await api.call("GET", f"/v1/traces/{tid}/graph?format=csv", expect=200)
    header, first = csv_text.splitlines()[:2]
    assert header.split(",")[-1] == "usd" and first.split(",")[-1] == graph["edges"][0]["usd"]


@pytest.mark.asyncio(loop_scope="session")
async def test_path_steps_carry_usd(api: Api, db: Database, trace: dict[str, Any]) -> None:
    tid = trace["id"]
    d = await trace_dollars(db.pool, tid)
    _, exits, _ = await api.call("GET", f"/v1/traces/{tid}/exits?sort=usd", expect=200)
    target = exits["items"][0]["address"]
    _, paths, _ = await api.call("GET", f"/v1/traces/{tid}/paths?to={target}&limit=2", expect=200)
    async with db.pool.acquire() as conn:
        ids = {(r["tx_hash"], r["from_addr"], r["to_addr"]): r["transfer_id"] for r in await conn.fetch(
            """SELECT h.transfer_id, t.tx_hash, h.from_addr, h.to_addr FROM hops h
               JOIN transfers t ON t.id = h.transfer_id WHERE h.trace_id = $1""", tid)}
    assert paths["paths"]
    for step in paths["paths"][0]["steps"]:
        hop = d.values[ids[(step["tx_hash"], step["from"], step["to"])]]
        assert step["usd_source"] == "feed" and step["usd"] == f"{hop.usd:.2f}"


@pytest.mark.asyncio(loop_scope="session")
async def test_hop_events_carry_usd(api: Api, db: Database, trace: dict[str, Any]) -> None:
    from tests.api_support import conforms

    tid = trace["id"]
    d = await trace_dollars(db.pool, tid)
    _, page, _ = await api.call("GET", f"/v1/traces/{tid}/events?after=0&limit=500", expect=200)
    hops = [e for e in page["items"] if "hop" in e]
    assert hops
    for e in hops:
        conforms("webhook_event", e)
        hop = e["hop"]
        assert hop["usd_source"] == "feed" and Decimal(hop["usd"]) >= 0
    # Each event's dollars: its amount (which grows as taint is found) at its hop's price.
    async with db.pool.acquire() as conn:
        tids = {(r["tx_hash"], r["position"], r["to_addr"]): r["transfer_id"] for r in await conn.fetch(
            """SELECT h.transfer_id, t.tx_hash, t.position, h.to_addr FROM hops h
               JOIN transfers t ON t.id = h.transfer_id WHERE h.trace_id = $1""", tid)}
    checked = 0
    for e in hops:
        h = e["hop"]
        tid_ = tids.get((h["tx_hash"], h["position"], h["to"]))
        if tid_ is None:
            continue
        price = d.values[tid_].price
        assert price is not None
        with localcontext(prec=100):
            want = Decimal(h["amount_raw"]).scaleb(-int(h["decimals"])) * price
        assert h["usd"] == f"{want:.2f}"
        checked += 1
    assert checked == len(hops)


@pytest.mark.asyncio(loop_scope="session")
async def test_trace_summary_carries_the_exits_dollars(api: Api, db: Database, trace: dict[str, Any]) -> None:
    from tests.api_support import conforms

    tid = trace["id"]
    d = await trace_dollars(db.pool, tid)
    _, exits, _ = await api.call("GET", f"/v1/traces/{tid}/exits", expect=200)
    for _ in range(2):  # the second answer comes from the cache: the same numbers
        _, body, _ = await api.call("GET", f"/v1/traces/{tid}", expect=200)
        conforms("trace", body)
        usd = body["usd"]
        assert usd["seeds"] == exits["usd"]["seeds"] == f"{d.seeds.usd:.2f}"
        assert usd["exits"] == exits["usd"]["exits"] == f"{d.exits_total.usd:.2f}"
        assert usd["exits_share"] == exits["usd"]["exits_share"]
        assert 0 < usd["exits_share"] <= 1.0 + 1e-9 and usd["unpriced_hops"] == 0
        assert sum(Decimal(i["usd"]) for i in exits["items"]) == Decimal(usd["exits"])


@pytest.mark.asyncio(loop_scope="session")
async def test_trace_summary_dollars_are_null_while_running_and_unknown_prices_are_null(
        api: Api, db: Database, trace: dict[str, Any]) -> None:
    from tests.api_support import conforms

    tid = trace["id"]
    async with db.pool.acquire() as conn:
        await conn.execute("UPDATE traces SET status = 'running', updated_at = now() WHERE id = $1", tid)
    try:
        _, body, _ = await api.call("GET", f"/v1/traces/{tid}", expect=200)
        conforms("trace", body)
        assert body["usd"] is None  # not computed for unfinished traces: they stay cheap to poll
    finally:
        async with db.pool.acquire() as conn:
            await conn.execute("UPDATE traces SET status = 'done', updated_at = now() WHERE id = $1", tid)
    # One exit hop's price unknown (stored as such, so the feed is not read again): the exits' sum
    # and share are unknown, not a smaller number; the seeds' total (other hops) stays known.
    async with db.pool.acquire() as conn:
        key = await conn.fetchrow(
            """SELECT h.chain, h.asset, t.block_number, t.block_time FROM hops h
               JOIN transfers t ON t.id = h.transfer_id
               WHERE h.trace_id = $1 AND h.status = 'exit' AND NOT h.from_addr = ANY($2::text[]) LIMIT 1""",
            tid, trace["seeds"])
        assert key is not None
        price = ("WHERE chain = $1 AND asset = $2 AND block_number = $3 AND block_time = $4 "
                 "AND source <> 'file'")
        await conn.execute("UPDATE prices SET usd = NULL, source = 'unavailable', note = 'test' " + price, *key)
        await conn.execute("UPDATE traces SET updated_at = now() WHERE id = $1", tid)
    try:
        _, body, _ = await api.call("GET", f"/v1/traces/{tid}", expect=200)
        conforms("trace", body)
        assert body["usd"]["exits"] is None and body["usd"]["exits_share"] is None
        assert body["usd"]["unpriced_hops"] >= 1
    finally:
        async with db.pool.acquire() as conn:  # read from the feed again on the next pricing
            await conn.execute("DELETE FROM prices " + price, *key)
            await conn.execute("UPDATE traces SET updated_at = now() WHERE id = $1", tid)
    _, body, _ = await api.call("GET", f"/v1/traces/{tid}", expect=200)
    assert body["usd"]["exits"] is not None and body["usd"]["unpriced_hops"] == 0
