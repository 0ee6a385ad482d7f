"""What the backward-trace tests share: the forward trace whose exits a backward trace must agree
with (default labels of the scenario, every share followed, deep enough for the whole story)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from tracer.chains.evm import EvmChain
from tracer.demo import load_scenario_labels
from tracer.devchain.scenario import Scenario
from tracer.engine.service import create_trace
from tracer.runner import run_with_workers
from tracer.store.db import Database

FORWARD_POLICY = {"min_share": 0, "max_depth": 60}


async def forward_trace(db: Database, client: EvmChain, scenario: Scenario, label: str = "forward") -> int:
    """The scenario's labels loaded and its forward trace run to the end (two workers); its id."""
    await load_scenario_labels(db.pool, scenario)
    tid = await create_trace(db.pool, client, chain=scenario.chain, seeds=scenario.seeds,
                             policy=dict(FORWARD_POLICY), label=label)
    assert await run_with_workers(db.pool, {scenario.chain: client}, tid, workers=2, progress=False) == "done"
    return tid


@asynccontextmanager
async def devchain_client(devchain_factory: Any, scenario: Scenario) -> AsyncIterator[EvmChain]:
    """A connected client of a devchain serving `scenario`."""
    server = await devchain_factory(scenario)
    c = EvmChain(server.url, chain=scenario.chain, expected_chain_id=scenario.chain_id)
    await c.connect()
    try:
        yield c
    finally:
        await c.close()
