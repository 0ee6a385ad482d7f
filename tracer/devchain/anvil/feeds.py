"""Price feeds on Anvil: `PriceFeed.sol` placed at each path's feed address (the real feeds'
addresses, tracer.chains.feeds) with its rounds written into storage, before the scenario runs on
a fresh node (no transaction, no block: `execute_scenario` still finds the node at block 0)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from tracer.devchain.anvil.rpc import AnvilRpc
from tracer.devchain.prices import DECIMALS, PricePath

_ARTIFACT = Path(__file__).resolve().parent / "contracts" / "artifacts" / "PriceFeed.json"


def runtime_code() -> str:
    code = str(json.loads(_ARTIFACT.read_text())["deployedBytecode"])
    return code if code.startswith("0x") else "0x" + code


def _word(n: int) -> str:
    return "0x" + n.to_bytes(32, "big").hex()


async def place_feeds(url: str, paths: Iterable[PricePath]) -> int:
    """Place every path's feed on the node at `url`; returns how many feeds."""
    code = runtime_code()
    calls: list[tuple[str, list[object]]] = []
    feeds: dict[str, PricePath] = {}
    for p in paths:
        if p.decimals != DECIMALS:
            raise ValueError(f"{p.pair}: PriceFeed.sol answers with {DECIMALS} decimals, the path has {p.decimals}")
        feeds[p.feed] = p
    for feed, p in feeds.items():
        calls.append(("anvil_setCode", [feed, code]))
        calls.append(("anvil_setStorageAt", [feed, _word(0), _word(len(p.times))]))
        for i, (t, a) in enumerate(zip(p.times, p.answers, strict=True)):
            if not 0 < a < 2**127:
                raise ValueError(f"{p.pair}: answer {a} does not fit the feed's storage")
            calls.append(("anvil_setStorageAt", [feed, _word(1 + i), _word((t << 128) | a)]))
    async with AnvilRpc(url) as rpc:
        await rpc.batch(calls)
    return len(feeds)
