"""How nodes and providers say "this query is too big, ask for less", and what they suggest instead.

A refused `eth_getLogs` or `trace_filter` is split, not retried. Many refusals say how to split:

- Infura `-32005 query returned more than 10000 results`, with `data: {"from", "to", "limit"}`
  (and some versions "Try with this block range [0x.., 0x..]" in the message);
- Alchemy `-32602 Log response size exceeded ... this block range should work: [0x.., 0x..]`;
- Reth `-32602 query exceeds max results 20000, retry with the range 100-200`;
- block-span caps: QuickNode "eth_getLogs is limited to a 10,000 range", Alchemy "up to a 2K block
  range", Erigon/Nethermind/Ankr "exceed maximum block range: 5000", "block range ... 2000".

`suggested_range` reads the range a node proposes (the query is cut at its end); `span_limit` reads
a block-span cap (every later query is cut to it up front). An HTTP 413 (request or response
too large) of a single request comes back from the transport as an RpcError with code 413.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from tracer.chains.errors import RpcError

HTTP_TOO_LARGE = 413

_RESULT_CAP_MARKERS = (
    "more than",
    "query returned more than",
    "response size exceeded",
    "response size should not greater",
    "block range too large",
    "block range is too large",
    "block range exceeded",
    "range too large",
    "range is too large",
    "exceed maximum block range",
    "limit exceeded",
    "log response size exceeded",
    "too many results",
    "too many logs",
    "result set too large",
    "query timeout exceeded",
    "max results",
    "returned too many",
    "payload too large",
    "is limited to a",
)

_HEX_PAIR = re.compile(r"\[\s*(0x[0-9a-f]+)\s*,\s*(0x[0-9a-f]+)\s*\]", re.IGNORECASE)
_DEC_RANGE = re.compile(r"retry with the range (\d+)\s*-\s*(\d+)", re.IGNORECASE)
_SPANS = (
    re.compile(r"limited to a ([\d,]+) (?:block )?range", re.IGNORECASE),
    re.compile(r"up to a ([\d,]+)(k?) block range", re.IGNORECASE),
    re.compile(r"exceed(?:s|ed)? (?:the )?maximum block range(?: of|:)? ?([\d,]+)", re.IGNORECASE),
    re.compile(r"block range (?:is )?(?:limited to|must not exceed|should not exceed|exceeds?) ([\d,]+)",
               re.IGNORECASE),
)


def is_result_cap(err: RpcError) -> bool:
    """True when the node refused a query for its size (split it), false for other errors."""
    if err.code == HTTP_TOO_LARGE:
        return True
    message = err.message.lower()
    if err.code == -32005 and "rate" not in message:
        return True
    return any(marker in message for marker in _RESULT_CAP_MARKERS)


def suggested_range(err: RpcError) -> tuple[int, int] | None:
    """The block range the node proposes instead of the refused one, if it names one."""
    data = err.data
    if isinstance(data, Mapping) and data.get("from") is not None and data.get("to") is not None:
        try:
            return _number(data["from"]), _number(data["to"])
        except ValueError:
            pass
    found = _HEX_PAIR.search(err.message)
    if found:
        return int(found.group(1), 16), int(found.group(2), 16)
    found = _DEC_RANGE.search(err.message)
    if found:
        return int(found.group(1)), int(found.group(2))
    return None


def span_limit(err: RpcError) -> int | None:
    """The widest block span the node accepts, if its refusal says."""
    for pattern in _SPANS:
        found = pattern.search(err.message)
        if found:
            value = int(found.group(1).replace(",", ""))
            if len(found.groups()) > 1 and found.group(2):
                value *= 1000
            return value if value > 0 else None
    return None


def _number(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value).strip()
    return int(text, 16) if text[:2].lower() == "0x" else int(text)
