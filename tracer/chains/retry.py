"""What the chain clients (JSON-RPC, Esplora and Tron's HTTP API) share about retrying: the failure
another try may fix, the server's Retry-After, how long to wait before the next try, and the loop
that tries again until the retries are spent (the one retry loop of the chain layer)."""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tracer.chains.errors import ChainError

T = TypeVar("T")


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


def backoff_delay(failures: int, base: float, cap: float, retry_after: float | None, max_retry_after: float) -> float:
    """Exponential backoff with jitter on its upper half (clients that failed together spread
    out), never shorter than the server's Retry-After (itself capped: a hostile or broken server
    cannot park us for a day)."""
    delay = min(cap, base * 2 ** (failures - 1)) * random.uniform(0.5, 1.0)
    if retry_after is not None:
        delay = max(delay, min(retry_after, max_retry_after))
    return delay


async def with_retries(attempt: Callable[[], Awaitable[T]], *, retries: int, backoff: float, max_backoff: float,
                       max_retry_after: float, who: str, what: str | Callable[[], str]) -> T:
    """`attempt()` until it returns, trying again after each `Retry` (waiting `backoff_delay`) and
    after each `Progress` (waiting as the failures so far say, none if there were none);
    ChainError naming `who` and `what` (called then, if a function) once `retries` tries have failed."""
    failures = 0
    problem = ""
    retry_after: float | None = None
    while True:
        if failures:
            if failures >= retries:
                raise ChainError(f"{who} gave up after {failures} tries on {what() if callable(what) else what}: "
                                 f"{problem}")
            await asyncio.sleep(backoff_delay(failures, backoff, max_backoff, retry_after, max_retry_after))
        try:
            return await attempt()
        except Retry as exc:
            failures += 1
            problem, retry_after = exc.problem, exc.retry_after
        except Progress:
            pass
