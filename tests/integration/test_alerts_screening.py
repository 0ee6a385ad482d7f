"""Screening results for watched addresses (issue 20): a subscription with `screen_depth` on an
exchange's deposit address gets a `screening_result` event when the address receives new money,
once confirmed: its direct labels and its indirect exposure within N hops back, the same figures
GET /v1/screen?depth=N answers, with the inflows. Real pieces: a growing devchain over JSON-RPC,
Postgres, the monitor, the API and its event stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tests.alerts_support import wait_until
from tests.api_support import Api, conforms, running_api
from tests.integration.test_alerts_live import SseClient
from tracer.alerts.monitor import Monitor, MonitorSettings
from tracer.api.context import Settings
from tracer.chains.evm import EvmChain
from tracer.devchain.chain import Chain
from tracer.devchain.scenario import KIND_NATIVE, ScenarioTx
from tracer.domain.labels import Label
from tracer.store import labels as label_store
from tracer.store.db import Database

pytestmark = pytest.mark.asyncio(loop_scope="session")

ETH = 10**18
THIEF, MULE, CLEAN = "0x" + "7e" * 20, "0x" + "71" * 20, "0x" + "c1" * 20
DEPOSIT = "0x" + "de" * 20  # an exchange's customer deposit address, watched
CONFIRMATIONS = 2


def pay(sender: str, to: str, eth: float) -> ScenarioTx:
    return ScenarioTx(KIND_NATIVE, sender, to, int(eth * ETH))


@pytest.fixture(scope="module")
def chain() -> Chain:
    c = Chain(chain_id=1337, genesis_balances={THIEF: {"native": 100 * ETH}, CLEAN: {"native": 100 * ETH}})
    c.append_block([pay(THIEF, MULE, 10)])  # block 1: the stolen money moves to a mule
    for _ in range(4):
        c.append_block([])
    return c


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def live(db: Database, chain: Chain, devchain_factory: Any) -> AsyncIterator[Api]:
    server = await devchain_factory(chain)
    client = EvmChain(server.url, chain="ethereum", expected_chain_id=1337)
    await client.connect()
    async with db.pool.acquire() as conn:
        await label_store.upsert_labels(conn, [Label("ethereum", THIEF, "Bridge exploiter", "hacker", "test")])
    stop = asyncio.Event()
    monitor = Monitor(db.pool, {"ethereum": client}, settings=MonitorSettings(poll=0.05))
    task = asyncio.create_task(monitor.run(stop))
    try:
        async with running_api(db, {"ethereum": client}, Settings()) as api:
            yield api
    finally:
        stop.set()
        await task
        await client.close()


async def test_new_money_into_a_watched_address_is_screened(live: Api, chain: Chain, db: Database) -> None:
    api = live
    _, sub, _ = await api.call("POST", "/v1/subscriptions", expect=201, json={
        "delivery": "stream", "addresses": [DEPOSIT], "watch": False, "screen_depth": 2,
        "confirmations": CONFIRMATIONS, "event_types": ["screening_result"]})
    conforms("subscription", sub)
    assert sub["screen_depth"] == 2
    # Another subscription on the same address, without screening: the result is not its.
    _, other, _ = await api.call("POST", "/v1/subscriptions", expect=201, json={
        "delivery": "stream", "addresses": [DEPOSIT], "watch": False})
    await wait_until(lambda: _looked(db, sub["id"]), what="the monitor's first look")
    stream = SseClient(api.session, f"{api.base}/v1/subscriptions/{sub['id']}/events")
    others = SseClient(api.session, f"{api.base}/v1/subscriptions/{other['id']}/events")
    try:
        chain.append_block([pay(MULE, DEPOSIT, 4), pay(CLEAN, DEPOSIT, 6)])
        block = chain.head
        await asyncio.sleep(0.3)
        assert not stream.of("screening_result"), "not before it is confirmed"
        for _ in range(CONFIRMATIONS):
            chain.append_block([])
        await wait_until(lambda: _has(stream), what="the screening result")
        [event] = stream.of("screening_result")
        conforms("webhook_event", event)
        data = event["data"]
        assert (event["chain"], event["trace_id"], data["address"]) == ("ethereum", None, DEPOSIT)
        assert data["block_number"] >= block
        assert data["inflow_count"] == 2 and {(i["from"], i["amount_raw"]) for i in data["inflows"]} == {
            (MULE, str(4 * ETH)), (CLEAN, str(6 * ETH))}
        assert data["sanctioned"] is False and data["hits"] == []
        # Indirect: 4 of the 10 ETH it received came from the exploiter, two hops back.
        [flagged] = data["exposure"]["flagged"]
        assert (flagged["category"], flagged["entity"]) == ("hacker", "Bridge exploiter")
        assert flagged["amounts"][0]["amount_raw"] == str(4 * ETH) and flagged["amounts"][0]["share"] == 0.4
        # The same figures as GET /v1/screen at that block.
        _, screen, _ = await api.call(
            "GET", f"/v1/screen?address={DEPOSIT}&depth=2&to_block={data['block_number']}", expect=200)
        assert screen["exposure"]["flagged"] == data["exposure"]["flagged"]
        assert screen["exposure"]["received"] == data["exposure"]["received"]
        # The next inflow is screened once more; the other subscription got no screening result.
        chain.append_block([pay(CLEAN, DEPOSIT, 1)])
        for _ in range(CONFIRMATIONS):
            chain.append_block([])
        await wait_until(lambda: _has(stream, 2), what="the second screening result")
        assert stream.of("screening_result")[1]["data"]["inflow_count"] == 1
        await asyncio.sleep(0.3)
        assert not others.of("screening_result")
    finally:
        await stream.close()
        await others.close()


async def test_screening_needs_addresses_and_a_depth_in_range(live: Api) -> None:
    for body, field in (({"delivery": "stream", "trace_id": 1, "screen_depth": 2}, "screen_depth"),
                        ({"delivery": "stream", "addresses": [DEPOSIT], "watch": False, "screen_depth": 11},
                         "screen_depth")):
        _, problem, _ = await live.call("POST", "/v1/subscriptions", expect=400, json=body)
        assert problem["field"] == field, problem


async def _looked(db: Database, sid: int) -> bool:
    return await db.pool.fetchval("SELECT screened_to IS NOT NULL FROM subscriptions WHERE id = $1", sid)


async def _has(stream: SseClient, n: int = 1) -> bool:
    return len(stream.of("screening_result")) >= n
