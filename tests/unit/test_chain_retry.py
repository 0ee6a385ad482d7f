"""The retry policy both chain clients share (tracer/chains/retry.py)."""

from __future__ import annotations

import email.utils
import time

from tracer.chains.retry import backoff_delay, parse_retry_after


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
