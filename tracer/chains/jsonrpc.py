"""Batching JSON-RPC transport on top of web3.py's `AsyncHTTPProvider`.

web3.py encodes requests and owns the HTTP session; this module adds what a tracer needs from a
public or self-hosted node that it cannot get from `provider.make_batch_request`:

- every batch member is matched to its answer by `id` (answers may come out of order), and members
  the node left unanswered are asked again instead of being zipped against the wrong answers;
- retries with exponential backoff and jitter on timeouts, connection errors, HTTP 429 (honouring
  `Retry-After`, which pauses every request, not just the one that was refused), HTTP 5xx,
  malformed JSON and rate-limit error objects (the loop of tracer.chains.retry, shared with the
  HTTP clients); after `retries` tries without progress it raises `ChainError` naming the method
  and the last problem;
- bounded concurrency (tracer.chains.retry.Gate around each HTTP POST);
- HTTP 413 (payload too large): a batch is re-sent in halves, a single request answered with an
  `RpcError` of code 413 so that the caller splits its query;
- `request_counts`, a Counter per JSON-RPC method (each batch member counted, retries included)
  plus "http" for each HTTP POST, so benchmarks can report what a trace costs a node.

A JSON-RPC error object in an answer is not a transport failure: it is returned to the caller as
an `RpcError` value in the result list, because only the caller knows whether "more than 10000
results" means "split the range" or "give up".
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import re
import threading
from collections import Counter
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
from web3 import AsyncHTTPProvider, AsyncWeb3

from tracer.chains.errors import ChainError, RpcError
from tracer.chains.retry import Gate, Progress, TransportOptions, raise_if_busy, with_retries
from tracer.chains.retry import Retry as _Retry
from tracer.chains.urls import node_name

log = logging.getLogger(__name__)

T = TypeVar("T")

# JSON-RPC error objects that mean "slow down", whatever code the provider picked for them.
_RATE_LIMITED = re.compile(
    r"rate.?limit|too many requests|request rate|exceeds? .*rate|throttl|compute units|capacity",
    re.IGNORECASE,
)
# ... and those that mean "this node has no such method".
_METHOD_MISSING = re.compile(
    r"method .*(not found|does not exist|not available|not supported|unsupported|disabled)"
    r"|unknown (rpc )?(method|endpoint)|not implemented|unsupported method|no such method",
    re.IGNORECASE,
)
# A whole batch refused for its size (some providers cap members per batch).
_BATCH_TOO_LARGE = re.compile(r"batch.*(too large|size|limit|exceed|too many)", re.IGNORECASE)
_BATCH_UNSUPPORTED = re.compile(r"batch.*(not supported|unsupported|disabled)", re.IGNORECASE)

# 408/425/429 are retried without looking at the body (tracer.chains.retry.BUSY_STATUS); 5xx bodies
# are read first (some proxies wrap JSON-RPC answers in a 500) and retried if empty.
_TOO_LARGE = 413


def is_rate_limited(err: RpcError) -> bool:
    return err.code in (429, -32029) or bool(_RATE_LIMITED.search(err.message))


def is_method_missing(err: RpcError) -> bool:
    return err.code == -32601 or bool(_METHOD_MISSING.search(err.message))


class _BatchRefused(Exception):
    """The node refused the batch as a whole because of its size (or refuses batches)."""

    def __init__(self, problem: str, unsupported: bool) -> None:
        super().__init__(problem)
        self.problem = problem
        self.unsupported = unsupported


class RpcHttpProvider(AsyncHTTPProvider):
    """web3's async HTTP provider with one more entry point: POST bytes, get status and body back.

    `make_request`/`make_batch_request` raise on any non-2xx status and throw away the body and
    the `Retry-After` header; the transport needs both, so it posts through the provider's own
    session manager (which owns the cached aiohttp session) and reads the response itself.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # web3's session manager guards its session cache with ONE threading.Lock for the whole
        # process (a class attribute), taken through a thread pool; a task cancelled while waiting
        # for it can leave it held for good, and every later client in the process then hangs in
        # connect(). Our own lock keeps another client's accident from reaching us.
        self._request_session_manager._lock = threading.Lock()
        self.raw_session: aiohttp.ClientSession | None = None

    async def post_raw(self, payload: bytes) -> tuple[int, dict[str, str], bytes]:
        assert self.endpoint_uri is not None  # set from the url in __init__
        if self.raw_session is None:
            raise ChainError("JsonRpcTransport.open() must be awaited before use")
        # Straight through our own session: no session-cache lock on the hot path.
        async with self.raw_session.post(self.endpoint_uri, data=payload, **self.get_request_kwargs()) as response:
            body = await response.read()
            return response.status, dict(response.headers), body


@dataclass(slots=True)
class _Item:
    index: int
    method: str
    params: Any
    done: bool = False
    value: Any = None
    request_id: int = field(default=-1)


async def gather_or_cancel(aws: Iterable[Awaitable[T]]) -> list[T]:
    """`asyncio.gather`, but the first failure cancels the rest instead of leaving them running."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


class JsonRpcTransport:
    """Sends JSON-RPC requests and batches to one node with retries and bounded concurrency."""

    def __init__(self, url: str, options: TransportOptions = TransportOptions(), *, batch_size: int = 100) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.url = url
        self.name = node_name(url)  # for errors and logs: an RPC URL often carries a provider key
        self.options = options
        self.batch_size = batch_size
        self.provider = RpcHttpProvider(
            url,
            request_kwargs={"timeout": aiohttp.ClientTimeout(total=options.timeout)},
            # Retries are ours: they must see HTTP status, Retry-After and partial batches.
            exception_retry_configuration=None,
        )
        self.w3 = AsyncWeb3(self.provider)
        self.request_counts: Counter[str] = Counter()
        self._gate = Gate(options.concurrency)
        self._ids = itertools.count(1)
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        """Give the provider a keep-alive session sized to our concurrency.

        web3's default session closes the connection after each request (force_close), which
        costs a TCP handshake per POST; a trace makes thousands of them.
        """
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.options.concurrency),
                raise_for_status=False,
            )
            self.provider.raw_session = self._session
            await self.provider.cache_async_session(self._session)

    async def close(self) -> None:
        await self.provider.disconnect()
        self.provider.raw_session = None
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    # -- public calls -------------------------------------------------------------------------

    async def call(self, method: str, params: Sequence[Any] | None = None) -> Any:
        """One request; a JSON-RPC error object is raised as `RpcError`."""
        (value,) = await self.batch([(method, list(params or []))])
        if isinstance(value, RpcError):
            raise value
        return value

    async def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        """Answers in the order of `calls`; members the node refused come back as `RpcError`.

        Calls are cut into batches of `batch_size` that run concurrently (at most `concurrency`
        HTTP requests in flight).
        """
        items = [_Item(i, method, list(params)) for i, (method, params) in enumerate(calls)]
        if not items:
            return []
        size = self.batch_size
        chunks = [items[i : i + size] for i in range(0, len(items), size)]
        await gather_or_cancel(self._run(chunk) for chunk in chunks)
        return [item.value for item in items]

    # -- internals ----------------------------------------------------------------------------

    async def _run(self, items: list[_Item]) -> None:
        """Send `items` until each is answered: a try that answers some asks again for the rest
        only, and only a try that answers none counts as a failure (tracer.chains.retry)."""
        pending = items

        async def attempt() -> None:
            nonlocal pending
            try:
                answered = await self._exchange(pending)
            except _BatchRefused as exc:
                if len(pending) == 1:
                    raise _Retry(exc.problem) from exc
                # Smaller batches from now on; this one is re-sent in two halves.
                self.batch_size = 1 if exc.unsupported else max(1, min(self.batch_size, len(pending)) // 2)
                log.warning(
                    "node refused a batch of %d (%s); batch size now %d",
                    len(pending),
                    exc.problem,
                    self.batch_size,
                )
                half = len(pending) // 2
                await gather_or_cancel([self._run(pending[:half]), self._run(pending[half:])])
                return
            still = [item for item in pending if not item.done]
            if not still:
                return
            if len(still) == len(pending):
                raise _Retry(answered or f"no usable answer for {len(pending)} request(s)")
            pending = still
            raise Progress

        def what() -> str:
            methods = ", ".join(sorted({item.method for item in pending}))
            return f"{methods} ({len(pending)} request(s) unanswered)"

        await with_retries(attempt, self.options.policy, who=f"node at {self.name}", what=what)

    async def _exchange(self, pending: list[_Item]) -> str:
        """Send `pending` once; mark items answered. Returns a note on what was left unanswered."""
        by_id: dict[int, _Item] = {}
        for item in pending:
            item.request_id = next(self._ids)
            by_id[item.request_id] = item
        single = len(pending) == 1
        bodies = [
            {"jsonrpc": "2.0", "id": item.request_id, "method": item.method, "params": item.params} for item in pending
        ]
        payload = json.dumps(bodies[0] if single else bodies, separators=(",", ":")).encode()
        if self._session is None:
            await self.open()

        async with self._gate.slot():
            self.request_counts["http"] += 1
            for item in pending:
                self.request_counts[item.method] += 1
            if self._session is None:
                await self.open()
            try:
                status, headers, raw = await self.provider.post_raw(payload)
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                raise _Retry(f"{type(exc).__name__}: {exc or 'timeout'}") from exc

        if status == _TOO_LARGE:
            # Request or response too big for the provider: a batch is cut in halves (smaller
            # batches from now on); a single request gets an RpcError with code 413, which range
            # queries read as "ask for less" (tracer.chains.limits).
            if not single:
                raise _BatchRefused(f"HTTP 413 for a batch of {len(pending)}", unsupported=False)
            item = pending[0]
            item.value = RpcError(item.method, _TOO_LARGE, f"HTTP 413 payload too large: {raw[:120]!r}")
            item.done = True
            return ""
        raise_if_busy(status, headers.get("Retry-After"), self._gate, self.options.policy.max_retry_after)
        try:
            decoded = json.loads(raw)
        except ValueError as exc:
            if 400 <= status < 500:
                raise ChainError(f"node at {self.name} answered HTTP {status}: {raw[:200]!r}") from exc
            what = f"HTTP {status}" if status >= 500 else f"malformed JSON in answer ({len(raw)} bytes)"
            raise _Retry(f"{what}: {raw[:80]!r}") from exc

        if isinstance(decoded, dict):
            answers = [decoded]
            if not single:
                # A batch answered by one object: the node refused the batch as a whole.
                self._refused_batch(decoded, status)
        elif isinstance(decoded, list):
            answers = decoded
        else:
            raise _Retry(f"answer is neither object nor array: {raw[:80]!r}")

        missing_note = ""
        rate_limited = 0
        for answer in answers:
            if not isinstance(answer, dict):
                continue
            target: _Item | None = by_id.get(_as_id(answer.get("id")))
            if target is None and single and answer.get("id") is None and "error" in answer:
                target = pending[0]  # some nodes drop the id on errors of single requests
            if target is None or target.done:
                continue
            if "error" in answer and answer["error"] is not None:
                err = _to_rpc_error(target.method, answer["error"])
                if is_rate_limited(err):
                    rate_limited += 1
                    missing_note = f"rate limited: {err.message}"
                    continue
                target.value, target.done = err, True
            elif "result" in answer:
                target.value, target.done = answer["result"], True
        unanswered = sum(1 for item in pending if not item.done)
        if unanswered and status >= 500:
            raise _Retry(f"HTTP {status}: {raw[:80]!r}")
        if unanswered and status >= 400 and not missing_note:
            raise ChainError(f"node at {self.name} answered HTTP {status}: {raw[:200]!r}")
        if unanswered and not missing_note:
            missing_note = f"{unanswered} of {len(pending)} request(s) unanswered in the batch"
        if rate_limited and rate_limited == unanswered:
            self._gate.pause(self.options.policy.backoff)
        return missing_note

    def _refused_batch(self, answer: dict[str, Any], status: int) -> None:
        error = answer.get("error")
        if not isinstance(error, dict):
            raise _Retry(f"batch answered by a single object without error (HTTP {status})")
        message = str(error.get("message", ""))
        if _BATCH_UNSUPPORTED.search(message):
            raise _BatchRefused(message, unsupported=True)
        if _BATCH_TOO_LARGE.search(message):
            raise _BatchRefused(message, unsupported=False)
        err = _to_rpc_error("batch", error)
        if is_rate_limited(err):
            raise _Retry(f"rate limited: {message}")
        raise _Retry(f"batch refused: {error.get('code')} {message}")


def _to_rpc_error(method: str, error: Any) -> RpcError:
    if isinstance(error, dict):
        code = error.get("code")
        return RpcError(
            method,
            code if isinstance(code, int) else None,
            str(error.get("message", "")),
            error.get("data"),
        )
    return RpcError(method, None, str(error))


def _as_id(value: Any) -> int:
    # Some proxies echo numeric ids back as strings.
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return -1
