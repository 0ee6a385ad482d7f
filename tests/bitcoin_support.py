"""Helpers for the Bitcoin end-to-end tests: the devchain's Esplora server over a generated
history, a mainnet EsploraChain reading it, and a running API with that chain and the history's
labels (tests/api_support.py).

The FIFO story's module fixtures ("story" and "api") live here too: a test module imports them
by name to use them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import pytest_asyncio

from tests.api_support import Api, running_api
from tests.fixtures_db import temporary_database
from tracer.api.context import Settings
from tracer.chains.bitcoin import EsploraChain
from tracer.demo import load_scenario_labels
from tracer.devchain.bitcoin.records import BitcoinScenario
from tracer.devchain.bitcoin_fifo import FifoTruth, fifo_story
from tracer.devchain.esplora import EsploraServer
from tracer.store.db import Database

#: What the Bitcoin API tests run with: two embedded workers, a short lease.
SETTINGS = Settings(workers=2, worker_lease_seconds=10.0)


@asynccontextmanager
async def running_esplora(scenario: BitcoinScenario, **options: Any) -> AsyncIterator[EsploraServer]:
    """EsploraServer(scenario, **options) listening on 127.0.0.1."""
    server = EsploraServer(scenario, **options)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@asynccontextmanager
async def esplora_client(url: str, page_size: int = 25) -> AsyncIterator[EsploraChain]:
    """A connected mainnet EsploraChain on `url`, expecting address pages of `page_size` (the
    server's: a client expecting longer pages takes a short one for the last and stops paging)."""
    client = EsploraChain(url, network="mainnet", page_size=page_size)
    try:
        await client.connect()
        yield client
    finally:
        await client.close()


@asynccontextmanager
async def own_database(pg_server_url: str, migrated_template: str) -> AsyncIterator[Database]:
    """A database of its own, for a history whose heights hold other blocks than the module's."""
    async with temporary_database(pg_server_url, template=migrated_template) as url:
        db = await Database.connect(url)
        try:
            yield db
        finally:
            await db.close()


@asynccontextmanager
async def bitcoin_api(db: Database, esplora: EsploraServer, scenario: BitcoinScenario,
                      settings: Settings = SETTINGS) -> AsyncIterator[Api]:
    """The API (with its workers) on `db`, reading `esplora` as chain "bitcoin", the labels of
    `scenario` loaded."""
    async with esplora_client(esplora.url, esplora.page_size) as client:
        await load_scenario_labels(db.pool, scenario)  # type: ignore[arg-type]  # duck-typed: chain + labels
        async with running_api(db, {"bitcoin": client}, settings) as api:
            yield api


@pytest.fixture(scope="module", name="story")
def fifo_story_fixture() -> tuple[BitcoinScenario, FifoTruth]:
    return fifo_story()


@pytest_asyncio.fixture(scope="module", loop_scope="session", name="api")
async def fifo_api_fixture(db: Database, story: tuple[BitcoinScenario, FifoTruth]) -> AsyncIterator[Api]:
    """The API over the FIFO story's Esplora server, its labels loaded."""
    scenario, _ = story
    async with running_esplora(scenario) as server, bitcoin_api(db, server, scenario) as a:
        yield a
