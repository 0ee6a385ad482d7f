"""The retry policy the chain clients share (tracer/chains/retry.py): JSON-RPC, Esplora, Tron's HTTP API."""

from __future__ import annotations

import asyncio
import email.utils
import time

import pytest

from tracer.chains import retry
from tracer.chains.errors import ChainError
from tracer.chains.retry import (
    Gate,
    Progress,
    Retry,
    RetryPolicy,
    backoff_delay,
    parse_retry_after,
    raise_if_busy,
    with_retries,
)


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("-5") == 0.0
    assert parse_retry_after(None) is None and parse_retry_after("") is None
    assert parse_retry_after("soon") is None
    later = email.utils.formatdate(time.time() + 120, usegmt=True)
    assert 100 <= (parse_retry_after(later) or 0) <= 121
    assert parse_retry_after(email.utils.formatdate(time.time() - 60, usegmt=True)) == 0.0


def test_backoff_grows_is_capped_and_honours_retry_after_up_to_its_own_cap() -> None:
    for failures in range(1, 12):
        d = backoff_delay(failures, 0.5, 30.0, None, 120.0)
        assert 0.25 * 2 ** (failures - 1) <= d or d >= 15.0
        assert d <= 30.0
    assert backoff_delay(1, 0.5, 30.0, 10.0, 120.0) >= 10.0
    assert backoff_delay(1, 0.5, 30.0, 86_400.0, 120.0) == 120.0  # a server cannot park us for a day


def _attempts(*outcomes: object) -> tuple[list[int], object]:
    """An attempt that raises or returns `outcomes` in turn, and the list counting its calls."""
    calls: list[int] = []

    async def attempt() -> object:
        calls.append(1)
        outcome = outcomes[len(calls) - 1]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    return calls, attempt


async def test_progress_tries_again_without_counting_a_failure() -> None:
    # One retry allowed: any counted failure would end it, two partial answers do not.
    calls, attempt = _attempts(Progress(), Progress(), "done")
    assert await with_retries(attempt, RetryPolicy(1, 0.0, 0.0, 0.0), who="node at x", what="m") == "done"
    assert len(calls) == 3


async def test_failures_are_counted_and_the_message_is_built_when_giving_up() -> None:
    left = ["eth_a", "eth_b"]
    calls, attempt = _attempts(Retry("HTTP 502"), Progress(), Retry("timeout"), "never")
    with pytest.raises(ChainError, match=r"^node at x gave up after 2 tries on eth_b \(1 left\): timeout$"):
        await with_retries(attempt, RetryPolicy(2, 0.0, 0.0, 0.0), who="node at x",
                           what=lambda: f"{left[-1]} ({len(left) - 1} left)")
    assert len(calls) == 3


async def test_a_busy_answer_pauses_the_whole_gate(monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(retry.asyncio, "sleep", sleep)
    gate = Gate(4)
    raise_if_busy(200, "30", gate, 120.0)  # not busy: no pause
    async with gate.slot():
        pass
    assert waits == []
    with pytest.raises(Retry) as refused:
        raise_if_busy(429, "30", gate, 10.0)  # the pause is capped, the Retry keeps what was asked
    assert refused.value.retry_after == 30.0
    async with gate.slot():
        pass
    assert len(waits) == 1 and 9.0 < waits[0] <= 10.0


async def test_a_rate_spaces_the_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(retry.asyncio, "sleep", sleep)
    gate = Gate(4, rate=2.0)
    await asyncio.gather(*(_one(gate) for _ in range(3)))
    # The first goes at once, the next two half a second apart (the slots are booked, not slept).
    assert len(waits) == 2 and 0.4 < waits[0] <= 0.5 and 0.9 < waits[1] <= 1.0


async def _one(gate: Gate) -> None:
    async with gate.slot():
        pass
