"""The HTTP API of a Tron node (java-tron FullNode, TronGrid): POST `/wallet/<method>` with a JSON
body, a JSON answer. What the chain client needs from it, with the project's transport rules:

- retries with exponential backoff and jitter (tracer.chains.retry) on timeouts, connection errors,
  HTTP 408/425/429 and 5xx, and malformed JSON; a 429's `Retry-After` pauses every request, not
  only the one refused (TronGrid counts them all per key);
- a rate limit of our own (`rate`, requests per second, none by default: TronGrid's free tier
  allows 15 per second per key) and bounded concurrency;
- an optional API key sent as `TRON-PRO-API-KEY`, TronGrid's header;
- `request_counts`, a Counter per method plus "http", for benchmarks.

A node that knows nothing of what was asked answers `{}` with HTTP 200 (an unknown account, a block
past the head): that is an answer, returned as is. An answer with `Error` (java-tron's servlet
wraps exceptions so) is a refusal and raises ChainError, not retried.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from tracer.chains.errors import ChainError
from tracer.chains.http import HttpTransport
from tracer.chains.retry import Retry, TransportOptions
from tracer.chains.urls import node_name


class TronHttp:
    """POSTs to one Tron node's HTTP API with retries, a rate limit and bounded concurrency."""

    def __init__(self, url: str, options: TransportOptions = TransportOptions(), *, api_key: str | None = None,
                 rate: float | None = None) -> None:
        headers = {"Content-Type": "application/json"}
        if api_key:
            headers["TRON-PRO-API-KEY"] = api_key
        self.http = HttpTransport(url, f"Tron node at {node_name(url)}", options, rate=rate, headers=headers)
        self.url = self.http.url
        self.name = node_name(url)  # for errors: the URL may carry a key
        self.api_key = api_key
        self.request_counts: Counter[str] = self.http.request_counts

    async def open(self) -> None:
        await self.http.open()

    async def close(self) -> None:
        await self.http.close()

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        """POST `body` to `path` (e.g. "/wallet/getblockbynum"): the parsed answer, retried as the
        module docstring says; ChainError once retries are spent or the node refuses."""
        if not self.http.is_open:
            raise ChainError("TronHttp.open() must be awaited before use")

        def read(status: int, raw: bytes) -> Any:
            if status >= 400:
                raise ChainError(f"Tron node at {self.name} refused {path}: HTTP {status} "
                                 f"{raw[:200].decode(errors='replace')}")
            try:
                answer = json.loads(raw) if raw.strip() else {}
            except ValueError as exc:
                raise Retry(f"malformed JSON in answer ({len(raw)} bytes): {raw[:80]!r}") from exc
            if isinstance(answer, dict) and isinstance(answer.get("Error"), str):
                raise ChainError(f"Tron node at {self.name} refused {path}: {answer['Error'][:200]}")
            return answer

        return await self.http.request("POST", path, endpoint=path.rsplit("/", 1)[-1], what=path, read=read,
                                       data=json.dumps(body))
