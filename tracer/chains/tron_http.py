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

import asyncio
import json
import time
from collections import Counter
from typing import Any

import aiohttp

from tracer.chains.errors import ChainError
from tracer.chains.retry import Retry, parse_retry_after, with_retries

_RETRY_STATUS = frozenset({408, 425, 429})


class TronHttp:
    """POSTs to one Tron node's HTTP API with retries, a rate limit and bounded concurrency."""

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        concurrency: int = 8,
        timeout: float = 20.0,
        retries: int = 6,
        rate: float | None = None,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        max_retry_after: float = 120.0,
    ) -> None:
        if concurrency < 1 or retries < 1:
            raise ValueError("concurrency and retries must be at least 1")
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.concurrency = concurrency
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_retry_after = max_retry_after
        self.interval = 1.0 / rate if rate else 0.0
        self.request_counts: Counter[str] = Counter()
        self._semaphore = asyncio.Semaphore(concurrency)
        self._session: aiohttp.ClientSession | None = None
        self._not_before = 0.0  # monotonic time before which nothing is sent (after a 429)
        self._next_slot = 0.0  # the rate limit's next free send time

    async def open(self) -> None:
        if self._session is None:
            headers = {"Content-Type": "application/json"}
            if self.api_key:
                headers["TRON-PRO-API-KEY"] = self.api_key
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.concurrency),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                headers=headers,
            )

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        """POST `body` to `path` (e.g. "/wallet/getblockbynum"): the parsed answer, retried as the
        module docstring says; ChainError once retries are spent or the node refuses."""
        if self._session is None:
            raise ChainError("TronHttp.open() must be awaited before use")
        return await with_retries(lambda: self._exchange(path, body), retries=self.retries, backoff=self.backoff,
                                  max_backoff=self.max_backoff, max_retry_after=self.max_retry_after,
                                  who=f"Tron node at {self.url}", what=path)

    async def _pace(self) -> None:
        now = time.monotonic()
        wait = max(self._not_before - now, 0.0)
        if self.interval:
            slot = max(self._next_slot, now + wait)
            self._next_slot = slot + self.interval
            wait = slot - now
        if wait > 0:
            await asyncio.sleep(wait)

    async def _exchange(self, path: str, body: dict[str, Any]) -> Any:
        assert self._session is not None
        method = path.rsplit("/", 1)[-1]
        async with self._semaphore:
            await self._pace()
            self.request_counts["http"] += 1
            self.request_counts[method] += 1
            try:
                async with self._session.post(self.url + path, data=json.dumps(body)) as resp:
                    status = resp.status
                    headers = resp.headers
                    raw = await resp.read()
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                raise Retry(f"{type(exc).__name__}: {exc or 'timeout'}") from exc
        if status in _RETRY_STATUS:
            after = parse_retry_after(headers.get("Retry-After"))
            if after:
                self._not_before = max(self._not_before, time.monotonic() + min(after, self.max_retry_after))
            raise Retry(f"HTTP {status}", after)
        if status >= 500:
            raise Retry(f"HTTP {status}: {raw[:80]!r}")
        if status >= 400:
            raise ChainError(f"Tron node at {self.url} refused {path}: HTTP {status} "
                             f"{raw[:200].decode(errors='replace')}")
        try:
            answer = json.loads(raw) if raw.strip() else {}
        except ValueError as exc:
            raise Retry(f"malformed JSON in answer ({len(raw)} bytes): {raw[:80]!r}") from exc
        if isinstance(answer, dict) and isinstance(answer.get("Error"), str):
            raise ChainError(f"Tron node at {self.url} refused {path}: {answer['Error'][:200]}")
        return answer
