"""A real EVM behind real HTTP JSON-RPC, for chain-layer tests: eth-tester/py-evm via aiohttp.

`EthereumTesterProvider` answers in Python values (ints, snake_case keys, bytes); a node answers
in JSON-RPC wire format (hex quantities, camelCase keys, `input` for calldata). This bridge
forwards each request (single or batch) to the provider and converts its answer to wire format,
so the chain layer sees what it would see from a node, from an EVM nobody here wrote.

It can also misbehave on purpose, one HTTP request at a time (`faults`), and cap `eth_getLogs`
answers like hosted providers do (`max_logs`), to test the transport against a real chain.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from hexbytes import HexBytes
from web3 import EthereumTesterProvider, Web3

_CAMEL = re.compile(r"_([a-z])")

# Fault names understood by `EvmBridge.faults` (each consumed by one HTTP request):
#   "429"      HTTP 429 with Retry-After: 0
#   "503"      HTTP 503 with an HTML body
#   "garbage"  HTTP 200 with a body that is not JSON
#   "timeout"  hold the answer for `slow_seconds` (longer than the client's timeout)
#   "partial"  answer only the first half of a batch
#   "reverse"  answer a batch in reverse order
#   "rate-err" JSON-RPC error -32005 "rate limit exceeded" for every member
FAULTS = ("429", "503", "garbage", "timeout", "partial", "reverse", "rate-err")


def to_wire(value: Any) -> Any:
    """Python values from eth-tester → JSON-RPC wire values."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return hex(value)
    if isinstance(value, bytes | bytearray | HexBytes):
        return "0x" + bytes(value).hex()
    if isinstance(value, Mapping):
        out = {_CAMEL.sub(lambda m: m.group(1).upper(), str(k)): to_wire(v) for k, v in value.items()}
        if "nonce" in out and "gas" in out and "data" in out and "input" not in out:
            out["input"] = out.pop("data")  # a transaction object: calldata is `input` on the wire
        return out
    if isinstance(value, list | tuple):
        return [to_wire(v) for v in value]
    return value


class EvmBridge:
    """Serve an in-process eth-tester chain over HTTP JSON-RPC on 127.0.0.1."""

    def __init__(self, *, max_logs: int | None = None, slow_seconds: float = 2.0) -> None:
        self.provider = EthereumTesterProvider()
        self.w3 = Web3(self.provider)
        self._request = self.provider.request_func(self.w3, self.w3.middleware_onion)
        self.max_logs = max_logs
        self.slow_seconds = slow_seconds
        self.faults: list[str] = []
        self.http_requests = 0
        self.method_counts: Counter[str] = Counter()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> str:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None and server.sockets
        port = server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def answer(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """One JSON-RPC request → one response object."""
        rid = request.get("id")
        method = str(request.get("method"))
        params = request.get("params") or []
        self.method_counts[method] += 1
        try:
            response = self._request(method, params)
        except Exception as exc:  # eth-tester raises for invalid input; a node answers an error
            return {
                "jsonrpc": "2.0",
                "id": rid,
                "error": {"code": -32000, "message": f"{type(exc).__name__}: {exc}"},
            }
        if "error" in response:
            error = response["error"]
            if isinstance(error, str):
                error = {"code": -32000, "message": error}
            return {"jsonrpc": "2.0", "id": rid, "error": error}
        result = to_wire(response.get("result"))
        if method == "eth_getLogs" and self.max_logs is not None and len(result or []) > self.max_logs:
            return {
                "jsonrpc": "2.0",
                "id": rid,
                "error": {"code": -32005, "message": f"query returned more than {self.max_logs} results"},
            }
        return {"jsonrpc": "2.0", "id": rid, "result": result}

    async def _handle(self, request: web.Request) -> web.Response:
        self.http_requests += 1
        fault = self.faults.pop(0) if self.faults else None
        if fault == "429":
            return web.Response(status=429, text="slow down", headers={"Retry-After": "0"})
        if fault == "503":
            return web.Response(status=503, text="<html>upstream unavailable</html>")
        if fault == "garbage":
            return web.Response(status=200, text='{"jsonrpc": "2.0", "id": 1, "res')
        if fault == "timeout":
            await asyncio.sleep(self.slow_seconds)
        body = await request.json()
        batch = isinstance(body, list)
        requests = body if batch else [body]
        if fault == "rate-err":
            answers = [
                {
                    "jsonrpc": "2.0",
                    "id": r.get("id"),
                    "error": {"code": -32005, "message": "rate limit exceeded"},
                }
                for r in requests
            ]
        else:
            answers = [self.answer(r) for r in requests]
        if fault == "partial" and batch:
            answers = answers[: max(1, len(answers) // 2)]
        if fault == "reverse":
            answers.reverse()
        payload = answers if batch else answers[0]
        return web.Response(text=json.dumps(payload), content_type="application/json")
