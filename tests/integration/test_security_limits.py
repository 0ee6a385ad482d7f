"""Quotas and limits over real HTTP: seeds per trace, unfinished traces and subscriptions per key
(429 with Retry-After), a per-key rate limit shared by two API servers through Postgres,
slow-header connections closed, and /paths stopped at its budget (its process killed)."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tests.api_support import Api, running_api
from tracer.api import pathsearch
from tracer.api.context import Settings
from tracer.chains.evm import EvmChain
from tracer.devchain.scenario import Scenario
from tracer.store import keys as key_store
from tracer.store import ownership
from tracer.store.db import Database

pytestmark = pytest.mark.asyncio(loop_scope="session")


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
        for name in ("quota-a", "quota-b", "rate"):
            _, out[name] = await key_store.create_key(conn, name, ["trace"])
    return out


def _addresses(n: int) -> list[str]:
    return [f"0x{i + 1:040x}" for i in range(n)]


# First, while no key exists (the server is open): run_trace polls without a key.
async def test_paths_stop_at_their_budget_and_seed_cap(db: Database, chain: EvmChain, small_scenario: Scenario) -> None:
    async with running_api(db, {small_scenario.chain: chain}, Settings(workers=2)) as api:
        trace = await api.run_trace({"chain": small_scenario.chain, "seeds": small_scenario.seeds})
        tid = trace["id"]
        _, hops, _ = await api.call("GET", f"/v1/traces/{tid}/hops?sort=-block&limit=1", expect=200)
        target = hops["items"][0]["to"]
        _, found, _ = await api.call("GET", f"/v1/traces/{tid}/paths?to={target}", expect=200)
        assert found["paths"]
    async with running_api(db, {small_scenario.chain: chain}, Settings(paths_budget=0.001)) as api:
        started = time.monotonic()
        _, body, headers = await api.call("GET", f"/v1/traces/{tid}/paths?to={target}", expect=503)
        assert "stopped" in body["detail"] and "Retry-After" in headers
        assert time.monotonic() - started < 2
        assert not [p for p in multiprocessing.active_children() if p.name == "tracer-paths"]
    async with running_api(db, {small_scenario.chain: chain}, Settings(paths_max_seeds=1)) as api:
        if len(small_scenario.seeds) > 1:
            await api.call("GET", f"/v1/traces/{tid}/paths?to={target}", expect=422)


async def test_seed_and_trace_quotas(db: Database, chain: EvmChain, small_scenario: Scenario,
                                     keys: dict[str, str]) -> None:
    settings = Settings(max_seeds=5, max_active_traces=2)
    async with running_api(db, {small_scenario.chain: chain}, settings) as api:
        before = await db.pool.fetchval("SELECT count(*) FROM traces")
        started = time.monotonic()
        _, body, _ = await api.call("POST", "/v1/traces", key=keys["quota-a"], expect=400,
                                    json={"chain": small_scenario.chain, "seeds": _addresses(6)})
        assert body["field"] == "seeds" and "at most 5" in body["detail"]
        assert time.monotonic() - started < 2
        assert await db.pool.fetchval("SELECT count(*) FROM traces") == before
        made = []
        for i in range(2):
            _, t, _ = await api.call("POST", "/v1/traces", key=keys["quota-a"], expect=201,
                                     json={"chain": small_scenario.chain, "seeds": _addresses(5)[i:i + 1]})
            made.append(t["id"])
        _, body, headers = await api.call("POST", "/v1/traces", key=keys["quota-a"], expect=429,
                                          json={"chain": small_scenario.chain, "seeds": _addresses(1)})
        assert int(headers["Retry-After"]) > 0 and "unfinished traces" in body["detail"]
        assert await db.pool.fetchval("SELECT count(*) FROM traces") == before + 2
        # Per key: another key is not held back; a cancelled trace frees a slot.
        await api.call("POST", "/v1/traces", key=keys["quota-b"], expect=201,
                       json={"chain": small_scenario.chain, "seeds": _addresses(1)})
        await api.call("POST", f"/v1/traces/{made[0]}/cancel", key=keys["quota-a"], expect=200)
        await api.call("POST", "/v1/traces", key=keys["quota-a"], expect=201,
                       json={"chain": small_scenario.chain, "seeds": _addresses(1)})
        # A watchlist starts a trace: the same caps apply to its addresses.
        _, body, _ = await api.call("POST", "/v1/subscriptions", key=keys["quota-b"], expect=400,
                                    json={"delivery": "stream", "addresses": _addresses(6)})
        assert body["field"] == "addresses"
    await db.pool.execute("UPDATE traces SET status = 'cancelled' WHERE status IN ('queued', 'running', 'watching')")


async def test_subscription_quota(db: Database, keys: dict[str, str]) -> None:
    async with running_api(db, settings=Settings(max_subscriptions=2)) as api:
        for i in range(2):
            await api.call("POST", "/v1/subscriptions", key=keys["quota-b"], expect=201,
                           json={"delivery": "stream", "addresses": _addresses(3)[i:i + 1], "watch": False})
        _, body, headers = await api.call("POST", "/v1/subscriptions", key=keys["quota-b"], expect=429,
                                          json={"delivery": "stream", "addresses": _addresses(1), "watch": False})
        assert "Retry-After" in headers and "subscriptions" in body["detail"]
        await api.call("POST", "/v1/subscriptions", key=keys["quota-a"], expect=201,
                       json={"delivery": "stream", "addresses": _addresses(1), "watch": False})


async def test_rate_limit_is_shared_by_api_processes(db: Database, keys: dict[str, str]) -> None:
    """Two servers (each with its own limiter) on one database: the key's burst is spent once."""
    settings = Settings(rate_limit=0.5, rate_limit_burst=4)
    async with running_api(db, settings=settings) as one, running_api(db, settings=settings) as two:
        statuses = []
        for i in range(8):
            api: Api = (one, two)[i % 2]
            status, _, headers = await api.call("GET", "/v1/traces?limit=1", key=keys["rate"])
            statuses.append(status)
            if status == 429:
                assert int(headers["Retry-After"]) >= 1
        assert statuses == [200] * 4 + [429] * 4, statuses
        await api.call("GET", "/v1/traces?limit=1", key=keys["quota-a"], expect=200)  # another key's bucket
    assert await db.pool.fetchval("SELECT count(*) FROM api_rate_buckets") == 2
    async with db.pool.acquire() as conn:
        await ownership.prune_buckets(conn, 3600)
        assert await conn.fetchval("SELECT count(*) FROM api_rate_buckets") == 2  # recent: kept
        await ownership.prune_buckets(conn, 0)
        assert await conn.fetchval("SELECT count(*) FROM api_rate_buckets") == 0


async def test_slow_header_connections_are_closed(db: Database) -> None:
    async with running_api(db, settings=Settings(header_timeout=1.0)) as api:
        host, port = api.base.removeprefix("http://").split(":")
        conns = [await asyncio.open_connection(host, int(port)) for _ in range(50)]
        for _, writer in conns:
            writer.write(b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")  # never finished
            await writer.drain()
        started = time.monotonic()
        closed = await asyncio.gather(*(asyncio.wait_for(reader.read(), 10) for reader, _ in conns))
        assert all(c == b"" for c in closed)  # closed by the server, nothing answered
        assert time.monotonic() - started < 5
        for _, writer in conns:
            writer.close()
        await api.call("GET", "/v1/health")  # the server itself is fine


async def test_a_search_whose_client_left_is_killed() -> None:
    hops = [{"from_addr": "0x" + "01" * 20, "to_addr": "0x" + "02" * 20, "asset": "native", "amount": 1,
             "tx_hash": "0x" + "00" * 32, "block_number": 1, "transfer_id": 1}]
    with pytest.raises(pathsearch.PathSearchAbandoned):
        await pathsearch.search(hops, ["0x" + "01" * 20], "0x" + "02" * 20, 5, "ethereum", budget=30,
                                gone=lambda: True)
    assert not [p for p in multiprocessing.active_children() if p.name == "tracer-paths"]
