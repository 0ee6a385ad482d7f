"""What the chain clients (JSON-RPC, Esplora and Tron's HTTP API) share about retrying: the options
one client gives its transports (TransportOptions: concurrency, timeout, RetryPolicy), the failure
another try may fix, the server's Retry-After, the gate every request to one server passes (bounded
concurrency, the pause a 429 asked for, an optional rate), how long to wait before the next try,
and the loop that tries again until the retries are spent (the one retry loop of the chain layer)."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from tracer.chains.errors import ChainError

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently one server is tried again."""

    retries: int = 6  # tries in all before giving up
    backoff: float = 0.5  # seconds before the second try, doubling after each failure
    max_backoff: float = 30.0
    max_retry_after: float = 120.0  # the longest Retry-After obeyed: a broken server cannot park us for a day

    def __post_init__(self) -> None:
        if self.retries < 1:
            raise ValueError("retries must be at least 1")


@dataclass(frozen=True, slots=True)
class TransportOptions:
    """How a client talks to one server: at most `concurrency` requests in flight, each given
    `timeout` seconds, tried again as `policy` says. A chain client hands its one record down to
    each of its transports."""

    concurrency: int = 8
    timeout: float = 20.0
    policy: RetryPolicy = RetryPolicy()

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")


class Retry(Exception):
    """One exchange failed in a way another try may fix."""

    def __init__(self, problem: str, retry_after: float | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.retry_after = retry_after


class Progress(Exception):
    """One exchange got part of what was asked (a JSON-RPC batch with members left unanswered): try
    again for the rest without counting a failure, since the server is not failing as a whole."""


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date (RFC 9110)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


# HTTP statuses by which a server asks us to slow down: retried without looking at the body.
BUSY_STATUS = frozenset({408, 425, 429})


class Gate:
    """What every request to one server passes before it is sent: at most `concurrency` in flight,
    none before a pause the server asked for, and with `rate` at most that many a second."""

    def __init__(self, concurrency: int, rate: float | None = None) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self._semaphore = asyncio.Semaphore(concurrency)
        self._not_before = 0.0  # monotonic time before which nothing is sent (after a 429)
        self._next_slot = 0.0  # the rate limit's next free send time

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        async with self._semaphore:
            now = time.monotonic()
            wait = max(self._not_before - now, 0.0)
            if self.interval:
                slot = max(self._next_slot, now + wait)
                self._next_slot = slot + self.interval
                wait = slot - now
            if wait > 0:
                await asyncio.sleep(wait)
            yield

    def pause(self, seconds: float) -> None:
        """Hold every request for `seconds`: a server that refuses one for load counts them all."""
        self._not_before = max(self._not_before, time.monotonic() + seconds)


def raise_if_busy(status: int, retry_after: str | None, gate: Gate, max_retry_after: float) -> None:
    """`Retry` when `status` asks us to slow down, pausing the whole gate for the Retry-After given."""
    if status in BUSY_STATUS:
        after = parse_retry_after(retry_after)
        if after:
            gate.pause(min(after, max_retry_after))
        raise Retry(f"HTTP {status}", after)


def backoff_delay(failures: int, base: float, cap: float, retry_after: float | None, max_retry_after: float) -> float:
    """Exponential backoff with jitter on its upper half (clients that failed together spread
    out), never shorter than the server's Retry-After (itself capped: a hostile or broken server
    cannot park us for a day)."""
    delay = min(cap, base * 2 ** (failures - 1)) * random.uniform(0.5, 1.0)
    if retry_after is not None:
        delay = max(delay, min(retry_after, max_retry_after))
    return delay


async def with_retries(attempt: Callable[[], Awaitable[T]], policy: RetryPolicy, *, who: str,
                       what: str | Callable[[], str]) -> T:
    """`attempt()` until it returns, trying again after each `Retry` (waiting `backoff_delay`) and
    after each `Progress` (waiting as the failures so far say, none if there were none);
    ChainError naming `who` and `what` (called then, if a function) once `retries` tries have failed."""
    failures = 0
    problem = ""
    retry_after: float | None = None
    while True:
        if failures:
            if failures >= policy.retries:
                raise ChainError(f"{who} gave up after {failures} tries on {what() if callable(what) else what}: "
                                 f"{problem}")
            await asyncio.sleep(
                backoff_delay(failures, policy.backoff, policy.max_backoff, retry_after, policy.max_retry_after)
            )
        try:
            return await attempt()
        except Retry as exc:
            failures += 1
            problem, retry_after = exc.problem, exc.retry_after
        except Progress:
            pass
