"""Result-size refusals of the big providers, handled as they ask: a refused eth_getLogs or
trace_filter is cut where the node suggests, or to the span it states, or split; HTTP 413 halves
batches and address lists.

No local client produces these refusals (they come from Infura, Alchemy, QuickNode and Reth's
result cap), so a scripted node serves them: it stands in front of a devchain, refuses the
queries its rule says are too big with the provider's own error shape, and passes every other
request to the devchain. Each test compares with the same read straight from the devchain.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web

from tests.fixtures_chain import DevChainFactory, RunningDevChain, serving
from tracer.chains.errors import RpcError
from tracer.chains.evm import EvmChain
from tracer.chains.limits import is_result_cap, span_limit, suggested_range
from tracer.devchain.scenario import Scenario
from tracer.domain.transfers import TransferQuery

pytestmark = pytest.mark.asyncio(loop_scope="session")

Rule = Callable[[str, list[Any]], "dict[str, Any] | None"]  # an error object, or None to pass through


def _span(params: list[Any]) -> tuple[int, int]:
    flt = params[0]
    return int(flt["fromBlock"], 16), int(flt["toBlock"], 16)


class Scripted:
    """A node that refuses what `rule` says and forwards the rest to a devchain."""

    def __init__(self, node: RunningDevChain, rule: Rule, *, too_large: Callable[[Any], bool] | None = None) -> None:
        self.node = node
        self.rule = rule
        self.too_large = too_large
        self.refused: list[tuple[str, list[Any]]] = []
        self.asked: list[tuple[str, list[Any]]] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = json.loads(await request.read())
        if self.too_large is not None and self.too_large(body):
            return web.Response(status=413, text="<html><body>413 Request Entity Too Large</body></html>",
                                content_type="text/html")
        members = body if isinstance(body, list) else [body]
        answers = []
        for req in members:
            self.asked.append((req["method"], req["params"]))
            error = self.rule(req["method"], req["params"])
            if error is not None:
                self.refused.append((req["method"], req["params"]))
                answers.append({"jsonrpc": "2.0", "id": req["id"], "error": error})
            else:
                answers.append(self.node.server.handle_request(req))
        return web.json_response(answers if isinstance(body, list) else answers[0])


async def _both(node: RunningDevChain, scripted: Scripted, scenario: Scenario, read: Any, **options: Any) -> Any:
    plain = EvmChain(node.url, chain=scenario.chain, **options)
    await plain.connect()
    try:
        expected = await read(plain)
    finally:
        await plain.close()
    async with serving(scripted.handle) as url:
        client = EvmChain(url, chain=scenario.chain, **options)
        await client.connect()
        try:
            got = await read(client)
        finally:
            await client.close()
    assert got == expected
    return client


def _wallets(node: RunningDevChain) -> list[str]:
    return sorted({tx.sender for tx in node.chain.txs})[:60]


async def test_infura_suggested_range_is_used(devchain_factory: DevChainFactory, small_scenario: Scenario) -> None:
    """Infura: -32005 "query returned more than 10000 results" with data {from, to}: the query is cut
    at the suggested end, not halved blindly."""
    node = await devchain_factory()
    limit = 40

    def rule(method: str, params: list[Any]) -> dict[str, Any] | None:
        if method != "eth_getLogs":
            return None
        lo, hi = _span(params)
        if hi - lo + 1 <= limit:
            return None
        return {"code": -32005, "message": "query returned more than 10000 results",
                "data": {"from": hex(lo), "to": hex(lo + limit - 1), "limit": 10000}}

    scripted = Scripted(node, rule)
    head = node.chain.head
    wallets = _wallets(node)
    await _both(node, scripted, small_scenario,
                lambda c: c.transfers(TransferQuery(wallets, 0, head, outgoing=True, incoming=True)),
                use_trace_filter=False)
    assert scripted.refused
    # Every refusal was followed by a query over exactly the suggested range.
    for method, params in scripted.refused:
        lo, _ = _span(params)
        assert any(m == method and _span(p) == (lo, lo + limit - 1) for m, p in scripted.asked), (lo, limit)


async def test_reth_max_results_range_is_used_for_trace_filter(devchain_factory: DevChainFactory,
                                                               small_scenario: Scenario) -> None:
    """Reth: -32602 "query exceeds max results 20000, retry with the range A-B" on trace_filter."""
    node = await devchain_factory()
    limit = 25

    def rule(method: str, params: list[Any]) -> dict[str, Any] | None:
        if method != "trace_filter":
            return None
        lo, hi = _span(params)
        if hi - lo + 1 <= limit or lo == hi:
            return None
        retry = f"retry with the range {lo}-{lo + limit - 1}"
        return {"code": -32602, "message": f"query exceeds max results 20000, {retry}"}

    scripted = Scripted(node, rule)
    head = node.chain.head
    wallets = _wallets(node)
    await _both(node, scripted, small_scenario,
                lambda c: c.transfers(TransferQuery(wallets, 0, head, outgoing=True, incoming=True)))
    assert scripted.refused
    for _, params in scripted.refused:
        lo, _ = _span(params)
        assert any(m == "trace_filter" and _span(p) == (lo, lo + limit - 1) for m, p in scripted.asked), lo


async def test_stated_span_cap_is_learnt(devchain_factory: DevChainFactory, small_scenario: Scenario) -> None:
    """QuickNode-style "eth_getLogs is limited to a 10,000 range" (code -32602): later queries are
    cut to the span up front, so the cap is met once, not once per query."""
    node = await devchain_factory()
    span = 30

    def rule(method: str, params: list[Any]) -> dict[str, Any] | None:
        if method != "eth_getLogs":
            return None
        lo, hi = _span(params)
        return None if hi - lo + 1 <= span else {
            "code": -32602, "message": f"eth_getLogs is limited to a {span:,} range"}

    scripted = Scripted(node, rule)
    head = node.chain.head
    wallets = _wallets(node)
    client = await _both(node, scripted, small_scenario,
                         lambda c: c.transfers(TransferQuery(wallets, 0, head, outgoing=True, incoming=True)),
                         use_trace_filter=False)
    assert client.max_log_range == span
    # One refusal per direction's first query; none after the span was learnt.
    assert 1 <= len(scripted.refused) <= 2


async def test_http_413_halves_batches_and_address_lists(devchain_factory: DevChainFactory,
                                                         small_scenario: Scenario) -> None:
    """HTTP 413 (a proxy's body-size limit, with an HTML body): batches are re-sent in halves and a
    single request with too many addresses is split by its address list."""
    node = await devchain_factory()
    limit = 6_000  # bytes of request body

    def too_large(body: Any) -> bool:
        return len(json.dumps(body)) > limit

    scripted = Scripted(node, lambda m, p: None, too_large=too_large)
    head = node.chain.head
    wallets = _wallets(node)
    await _both(node, scripted, small_scenario,
                lambda c: c.transfers(TransferQuery(wallets, 0, head, outgoing=True, incoming=True)), batch_size=50)
    assert scripted.asked
    assert all(len(json.dumps(p)) < limit for _, p in scripted.asked)


async def test_refusal_messages_read() -> None:
    alchemy = RpcError("eth_getLogs", -32602, (
        "Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range and no limit on "
        "the response size, or you can request any block range with a cap of 10K logs in the response. Based on "
        "your parameters, this block range should work: [0x10c8e40, 0x10c9c61]"))
    assert is_result_cap(alchemy) and suggested_range(alchemy) == (0x10C8E40, 0x10C9C61)
    infura = RpcError("eth_getLogs", -32005, "query returned more than 10000 results",
                      {"from": "0x1", "to": "0x2a", "limit": 10000})
    assert is_result_cap(infura) and suggested_range(infura) == (1, 42)
    reth = RpcError("trace_filter", -32602, "query exceeds max results 20000, retry with the range 100-200")
    assert is_result_cap(reth) and suggested_range(reth) == (100, 200)
    quicknode = RpcError("eth_getLogs", -32602, "eth_getLogs is limited to a 10,000 range")
    assert is_result_cap(quicknode) and span_limit(quicknode) == 10_000
    assert span_limit(RpcError("eth_getLogs", -32000, "exceed maximum block range: 5000")) == 5000
    assert is_result_cap(RpcError("eth_getLogs", 413, "HTTP 413 payload too large"))
    assert not is_result_cap(RpcError("eth_getLogs", -32000, "invalid params"))
    assert suggested_range(RpcError("eth_getLogs", -32000, "block range too large")) is None
