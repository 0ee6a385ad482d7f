"""HttpTransport: plain HTTP requests to one server (an Esplora server, a Tron node's HTTP API) under
the chain layer's retry rules (tracer.chains.retry): bounded concurrency and an optional rate; retries
with exponential backoff and jitter on timeouts, connection errors, HTTP 408/425/429 (a Retry-After
pauses every request) and 5xx, and on whatever the caller's `read` refuses with `Retry` (a malformed
body); ChainError naming the server once the retries are spent. `request_counts` counts HTTP
requests per endpoint, plus "http" for all of them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from typing import TypeVar

import aiohttp

from tracer.chains.retry import Gate, Retry, TransportOptions, raise_if_busy, with_retries

T = TypeVar("T")


class HttpTransport:
    """Requests to one HTTP server with retries; `who` names it in errors ("Esplora server at URL")."""

    def __init__(self, url: str, who: str, options: TransportOptions, *, rate: float | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        self.url = url.rstrip("/")
        self.who = who
        self.options = options
        self.headers = dict(headers or {})
        self.gate = Gate(options.concurrency, rate)
        self.request_counts: Counter[str] = Counter()
        self._session: aiohttp.ClientSession | None = None

    @property
    def is_open(self) -> bool:
        return self._session is not None

    async def open(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.options.concurrency),
                timeout=aiohttp.ClientTimeout(total=self.options.timeout),
                headers=self.headers or None,
            )

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    async def request(self, method: str, path: str, *, endpoint: str, what: str,
                      read: Callable[[int, bytes], T], data: str | None = None) -> T:
        """`read(status, body)` of the answer to `method path` (status below 500 and not asking us
        to slow down), tried again while it raises `Retry`; ChainError about `what` once the
        retries are spent."""

        async def attempt() -> T:
            status, raw = await self._exchange(method, path, endpoint, data)
            return read(status, raw)

        return await with_retries(attempt, self.options.policy, who=self.who, what=what)

    async def _exchange(self, method: str, path: str, endpoint: str, data: str | None) -> tuple[int, bytes]:
        assert self._session is not None
        async with self.gate.slot():
            self.request_counts["http"] += 1
            self.request_counts[endpoint] += 1
            try:
                async with self._session.request(method, self.url + path, data=data) as resp:
                    status = resp.status
                    retry_after = resp.headers.get("Retry-After")
                    raw = await resp.read()
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                raise Retry(f"{type(exc).__name__}: {exc or 'timeout'}") from exc
        raise_if_busy(status, retry_after, self.gate, self.options.policy.max_retry_after)
        if status >= 500:
            raise Retry(f"HTTP {status}: {raw[:80]!r}")
        return status, raw
