"""The reading of one JSON-RPC message (a request or a batch) that the devchain's HTTP POSTs and
WebSocket frames share, so that both transports answer junk, an empty batch and odd members with
the same errors. What a single request answers is the caller's `answer_one`."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

Json = Any


def answer_body(
    body: str | bytes,
    answer_one: Callable[[Any], Json],
    rework_batch: Callable[[list[Json]], list[Json]] | None = None,
) -> Json:
    """The answer to a body: one request's, a batch's list, or a JSON-RPC error; None when nothing
    is to be answered (a notification, or a batch of notifications only).

    `answer_one` answers one member as it stands (an object or not; None for a notification).
    `rework_batch` may reorder or drop a batch's answers (HTTP's seeded faults) before they go out.
    """
    try:
        payload = json.loads(body)
    except ValueError:  # UnicodeDecodeError too: bytes that are not UTF-8
        return {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "parse error"}}
    if not isinstance(payload, list):
        return answer_one(payload)
    if not payload:
        return {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "empty batch"}}
    answers = [a for a in (answer_one(m) for m in payload) if a is not None]
    if rework_batch is not None:
        answers = rework_batch(answers)
    return answers or None
