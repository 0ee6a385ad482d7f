"""Requests the API must refuse cleanly, and the trace lifecycle without workers (traces stay
queued, so cancel/delete/list are deterministic): problem+json bodies with the offending field,
the right status codes, never a 500 and never a stack trace."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tests.api_support import Api, conforms, running_api
from tracer.api.context import Settings
from tracer.chains.evm import EvmChain
from tracer.chains.retry import RetryPolicy, TransportOptions
from tracer.store.db import Database

pytestmark = pytest.mark.asyncio(loop_scope="session")

SEED = "0x" + "11" * 20
OTHER = "0x" + "22" * 20


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def api(db: Database, devchain_factory: Any) -> AsyncIterator[Api]:
    server = await devchain_factory()
    client = EvmChain(server.url, chain="ethereum")
    await client.connect()
    async with running_api(db, {"ethereum": client}, Settings(max_body=64 * 1024)) as a:
        yield a
    await client.close()


async def _create(api: Api, **body: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"seeds": [SEED]}
    payload.update(body)
    _, trace, _ = await api.call("POST", "/v1/traces", json=payload, expect=201)
    return dict(trace)


@pytest.mark.parametrize(("body", "field"), [
    ({"seeds": ["0x1234"]}, "seeds[0]"),
    ({"seeds": [SEED, "0xZZ" + "1" * 38]}, "seeds[1]"),
    # a mixed-case address with a wrong EIP-55 checksum is a typo, not an address
    ({"seeds": ["0x5aaeb6053F3E94C9b9A09f33669435E7Ef1BeAed"]}, "seeds[0]"),
    ({"seeds": []}, "seeds"),
    ({"seeds": SEED}, "seeds"),
    ({}, "seeds"),
    ({"seeds": [SEED], "chain": "dogecoin"}, "chain"),
    ({"seeds": [SEED], "policy": {"max_depth": 0}}, "policy.max_depth"),
    ({"seeds": [SEED], "policy": {"max_depth": "deep"}}, "policy.max_depth"),
    ({"seeds": [SEED], "policy": {"taint_model": "lifo"}}, "policy.taint_model"),
    ({"seeds": [SEED], "policy": {"min_share": 1.5}}, "policy.min_share"),
    ({"seeds": [SEED], "policy": {"bogus": 1}}, "policy.bogus"),
    ({"seeds": [SEED], "policy": {"min_amount": {"native": "-1"}}}, "policy.min_amount.native"),
    ({"seeds": [SEED], "policy": {"from_block": 10, "to_block": 5}}, "policy.to_block"),
    ({"seeds": [SEED], "policy": {"from_block": 10**12}}, "policy.from_block"),
    ({"seeds": [SEED], "policy": []}, "policy"),
    ({"seeds": [SEED], "label": 7}, "label"),
    ({"seeds": [SEED], "colour": "red"}, "colour"),
])
async def test_bad_trace_requests_name_the_field(api: Api, body: dict[str, Any], field: str) -> None:
    _, problem, _ = await api.call("POST", "/v1/traces", json=body, expect=400)
    assert problem["field"] == field, problem
    assert problem["detail"]


async def test_bodies_that_are_not_json_objects(api: Api) -> None:
    _, p, _ = await api.call("POST", "/v1/traces", data=b"{not json", expect=400,
                             headers={"Content-Type": "application/json"})
    assert p["field"] == "body"
    await api.call("POST", "/v1/traces", data=b"[1, 2]", expect=400, headers={"Content-Type": "application/json"})
    await api.call("POST", "/v1/traces", data=b"[" * 50_000, expect=400, headers={"Content-Type": "application/json"})
    await api.call("POST", "/v1/traces", data=b"\xff\xfe", expect=400, headers={"Content-Type": "application/json"})
    _, p, _ = await api.call("POST", "/v1/traces", data=b"seeds=1", expect=415,
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert p["field"] == "Content-Type"
    # strings Postgres cannot store (NUL, lone surrogates) are bad input, not a driver crash
    for raw in (b'{"seeds": ["%s"], "label": "a\\u0000b"}' % SEED.encode(),
                b'{"seeds": ["%s"], "label": "\\ud800"}' % SEED.encode(),
                b'{"seeds": ["%s"], "policy": {"stop_categories": ["\\u0000"]}}' % SEED.encode()):
        await api.call("POST", "/v1/traces", data=raw, expect=400, headers={"Content-Type": "application/json"})
    for query in ("label=%00", "seed=%00"):
        await api.call("GET", f"/v1/traces?{query}", expect=400)
    # over the body limit: 413, as a problem, before the body is parsed
    _, p, _ = await api.call("POST", "/v1/traces", data=b'{"seeds": ["' + b"x" * 100_000 + b'"]}', expect=413,
                             headers={"Content-Type": "application/json"})
    assert "larger than" in p["detail"]


async def test_unknown_routes_methods_and_ids(api: Api) -> None:
    await api.call("GET", "/v1/nope", expect=404)
    _, _, headers = await api.call("PUT", "/v1/traces", expect=405)
    assert "POST" in headers["Allow"]
    _, p, _ = await api.call("GET", "/v1/traces/999999", expect=404)
    assert "999999" in p["detail"]
    for bad in ("abc", "0", "-1", "99999999999999999999"):
        _, p, _ = await api.call("GET", f"/v1/traces/{bad}", expect=400)
        assert p["field"] == "trace_id"
    await api.call("GET", "/v1/traces/999999/hops", expect=404)
    await api.call("GET", "/v1/traces/999999/exits", expect=404)
    await api.call("GET", f"/v1/traces/999999/paths?to={SEED}", expect=404)
    await api.call("GET", "/v1/traces/999999/graph", expect=404)
    await api.call("POST", "/v1/traces/999999/cancel", expect=404)
    await api.call("DELETE", "/v1/traces/999999", expect=404)


@pytest.mark.parametrize(("query", "field"), [
    ("limit=0", "limit"), ("limit=100000", "limit"), ("limit=ten", "limit"), ("limit=1&limit=2", "limit"),
    ("sort=random", "sort"), ("depth=-1", "depth"), ("min_amount=1e5", "min_amount"), ("min_amount=-3", "min_amount"),
    ("asset=usdt", "asset"), ("address=0x12", "address"), ("from=nope", "from"), ("kind=nft", "kind"),
    ("status=lost", "status"), ("min_ammount=5", "min_ammount"), ("cursor=", "cursor"),
])
async def test_bad_hop_queries_name_the_parameter(api: Api, query: str, field: str) -> None:
    trace = await _create(api, label="queries")
    _, p, _ = await api.call("GET", f"/v1/traces/{trace['id']}/hops?{query}", expect=400)
    assert p["field"] == field, p


async def test_cancel_then_delete_a_queued_trace(api: Api, db: Database) -> None:
    trace = await _create(api, label="to cancel", policy={"max_depth": 5})
    tid = trace["id"]
    assert trace["status"] == "queued" and trace["policy"]["max_depth"] == 5
    _, body, _ = await api.call("POST", f"/v1/traces/{tid}/cancel", expect=200)
    conforms("trace", body)
    assert body["status"] == "cancelled"
    _, p, _ = await api.call("POST", f"/v1/traces/{tid}/cancel", expect=409)
    assert p["trace_status"] == "cancelled"
    await api.call("DELETE", f"/v1/traces/{tid}", expect=204)
    await api.call("GET", f"/v1/traces/{tid}", expect=404)
    assert await db.pool.fetchval("SELECT count(*) FROM jobs WHERE trace_id = $1", tid) == 0
    _, audit, _ = await api.call("GET", f"/v1/audit?target=trace:{tid}", expect=200)
    conforms("audit-page", audit)
    assert [e["action"] for e in audit["items"]] == ["trace.delete", "trace.cancel", "trace.create"]
    assert audit["items"][0]["details"]["label"] == "to cancel"
    # deleting a queued trace directly cancels it first
    other = await _create(api, label="delete me")
    await api.call("DELETE", f"/v1/traces/{other['id']}", expect=204)


async def test_list_filters_and_keyset_pages(api: Api) -> None:
    made = [await _create(api, seeds=[SEED if i % 2 else OTHER], label=f"batch-{i % 3}") for i in range(7)]
    ids = [t["id"] for t in made]
    await api.call("POST", f"/v1/traces/{ids[0]}/cancel", expect=200)
    # walk every trace with pages of 2: newest first, no duplicates, nothing missed
    seen: list[int] = []
    url: str | None = "/v1/traces?limit=2"
    while url:
        _, page, _ = await api.call("GET", url, expect=200)
        conforms("trace-list", page)
        assert len(page["items"]) <= 2
        seen += [t["id"] for t in page["items"]]
        url = page["links"]["next"]
    assert seen == sorted(seen, reverse=True) and set(ids) <= set(seen) and len(seen) == len(set(seen))
    _, page, _ = await api.call("GET", "/v1/traces?label=batch-1&limit=100", expect=200)
    assert {t["id"] for t in page["items"]} == {t["id"] for t in made if t["label"] == "batch-1"}
    _, page, _ = await api.call("GET", f"/v1/traces?seed={OTHER.upper().replace('0X', '0x')}&limit=100", expect=200)
    assert {t["id"] for t in page["items"]} == {t["id"] for t in made if t["seeds"] == [OTHER]}
    _, page, _ = await api.call("GET", "/v1/traces?status=cancelled,done&limit=100", expect=200)
    assert ids[0] in {t["id"] for t in page["items"]}
    assert {t["status"] for t in page["items"]} <= {"cancelled", "done"}
    _, page, _ = await api.call("GET", "/v1/traces?status=queued&status=running&limit=100", expect=200)
    assert ids[0] not in {t["id"] for t in page["items"]} and ids[1] in {t["id"] for t in page["items"]}
    _, p, _ = await api.call("GET", "/v1/traces?status=sleeping", expect=400)
    assert p["field"] == "status"
    _, p, _ = await api.call("GET", "/v1/traces?seed=nope", expect=400)
    assert p["field"] == "seed"


async def test_new_trace_reads_back_empty_but_valid(api: Api) -> None:
    trace = await _create(api, label="empty")
    tid = trace["id"]
    _, body, _ = await api.call("GET", f"/v1/traces/{tid}/exits", expect=200)
    conforms("exit-list", body)
    assert body["items"] == [] and body["complete"] is False
    _, body, _ = await api.call("GET", f"/v1/traces/{tid}/hops", expect=200)
    assert body["items"] == [] and body["next_cursor"] is None
    _, body, _ = await api.call("GET", f"/v1/traces/{tid}/graph", expect=200)
    conforms("graph", body)
    _, body, _ = await api.call("GET", f"/v1/traces/{tid}/graph?format=gexf", expect=200)
    _, body, _ = await api.call("GET", f"/v1/traces/{tid}", expect=200)
    assert body["progress"]["hops"] == 0 and body["totals"] == []


async def test_node_down_is_a_503_problem_not_a_crash(db: Database) -> None:
    dead = EvmChain("http://127.0.0.1:9/", chain="ethereum",
                    transport=TransportOptions(timeout=1.0, policy=RetryPolicy(retries=1)))
    async with running_api(db, {"ethereum": dead}) as api:
        _, p, headers = await api.call("POST", "/v1/traces", json={"seeds": [SEED]}, expect=503)
        assert "Retry-After" in headers
        _, health, _ = await api.call("GET", "/v1/health", expect=503)
        conforms("health", health)
        assert health["status"] == "unavailable" and health["postgres"]["ok"] is True
        assert health["chains"]["ethereum"]["ok"] is False
    async with running_api(db, {}) as api:  # no node configured at all
        _, p, _ = await api.call("POST", "/v1/traces", json={"seeds": [SEED]}, expect=503)
        assert p["field"] == "chain"


async def test_request_ids_are_echoed_and_kept(api: Api) -> None:
    _, p, headers = await api.call("GET", "/v1/traces/999999", expect=404, headers={"X-Request-Id": "case-7.abc"})
    assert headers["X-Request-Id"] == "case-7.abc" == p["request_id"]
    _, _, headers = await api.call("GET", "/v1/health", headers={"X-Request-Id": "bad id with spaces"})
    assert headers["X-Request-Id"] != "bad id with spaces" and len(headers["X-Request-Id"]) == 16


async def test_openapi_document_is_served(api: Api) -> None:
    from tracer.api.openapi import bundle

    _, doc, _ = await api.call("GET", "/v1/openapi.json", expect=200)
    assert doc == bundle() and doc["openapi"].startswith("3.1")


async def test_time_window_policy_is_accepted_and_echoed_as_unix_seconds(api: Api) -> None:
    trace = await _create(api, policy={"from_time": "2023-11-14T22:13:20Z", "to_time": 1_900_000_000})
    conforms("trace", trace)
    assert trace["policy"]["from_time"] == 1_700_000_000 and trace["policy"]["to_time"] == 1_900_000_000
    _, p, _ = await api.call("POST", "/v1/traces", json={"seeds": [SEED], "policy": {"from_time": "yesterday"}},
                             expect=400)
    assert p["field"] == "policy.from_time"
