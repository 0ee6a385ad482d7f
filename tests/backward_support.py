"""What the backward-trace tests share: the forward trace whose exits a backward trace must agree
with (default labels of the scenario, every share followed, deep enough for the whole story)."""

from __future__ import annotations

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
