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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from tracer.chains.errors import RpcError

HTTP_TOO_LARGE = 413
Direction = Literal["out", "in", "both"]  # both: trace_filter's union of the two

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


@dataclass(frozen=True, slots=True)
class RangeQuery:
    """One trace_filter or eth_getLogs query; cut or split when refused as too big."""

    from_block: int
    to_block: int
    addresses: tuple[str, ...]  # the list that may be split; () when there is none
    direction: Direction = "out"
    after: int = 0  # trace_filter pagination offset

    def split(self, addresses_first: bool = False) -> tuple[RangeQuery, RangeQuery] | None:
        """Halves: by block range first, or by address list first when the request itself was
        too big (HTTP 413: fewer blocks would not make it smaller)."""
        if addresses_first and len(self.addresses) > 1:
            half = len(self.addresses) // 2
            return (
                replace(self, addresses=self.addresses[:half], after=0),
                replace(self, addresses=self.addresses[half:], after=0),
            )
        if self.to_block > self.from_block:
            mid = (self.from_block + self.to_block) // 2
            return (
                replace(self, to_block=mid, after=0),
                replace(self, from_block=mid + 1, after=0),
            )
        if len(self.addresses) > 1:
            half = len(self.addresses) // 2
            return (
                replace(self, addresses=self.addresses[:half], after=0),
                replace(self, addresses=self.addresses[half:], after=0),
            )
        return None

    def cut_at(self, last: int) -> tuple[RangeQuery, RangeQuery] | None:
        """[from, last] and [last + 1, to], when `last` (a node's suggested end) is inside."""
        if not self.from_block <= last < self.to_block:
            return None
        return replace(self, to_block=last, after=0), replace(self, from_block=last + 1, after=0)


def smaller(q: RangeQuery, err: RpcError) -> tuple[Sequence[RangeQuery] | None, int | None]:
    """The queries to ask instead of `q`, refused by `err` for its size: cut where the node
    suggests (a range it names), or into the block span it states (returned too, so the caller
    can cut later queries up front), else halved (None: nothing left to split)."""
    suggested = suggested_range(err)
    if suggested is not None:
        parts = q.cut_at(suggested[1])
        if parts is not None:
            return parts, None
    span = span_limit(err)
    if span is not None and q.to_block - q.from_block + 1 > span:
        return [
            replace(q, from_block=lo, to_block=min(lo + span - 1, q.to_block), after=0)
            for lo in range(q.from_block, q.to_block + 1, span)
        ], span
    return q.split(addresses_first=err.code == HTTP_TOO_LARGE), None
