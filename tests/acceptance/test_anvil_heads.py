"""The head watcher (tracer/chains/evm/heads.py) against a real node nobody here wrote: Anvil serves
WebSocket on its HTTP port, so the monitor's default (the RPC URL as ws://) reaches it, and the
blocks it mines arrive as numbers, in order, one per block (also when one call mines several)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from tests.alerts_support import wait_until
from tests.anvil_support import AnvilRpc, anvil_node
from tracer.chains.evm.heads import HeadSettings, HeadWatcher
from tracer.chains.urls import heads_url

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_anvil_pushes_mined_blocks_as_numbers_in_order() -> None:
    async with anvil_node(mode="pruned") as node, AnvilRpc(node.url) as rpc:
        url = heads_url(None, node.url, "ethereum")
        assert url is not None and url.startswith("ws://")
        watcher = HeadWatcher(url, chain="ethereum", settings=HeadSettings(connect_timeout=5.0, backoff=0.1))
        numbers: list[int] = []

        async def collect() -> None:
            async for n in watcher.heads():
                numbers.append(n)

        task = asyncio.create_task(collect())
        try:
            await wait_until(lambda: watcher.subscribed, timeout=30, what="Anvil's subscription answer")
            first = int(await rpc.call("eth_blockNumber"), 16) + 1
            for _ in range(3):
                await rpc.call("evm_mine")
            await rpc.call("anvil_mine", "0x4")  # four blocks in one call
            await wait_until(lambda: len(numbers) >= 7, timeout=30, what="seven heads")
            assert numbers == list(range(first, first + 7)) and watcher.junk == 0
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
