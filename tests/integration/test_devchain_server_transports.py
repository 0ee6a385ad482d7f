"""The devchain answers a JSON-RPC message the same over HTTP and over its WebSocket: junk, an
empty batch, non-object members and mixed batches get the same answers, to the byte (both read
bodies through tracer.devchain.rpc_body)."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from tests.fixtures_chain import DevChainFactory
from tracer.chains.urls import ws_url_for
from tracer.devchain.chain import Chain

pytestmark = pytest.mark.asyncio(loop_scope="session")

_SENTINEL = b'{"jsonrpc":"2.0","id":"sentinel","method":"net_version"}'


def _req(rid: Any, method: Any, *params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "method": method, "params": list(params)}


def _error(rid: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "error": {"code": code, "message": message}}


_INVALID = _error(None, -32600, "invalid request")
_MIXED = [
    _req(1, "eth_blockNumber"),
    7,
    _req(2, "eth_noSuchThing"),
    {"jsonrpc": "2.0", "id": 3, "method": "eth_chainId", "params": "not an array"},
    {"jsonrpc": "2.0", "id": 4, "method": 5},
    {"jsonrpc": "2.0", "method": "eth_blockNumber"},  # a notification: no answer
    None,
    _req(5, "net_version"),
]

# (body, the answer both transports give: None when nothing is sent back)
CASES: list[tuple[bytes, Any]] = [
    (b"{not json", _error(None, -32700, "parse error")),
    (b"\xff\xfe[]", _error(None, -32700, "parse error")),  # not UTF-8
    (b"[]", _error(None, -32600, "empty batch")),
    (b"3", _INVALID),
    (b"[1, \"x\", []]", [_INVALID, _INVALID, _INVALID]),
    (json.dumps(_MIXED).encode(), [
        {"jsonrpc": "2.0", "id": 1, "result": "0x4"},
        _INVALID,
        _error(2, -32601, "the method eth_noSuchThing does not exist/is not available"),
        _error(3, -32602, "params must be an array"),
        _INVALID,
        _INVALID,
        {"jsonrpc": "2.0", "id": 5, "result": "1337"},
    ]),
    (json.dumps({"jsonrpc": "2.0", "method": "eth_blockNumber"}).encode(), None),
    (json.dumps([{"jsonrpc": "2.0", "method": "eth_blockNumber"}] * 2).encode(), None),
]


async def _over_http(http: aiohttp.ClientSession, url: str, body: bytes) -> list[bytes]:
    async with http.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
        if r.status == 204:
            return []
        assert r.status == 200
        return [await r.read()]


async def _over_ws(ws: aiohttp.ClientWebSocketResponse, body: bytes, *, binary: bool) -> list[bytes]:
    """What the socket sends back for `body`: the messages before the answer to a sentinel request."""
    if binary:
        await ws.send_bytes(body)
    else:
        await ws.send_str(body.decode())
    await ws.send_bytes(_SENTINEL)
    got: list[bytes] = []
    while True:
        msg = await ws.receive(timeout=5)
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        if json.loads(msg.data) == {"jsonrpc": "2.0", "id": "sentinel", "result": "1337"}:
            return got
        got.append(msg.data.encode())


@pytest.mark.parametrize(("body", "expected"), CASES, ids=[
    "junk", "not-utf8", "empty-batch", "non-object", "non-object-members", "mixed-batch", "notification",
    "notifications-only"])
async def test_http_and_websocket_answer_a_body_alike(
        devchain_factory: DevChainFactory, body: bytes, expected: Any) -> None:
    chain = Chain(chain_id=1337, genesis_balances={})
    for _ in range(4):
        chain.append_block([])
    node = await devchain_factory(chain)
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url_for(node.url) or "") as ws:
        over_http = await _over_http(http, node.url, body)
        assert [json.loads(a) for a in over_http] == ([] if expected is None else [expected])
        assert await _over_ws(ws, body, binary=True) == over_http
        try:
            body.decode()
        except UnicodeDecodeError:  # a text frame carries UTF-8 only
            return
        assert await _over_ws(ws, body, binary=False) == over_http
