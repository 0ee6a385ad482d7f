"""The batching transport against a scripted HTTP server: what real providers do when unhappy."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web

from tracer.chains.errors import ChainError, RpcError
from tracer.chains.jsonrpc import JsonRpcTransport
from tracer.chains.retry import RetryPolicy, TransportOptions

Reply = tuple[int, dict[str, str], str]
Script = Callable[[Any, int], Reply]


class Scripted:
    """An HTTP server whose answer to the n-th POST is `script(body, n)`."""

    def __init__(self) -> None:
        self.script: Script = lambda body, n: (200, {}, json.dumps(echo(body)))
        self.posts: list[Any] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        assert site._server is not None
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.posts.append(body)
        status, headers, text = self.script(body, len(self.posts))
        return web.Response(status=status, headers=headers, text=text, content_type="application/json")


def echo(body: Any) -> Any:
    """Answer each request with its params (so answers can be matched to requests)."""
    if isinstance(body, list):
        return [{"jsonrpc": "2.0", "id": r["id"], "result": r["params"]} for r in body]
    return {"jsonrpc": "2.0", "id": body["id"], "result": body["params"]}


@pytest.fixture(scope="module")
async def server() -> AsyncIterator[Scripted]:
    s = Scripted()
    await s.start()
    yield s
    await s.stop()


@pytest.fixture
async def rpc(server: Scripted) -> AsyncIterator[JsonRpcTransport]:
    server.posts.clear()
    server.script = lambda body, n: (200, {}, json.dumps(echo(body)))
    t = JsonRpcTransport(server.url, TransportOptions(timeout=2.0, policy=RetryPolicy(retries=4, backoff=0.01)),
                         batch_size=10)
    await t.open()
    yield t
    await t.close()


async def test_batches_and_counts(server: Scripted, rpc: JsonRpcTransport) -> None:
    calls = [("eth_getBalance", [i]) for i in range(25)] + [("eth_getCode", [100])]
    answers = await rpc.batch(calls)
    assert answers == [[i] for i in range(25)] + [[100]]
    assert len(server.posts) == 3  # 26 calls in batches of 10
    assert rpc.request_counts == {"eth_getBalance": 25, "eth_getCode": 1, "http": 3}
    assert await rpc.call("eth_blockNumber", []) == []
    assert isinstance(server.posts[-1], dict)  # a single call goes as a plain object


async def test_out_of_order_and_string_ids(server: Scripted, rpc: JsonRpcTransport) -> None:
    def script(body: Any, n: int) -> Reply:
        answers = echo(body)
        for a in answers:
            a["id"] = str(a["id"])
        return 200, {}, json.dumps(list(reversed(answers)))

    server.script = script
    assert await rpc.batch([("m", [i]) for i in range(7)]) == [[i] for i in range(7)]


async def test_partial_answers_are_asked_again(server: Scripted, rpc: JsonRpcTransport) -> None:
    # Every other member of a batch is lost; a single request is answered.
    server.script = lambda body, n: (200, {}, json.dumps(echo(body)[::2] if isinstance(body, list) else echo(body)))
    assert await rpc.batch([("m", [i]) for i in range(8)]) == [[i] for i in range(8)]
    assert [len(p) if isinstance(p, list) else 1 for p in server.posts] == [8, 4, 2, 1]


async def test_error_objects_are_values_and_rate_limits_retried(server: Scripted, rpc: JsonRpcTransport) -> None:
    def script(body: Any, n: int) -> Reply:
        if not isinstance(body, list):
            return 200, {}, json.dumps(echo(body))
        answers = echo(body)
        answers[0] = {
            "jsonrpc": "2.0",
            "id": body[0]["id"],
            "error": {"code": -32601, "message": "no such method"},
        }
        if n == 1:
            answers[1] = {
                "jsonrpc": "2.0",
                "id": body[1]["id"],
                "error": {"code": 429, "message": "Too Many Requests"},
            }
        return 200, {}, json.dumps(answers)

    server.script = script
    answers = await rpc.batch([("x", [0]), ("y", [1]), ("z", [2])])
    assert isinstance(answers[0], RpcError) and answers[0].code == -32601
    assert answers[1:] == [[1], [2]]
    with pytest.raises(RpcError):
        server.script = lambda body, n: (
            200,
            {},
            json.dumps({"jsonrpc": "2.0", "id": body["id"], "error": {"code": 3, "message": "execution reverted"}}),
        )
        await rpc.call("eth_call", [])


async def test_retry_after_is_honoured(server: Scripted, rpc: JsonRpcTransport) -> None:
    server.script = lambda body, n: (429, {"Retry-After": "1"}, "") if n == 1 else (200, {}, json.dumps(echo(body)))
    start = time.monotonic()
    assert await rpc.call("m", [1]) == [1]
    assert time.monotonic() - start >= 0.9


async def test_client_errors_fail_fast(server: Scripted, rpc: JsonRpcTransport) -> None:
    server.script = lambda body, n: (401, {}, "unauthorized: bad API key")
    with pytest.raises(ChainError, match="HTTP 401"):
        await rpc.call("m", [])
    assert len(server.posts) == 1


async def test_gives_up_after_retries(server: Scripted, rpc: JsonRpcTransport) -> None:
    server.script = lambda body, n: (200, {}, "not json at all")
    with pytest.raises(ChainError, match=r"gave up after 4 tries on eth_getLogs .*malformed JSON"):
        await rpc.call("eth_getLogs", [])
    assert len(server.posts) == 4


async def test_batch_too_large_is_split(server: Scripted, rpc: JsonRpcTransport) -> None:
    def script(body: Any, n: int) -> Reply:
        if isinstance(body, list) and len(body) > 3:
            return (
                200,
                {},
                json.dumps(
                    {
                        "jsonrpc": "2.0",
                        "id": None,
                        "error": {"code": -32600, "message": "batch size too large, max 3"},
                    }
                ),
            )
        return 200, {}, json.dumps(echo(body))

    server.script = script
    assert await rpc.batch([("m", [i]) for i in range(10)]) == [[i] for i in range(10)]
    assert rpc.batch_size <= 3


async def test_connection_refused_gives_up() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again below: nothing listens there
    t = JsonRpcTransport(f"http://127.0.0.1:{port}/", TransportOptions(policy=RetryPolicy(retries=2, backoff=0.01)))
    await t.open()
    try:
        with pytest.raises(ChainError, match="gave up after 2 tries on eth_chainId"):
            await t.call("eth_chainId", [])
    finally:
        await t.close()
