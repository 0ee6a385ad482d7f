"""The API end to end: a real server on a real port, real Postgres, a real devchain over JSON-RPC,
and a trace started with POST /v1/traces and computed by the server's own embedded workers.

Everything read back (trace, hops, exits, paths, graph exports, address view) is checked against
its JSON Schema in schemas/json, against the database, and against the engine's own report and the
scenario's ground truth.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import networkx as nx
import pytest
import pytest_asyncio

from tests.api_support import Api, conforms, running_api
from tracer.api.context import CTX, Settings
from tracer.chains.evm import EvmChain
from tracer.demo import load_scenario_labels
from tracer.devchain.scenario import Scenario, ScenarioParams, generate
from tracer.domain.labels import Label
from tracer.domain.transfers import NATIVE
from tracer.engine import report as treport
from tracer.store import labels as label_store
from tracer.store.db import Database

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return generate(ScenarioParams.for_size(2000, seed=21))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def chain(scenario: Scenario, devchain_factory: Any) -> AsyncIterator[EvmChain]:
    server = await devchain_factory(scenario)
    client = EvmChain(server.url, chain=scenario.chain, expected_chain_id=scenario.chain_id)
    await client.connect()
    yield client
    await client.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def api(db: Database, chain: EvmChain, scenario: Scenario) -> AsyncIterator[Api]:
    await load_scenario_labels(db.pool, scenario)
    settings = Settings(workers=2, worker_lease_seconds=10.0, page_max=500)
    async with running_api(db, {scenario.chain: chain}, settings) as a:
        yield a


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def trace(api: Api, scenario: Scenario) -> dict[str, Any]:
    """A trace started over HTTP and run to the end by the server's embedded workers."""
    _status, body, headers = await api.call("POST", "/v1/traces", expect=201, json={
        "chain": scenario.chain, "seeds": [s.upper().replace("0X", "0x") for s in scenario.seeds],
        "policy": {"max_depth": 40}, "label": "api test"})
    conforms("trace", body)
    assert headers["Location"] == f"/v1/traces/{body['id']}"
    assert body["status"] in ("queued", "running")
    assert body["seeds"] == sorted(scenario.seeds)  # normalised to lowercase
    return await api.wait_done(body["id"])


async def _all_hops(api: Api, trace_id: int, query: str = "", limit: int = 97) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    async for page in api.pages(f"/v1/traces/{trace_id}/hops?limit={limit}{query}"):
        conforms("hop-page", page)
        assert len(page["items"]) <= limit
        out.extend(page["items"])
    return out


def _key(h: dict[str, Any]) -> tuple[str, str]:
    return (h["tx_hash"], h["position"])


async def test_trace_progress_and_totals(api: Api, db: Database, trace: dict[str, Any], scenario: Scenario) -> None:
    conforms("trace", trace)
    p = trace["progress"]
    tid = trace["id"]
    assert p["hops"] == await db.pool.fetchval("SELECT count(*) FROM hops WHERE trace_id = $1", tid) > 0
    assert p["frontier"] == 0
    assert p["exits"] > 0 and p["exit_hops"] >= p["exits"]
    totals = {t["asset"]: t for t in trace["totals"]}
    assert set(totals) == set(scenario.truth.stolen)
    for asset, stolen in scenario.truth.stolen.items():
        t = totals[asset]
        assert int(t["amount_raw"]) == stolen
        # display amount is the exact raw amount scaled by the asset's decimals
        assert Decimal(t["amount"]) * 10 ** t["decimals"] == stolen
    assert totals[NATIVE]["symbol"] == "ETH" and totals[NATIVE]["decimals"] == 18
    assert trace["created_by"] == "open"
    assert trace["policy"]["max_depth"] == 40


async def test_exits_match_the_engine_report_and_the_ground_truth(
    api: Api, db: Database, trace: dict[str, Any], scenario: Scenario
) -> None:
    _, body, _ = await api.call("GET", f"/v1/traces/{trace['id']}/exits", expect=200)
    conforms("exit-list", body)
    assert body["complete"] is True
    got = {(e["address"], e["asset"]): e for e in body["items"]}
    rep = await treport.build(db.pool, trace["id"], with_paths=False)
    assert {(e.address, e.asset): e.amount for e in rep.exits} == {k: int(v["amount_raw"]) for k, v in got.items()}
    checked = 0
    for o in scenario.truth.offramps:
        if o.amount < scenario.truth.stolen[o.asset] * 0.001:
            continue
        checked += 1
        e = got[(o.address, o.asset)]
        assert abs(int(e["amount_raw"]) - o.amount) <= o.amount * 0.001
        assert e["share"] == pytest.approx(int(e["amount_raw"]) / scenario.truth.stolen[o.asset], rel=1e-6)
        assert e["entity"]
        assert e["recognised_by"]["method"] in ("label", "behaviour")
        assert e["paths"] >= 1 and e["first_seen"] <= e["last_seen"]
    assert checked >= 3
    methods = {e["recognised_by"]["method"] for e in body["items"]}
    assert "behaviour" in methods, "no deposit address recognised by its sweeps"
    # the summary adds up, and never exceeds what left the seeds
    for line in body["totals"]:
        asset = line["total"]["asset"]
        reached = sum(int(e["amount_raw"]) for e in body["items"] if e["asset"] == asset)
        assert int(line["reached_exits"]["amount_raw"]) == reached <= int(line["total"]["amount_raw"])
    # filters
    _, only_eth, _ = await api.call("GET", f"/v1/traces/{trace['id']}/exits?asset=native", expect=200)
    assert only_eth["items"] and {e["asset"] for e in only_eth["items"]} == {NATIVE}


async def test_hop_pages_cover_every_hop_exactly_once_in_order(api: Api, db: Database, trace: dict[str, Any]) -> None:
    tid = trace["id"]
    rows = await db.pool.fetch(
        "SELECT t.tx_hash, t.position, h.amount FROM hops h JOIN transfers t ON t.id = h.transfer_id "
        "WHERE h.trace_id = $1", tid)
    expected = {(r["tx_hash"], r["position"]): int(r["amount"]) for r in rows}
    for sort in ("block", "-block", "amount", "-amount"):
        hops = await _all_hops(api, tid, f"&sort={sort}")
        keys = [_key(h) for h in hops]
        assert len(keys) == len(set(keys)) == len(expected), sort
        assert {k: int(h["amount_raw"]) for k, h in zip(keys, hops, strict=True)} == expected
        column = [h["block_number"] if "block" in sort else int(h["amount_raw"]) for h in hops]
        assert column == sorted(column, reverse=sort.startswith("-")), sort
    h = hops[0]
    for field in ("tx_hash", "block_number", "timestamp", "from", "to", "asset", "amount", "depth", "kind"):
        assert field in h
    assert isinstance(h["amount"], str) and isinstance(h["amount_raw"], str)


async def test_hop_filters_agree_with_filtering_everything(api: Api, trace: dict[str, Any], scenario: Scenario) -> None:
    tid = trace["id"]
    everything = await _all_hops(api, tid, limit=500)
    token = next(a for a in scenario.truth.stolen if a != NATIVE)
    some_address = max(everything, key=lambda h: int(h["amount_raw"]))["to"]
    threshold = Decimal("50")  # 50 ETH or 50 USDT: in the asset's own units
    cases: list[tuple[str, Any]] = [
        ("&depth=2", lambda h: h["depth"] == 2),
        ("&min_depth=2&max_depth=3", lambda h: 2 <= h["depth"] <= 3),
        ("&asset=native", lambda h: h["asset"] == NATIVE),
        (f"&asset={token}", lambda h: h["asset"] == token),
        ("&kind=token", lambda h: h["kind"] == "token"),
        ("&status=exit", lambda h: h["status"] == "exit"),
        (f"&address={some_address}", lambda h: some_address in (h["from"], h["to"])),
        (f"&to={some_address}", lambda h: h["to"] == some_address),
        (f"&min_amount={threshold}", lambda h: Decimal(h["amount"]) >= threshold),
        (f"&min_amount={threshold}&asset=native&sort=-amount",
         lambda h: h["asset"] == NATIVE and Decimal(h["amount"]) >= threshold),
    ]
    for query, keep in cases:
        got = {_key(h) for h in await _all_hops(api, tid, query, limit=50)}
        want = {_key(h) for h in everything if keep(h)}
        assert got == want, query
        assert want or query.startswith("&depth")  # the scenario exercises every filter


async def test_cursors_are_signed_and_bound_to_their_query(api: Api, trace: dict[str, Any]) -> None:
    tid = trace["id"]
    _, page, _ = await api.call("GET", f"/v1/traces/{tid}/hops?limit=5", expect=200)
    cursor = page["next_cursor"]
    assert cursor
    body_part, mac = cursor.split(".")
    flipped = body_part[:-2] + ("A" if body_part[-2] != "A" else "B") + body_part[-1]
    for bad in (flipped + "." + mac, body_part + "." + mac[::-1], "garbage", "a.b.c", cursor + "x"):
        _, problem, _ = await api.call("GET", f"/v1/traces/{tid}/hops?limit=5&cursor={bad}", expect=400)
        assert problem["field"] == "cursor"
    # the same cursor with another sort or filter, or on another listing, is refused too
    _, problem, _ = await api.call("GET", f"/v1/traces/{tid}/hops?limit=5&sort=-amount&cursor={cursor}", expect=400)
    assert problem["field"] == "cursor"
    await api.call("GET", f"/v1/traces/{tid}/hops?limit=5&asset=native&cursor={cursor}", expect=400)
    await api.call("GET", f"/v1/traces?cursor={cursor}", expect=400)
    # and the genuine one still works
    _, nxt, _ = await api.call("GET", f"/v1/traces/{tid}/hops?limit=5&cursor={cursor}", expect=200)
    assert {_key(h) for h in nxt["items"]}.isdisjoint({_key(h) for h in page["items"]})


async def test_paths_lead_from_a_seed_to_the_biggest_exit(api: Api, trace: dict[str, Any], scenario: Scenario) -> None:
    tid = trace["id"]
    _, exits, _ = await api.call("GET", f"/v1/traces/{tid}/exits", expect=200)
    target = exits["items"][0]["address"]
    _, body, _ = await api.call("GET", f"/v1/traces/{tid}/paths?to={target}&limit=5", expect=200)
    conforms("paths", body)
    assert body["seeds_reached"] and 1 <= len(body["paths"]) <= 5
    for path in body["paths"]:
        assert path["addresses"][0] in scenario.seeds and path["addresses"][-1] == target
        steps = path["steps"]
        assert [s["from"] for s in steps] + [steps[-1]["to"]] == path["addresses"]
        if path["bottleneck"] is not None:
            assert int(path["bottleneck"]["amount_raw"]) == min(int(s["amount_raw"]) for s in steps)
    widths = [int(p["bottleneck"]["amount_raw"]) for p in body["paths"] if p["bottleneck"]]
    assert widths == sorted(widths, reverse=True)
    # an address the trace never reached: no paths; a malformed or missing one: 400
    _, none, _ = await api.call("GET", f"/v1/traces/{tid}/paths?to=0x{'ab' * 20}", expect=200)
    assert none["paths"] == [] and none["seeds_reached"] is False
    _, problem, _ = await api.call("GET", f"/v1/traces/{tid}/paths?to=0x1234", expect=400)
    assert problem["field"] == "to"
    _, problem, _ = await api.call("GET", f"/v1/traces/{tid}/paths", expect=400)
    assert problem["field"] == "to"


async def test_graph_exports_hold_every_hop(api: Api, trace: dict[str, Any]) -> None:
    tid = trace["id"]
    n_hops = trace["progress"]["hops"]
    _, g, headers = await api.call("GET", f"/v1/traces/{tid}/graph", expect=200)
    conforms("graph", g)
    assert len(g["edges"]) == n_hops
    ids = {n["id"] for n in g["nodes"]}
    assert all(e["source"] in ids and e["target"] in ids for e in g["edges"])
    assert {n["role"] for n in g["nodes"]} >= {"seed", "exit"}

    _, text, headers = await api.call("GET", f"/v1/traces/{tid}/graph?format=graphml", expect=200)
    assert headers["Content-Type"].startswith("application/graphml+xml")
    assert f'filename="trace-{tid}.graphml"' in headers["Content-Disposition"]
    gm = nx.parse_graphml(text, force_multigraph=True)
    assert gm.number_of_edges() == n_hops and gm.number_of_nodes() == len(ids)
    _, text, headers = await api.call("GET", f"/v1/traces/{tid}/graph?format=gexf", expect=200)
    gx = nx.read_gexf(io.BytesIO(text.encode()))
    assert gx.number_of_edges() == n_hops
    one = next(iter(gx.edges(data=True)))[2]
    assert Decimal(one["amount"]) >= 0 and int(one["amount_raw"]) >= 0

    _, text, headers = await api.call("GET", f"/v1/traces/{tid}/graph?format=dot", expect=200)
    assert headers["Content-Type"].startswith("text/vnd.graphviz")
    assert text.startswith("digraph") and text.count(" -> ") == n_hops

    _, text, headers = await api.call("GET", f"/v1/traces/{tid}/graph?format=csv", expect=200)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == n_hops and {"source", "target", "amount", "amount_raw", "tx_hash"} <= set(rows[0])
    _, text, _ = await api.call("GET", f"/v1/traces/{tid}/graph?format=csv&table=nodes", expect=200)
    assert {r["id"] for r in csv.DictReader(io.StringIO(text))} == ids

    _, problem, _ = await api.call("GET", f"/v1/traces/{tid}/graph?format=png", expect=400)
    assert problem["field"] == "format"
    # in-memory formats refuse traces above the limit instead of exhausting the server
    settings = api.app[CTX].settings
    old, settings.graph_max_hops = settings.graph_max_hops, 3
    try:
        _, problem, _ = await api.call("GET", f"/v1/traces/{tid}/graph?format=graphml", expect=422)
        assert problem["field"] == "format"
    finally:
        settings.graph_max_hops = old


async def test_address_view_labels_sanctions_traces_and_exposure(
    api: Api, db: Database, trace: dict[str, Any], scenario: Scenario
) -> None:
    tid = trace["id"]
    _, exits, _ = await api.call("GET", f"/v1/traces/{tid}/exits", expect=200)
    top = exits["items"][0]
    _, body, _ = await api.call("GET", f"/v1/addresses/ethereum/{top['address']}", expect=200)
    conforms("address", body)
    mine = next(t for t in body["traces"] if t["trace_id"] == tid)
    assert mine["role"] == "exit"
    received = {r["asset"]: r["amount_raw"] for r in mine["received"]}
    assert received[top["asset"]] == top["amount_raw"]
    assert body["exposure"]["exit_of"] >= 1 and body["exposure"]["level"] == "flagged"

    seed = scenario.seeds[0]
    _, body, _ = await api.call("GET", f"/v1/addresses/ethereum/{seed.upper().replace('0X', '0x')}", expect=200)
    assert body["address"] == seed and body["exposure"]["seed_of"] >= 1

    # a sanctions listing shows up as a hit and sets the exposure level
    async with db.pool.acquire() as conn:
        await label_store.upsert_labels(conn, [Label(
            chain="ethereum", address=seed, entity="Lazarus Group", category="sanctioned", source="ofac_sdn")])
    _status, label, _ = await api.call("POST", f"/v1/addresses/ethereum/{seed}/labels", expect=201, json={
        "entity": "Thief wallet 1", "category": "hacker", "note": "case 42", "valid_from": "2024-01-01T00:00:00Z"})
    conforms("label", label)
    assert label["source"] == "investigator" and label["created_by"] == "open"
    _, body, _ = await api.call("GET", f"/v1/addresses/ethereum/{seed}", expect=200)
    conforms("address", body)
    assert body["exposure"]["level"] == "sanctioned" and body["exposure"]["sanctioned"] is True
    assert [s["entity"] for s in body["sanctions"]] == ["Lazarus Group"]
    assert {lb["source"] for lb in body["labels"]} >= {"ofac_sdn", "investigator"}

    _, problem, _ = await api.call("GET", "/v1/addresses/ethereum/0xnothex", expect=400)
    assert problem["field"] == "address"
    _, problem, _ = await api.call("POST", f"/v1/addresses/ethereum/{seed}/labels", expect=400,
                                   json={"entity": "x", "category": "not-a-category"})
    assert problem["field"] == "category"
    _, audit, _ = await api.call("GET", "/v1/audit?action=label.create", expect=200)
    conforms("audit-page", audit)
    assert audit["items"][0]["target"] == f"address:ethereum:{seed}"


async def test_health_and_metrics(api: Api, trace: dict[str, Any]) -> None:
    _, body, _ = await api.call("GET", "/v1/health", expect=200)
    conforms("health", body)
    assert body["postgres"]["ok"] and body["chains"]["ethereum"]["ok"] and body["chains"]["ethereum"]["head"] > 0
    assert body["embedded_workers"] == 2
    _, text, headers = await api.call("GET", "/metrics", expect=200)
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert 'tracer_http_requests_total{method="GET",route="/v1/traces/{trace_id}",status="200"}' in text
    assert 'tracer_http_request_duration_seconds_bucket{method="GET",route="/v1/traces/{trace_id}/hops",le="+Inf"}' \
        in text
    assert 'tracer_traces{status="done"}' in text
    assert "tracer_worker_hops_written_total" in text and "tracer_worker_hops_per_second" in text
    assert 'tracer_rpc_requests_total{chain="ethereum",method="http"}' in text
    for line in text.splitlines():  # every sample line is "name{labels} number"
        if line and not line.startswith("#"):
            float(line.rsplit(" ", 1)[1].replace("+Inf", "inf"))


async def test_amounts_are_never_floats(api: Api, trace: dict[str, Any]) -> None:
    tid = trace["id"]

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k in ("amount", "amount_raw"):
                    assert isinstance(v, str), f"{path}.{k} = {v!r}"
                walk(v, f"{path}.{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}[{i}]")

    for url in (f"/v1/traces/{tid}", f"/v1/traces/{tid}/exits", f"/v1/traces/{tid}/hops?limit=50",
                f"/v1/traces/{tid}/graph"):
        _, body, _ = await api.call("GET", url, expect=200)
        walk(body, url)
        json.dumps(body)
