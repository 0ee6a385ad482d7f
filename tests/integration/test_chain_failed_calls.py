"""Looking for reverted internal calls keeps only a few block traces in memory at once.

A trace_filter answer does not say whether a call's parent reverted, so EvmChain asks trace_block
(or trace_transaction) for every block holding internal transfers whose parent calls the answers
did not hold (here: the busy contract's payouts read without its incoming calls). For a busy wallet
that is thousands of blocks, each answer holding every call of its block: asked all at once they
once took a worker to 1.8 GB. A real HTTP node in front of the devchain counts the trace batches
in flight; the transfers must be the same as from a client talking to the devchain directly.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from tests.fixtures_chain import DevChainFactory, serving
from tracer.chains.evm import EvmChain
from tracer.chains.evm.node import _HEAVY_BATCHES
from tracer.chains.retry import TransportOptions
from tracer.devchain.scenario import KIND_BATCH, Scenario, ScenarioParams, generate
from tracer.domain.transfers import TransferQuery

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return generate(ScenarioParams.for_size(3000, seed=5))


@dataclass
class Counting:
    url: str
    in_flight: int = 0
    most: int = 0
    batches: int = 0


@pytest_asyncio.fixture(loop_scope="session")
async def node(scenario: Scenario, devchain_factory: DevChainFactory) -> AsyncIterator[tuple[Counting, str]]:
    upstream = await devchain_factory(scenario)
    session = aiohttp.ClientSession()
    counting = Counting("")

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        calls = json.loads(body)
        methods = {c["method"] for c in (calls if isinstance(calls, list) else [calls])}
        tracing = bool(methods & {"trace_block", "trace_transaction"})
        if tracing:
            counting.batches += 1
            counting.in_flight += 1
            counting.most = max(counting.most, counting.in_flight)
        try:
            await asyncio.sleep(0.01 if tracing else 0)  # a node's latency, so batches can overlap
            async with session.post(upstream.url, data=body, headers={"Content-Type": "application/json"}) as r:
                return web.Response(body=await r.read(), content_type="application/json")
        finally:
            if tracing:
                counting.in_flight -= 1

    try:
        async with serving(handle) as counting.url:
            yield counting, upstream.url
    finally:
        await session.close()


async def test_few_trace_batches_in_flight_and_the_same_transfers(
    node: tuple[Counting, str], scenario: Scenario
) -> None:
    counting, direct_url = node
    # The batch-payout contract pays out in internal calls, block after block: a busy wallet.
    [busy] = {tx.to for _, tx in scenario.iter_txs() if tx.kind == KIND_BATCH}
    small = EvmChain(counting.url, chain=scenario.chain, expected_chain_id=scenario.chain_id, batch_size=3,
                     transport=TransportOptions(concurrency=8))
    direct = EvmChain(direct_url, chain=scenario.chain, expected_chain_id=scenario.chain_id)
    await small.connect()
    await direct.connect()
    try:
        assert small.supports_trace
        head = await direct.head()
        got = await small.transfers(TransferQuery([busy], 0, head, outgoing=True, incoming=False))
        want = await direct.transfers(TransferQuery([busy], 0, head, outgoing=True, incoming=False))
        assert got == want
        assert sum(1 for t in got if t.position.startswith("call:")) >= 20
        assert counting.batches >= 3 * _HEAVY_BATCHES  # enough batches for the bound to matter
        assert 1 <= counting.most <= _HEAVY_BATCHES
    finally:
        await small.close()
        await direct.close()
