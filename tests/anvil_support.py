"""Anvil (Foundry's EVM node) for tests: one or two real nodes at once, started by the test.

    async with anvil_node(chain_id=1, mode="archive") as node:   # node.url is the JSON-RPC URL
        ...

`mode`: "archive" (every state kept: balances at any past block), "pruned" (Anvil's default:
recent states only, as a full node), "prune_history" (`--prune-history`). Each node runs with
`--auto-impersonate`, zero base fee and gas price (balances stay exact), mining off (mine with
`evm_mine`), and a fresh HOME in a temporary folder deleted on teardown. The binary: $TRACER_ANVIL,
else PATH, else tests/node/node_modules (`npm ci --prefix tests/node`). Without it the test skips,
unless TRACER_REQUIRE_ANVIL=1 (set by .ci/run) makes that a failure.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tracer.devchain.anvil.node import AnvilNode, AnvilNotFound, Mode, find_anvil, running_anvil
from tracer.devchain.anvil.rpc import AnvilRpc

__all__ = ["AnvilNode", "AnvilRpc", "Mode", "anvil_node", "require_anvil", "send_mined"]


def require_anvil() -> str:
    """The anvil binary; skips the test when there is none (fails under TRACER_REQUIRE_ANVIL=1)."""
    try:
        return find_anvil()
    except AnvilNotFound as exc:
        if os.environ.get("TRACER_REQUIRE_ANVIL") == "1":
            pytest.fail(f"TRACER_REQUIRE_ANVIL=1 but {exc}")
        pytest.skip(str(exc))


@contextlib.asynccontextmanager
async def anvil_node(*, chain_id: int = 1337, mode: Mode = "archive", timestamp: int | None = None,
                     extra_args: list[str] | None = None) -> AsyncIterator[AnvilNode]:
    """A running Anvil node (see the module doc); killed and cleaned up afterwards."""
    require_anvil()
    async with running_anvil(chain_id=chain_id, mode=mode, timestamp=timestamp, extra_args=extra_args) as node:
        yield node


async def send_mined(rpc: AnvilRpc, frm: str, to: str | None, data: str = "0x", value: int = 0) -> dict[str, Any]:
    """Send a transaction (to None: a deployment), mine it, and return its receipt (status 1)."""
    tx: dict[str, Any] = {"from": frm, "data": data, "value": hex(value), "gas": hex(3_000_000), "gasPrice": "0x0"}
    if to is not None:
        tx["to"] = to
    h = await rpc.call("eth_sendTransaction", tx)
    await rpc.call("evm_mine")
    receipt = await rpc.call("eth_getTransactionReceipt", h)
    assert receipt["status"] == "0x1", receipt
    return dict(receipt)
