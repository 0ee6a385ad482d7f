"""The generated laundering case executed as real transactions on Anvil (a real EVM node nobody
here wrote), traced through the real API and workers, checked against the scenario's truth with
the demo's check: once through `trace_filter`, once through block scanning +
`debug_traceTransaction` (Anvil has both; the second is forced on the client).

Anvil runs archive-like (every state kept), so the engine reads prior balances at any block.
The executor's own check comes first: every block, transaction order, status and final balance
on the node is the scenario's (amounts exact: gas costs nothing there but for the mixer
transactions, whose gas money is given and taken back around their block).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tests.anvil_support import AnvilNode, anvil_node
from tests.api_support import running_api
from tests.fixtures_db import temporary_database
from tracer.api.context import Settings
from tracer.chains.evm import EvmChain
from tracer.demo import load_scenario_labels
from tracer.devchain.anvil.executor import ExecutionReport, execute_scenario
from tracer.devchain.scenario import Scenario, ScenarioParams, generate
from tracer.store.db import Database
from tracer.truth_check import TruthCheck, check_trace

pytestmark = pytest.mark.asyncio(loop_scope="session")

SIZE = 1_500


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return generate(ScenarioParams.for_size(SIZE, seed=5, services=True))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def anvil(scenario: Scenario) -> AsyncIterator[tuple[AnvilNode, ExecutionReport]]:
    async with anvil_node(chain_id=scenario.chain_id, mode="archive", timestamp=scenario.genesis_time) as node:
        yield node, await execute_scenario(node.url, scenario)


async def test_the_node_holds_the_scenario(anvil: tuple[AnvilNode, ExecutionReport], scenario: Scenario) -> None:
    _, run = anvil
    assert run.mismatches == []
    assert run.blocks == len(scenario.blocks)
    assert run.transactions + run.skipped_failed_transfers == scenario.tx_count


async def _trace(pg_server_url: str, migrated_template: str, client: EvmChain,
                 scenario: Scenario) -> tuple[TruthCheck, dict[str, Any]]:
    # A database per run: Postgres caches transfers by chain and address, and the second path
    # must read the node itself.
    async with temporary_database(pg_server_url, template=migrated_template) as url:
        db = await Database.connect(url, migrate=False)
        try:
            await load_scenario_labels(db.pool, scenario)
            async with running_api(db, {scenario.chain: client}, Settings(workers=2, worker_lease_seconds=10.0)) as api:
                trace = await api.run_trace({"chain": scenario.chain, "seeds": scenario.seeds, "policy": {}},
                                            tries=1200)
            return await check_trace(db.pool, trace["id"], scenario), trace
        finally:
            await db.close()


@pytest.mark.parametrize("path", ["trace_filter", "block-scan+debug_traceTransaction"])
async def test_trace_on_anvil_matches_the_truth(anvil: tuple[AnvilNode, ExecutionReport], scenario: Scenario,
                                                 pg_server_url: str, migrated_template: str, path: str) -> None:
    node, run = anvil
    assert run.mismatches == []
    if path == "trace_filter":
        client = EvmChain(node.url, chain=scenario.chain, expected_chain_id=scenario.chain_id)
    else:
        client = EvmChain(node.url, chain=scenario.chain, expected_chain_id=scenario.chain_id,
                          use_trace_filter=False, debug_method="debug_traceTransaction")
    async with client:
        assert client.path == path
        check, trace = await _trace(pg_server_url, migrated_template, client, scenario)
        calls = dict(client.request_counts)
        # Anvil honours trace_filter mode "union": both directions came from one query per list.
        assert client.trace_union is (True if path == "trace_filter" else None)
    assert trace["status"] == "done", trace
    used = {m for m in calls if m.startswith(("trace_", "debug_"))}
    if path == "trace_filter":  # (trace_block / trace_transaction: reverts of parent calls)
        assert "trace_filter" in used and not {m for m in used if m.startswith("debug_")}, calls
    else:
        assert used == {"debug_traceTransaction"}, calls
    # The demo's check: the exact off-ramp set (those behind the mixer and the swap included),
    # amounts within its tolerance, every laundering mixer note linked to its own withdrawal,
    # every swap followed, every bridge destination decoded.
    assert check.ok, check.render()
    assert all(check.counts[k][1] > 0 for k in ("exits", "mixer_notes", "swaps", "bridge_destinations")), check.counts
    assert scenario.truth.through_offramps
