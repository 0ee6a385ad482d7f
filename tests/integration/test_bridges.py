"""Bridges: destinations decoded from each protocol's deposit event, and a trace that reports a
THORChain router deposit as a cross-chain exit with the memo's destination.

The tests that need nothing outside the process are in tests/unit/test_bridges.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tracer.chains.evm import EvmChain
from tracer.demo import load_scenario_labels
from tracer.devchain.scenario import Scenario, ScenarioParams, generate
from tracer.domain.transfers import NATIVE
from tracer.engine import report as treport
from tracer.engine.service import create_trace
from tracer.runner import run_with_workers
from tracer.store.db import Database

# -- end to end ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return generate(ScenarioParams.for_size(3000, seed=11, services=True))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def traced(db: Database, scenario: Scenario, devchain_factory: Any) -> AsyncIterator[treport.Report]:
    server = await devchain_factory(scenario)
    client = EvmChain(server.url, chain=scenario.chain, expected_chain_id=scenario.chain_id)
    await client.connect()
    await load_scenario_labels(db.pool, scenario)
    trace_id = await create_trace(db.pool, client, chain=scenario.chain, seeds=scenario.seeds, policy={})
    # An "avalanche" client is configured: destinations there are marked as followable.
    chains = {scenario.chain: client, "avalanche": client}
    assert await run_with_workers(db.pool, chains, trace_id, workers=2, progress=False) == "done"
    yield await treport.build(db.pool, trace_id)
    await client.close()


@pytest.mark.asyncio(loop_scope="session")
async def test_bridge_deposits_are_cross_chain_exits_with_their_destination(
    scenario: Scenario, traced: treport.Report
) -> None:
    assert len(scenario.truth.bridges) >= 2
    router = scenario.truth.bridges[0].router
    [exit_] = [e for e in traced.exits if e.address == router and e.asset == NATIVE]
    assert (exit_.category, exit_.reason, exit_.entity) == ("bridge", "bridge", "THORChain Router")
    # Every flagged wei the truth says entered the router is reported there.
    [want] = [x for x in scenario.truth.other_exits if x.address == router and x.asset == NATIVE]
    assert abs(exit_.amount - want.amount) <= want.amount * 0.001
    assert exit_.evidence is not None and exit_.evidence["cross_chain"] is True
    destinations = {(d["from"], d["chain"], d["address"]): d for d in exit_.evidence["destinations"]}
    for b in scenario.truth.bridges:
        d = destinations[(b.sender, b.dest_chain, b.dest_address)]
        assert (d["protocol"], d["memo"], int(d["amount"])) == ("THORChain", b.memo, b.amount)
        follow = d["continue"]
        if b.dest_chain == "avalanche":
            assert follow["possible"] is True and follow["address"] == b.dest_address
        else:
            assert follow["possible"] is False and follow["note"]
    # The bridged money is not followed on this chain past the router.
    assert router not in {s["address"] for s in traced.stops}


