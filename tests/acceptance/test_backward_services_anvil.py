"""Backward traces through a swap and mixers on Anvil: the generated case with services executed as
real transactions (a Uniswap-V2-like pair, Tornado-like pools) on a real EVM node, traced forward,
then walked back from the off-ramps reached only through the swap or the mixers (the checks of
tests/integration/test_backward_services.py: the thieves with the forward amounts)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.anvil_support import anvil_node
from tests.integration.test_backward_services import check_mixers, check_swap, trace_forward
from tracer.chains.evm import EvmChain
from tracer.devchain.anvil.executor import execute_scenario
from tracer.devchain.scenario import Scenario, ScenarioParams, generate
from tracer.store.db import Database

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return generate(ScenarioParams.for_size(1000, seed=11, services=True))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client(scenario: Scenario) -> AsyncIterator[EvmChain]:
    async with anvil_node(chain_id=scenario.chain_id, mode="archive", timestamp=scenario.genesis_time) as node:
        run = await execute_scenario(node.url, scenario)
        assert run.mismatches == []
        c = EvmChain(node.url, chain=scenario.chain, expected_chain_id=scenario.chain_id)
        await c.connect()
        yield c
        await c.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def forward(db: Database, client: EvmChain, scenario: Scenario) -> int:
    return await trace_forward(db, client, scenario)


async def test_backward_through_the_swap_on_anvil(db: Database, client: EvmChain, scenario: Scenario,
                                                  forward: int) -> None:
    await check_swap(db, client, scenario, forward)


async def test_backward_through_mixers_on_anvil(db: Database, client: EvmChain, scenario: Scenario,
                                                forward: int) -> None:
    # The executor tops a withdrawal's recipient up for gas with anvil_setBalance, no transfer: the
    # forward trace counts it as clean money in the recipient's balance at its first flagged inflow,
    # the walk back (balances at the window's start, then transfers) cannot see it: 0.11% here.
    gap = await check_mixers(db, client, scenario, forward, out_of_band=0.005)
    print("mixers on anvil: max gap", gap)
