"""Ownership over real HTTP: traces, subscriptions and labels belong to the key (or team) that
made them. Another trace key cannot cancel a trace, delete or replay a subscription, or label an
address for everyone; a team shares; an admin does anything and publishes private labels."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tests.api_support import Api, conforms, running_api
from tracer.chains.evm import EvmChain
from tracer.devchain.scenario import Scenario
from tracer.store import keys as key_store
from tracer.store.db import Database

pytestmark = pytest.mark.asyncio(loop_scope="session")
TARGET = "0x" + "5a" * 20


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def chain(small_scenario: Scenario, devchain_factory: Any) -> AsyncIterator[EvmChain]:
    server = await devchain_factory(small_scenario)
    client = EvmChain(server.url, chain=small_scenario.chain, expected_chain_id=small_scenario.chain_id)
    await client.connect()
    yield client
    await client.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def keys(db: Database) -> dict[str, str]:
    out = {}
    async with db.pool.acquire() as conn:
        for name, scopes, team in (("admin", ["admin"], None), ("alice", ["trace"], None), ("bob", ["trace"], None),
                                   ("carol", ["trace"], "fraud"), ("dave", ["trace"], "fraud"),
                                   ("reader", ["read"], None)):
            _, out[name] = await key_store.create_key(conn, name, scopes, team=team)
    return out


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def api(db: Database, chain: EvmChain, small_scenario: Scenario, keys: dict[str, str]) -> AsyncIterator[Api]:
    async with running_api(db, {small_scenario.chain: chain}) as a:
        yield a


async def _trace(api: Api, key: str, scenario: Scenario) -> int:
    _, body, _ = await api.call("POST", "/v1/traces", key=key, expect=201,
                                json={"chain": scenario.chain, "seeds": scenario.seeds[:1]})
    return int(body["id"])


async def test_only_the_owner_team_or_admin_cancels_a_trace(api: Api, keys: dict[str, str],
                                                           small_scenario: Scenario, db: Database) -> None:
    mine = await _trace(api, keys["alice"], small_scenario)
    _, p, _ = await api.call("POST", f"/v1/traces/{mine}/cancel", key=keys["bob"], expect=403)
    assert "another key" in p["detail"]
    await api.call("POST", f"/v1/traces/{mine}/cancel", key=keys["reader"], expect=403)
    assert await db.pool.fetchval("SELECT status FROM traces WHERE id = $1", mine) == "queued"
    await api.call("GET", f"/v1/traces/{mine}", key=keys["bob"], expect=200)  # reads stay open
    await api.call("POST", f"/v1/traces/{mine}/cancel", key=keys["alice"], expect=200)
    # A team shares its traces; an admin acts on anyone's.
    team = await _trace(api, keys["carol"], small_scenario)
    await api.call("POST", f"/v1/traces/{team}/cancel", key=keys["alice"], expect=403)
    await api.call("POST", f"/v1/traces/{team}/cancel", key=keys["dave"], expect=200)
    other = await _trace(api, keys["bob"], small_scenario)
    await api.call("POST", f"/v1/traces/{other}/cancel", key=keys["admin"], expect=200)
    await api.call("DELETE", f"/v1/traces/{other}", key=keys["bob"], expect=403)


async def test_only_the_owner_deletes_or_replays_a_subscription(api: Api, keys: dict[str, str], db: Database,
                                                               small_scenario: Scenario) -> None:
    _, sub, _ = await api.call("POST", "/v1/subscriptions", key=keys["alice"], expect=201,
                               json={"delivery": "stream", "addresses": [TARGET], "watch": False})
    sid = sub["id"]
    await api.call("DELETE", f"/v1/subscriptions/{sid}", key=keys["bob"], expect=403)
    await api.call("POST", f"/v1/subscriptions/{sid}/replay", key=keys["bob"], expect=403)
    assert await db.pool.fetchval("SELECT count(*) FROM subscriptions WHERE id = $1", sid) == 1
    await api.call("DELETE", f"/v1/subscriptions/{sid}", key=keys["alice"], expect=204)
    # Watching someone else's trace changes it: refused too.
    theirs = await _trace(api, keys["bob"], small_scenario)
    await api.call("POST", "/v1/subscriptions", key=keys["alice"], expect=403,
                   json={"delivery": "stream", "trace_id": theirs, "watch": True})
    assert await db.pool.fetchval("SELECT status FROM traces WHERE id = $1", theirs) == "queued"
    # A watchlist's own trace belongs to the subscriber.
    _, watch, _ = await api.call("POST", "/v1/subscriptions", key=keys["carol"], expect=201,
                                 json={"delivery": "stream", "addresses": [TARGET]})
    await api.call("POST", f"/v1/traces/{watch['watch_trace_id']}/cancel", key=keys["alice"], expect=403)
    await api.call("DELETE", f"/v1/subscriptions/{watch['id']}", key=keys["dave"], expect=204)
    await api.call("POST", f"/v1/traces/{theirs}/cancel", key=keys["bob"], expect=200)


async def test_labels_of_non_admin_keys_are_private_until_published(api: Api, keys: dict[str, str]) -> None:
    screen = f"/v1/screen?chain=ethereum&address={TARGET}"
    for path, body in ((f"/v1/addresses/ethereum/{TARGET}/labels", {"entity": "Evil", "category": "sanctioned"}),
                       ("/v1/labels", {"address": TARGET, "entity": "Evil 2", "category": "sanctioned"})):
        _, made, _ = await api.call("POST", path, key=keys["alice"], expect=201, json=body)
        assert made["source"].startswith("investigator:key:"), made
    # The probe: one trace key marked an address sanctioned for everyone.
    for other in ("bob", "reader", "carol"):
        _, seen, _ = await api.call("GET", screen, key=keys[other], expect=200)
        assert seen["sanctioned"] is False and seen["hits"] == [], (other, seen)
        _, page, _ = await api.call("GET", f"/v1/addresses/ethereum/{TARGET}", key=keys[other], expect=200)
        assert page["labels"] == [] and page["sanctions"] == [], other
        _, listed, _ = await api.call("GET", f"/v1/labels?address={TARGET}", key=keys[other], expect=200)
        assert listed["items"] == []
    _, seen, _ = await api.call("GET", screen, key=keys["alice"], expect=200)
    assert seen["sanctioned"] is True and len(seen["hits"]) == 2
    # A team's labels are the team's.
    await api.call("POST", f"/v1/addresses/ethereum/{TARGET}/labels", key=keys["carol"], expect=201,
                   json={"entity": "Desk", "category": "otc"})
    _, page, _ = await api.call("GET", f"/v1/addresses/ethereum/{TARGET}", key=keys["dave"], expect=200)
    assert [lb["entity"] for lb in page["labels"]] == ["Desk"]
    # The admin sees them all, and publishes one: then everyone's screening says so.
    _, listed, _ = await api.call("GET", f"/v1/labels?address={TARGET}", key=keys["admin"], expect=200)
    conforms("label-page", listed)
    assert all(item["private"] for item in listed["items"]) and len(listed["items"]) == 3
    evil = next(item for item in listed["items"] if item["entity"] == "Evil")
    await api.call("POST", f"/v1/labels/{evil['id']}/publish", key=keys["alice"], expect=403)
    _, published, _ = await api.call("POST", f"/v1/labels/{evil['id']}/publish", key=keys["admin"], expect=200)
    assert published["private"] is False and published["entity"] == "Evil"
    await api.call("POST", "/v1/labels/999999999/publish", key=keys["admin"], expect=404)
    _, seen, _ = await api.call("GET", screen, key=keys["bob"], expect=200)
    assert seen["sanctioned"] is True and [h["entity"] for h in seen["hits"]] == ["Evil"]
    _, audit, _ = await api.call("GET", "/v1/audit?action=label.publish", key=keys["admin"], expect=200)
    assert audit["items"][0]["target"] == f"label:{evil['id']}"
    # An admin's own labels are public at once.
    _, made, _ = await api.call("POST", "/v1/labels", key=keys["admin"], expect=201,
                                json={"address": TARGET, "entity": "Known desk", "category": "otc"})
    assert made["source"] == "investigator" and made["private"] is False
