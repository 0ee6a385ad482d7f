"""web3 guards its HTTP session cache with one threading.Lock for the whole process; a task
cancelled while waiting for it can leave it held for good (seen as a hung test: every later
EvmChain.connect() waited forever). Our clients must not depend on it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from web3._utils.http_session_manager import HTTPSessionManager

from tracer.chains.evm import EvmChain
from tracer.devchain.scenario import ScenarioParams, generate
from tracer.domain.transfers import TransferQuery

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_a_leaked_web3_session_lock_does_not_hang_our_clients(devchain_factory: Any) -> None:
    scenario = generate(ScenarioParams.for_size(200, seed=3))
    server = await devchain_factory(scenario)
    shared = HTTPSessionManager._lock
    assert shared.acquire(timeout=5), "another test holds web3's lock"
    try:
        client = EvmChain(server.url, chain=scenario.chain, expected_chain_id=scenario.chain_id)
        try:
            await asyncio.wait_for(client.connect(), 30)
            assert await asyncio.wait_for(client.head(), 30) >= 0
            asked = TransferQuery(scenario.seeds, 0, await client.head())
            transfers = await asyncio.wait_for(client.transfers(asked), 60)
            assert transfers
        finally:
            await client.close()
    finally:
        shared.release()
