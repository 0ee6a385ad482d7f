"""Quirks of a real EVM client (Anvil 1.7.1), each met by the chain layer, on a live node:

- `trace_filter` refuses block tags ("latest" as toBlock): the client sends hex numbers only;
- `trace_filter` pages with after/count: a page size of 2 still finds every transfer;
- `eth_getBlockReceipts` present (Anvil) or not (a proxy that answers -32601 for it, as older
  nodes do): probed at connect, per-transaction receipts otherwise, the same fees either way;
- logs carrying `blockTimestamp` (Anvil, newer Geth and Reth): token transfers get their block
  time with no header request; through a proxy that strips the field, headers are read instead.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.anvil_support import AnvilRpc, anvil_node
from tests.fixtures_chain import serving
from tracer.chains.evm import EvmChain
from tracer.chains.evm.mappers import TRANSFER_TOPIC
from tracer.devchain.anvil import artifacts as art
from tracer.domain.transfers import NATIVE, TransferQuery

pytestmark = pytest.mark.asyncio(loop_scope="session")

GWEI = 10**9
START = 1_700_000_000
FUNDER = "0x" + "f0" * 20
PAYER = "0x" + "9a" * 20
PAYEE = "0x" + "9b" * 20
TOKEN_ONLY = "0x" + "70" * 20


@pytest.fixture(scope="module")
async def node() -> AsyncIterator[tuple[str, str]]:
    """An Anvil node with 5 payments from PAYER (two of them in one block) and tokens to TOKEN_ONLY."""
    async with anvil_node(mode="archive", timestamp=START) as anvil, AnvilRpc(anvil.url) as rpc:
        coin = art.artifact(art.STABLECOIN)
        await rpc.call("anvil_setBalance", FUNDER, hex(10**21))
        await rpc.call("anvil_setBalance", PAYER, hex(10**21))
        made = await rpc.call("eth_sendTransaction", {"from": FUNDER, "data": coin.bytecode,
                                                      "gas": hex(3_000_000), "gasPrice": "0x0"})
        await rpc.call("evm_mine")
        token = (await rpc.call("eth_getTransactionReceipt", made))["contractAddress"]
        for data in (coin.call_data("initialize", "Tether USD", "USDT", 6), coin.call_data("mint", [FUNDER], [10**12])):
            await rpc.call("eth_sendTransaction", {"from": FUNDER, "to": token, "data": data, "gas": hex(500_000),
                                                   "gasPrice": "0x0"})
        await rpc.call("evm_mine")
        for i in range(4):
            for _ in range(2 if i == 1 else 1):
                await rpc.call("eth_sendTransaction", {"from": PAYER, "to": PAYEE, "value": hex(10**18 + i),
                                                       "gasPrice": hex((i + 1) * GWEI)})
            await rpc.call("eth_sendTransaction", {"from": FUNDER, "to": token, "gas": hex(500_000), "gasPrice": "0x0",
                                                   "data": coin.call_data("transfer", TOKEN_ONLY, 1_000 + i)})
            await rpc.call("evm_setNextBlockTimestamp", hex(START + 100 * (i + 1)))
            await rpc.call("evm_mine")
        yield anvil.url, token.lower()


@contextlib.asynccontextmanager
async def _proxy(url: str, change: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]) -> AsyncIterator[str]:
    """A node that forwards to Anvil, each answer member passed through `change(request, answer)`."""
    async with aiohttp.ClientSession() as session:

        async def handle(request: web.Request) -> web.StreamResponse:
            body = json.loads(await request.read())
            async with session.post(url, json=body) as r:
                answer = await r.json(content_type=None)
            if isinstance(body, list):
                by_id = {a["id"]: a for a in answer}
                return web.json_response([change(m, by_id[m["id"]]) for m in body])
            return web.json_response(change(body, answer))

        async with serving(handle) as proxied:
            yield proxied


async def _client(url: str, **options: Any) -> EvmChain:
    client = EvmChain(url, chain="ethereum", **options)
    await client.connect()
    return client


async def test_trace_filter_gets_hex_blocks_and_pages(node: tuple[str, str]) -> None:
    url, _ = node
    async with AnvilRpc(url) as rpc:
        refused = (await rpc.batch([("trace_filter", [{"fromBlock": "0x0", "toBlock": "latest",
                                                        "fromAddress": [PAYER]}])], tolerate=True))[0]
    assert "latest" in str(refused.error["message"]) and refused.error["code"] == -32602
    client = await _client(url, trace_page_size=2)
    try:
        assert client.supports_trace
        head = await client.head()
        sent = await client.transfers(TransferQuery([PAYER], 0, head))
        assert [t.amount for t in sent] == [10**18, 10**18 + 1, 10**18 + 1, 10**18 + 2, 10**18 + 3]
        assert all(t.asset == NATIVE and t.to_address == PAYEE for t in sent)
        assert client.request_counts["trace_filter"] >= 3 + 1  # three pages of two (and the connect probe)
    finally:
        await client.close()


async def test_fees_with_and_without_block_receipts(node: tuple[str, str]) -> None:
    url, _ = node

    def no_block_receipts(req: dict[str, Any], ans: dict[str, Any]) -> dict[str, Any]:
        if req["method"] == "eth_getBlockReceipts":
            missing = "the method eth_getBlockReceipts does not exist/is not available"
            return {"jsonrpc": "2.0", "id": req["id"], "error": {"code": -32601, "message": missing}}
        return ans

    direct = await _client(url)
    try:
        assert direct.supports_block_receipts
        head = await direct.head()
        with_block = await direct.fees_paid([PAYER], 0, head)
        assert direct.request_counts["eth_getBlockReceipts"] == 1 + 1  # the probe, the block with two payments
    finally:
        await direct.close()
    async with _proxy(url, no_block_receipts) as proxied:
        older = await _client(proxied)
        try:
            assert not older.supports_block_receipts
            per_tx = await older.fees_paid([PAYER], 0, head)
            assert older.request_counts["eth_getBlockReceipts"] == 1  # the probe only
            assert older.request_counts["eth_getTransactionReceipt"] == 5
        finally:
            await older.close()
    assert per_tx == with_block and len(with_block) == 5

    def unpriced(req: dict[str, Any], ans: dict[str, Any]) -> dict[str, Any]:
        # Receipts of pre-London blocks on some nodes: no effectiveGasPrice (the tx's gasPrice then).
        ans = no_block_receipts(req, ans)
        if req["method"] == "eth_getTransactionReceipt" and isinstance(ans.get("result"), dict):
            ans["result"].pop("effectiveGasPrice", None)
        return ans

    async with _proxy(url, unpriced) as proxied:
        old = await _client(proxied)
        try:
            assert await old.fees_paid([PAYER], 0, head) == with_block
            assert old.request_counts["eth_getTransactionByHash"] == 5
        finally:
            await old.close()
    assert [f.fee for f in with_block] == [21_000 * GWEI, 42_000 * GWEI, 42_000 * GWEI, 63_000 * GWEI, 84_000 * GWEI]


async def test_log_block_timestamps_save_header_requests(node: tuple[str, str]) -> None:
    url, token = node

    def strip_time(req: dict[str, Any], ans: dict[str, Any]) -> dict[str, Any]:
        if req["method"] == "eth_getLogs" and isinstance(ans.get("result"), list):
            for entry in ans["result"]:
                entry.pop("blockTimestamp", None)
        return ans

    direct = await _client(url)
    try:
        head = await direct.head()
        before = direct.request_counts["eth_getBlockByNumber"]
        got = await direct.transfers(TransferQuery([TOKEN_ONLY], 0, head, outgoing=True, incoming=True))
        assert direct.request_counts["eth_getBlockByNumber"] == before  # no header read
        assert [(t.asset, t.amount, t.block_time) for t in got] == [
            (token, 1_000 + i, START + 100 * (i + 1)) for i in range(4)]
        logs = await direct.logs(token, [TRANSFER_TOPIC], 0, head)
        assert direct.request_counts["eth_getBlockByNumber"] == before
        assert [r.block_time for r in logs][-4:] == [START + 100 * (i + 1) for i in range(4)]
    finally:
        await direct.close()
    async with _proxy(url, strip_time) as proxied:
        older = await _client(proxied)
        try:
            again = await older.transfers(TransferQuery([TOKEN_ONLY], 0, head, outgoing=True, incoming=True))
            assert older.request_counts["eth_getBlockByNumber"] >= 4  # headers read for the times
        finally:
            await older.close()
    assert again == got
