"""Both directions of native transfers from one trace_filter per address list (mode "union"), and
the same transfers from a node that ignores the mode (Nethermind-like: it answers the intersection,
rows from one listed address to another) as from one that honours it: the client asks the two
one-sided queries too until an answer proves the mode, and stops asking union of a node whose
one-sided answers hold rows its union answer lacked, or that refuses the field outright (a filter
type that denies unknown fields, as alloy's did before it had `mode`)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import web

from tests.fixtures_chain import DevChainFactory, serving
from tracer.chains.evm import EvmChain
from tracer.devchain.scenario import KIND_BATCH, Scenario, ScenarioParams, generate

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return generate(ScenarioParams.for_size(600, seed=11))


def _addresses(sc: Scenario) -> list[str]:
    out: set[str] = set()
    for _, tx in sc.iter_txs():
        out.add(tx.sender)
        if tx.kind == KIND_BATCH:
            out.add(tx.to)
    return sorted(out)[::3]


async def _read(url: str, sc: Scenario, addresses: list[str]) -> tuple[EvmChain, list[Any]]:
    client = EvmChain(url, chain=sc.chain, expected_chain_id=sc.chain_id, addresses_per_request=40)
    await client.connect()
    try:
        return client, await client.transfers(addresses, 0, sc.head, outgoing=True, incoming=True)
    finally:
        await client.close()


async def test_union_when_honoured_and_one_sided_queries_when_ignored(
    devchain_factory: DevChainFactory, scenario: Scenario
) -> None:
    running = await devchain_factory(scenario)
    addresses = _addresses(scenario)
    chunks = -(-len(addresses) // 40)
    assert chunks > 1

    # The reference: one-sided queries only (what the client asked before union).
    one_sided = EvmChain(running.url, chain=scenario.chain, expected_chain_id=scenario.chain_id,
                         addresses_per_request=40)
    one_sided.trace_union = False
    await one_sided.connect()
    try:
        want = await one_sided.transfers(addresses, 0, scenario.head, outgoing=True, incoming=True)
    finally:
        await one_sided.close()
    assert sum(1 for t in want if t.position.startswith("call:")) > 0

    honoured, got = await _read(running.url, scenario, addresses)
    assert got == want
    assert honoured.trace_union is True
    assert honoured.request_counts["trace_filter"] - 1 == chunks  # one union query per chunk (+ the probe)

    modes: list[Any] = []

    async def ignoring(request: web.Request) -> web.StreamResponse:
        body = json.loads(await request.read())
        answers = []
        for req in body if isinstance(body, list) else [body]:
            if req["method"] == "trace_filter":
                modes.append(req["params"][0].pop("mode", None))  # answered as an intersection
            answers.append(running.server.handle_request(req))
        return web.json_response(answers if isinstance(body, list) else answers[0])

    async with serving(ignoring) as url:
        client = EvmChain(url, chain=scenario.chain, expected_chain_id=scenario.chain_id, addresses_per_request=40)
        await client.connect()
        try:
            assert await client.transfers(addresses, 0, scenario.head, outgoing=True, incoming=True) == want
            assert client.trace_union is False
            modes.clear()
            assert await client.transfers(addresses, 0, scenario.head, outgoing=True, incoming=True) == want
            assert "union" not in modes and len(modes) == 2 * chunks
        finally:
            await client.close()


async def test_a_node_refusing_the_mode_gets_one_sided_queries(
    devchain_factory: DevChainFactory, scenario: Scenario
) -> None:
    running = await devchain_factory(scenario)
    addresses = _addresses(scenario)
    _, want = await _read(running.url, scenario, addresses)

    async def refusing(request: web.Request) -> web.StreamResponse:
        body = json.loads(await request.read())
        answers = []
        for req in body if isinstance(body, list) else [body]:
            if req["method"] == "trace_filter" and "mode" in req["params"][0]:
                answers.append({"jsonrpc": "2.0", "id": req["id"], "error": {
                    "code": -32602, "message": "Invalid params: unknown field `mode`, expected one of `fromBlock`, "
                    "`toBlock`, `fromAddress`, `toAddress`, `after`, `count`"}})
            else:
                answers.append(running.server.handle_request(req))
        return web.json_response(answers if isinstance(body, list) else answers[0])

    async with serving(refusing) as url:
        client, got = await _read(url, scenario, addresses)
    assert got == want
    assert client.trace_union is False
