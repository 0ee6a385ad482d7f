"""The Anvil scenario traced on nodes that keep no old state gives the archive node's exits.

The generated laundering case (the same one tests/acceptance/test_anvil_scenario.py traces) is executed as
real transactions on three Anvil nodes: archive-like (every state kept), Anvil's default window
(500 recent states in memory; 600 empty blocks are mined after the case so its blocks fall out of
it, as on a full node some weeks later) and `--prune-history` (only the newest state). Each is
traced through the real API and workers. The default node also keeps 3,600 states on disk; that
node runs with `--max-persisted-states 0`, the same pruning with a shorter window, because mining
past 4,100 blocks took most of this test's time (28 s of it on an idle machine).

On the last two the client's probe finds no old state, the worker derives each prior balance
from history (balance at the head minus the transfers since, plus the fees since), every trace
finishes, says `derived_from_history` and why, passes the demo's truth check, and reaches the
archive trace's exits: the same (address, asset) set, each amount within AMOUNT_TOLERANCE of the
archive's. The tolerance is for the one thing a derivation cannot see here: the executor gives
mixer depositors and withdrawers their gas money with `anvil_setBalance` (no transaction behind
it), so their derived balance is higher than the state by the fee (at most 250,000 gas x the
scenario's gas price, ~0.01 ETH); the measured gap is printed.
"""

from __future__ import annotations

from typing import Any

import pytest
import pytest_asyncio

from tests.anvil_support import AnvilRpc, Mode, anvil_node
from tests.api_support import running_api
from tests.fixtures_db import temporary_database
from tracer.api.context import Settings
from tracer.chains.evm import EvmChain
from tracer.demo import load_scenario_labels
from tracer.devchain.anvil.executor import execute_scenario
from tracer.devchain.scenario import Scenario, ScenarioParams, generate
from tracer.engine import balances
from tracer.store import traces as trace_store
from tracer.store.db import Database
from tracer.truth_check import check_trace

pytestmark = pytest.mark.asyncio(loop_scope="session")

SIZE = 1_500  # the case of tests/acceptance/test_anvil_scenario.py
DEFAULT_IN_MEMORY = 500  # Anvil's default number of recent states kept in memory
# No state written to disk (Anvil's default keeps 3,600 there), so the window is the memory's alone.
PRUNED_ARGS = ["--max-persisted-states", "0"]
AMOUNT_TOLERANCE = 1e-3  # relative, per exit (see the module doc)


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return generate(ScenarioParams.for_size(SIZE, seed=5, services=True))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def archive_exits(scenario: Scenario, pg_server_url: str,
                        migrated_template: str) -> dict[tuple[str, str], int]:
    run = await _run(scenario, "archive", pg_server_url, migrated_template)
    assert run["trace"]["balance_method"] == balances.NODE_STATE
    return run["exits"]


async def _run(scenario: Scenario, mode: Mode, pg_server_url: str, migrated_template: str) -> dict[str, Any]:
    async with anvil_node(chain_id=scenario.chain_id, mode=mode, timestamp=scenario.genesis_time,
                          extra_args=PRUNED_ARGS if mode == "pruned" else None) as node:
        executed = await execute_scenario(node.url, scenario)
        assert executed.mismatches == []
        if mode == "pruned":
            async with AnvilRpc(node.url) as rpc:
                await rpc.call("anvil_mine", hex(DEFAULT_IN_MEMORY + 100))
        client = EvmChain(node.url, chain=scenario.chain, expected_chain_id=scenario.chain_id)
        async with client, temporary_database(pg_server_url, template=migrated_template) as url:
            assert client.historical_state is (mode == "archive"), client.state_probe
            db = await Database.connect(url, migrate=False)
            try:
                await load_scenario_labels(db.pool, scenario)
                async with running_api(db, {scenario.chain: client},
                                       Settings(workers=2, worker_lease_seconds=10.0)) as api:
                    trace = await api.run_trace({"chain": scenario.chain, "seeds": scenario.seeds, "policy": {}},
                                                tries=1800)
                check = await check_trace(db.pool, trace["id"], scenario)
                async with db.pool.acquire() as conn:
                    exits = {(r.address, r.asset): r.amount
                             for r in await trace_store.exits(conn, trace["id"])}
            finally:
                await db.close()
        return {"trace": trace, "check": check, "exits": exits,
                "balance_reads": client.request_counts["eth_getBalance"]}


@pytest.mark.parametrize("mode", ["prune_history", "pruned"])
async def test_pruned_anvil_gives_the_archive_exits(scenario: Scenario, archive_exits: dict[tuple[str, str], int],
                                                    pg_server_url: str, migrated_template: str, mode: Mode) -> None:
    run = await _run(scenario, mode, pg_server_url, migrated_template)
    trace = run["trace"]
    assert trace["status"] == "done", trace
    assert trace["balance_method"] == balances.DERIVED
    assert "BlockOutOfRangeError" in trace["balance_method_reason"], trace["balance_method_reason"]
    assert run["check"].ok, run["check"].render()
    exits = run["exits"]
    assert archive_exits and set(exits) == set(archive_exits)
    gaps = {k: abs(exits[k] - v) / v for k, v in archive_exits.items() if v}
    worst = max(gaps.values())
    print(f"{mode}: {len(exits)} exits, largest relative gap to the archive trace {worst:.2e}, "
          f"{sum(1 for g in gaps.values() if g)} of them not exact")
    assert worst <= AMOUNT_TOLERANCE, sorted(gaps.items(), key=lambda kv: -kv[1])[:5]
