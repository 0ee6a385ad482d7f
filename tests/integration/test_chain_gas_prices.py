"""EvmChain.gas_prices over a real devchain (JSON-RPC over HTTP): batched eth_getTransactionByHash.

The mixer linker's unusual-gas-price heuristic reads these prices (the worker finds the method
through the GasPriceSource protocol). Prices are compared with the generator's own transactions,
whose launderers set odd gas prices by hand; the request counts show one batch per call and none
for prices already known. A second, real HTTP node in front of the devchain answers the way other
clients do (effectiveGasPrice instead of gasPrice, error objects, unknown transactions).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from tests.fixtures_chain import DevChainFactory, serving
from tracer.chains.evm import EvmChain
from tracer.chains.protocols import GasPriceSource
from tracer.chains.retry import RetryPolicy, TransportOptions
from tracer.devchain.chain import Chain
from tracer.devchain.scenario import Scenario, ScenarioParams, generate
from tracer.devchain.server import FaultPlan

pytestmark = pytest.mark.asyncio(loop_scope="session")

UNKNOWN = "0x" + "ab" * 32


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    # services=True: mixer pools whose laundering withdrawals use hand-set, unusual gas prices.
    return generate(ScenarioParams.for_size(800, seed=3, services=True))


def _expected(chain: Chain) -> dict[str, int]:
    return {chain.tx_hash[tid]: tx.gas_price for tid, tx in enumerate(chain.txs)}


@pytest_asyncio.fixture(loop_scope="session")
async def client(scenario: Scenario, devchain_factory: DevChainFactory) -> AsyncIterator[tuple[EvmChain, Chain]]:
    node = await devchain_factory(scenario)
    c = EvmChain(node.url, chain=scenario.chain, expected_chain_id=scenario.chain_id, batch_size=50)
    await c.connect()
    try:
        yield c, node.chain
    finally:
        await c.close()


async def test_prices_match_the_chain_in_batches(client: tuple[EvmChain, Chain]) -> None:
    c, chain = client
    assert isinstance(c, GasPriceSource)  # what the worker checks before asking
    expected = _expected(chain)
    assert len(set(expected.values())) > 3 and any(p % 10**8 for p in expected.values())  # odd ones exist
    hashes = list(expected)[:230]
    before = dict(c.request_counts)
    # Mixed case and repeats come back once, lowercase; an unknown transaction is left out.
    got = await c.gas_prices([h.upper().replace("0X", "0x") for h in hashes] + hashes[:5] + [UNKNOWN])
    assert got == {h: expected[h] for h in hashes}
    asked = c.request_counts["eth_getTransactionByHash"] - before.get("eth_getTransactionByHash", 0)
    posts = c.request_counts["http"] - before.get("http", 0)
    assert asked == len(hashes) + 1
    assert posts == 5  # 231 lookups in batches of 50
    # Known prices never go back to the node; only the unknown transaction is asked again.
    again = await c.gas_prices([*hashes[:100], UNKNOWN])
    assert again == {h: expected[h] for h in hashes[:100]}
    assert c.request_counts["eth_getTransactionByHash"] - before.get("eth_getTransactionByHash", 0) == asked + 1
    assert await c.gas_prices([]) == {}


async def test_a_laundering_note_shows_its_shared_hand_set_gas_price(
    client: tuple[EvmChain, Chain], scenario: Scenario
) -> None:
    # The generator's gas-price clue: deposit and withdrawal sent with one unusual price.
    c, chain = client
    clues = [m for m in scenario.truth.mixer_links if m.clue == "gas_price"]
    assert clues
    for m in clues:
        [dep] = [chain.tx_hash[t] for t, tx in enumerate(chain.txs)
                 if tx.sender == m.depositor and tx.to == m.pool and chain.tx_block[t] == m.deposit_block]
        [wd] = [chain.tx_hash[t] for t, tx in enumerate(chain.txs)
                if tx.sender == m.recipient and tx.to == m.pool and chain.tx_block[t] == m.withdrawal_block]
        got = await c.gas_prices([dep, wd])
        assert got[dep] == got[wd] and got[dep] % 10**9  # shared, and not a whole gwei


async def test_shuffled_and_partial_batches_keep_each_price_on_its_transaction(
    scenario: Scenario, devchain_factory: DevChainFactory
) -> None:
    node = await devchain_factory(scenario, faults=FaultPlan(seed=4, shuffle_batch=0.5, partial_batch=0.3))
    c = EvmChain(node.url, chain=scenario.chain, expected_chain_id=scenario.chain_id, batch_size=40,
                 transport=TransportOptions(policy=RetryPolicy(backoff=0.01)))
    await c.connect()
    try:
        expected = _expected(node.chain)
        hashes = list(expected)[-300:]
        assert await c.gas_prices(hashes) == {h: expected[h] for h in hashes}
    finally:
        await c.close()


@pytest_asyncio.fixture(loop_scope="session")
async def other_node(scenario: Scenario, devchain_factory: DevChainFactory) -> AsyncIterator[tuple[str, Chain]]:
    """A JSON-RPC node in front of the devchain that answers eth_getTransactionByHash like other
    clients may: every third transaction with effectiveGasPrice only, every fifth with an error
    object; everything else passes through untouched."""
    upstream = await devchain_factory(scenario)
    session = aiohttp.ClientSession()
    errors: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        body = await request.json()
        async with session.post(upstream.url, json=body) as r:
            answer = await r.json()
        if isinstance(body, list):
            by_id = {m["id"]: m for m in body}
            for a in answer:
                m = by_id[a["id"]]
                if m["method"] != "eth_getTransactionByHash" or not a.get("result"):
                    continue
                tid = upstream.chain.tx_by_hash[m["params"][0].lower()]
                if tid % 5 == 0:
                    errors.append(m["params"][0])
                    del a["result"]
                    a["error"] = {"code": -32000, "message": "transaction indexing in progress"}
                elif tid % 3 == 0:
                    a["result"]["effectiveGasPrice"] = a["result"].pop("gasPrice")
        return web.Response(text=json.dumps(answer), content_type="application/json")

    try:
        async with serving(handle) as url:
            yield url, upstream.chain
    finally:
        await session.close()


async def test_effective_gas_price_and_error_answers(other_node: tuple[str, Chain], scenario: Scenario) -> None:
    url, chain = other_node
    c = EvmChain(url, chain=scenario.chain, expected_chain_id=scenario.chain_id)
    await c.connect()
    try:
        expected = _expected(chain)
        hashes = list(expected)[:150]
        got = await c.gas_prices(hashes)
        answered = {h: p for h, p in expected.items() if h in hashes and chain.tx_by_hash[h] % 5}
        assert got == answered  # effectiveGasPrice read; errors left out, not raised
        assert any(chain.tx_by_hash[h] % 3 == 0 for h in got)
        # An error is not cached as a price: asked again next time.
        refused = [h for h in hashes if chain.tx_by_hash[h] % 5 == 0]
        before = c.request_counts["eth_getTransactionByHash"]
        again = await c.gas_prices(refused + hashes[:10])
        assert again == {h: expected[h] for h in hashes[:10] if chain.tx_by_hash[h] % 5}
        assert c.request_counts["eth_getTransactionByHash"] - before == len(refused)
    finally:
        await c.close()
