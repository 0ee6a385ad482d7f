"""The API against a real primary and streaming replica (issue 22 item 4, TRACER_READ_DATABASE_URL).

tests/integration/test_api.py's suite runs here unchanged, with the app's read endpoints on the replica (a hot
standby made by pg_basebackup, tests/pg_replica.py) and everything else on the primary. Then
read-your-writes: with the replica's replay paused, a trace just created is still found (read
from the primary), and reads return to the replica once it has caught up.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from tests import pg_replica
from tests.api_support import Api, running_api
from tests.integration.test_api import (  # noqa: F401  (the suite and its fixtures, run against the pair)
    chain,
    scenario,
    test_address_view_labels_sanctions_traces_and_exposure,
    test_amounts_are_never_floats,
    test_cursors_are_signed_and_bound_to_their_query,
    test_exits_match_the_engine_report_and_the_ground_truth,
    test_graph_exports_hold_every_hop,
    test_health_and_metrics,
    test_hop_filters_agree_with_filtering_everything,
    test_hop_pages_cover_every_hop_exactly_once_in_order,
    test_paths_lead_from_a_seed_to_the_biggest_exit,
    test_trace_progress_and_totals,
    trace,
)
from tracer.api.context import CTX, Settings
from tracer.chains.evm import EvmChain
from tracer.demo import load_scenario_labels
from tracer.devchain.scenario import Scenario
from tracer.store.db import Database
from tracer.store.urls import with_database

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[str, str]]:
    assert pg_replica.available(), f"PostgreSQL binaries not found in {pg_replica.BIN}"
    with pg_replica.primary_and_replica() as urls:
        yield urls


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def db(pair: tuple[str, str]) -> AsyncIterator[Database]:
    conn = await asyncpg.connect(pair[0])
    try:
        await conn.execute("CREATE DATABASE tracer")
    finally:
        await conn.close()
    database = await Database.connect(with_database(pair[0], "tracer"), migrate=True)
    try:
        yield database
    finally:
        await database.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def read_db(pair: tuple[str, str], db: Database) -> AsyncIterator[Database]:
    url = with_database(pair[1], "tracer")
    for _ in range(300):  # the new database and its migrations reach the standby by WAL
        try:
            conn = await asyncpg.connect(url)
        except (OSError, asyncpg.PostgresError):
            await asyncio.sleep(0.1)
            continue
        try:
            if await conn.fetchval("SELECT to_regclass('hops') IS NOT NULL"):
                assert await conn.fetchval("SELECT pg_is_in_recovery()")
                break
        finally:
            await conn.close()
        await asyncio.sleep(0.1)
    database = await Database.connect(url, migrate=False)
    try:
        yield database
    finally:
        await database.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def api(db: Database, read_db: Database, chain: EvmChain, scenario: Scenario) -> AsyncIterator[Api]:  # noqa: F811
    await load_scenario_labels(db.pool, scenario)
    settings = Settings(workers=2, worker_lease_seconds=10.0, page_max=500)
    async with running_api(db, {scenario.chain: chain}, settings, read_db=read_db) as a:
        yield a


async def test_reads_went_to_the_replica(api: Api, trace: dict[str, Any]) -> None:  # noqa: F811
    routing = api.app[CTX].reads
    assert routing is not None and routing.replica is not None
    before = routing.reads_on_replica
    _, page, _ = await api.call("GET", f"/v1/traces/{trace['id']}/hops?limit=10", expect=200)
    assert page["items"]
    assert routing.reads_on_replica == before + 1


async def test_read_your_writes_while_the_replica_lags(api: Api, read_db: Database, scenario: Scenario) -> None:  # noqa: F811
    routing = api.app[CTX].reads
    assert routing is not None
    async with read_db.pool.acquire() as conn:
        await conn.execute("SELECT pg_wal_replay_pause()")
    try:
        _, made, _ = await api.call("POST", "/v1/traces", expect=201, json={
            "chain": scenario.chain, "seeds": scenario.seeds[:1], "label": "replica lag"})
        on_primary = routing.reads_on_primary
        # The replica has not replayed the new trace: it would answer 404. The API reads it from
        # the primary instead.
        async with read_db.pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM traces WHERE id = $1", made["id"]) == 0
        _, got, _ = await api.call("GET", f"/v1/traces/{made['id']}", expect=200)
        assert got["id"] == made["id"]
        assert routing.reads_on_primary == on_primary + 1
    finally:
        async with read_db.pool.acquire() as conn:
            await conn.execute("SELECT pg_wal_replay_resume()")
    for _ in range(100):  # caught up: reads go back to the replica
        if await routing.fresh():
            break
        await asyncio.sleep(0.05)
    on_replica = routing.reads_on_replica
    await api.call("GET", f"/v1/traces/{made['id']}", expect=200)
    assert routing.reads_on_replica == on_replica + 1
    await api.wait_done(int(made["id"]))
