"""The alerting endpoints: subscriptions (validation, SSRF refusals, scopes, paging, who sees
URLs), deliveries and replay errors, and the event endpoints in JSON and SSE form."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tests.alerts_support import LOOPBACK
from tests.api_support import Api, conforms, running_api
from tracer.api.handlers.alerts import ALERTS
from tracer.store import keys as key_store
from tracer.store import outbox
from tracer.store import traces as trace_store
from tracer.store.db import Database

pytestmark = pytest.mark.asyncio(loop_scope="session")

ADDR = "0x" + "42" * 20
HOOK = "https://hooks.example.com/tracer/T0KEN-in-path"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def keys(db: Database) -> dict[str, str]:
    out = {}
    async with db.pool.acquire() as conn:
        for name, scopes in (("admin", ["admin"]), ("tracer", ["trace"]), ("tracer2", ["trace"]), ("reader", ["read"])):
            _, out[name] = await key_store.create_key(conn, name, scopes)
    return out


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def api(db: Database, keys: dict[str, str]) -> AsyncIterator[Api]:
    async with running_api(db) as a:
        yield a


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def finished_trace(db: Database) -> int:
    async with db.pool.acquire() as conn:
        tid = await trace_store.insert_trace(conn, chain="ethereum", seeds=[ADDR], policy={}, label="api",
                                             from_block=0, to_block=0)
        for _ in range(5):
            await trace_store.insert_events(conn, [(tid, "exit_reached", {"address": ADDR, "entity": "X",
                                                                          "category": "exchange", "reason": "label"})])
        await trace_store.cancel_trace(conn, tid)  # final: streams end
        while await outbox.sequence_round(conn):
            pass
    return tid


async def test_create_validates_and_refuses_unsafe_urls(api: Api, keys: dict[str, str], finished_trace: int) -> None:
    k = keys["tracer"]
    bad: list[tuple[dict[str, Any], str, int]] = [
        ({"url": "http://hooks.example.com/x"}, "url", 400),
        ({"url": "https://127.0.0.1:9/x"}, "url", 400),
        ({"url": "https://169.254.169.254/latest/meta-data"}, "url", 400),
        ({"url": "https://10.0.0.8/x"}, "url", 400),
        ({"url": "https://localhost/x"}, "url", 400),
        ({"url": "https://user:pw@hooks.example.com/"}, "url", 400),
        ({}, "url", 400),
        ({"url": HOOK, "secret": "short"}, "secret", 400),
        ({"delivery": "stream", "url": HOOK}, "url", 400),
        ({"url": HOOK, "event_types": ["nope"]}, "event_types[0]", 400),
        ({"url": HOOK, "min_amount": {"native": "-1"}}, "min_amount.native", 400),
        ({"url": HOOK, "addresses": ["0x1234"]}, "addresses[0]", 400),
        ({"url": HOOK, "trace_id": 999999}, "trace_id", 404),
        ({"url": HOOK, "bogus": 1}, "bogus", 400),
        ({"url": HOOK, "from_start": True}, "from_start", 400),
        ({"url": HOOK, "trace_id": finished_trace, "watch": True}, "trace_id", 409),  # cancelled: cannot watch
        ({"url": HOOK, "addresses": [ADDR]}, "chain", 503),  # a watchlist needs a node; this server has none
    ]
    for body, field, status in bad:
        _, problem, _ = await api.call("POST", "/v1/subscriptions", key=k, json=body, expect=status)
        assert problem["field"] == field, (body, problem)
    await api.call("POST", "/v1/subscriptions", key=keys["reader"], json={"url": HOOK}, expect=403)
    await api.call("POST", "/v1/subscriptions", json={"url": HOOK}, expect=401)


async def test_subscription_lifecycle_and_who_sees_the_url(api: Api, keys: dict[str, str], finished_trace: int,
                                                           db: Database) -> None:
    _, sub, headers = await api.call("POST", "/v1/subscriptions", key=keys["tracer"], expect=201, json={
        "url": HOOK, "trace_id": finished_trace, "categories": ["exchange"], "entities": ["Binance"],
        "min_amount": {"native": "1000", "0x" + "AB" * 20: "5"}, "event_types": ["hop_added"], "name": "desk"})
    conforms("subscription", sub)
    assert sub["secret"].startswith("whsec_") and len(sub["secret"]) > 30
    assert headers["Location"] == f"/v1/subscriptions/{sub['id']}"
    assert sub["entities"] == ["binance"] and sub["min_amount"] == {"native": "1000", "0x" + "ab" * 20: "5"}
    sid = sub["id"]
    for who, full in (("tracer", True), ("admin", True), ("tracer2", False), ("reader", False)):
        _, got, _ = await api.call("GET", f"/v1/subscriptions/{sid}", key=keys[who], expect=200)
        conforms("subscription", got)
        assert "secret" not in got
        assert (got["url"] == HOOK) is full and got["url"].startswith("https://hooks.example.com/")
        assert got["deliveries"] == {"pending": 0, "delivered": 0, "dead": 0}
    _, stream, _ = await api.call("POST", "/v1/subscriptions", key=keys["tracer"], expect=201,
                                  json={"delivery": "stream", "trace_id": finished_trace, "from_start": True})
    assert "secret" not in stream and stream["url"] is None
    # Paging, newest first, filtered by trace.
    _, page, _ = await api.call("GET", f"/v1/subscriptions?trace_id={finished_trace}&limit=1", key=keys["reader"],
                                expect=200)
    conforms("subscription-list", page)
    assert [s["id"] for s in page["items"]] == [stream["id"]] and page["next_cursor"]
    _, page2, _ = await api.call("GET", page["links"]["next"], key=keys["reader"], expect=200)
    assert [s["id"] for s in page2["items"]] == [sid] and page2["next_cursor"] is None
    other = f"/v1/subscriptions?trace_id={finished_trace + 1}&cursor={page['next_cursor']}"
    await api.call("GET", other, key=keys["reader"], expect=400)  # a cursor is bound to its filters
    # A stream subscription has no dead letters to replay; deliveries of a webhook one page fine.
    await api.call("POST", f"/v1/subscriptions/{stream['id']}/replay", key=keys["tracer"], expect=409)
    await api.call("POST", f"/v1/subscriptions/{sid}/replay", key=keys["tracer"], json={"x": 1}, expect=400)
    _, dl, _ = await api.call("GET", f"/v1/subscriptions/{sid}/deliveries?state=dead", key=keys["reader"], expect=200)
    conforms("delivery-page", dl)
    await api.call("GET", f"/v1/subscriptions/{sid}/deliveries?state=lost", key=keys["reader"], expect=400)
    # Delete, audit, 404 after.
    await api.call("DELETE", f"/v1/subscriptions/{sid}", key=keys["reader"], expect=403)
    await api.call("DELETE", f"/v1/subscriptions/{sid}", key=keys["tracer"], expect=204)
    for method, path in (("GET", ""), ("DELETE", ""), ("GET", "/deliveries"), ("POST", "/replay"), ("GET", "/events")):
        await api.call(method, f"/v1/subscriptions/{sid}{path}", key=keys["admin"], expect=404)
    await api.call("GET", "/v1/subscriptions/abc", key=keys["admin"], expect=400)
    _, audit, _ = await api.call("GET", "/v1/audit?target=subscription:" + str(sid), key=keys["admin"], expect=200)
    assert [a["action"] for a in audit["items"]] == ["subscription.delete", "subscription.create"]
    assert audit["items"][1]["details"]["host"] == "hooks.example.com"  # never the URL's path or query


async def test_event_pages_and_streams(api: Api, keys: dict[str, str], finished_trace: int, db: Database) -> None:
    k = keys["reader"]
    _, page, _ = await api.call("GET", f"/v1/traces/{finished_trace}/events?limit=3", key=k, expect=200)
    conforms("event-page", page)
    assert [e["type"] for e in page["items"]] == ["trace_created", "exit_reached", "exit_reached"]
    assert page["trace_status"] == "cancelled"
    _, rest, _ = await api.call("GET", f"/v1/traces/{finished_trace}/events?after={page['next_after']}", key=k,
                                expect=200)
    assert [e["type"] for e in rest["items"]] == ["exit_reached"] * 3 + ["trace_cancelled"]
    ids = [e["id"] for e in page["items"] + rest["items"]]
    assert ids == sorted(ids) and len(set(ids)) == 7
    # Last-Event-ID wins over ?after= (it is what EventSource sends when it reconnects).
    _, tail, _ = await api.call("GET", f"/v1/traces/{finished_trace}/events?after=0", key=k, expect=200,
                                headers={"Last-Event-ID": str(ids[-2])})
    assert [e["id"] for e in tail["items"]] == ids[-1:]
    await api.call("GET", f"/v1/traces/{finished_trace}/events", key=k, headers={"Last-Event-ID": "x"}, expect=400)
    await api.call("GET", "/v1/traces/999999/events", key=k, expect=404)
    await api.call("GET", f"/v1/traces/{finished_trace}/events?nope=1", key=k, expect=400)

    # SSE: a finished trace streams everything then ends; a reconnect at the end gets 204.
    sse = {"Accept": "text/event-stream", "X-API-Key": k}
    async with api.session.get(f"{api.base}/v1/traces/{finished_trace}/events", headers=sse) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/event-stream")
        text = (await r.read()).decode()
    assert text.startswith("retry: ")
    assert [int(line[4:]) for line in text.splitlines() if line.startswith("id: ")] == ids
    async with api.session.get(f"{api.base}/v1/traces/{finished_trace}/events",
                               headers={**sse, "Last-Event-ID": str(ids[-1])}) as r:
        assert r.status == 204

    # A subscription's stream: what its filter matches, from its start (here: the trace's history).
    _, sub, _ = await api.call("POST", "/v1/subscriptions", key=keys["tracer"], expect=201, json={
        "delivery": "stream", "trace_id": finished_trace, "from_start": True, "event_types": ["exit_reached"]})
    _, got, _ = await api.call("GET", f"/v1/subscriptions/{sub['id']}/events", key=k, expect=200)
    conforms("event-page", got)
    assert [e["id"] for e in got["items"]] == ids[1:6] and all(e["subscription_id"] == sub["id"] for e in got["items"])


async def test_webhooks_to_loopback_need_the_allow_list(api: Api, keys: dict[str, str]) -> None:
    body = {"url": "http://127.0.0.1:9/hook"}
    await api.call("POST", "/v1/subscriptions", key=keys["tracer"], json=body, expect=400)
    api.app[ALERTS].url_policy = LOOPBACK
    try:
        await api.call("POST", "/v1/subscriptions", key=keys["tracer"], json=body, expect=201)
    finally:
        api.app[ALERTS].url_policy = type(LOOPBACK)()
