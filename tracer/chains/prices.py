"""USD prices read from Chainlink-compatible aggregators with `eth_call`, at the blocks asked for.

Every query of a call goes out in one JSON-RPC batch (`latestRoundData` at each block, `decimals`
once per feed), so pricing a trace costs a request or a few, never one per hop. The calls are
encoded and decoded with web3 from `abi/chainlink_aggregator.json` (AggregatorV3Interface).

A node that keeps no state at a block cannot run a contract there: those answers come back as
`FeedMiss(reason="no_state")`, the other queries still answer (the caller falls back to imported
prices, else leaves the value unknown).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext
from functools import cache
from importlib import resources
from typing import Any, Protocol

from eth_abi import decode as abi_decode
from web3 import Web3

from tracer.addresses import normalize_evm
from tracer.chains.errors import RpcError
from tracer.chains.evm import history

_ROUND_TYPES = ["uint80", "int256", "uint256", "uint256", "uint80"]


class _Batcher(Protocol):
    async def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]: ...


@dataclass(frozen=True, slots=True)
class FeedRound:
    """One answer of a feed as seen at `block`: round `round_id` said `answer` / 10**decimals USD."""

    feed: str
    block: int | None  # None: asked by round id (getRoundData), not at a block
    round_id: int
    answer: int
    decimals: int
    updated_at: int  # unix seconds of the round

    @property
    def usd(self) -> Decimal:
        with localcontext() as ctx:
            ctx.prec = 60
            return Decimal(self.answer).scaleb(-self.decimals)


@dataclass(frozen=True, slots=True)
class FeedMiss:
    """No usable answer: `no_state` (the node keeps no state there), `reverted` (no such feed or no
    round yet), `bad_answer` (answer <= 0 or undecodable)."""

    feed: str
    block: int | None
    reason: str
    detail: str


@cache
def _contract() -> Any:
    abi = json.loads(resources.files("tracer.chains").joinpath("abi", "chainlink_aggregator.json").read_text())
    return Web3().eth.contract(abi=abi)


def _data(name: str, *args: Any) -> str:
    return str(_contract().encode_abi(name, args=list(args)))


def _hexbytes(value: Any) -> bytes | None:
    if not isinstance(value, str) or not value.startswith("0x"):
        return None
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        return None


def _miss(feed: str, block: int | None, err: Any) -> FeedMiss:
    if isinstance(err, RpcError):
        reason = "no_state" if history.is_state_missing(err) else "reverted"
        return FeedMiss(feed, block, reason, f"{err.message} (code {err.code})")
    return FeedMiss(feed, block, "bad_answer", f"undecodable answer {str(err)[:80]!r}")


def _decode_round(feed: str, block: int | None, raw: Any, decimals: int | None) -> FeedRound | FeedMiss:
    data = _hexbytes(raw)
    if data is None or len(data) < 32 * 5:
        return _miss(feed, block, raw)
    round_id, answer, _started, updated_at, _answered = abi_decode(_ROUND_TYPES, data[: 32 * 5])
    if decimals is None:
        return FeedMiss(feed, block, "bad_answer", "decimals() gave no uint8")
    if answer <= 0 or updated_at == 0:
        return FeedMiss(feed, block, "bad_answer", f"round {round_id} answered {answer} at {updated_at}")
    return FeedRound(feed, block, int(round_id), int(answer), decimals, int(updated_at))


def _decimals(raw: Any) -> int | None:
    data = _hexbytes(raw)
    if data is None or len(data) != 32:
        return None
    (value,) = abi_decode(["uint256"], data)
    return int(value) if value <= 36 else None


async def _rounds(
    rpc: _Batcher, queries: Iterable[tuple[str, int]], round_call: str, at_block: bool
) -> dict[tuple[str, int], FeedRound | FeedMiss]:
    """`round_call` of each (feed, n) with each feed's `decimals()`, in one batch: at block n
    (`latestRoundData()` as the chain stood there) or at the latest block with n as the round id."""
    keys = list(dict.fromkeys((normalize_evm(f), int(n)) for f, n in queries))
    if not keys:
        return {}
    feeds = list(dict.fromkeys(f for f, _ in keys))
    calls: list[tuple[str, Sequence[Any]]] = [("eth_call", [{"to": f, "data": _data("decimals")}, "latest"])
                                              for f in feeds]
    if at_block:
        calls += [("eth_call", [{"to": f, "data": _data(round_call)}, hex(n)]) for f, n in keys]
    else:
        calls += [("eth_call", [{"to": f, "data": _data(round_call, n)}, "latest"]) for f, n in keys]
    answers = await rpc.batch(calls)
    decimals = {f: _decimals(a) for f, a in zip(feeds, answers[: len(feeds)], strict=True)}
    return {(f, n): _decode_round(f, n if at_block else None, a, decimals[f])
            for (f, n), a in zip(keys, answers[len(feeds):], strict=True)}


async def latest_rounds(rpc: _Batcher, queries: Iterable[tuple[str, int]]
                        ) -> dict[tuple[str, int], FeedRound | FeedMiss]:
    """`latestRoundData()` of each (feed, block) as the chain stood at that block, in one batch."""
    return await _rounds(rpc, queries, "latestRoundData", at_block=True)


async def rounds_by_id(rpc: _Batcher, queries: Iterable[tuple[str, int]]
                       ) -> dict[tuple[str, int], FeedRound | FeedMiss]:
    """`getRoundData(roundId)` of each (feed, round id) at the latest block, in one batch."""
    return await _rounds(rpc, queries, "getRoundData", at_block=False)
