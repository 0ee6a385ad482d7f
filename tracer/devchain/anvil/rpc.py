"""A minimal JSON-RPC client for driving Anvil: single calls and batches, errors raised."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aiohttp

Call = tuple[str, list[Any]]


class RpcError(RuntimeError):
    def __init__(self, method: str, error: Any, params: Any = None) -> None:
        super().__init__(f"{method}: {error}" + (f" (params {str(params)[:400]})" if params is not None else ""))
        self.method = method
        self.error = error


class AnvilRpc:
    """JSON-RPC over one aiohttp session. `batch` posts many calls in one request (Anvil answers a
    JSON array), which is what lets a few thousand transfers execute in seconds."""

    def __init__(self, url: str, *, batch_size: int = 500) -> None:
        self.url = url
        self.batch_size = batch_size
        self._session: aiohttp.ClientSession | None = None
        self.requests = 0

    async def __aenter__(self) -> AnvilRpc:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def call(self, method: str, *params: Any) -> Any:
        return (await self.batch([(method, list(params))]))[0]

    async def batch(self, calls: Sequence[Call], *, tolerate: bool = False) -> list[Any]:
        """Results in order. A call that errs raises RpcError, or (tolerate=True) yields the error
        object in its place."""
        out: list[Any] = []
        for start in range(0, len(calls), self.batch_size):
            chunk = calls[start:start + self.batch_size]
            body = [{"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in enumerate(chunk)]
            self.requests += 1
            async with self.session().post(self.url, json=body) as resp:
                resp.raise_for_status()
                answers = await resp.json(content_type=None)
            if isinstance(answers, dict):  # a whole-batch error
                raise RpcError("batch", answers.get("error", answers))
            by_id = {a["id"]: a for a in answers}
            for i, (method, params) in enumerate(chunk):
                a = by_id[i]
                if "error" in a:
                    if not tolerate:
                        raise RpcError(method, a["error"], params)
                    out.append(RpcError(method, a["error"]))
                else:
                    out.append(a.get("result"))
        return out
