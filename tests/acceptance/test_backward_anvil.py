"""Source of funds on Anvil: the generated laundering case executed as real transactions on a real
EVM node, traced forward by real workers, then walked backward from its deposit addresses (the
same checks as tests/integration/test_backward.py: the thieves' wallets with the forward trace's amounts, and
the stolen share of a deposit address that received clean money too, through /v1/screen)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.anvil_support import anvil_node
from tests.backward_support import forward_trace
from tests.integration.test_backward import check_backward, check_screen
from tests.integration.test_backward_trace import check_stored_backward
from tracer.chains.evm import EvmChain
from tracer.devchain.anvil.executor import execute_scenario
from tracer.devchain.scenario import Scenario
from tracer.store.db import Database

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client(small_scenario: Scenario) -> AsyncIterator[EvmChain]:
    async with anvil_node(chain_id=small_scenario.chain_id, mode="archive",
                          timestamp=small_scenario.genesis_time) as node:
        run = await execute_scenario(node.url, small_scenario)
        assert run.mismatches == []
        c = EvmChain(node.url, chain=small_scenario.chain, expected_chain_id=small_scenario.chain_id)
        await c.connect()
        yield c
        await c.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def forward(db: Database, client: EvmChain, small_scenario: Scenario) -> int:
    return await forward_trace(db, client, small_scenario, "forward on anvil")


async def test_backward_on_anvil_agrees_with_the_forward_trace(db: Database, client: EvmChain,
                                                               small_scenario: Scenario, forward: int) -> None:
    await check_backward(db, client, small_scenario, forward)


async def test_a_stored_backward_trace_on_anvil_agrees_with_the_forward_trace(
        db: Database, client: EvmChain, small_scenario: Scenario, forward: int) -> None:
    """POST /v1/traces direction backward, run by the API's workers against the Anvil node."""
    figures = await check_stored_backward(db, client, small_scenario, forward)
    print("backward vs forward on anvil:", figures)


async def test_screen_on_anvil_reports_the_stolen_share(db: Database, client: EvmChain,
                                                        small_scenario: Scenario, forward: int) -> None:
    await check_screen(db, client, small_scenario, forward)
