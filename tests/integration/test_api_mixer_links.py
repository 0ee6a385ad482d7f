"""GET /v1/traces/{id}/mixer-links over real HTTP, on a real trace through generated Tornado pools.

The scenario's launderers deposit into real pool contracts (Deposit/Withdrawal events) on a
devchain served over JSON-RPC; the trace is started with POST /v1/traces and run by the API's own
workers against real Postgres. A strict min_link_confidence leaves some deposits linked and
others unlinked, so both kinds of answer are read back. Every page is checked against the OpenAPI
document's response schema and each item against schemas/json/mixer_link.schema.json, and the
content against the store, the hops endpoint and the generator's ground truth.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from jsonschema import Draft202012Validator

from tests.api_support import Api, conforms, running_api
from tracer.api.context import Settings
from tracer.api.openapi import bundle
from tracer.chains.evm import EvmChain
from tracer.demo import load_scenario_labels
from tracer.devchain.scenario import Scenario, ScenarioParams, generate
from tracer.store import mixers as mixer_store
from tracer.store.db import Database

pytestmark = pytest.mark.asyncio(loop_scope="session")

PATH = "/v1/traces/{trace_id}/mixer-links"
STRICT = 0.96  # strict enough that some laundering notes stay unlinked (see test_mixers.py)


def _page_validator() -> Draft202012Validator:
    """The 200 response schema of the bundled OpenAPI document (what /v1/openapi.json serves)."""
    doc = bundle()
    schema = doc["paths"][PATH]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    # "#/components/schemas/..." references resolve against the root: give the schema the components.
    return Draft202012Validator({**schema, "components": doc["components"]},
                                format_checker=Draft202012Validator.FORMAT_CHECKER)


PAGE = _page_validator()


def _conforms_page(body: Any) -> None:
    errors = sorted(PAGE.iter_errors(body), key=lambda e: list(e.absolute_path))
    assert not errors, "; ".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:5])
    for item in body["items"]:
        conforms("mixer_link", item)


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return generate(ScenarioParams.for_size(3000, seed=11, services=True))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def api(db: Database, scenario: Scenario, devchain_factory: Any) -> AsyncIterator[Api]:
    server = await devchain_factory(scenario)
    client = EvmChain(server.url, chain=scenario.chain, expected_chain_id=scenario.chain_id)
    await client.connect()
    await load_scenario_labels(db.pool, scenario)
    try:
        async with running_api(db, {scenario.chain: client}, Settings(workers=2, worker_lease_seconds=10.0)) as a:
            yield a
    finally:
        await client.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def trace_id(api: Api, scenario: Scenario) -> int:
    _, body, _ = await api.call("POST", "/v1/traces", expect=201, json={
        "chain": scenario.chain, "seeds": scenario.seeds, "policy": {"min_link_confidence": STRICT}})
    tid = int(body["id"])
    await api.wait_done(tid, tries=1800)
    return tid


async def _all(api: Api, tid: int, query: str = "", limit: int = 2) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    async for page in api.pages(f"/v1/traces/{tid}/mixer-links?limit={limit}{query}", most=500):
        _conforms_page(page)
        assert page["trace_id"] == tid and len(page["items"]) <= limit
        out.extend(page["items"])
    return out


def _key(item: dict[str, Any]) -> tuple[str, str]:
    return (item["deposit"]["tx_hash"], item["deposit"]["position"])


async def test_pages_list_every_deposit_once_as_the_store_has_it(api: Api, db: Database, trace_id: int) -> None:
    items = await _all(api, trace_id)
    async with db.pool.acquire() as conn:
        rows = list(await mixer_store.mixer_links(conn, trace_id, limit=10_000))
    assert len(rows) >= 5 and len(items) == len(rows)
    assert [_key(i) for i in items] == [(r.tx_hash, r.position) for r in rows]  # chain (transfer id) order
    for item, row in zip(items, rows, strict=True):
        assert item["pool"] == row.pool and item["deposit"]["from"] == row.depositor
        assert item["flagged"]["amount_raw"] == str(row.flagged) and item["flagged"]["asset"] == row.asset
        assert item["denomination"]["amount_raw"] == str(row.denomination)
        assert item["anonymity_set"] == row.anonymity_set >= 1
        assert item["status"] == row.status and item["candidates"] == row.candidates
        assert [w["tx_hash"] for w in item["withdrawals"]] == [lk.withdrawal_tx for lk in row.links]
        confidences = [w["confidence"] for w in item["withdrawals"]]
        assert confidences == sorted(confidences, reverse=True)  # best first
        for w, lk in zip(item["withdrawals"], row.links, strict=True):
            assert w["carried"]["amount_raw"] == str(lk.carried) and w["followed"] == (lk.status == "followed")
            assert w["reasons"] and {r["heuristic"] for r in w["reasons"]} >= {"anonymity_set"}
    # the same deposits with a page size that divides nothing evenly
    assert [_key(i) for i in await _all(api, trace_id, limit=3)] == [_key(i) for i in items]


async def test_linked_and_unlinked_deposits_say_what_happened(
    api: Api, trace_id: int, scenario: Scenario
) -> None:
    items = await _all(api, trace_id, limit=100)
    statuses = {i["status"] for i in items}
    assert statuses == {"linked", "unlinked"}
    for i in items:
        followed = [w for w in i["withdrawals"] if w["followed"]]
        assert i["followed"] == bool(followed) == (i["status"] == "linked")
        if i["followed"]:
            assert all(w["confidence"] >= STRICT for w in followed)
            best = followed[0]
            assert best["recipient"] in i["summary"] and best["tx_hash"] in i["summary"]
            # carried = flagged x confidence, never more than the recipient got
            flagged = int(i["flagged"]["amount_raw"])
            assert int(best["carried"]["amount_raw"]) == min(int(flagged * best["confidence"]),
                                                             int(best["withdrawn"]["amount_raw"]))
        else:
            assert not any(w["followed"] for w in i["withdrawals"])
            assert i["summary"] == (f"entered mixer, amount {i['flagged']['amount']} {i['flagged']['symbol']}, "
                                    f"anonymity set {i['anonymity_set']} at deposit time")
    # every laundering note of the ground truth is listed, under its pool and depositor
    listed = {(i["pool"], i["deposit"]["from"]) for i in items}
    assert {(m.pool, m.depositor) for m in scenario.truth.mixer_links} <= listed


async def test_followed_links_are_the_mixer_link_hops(api: Api, trace_id: int) -> None:
    items = await _all(api, trace_id, query="&status=linked", limit=100)
    assert items and all(i["status"] == "linked" for i in items)
    hops: list[dict[str, Any]] = []
    async for page in api.pages(f"/v1/traces/{trace_id}/hops?limit=1000"):
        hops.extend(page["items"])
    link_hops = {h["tx_hash"] for h in hops if h["reason"] == "mixer link"}
    followed = {w["tx_hash"] for i in items for w in i["withdrawals"] if w["followed"]}
    assert followed and followed == link_hops
    deposit_hops = {(h["tx_hash"], h["position"]): h for h in hops}
    for i in items:  # a linked deposit's own hop is followed into the pool
        h = deposit_hops[_key(i)]
        assert (h["to"], h["status"], h["reason"]) == (i["pool"], "followed", "mixer deposit")


async def test_filters_partition_and_narrow(api: Api, trace_id: int) -> None:
    everything = await _all(api, trace_id, limit=100)
    linked = await _all(api, trace_id, "&status=linked")
    unlinked = await _all(api, trace_id, "&status=unlinked")
    assert sorted(map(_key, linked + unlinked)) == sorted(map(_key, everything))
    # A threshold between the two weakest distinct confidences drops some links and keeps the rest.
    weakest = sorted({w["confidence"] for i in everything for w in i["withdrawals"]})
    assert len(weakest) >= 2
    threshold = f"{(weakest[0] + weakest[1]) / 2:.12f}"
    sure = await _all(api, trace_id, f"&min_confidence={threshold}")
    assert [_key(i) for i in sure] == [_key(i) for i in everything]  # deposits stay, weak links go
    assert [[w["tx_hash"] for w in i["withdrawals"]] for i in sure] == [
        [w["tx_hash"] for w in i["withdrawals"] if w["confidence"] >= float(threshold)] for i in everything]
    assert sum(len(i["withdrawals"]) for i in sure) < sum(len(i["withdrawals"]) for i in everything)
    assert await _all(api, trace_id, "&min_confidence=0") == everything
    assert all(not i["withdrawals"] or all(w["confidence"] == 1.0 for w in i["withdrawals"])
               for i in await _all(api, trace_id, "&min_confidence=1.0"))


async def test_cursors_are_signed_and_bound_to_their_filters(api: Api, trace_id: int) -> None:
    base = f"/v1/traces/{trace_id}/mixer-links?limit=1"
    _, page, _ = await api.call("GET", base, expect=200)
    cursor = page["next_cursor"]
    assert cursor
    body_part, mac = cursor.split(".")
    flipped = body_part[:-2] + ("A" if body_part[-2] != "A" else "B") + body_part[-1]
    for bad in (f"{flipped}.{mac}", f"{body_part}.{mac[::-1]}", "garbage", "a.b.c", cursor + "x"):
        _, problem, _ = await api.call("GET", f"{base}&cursor={bad}", expect=400)
        assert problem["field"] == "cursor"
    for other in ("&status=linked", "&min_confidence=0.5"):  # same cursor, other filters
        _, problem, _ = await api.call("GET", f"{base}{other}&cursor={cursor}", expect=400)
        assert problem["field"] == "cursor"
    await api.call("GET", f"/v1/traces/{trace_id}/hops?cursor={cursor}", expect=400)  # another listing
    _, hops, _ = await api.call("GET", f"/v1/traces/{trace_id}/hops?limit=1", expect=200)
    await api.call("GET", f"{base}&cursor={hops['next_cursor']}", expect=400)
    _, nxt, _ = await api.call("GET", f"{base}&cursor={cursor}", expect=200)
    assert _key(nxt["items"][0]) != _key(page["items"][0])


@pytest.mark.parametrize(("query", "field"), [
    ("min_confidence=1.5", "min_confidence"), ("min_confidence=-0.1", "min_confidence"),
    ("min_confidence=abc", "min_confidence"), ("min_confidence=1e-1", "min_confidence"),
    ("min_confidence=nan", "min_confidence"), ("status=maybe", "status"), ("limit=0", "limit"),
    ("limit=1001", "limit"), ("limit=x", "limit"), ("min_confidence=0.5&min_confidence=0.6", "min_confidence"),
    ("confidence=0.5", "confidence"),
])
async def test_bad_input_is_a_400_naming_the_parameter(api: Api, trace_id: int, query: str, field: str) -> None:
    _, problem, _ = await api.call("GET", f"/v1/traces/{trace_id}/mixer-links?{query}", expect=400)
    assert problem["field"] == field


async def test_unknown_trace_is_a_404_and_a_bad_id_a_400(api: Api, trace_id: int) -> None:
    _, problem, _ = await api.call("GET", f"/v1/traces/{trace_id + 10_000}/mixer-links", expect=404)
    assert problem["status"] == 404
    _, problem, _ = await api.call("GET", "/v1/traces/abc/mixer-links", expect=400)
    assert problem["field"] == "trace_id"


async def test_a_trace_without_mixers_answers_an_empty_page(api: Api, scenario: Scenario) -> None:
    # Seeded from a wallet that never sent anything: no deposits, still a well-formed page.
    _, body, _ = await api.call("POST", "/v1/traces", expect=201,
                                json={"chain": scenario.chain, "seeds": ["0x" + "5a" * 20]})
    for _ in range(300):
        _, trace, _ = await api.call("GET", f"/v1/traces/{body['id']}", expect=200)
        if trace["status"] == "done":
            break
        await asyncio.sleep(0.1)
    assert trace["status"] == "done"
    _, page, _ = await api.call("GET", f"/v1/traces/{body['id']}/mixer-links", expect=200)
    _conforms_page(page)
    assert page["items"] == [] and page["next_cursor"] is None
