"""Labels and screening over the API: investigators' labels with audit, time-aware sanctions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tests.api_support import Api, conforms, running_api
from tracer.chains.evm import EvmChain
from tracer.labels.defaults import load_default_labels
from tracer.store.db import Database

pytestmark = pytest.mark.asyncio(loop_scope="session")

# Tornado Cash's 1 ETH pool on Ethereum: sanctioned 2022-08-08, delisted 2025-03-21.
TORNADO_1ETH = "0x47ce0c6ed5b0ce3d3a51fdb1c52dc66a7c3c2936"
PAGE = "0x" + "ab" * 20


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def api(db: Database, devchain_factory: Any, small_scenario: Any) -> AsyncIterator[Api]:
    await load_default_labels(db.pool)
    server = await devchain_factory(small_scenario)
    client = EvmChain(server.url, chain="ethereum")
    await client.connect()
    async with running_api(db, {"ethereum": client}) as running:
        yield running
    await client.close()


async def test_screening_answers_for_the_time_of_the_transfer(api: Api) -> None:
    _, before, _ = await api.call("GET", f"/v1/screen?address={TORNADO_1ETH}&at=2024-01-01T00:00:00Z", expect=200)
    conforms("screen", before)
    assert before["sanctioned"] is True
    assert any(h["kind"] == "sanction" and h["source"].startswith("ofac") for h in before["hits"])
    _, after, _ = await api.call("GET", f"/v1/screen?address={TORNADO_1ETH}&at=2025-06-01T00:00:00Z", expect=200)
    assert after["sanctioned"] is False
    await api.call("GET", "/v1/screen?address=0x1234", expect=400)
    await api.call("GET", "/v1/screen", expect=400)


async def test_investigator_labels_are_listed_and_audited(api: Api) -> None:
    body = {"address": PAGE, "entity": "Garantex", "category": "exchange", "note": "case 2024-17"}
    _, made, _ = await api.call("POST", "/v1/labels", json=body, expect=201)
    conforms("label-item", made)
    assert made["source"] == "investigator" and made["address"] == PAGE
    _, page, _ = await api.call("GET", f"/v1/labels?address={PAGE}", expect=200)
    conforms("label-page", page)
    assert [i["entity"] for i in page["items"]] == ["Garantex"]
    _, audit, _ = await api.call("GET", f"/v1/audit?target=address:ethereum:{PAGE}", expect=200)
    assert audit["items"][0]["action"] == "label.create"
    _, err, _ = await api.call("POST", "/v1/labels", json={**body, "category": "bakery"}, expect=400)
    assert err["field"] == "category"
    _, err, _ = await api.call("POST", "/v1/labels", json={**body, "address": "0xzz"}, expect=400)
    assert err["field"] == "address"


async def test_label_pages_walk_the_whole_set(api: Api) -> None:
    seen: list[int] = []
    url = "/v1/labels?category=mixer&limit=50"
    while url:
        _, page, _ = await api.call("GET", url, expect=200)
        seen += [i["id"] for i in page["items"]]
        url = page["links"]["next"]
    assert len(seen) == len(set(seen)) >= 100
    assert seen == sorted(seen)
    _, err, _ = await api.call("GET", "/v1/labels?cursor=tampered", expect=400)
    assert err["field"] == "cursor"


async def test_trace_from_the_ofac_list(api: Api) -> None:
    _, trace, _ = await api.call("POST", "/v1/traces", json={"from_list": {"list": "ofac", "program": "DPRK"}},
                                 expect=201)
    assert len(trace["seeds"]) >= 10
    _, err, _ = await api.call("POST", "/v1/traces", json={"from_list": {"list": "ofac", "program": "NOPE"}},
                               expect=400)
    assert err["field"] == "program"
    await api.call("POST", "/v1/traces", json={}, expect=400)
