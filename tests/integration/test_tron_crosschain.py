"""Into Tron from another chain: a THORChain swap memo naming a Tron destination (`TRON.USDT-T...:
T...`) is read as chain "tron", its TRC-20 as the contract tracer stores, and the payout is found
among the destination's incoming transfers that TronChain reads from the Tron devchain."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
import pytest_asyncio

from tracer.addresses import normalize_address, tron_base58
from tracer.chains.retry import RetryPolicy, TransportOptions
from tracer.chains.tron import TronChain
from tracer.devchain.tron import USDT, TronStory, address, generate
from tracer.devchain.tron_server import TronServer
from tracer.domain.transfers import TransferQuery
from tracer.engine import bridges

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def story_client() -> AsyncIterator[tuple[TronStory, TronChain]]:
    story = generate()
    server = TronServer(story)
    await server.start()
    client = TronChain(server.jsonrpc_url, transport=TransportOptions(policy=RetryPolicy(backoff=0.01)))
    await client.connect()
    yield story, client
    await client.close()
    await server.stop()


async def test_a_thorchain_swap_to_tron_usdt_finds_its_payout(story_client: tuple[TronStory, TronChain]) -> None:
    story, client = story_client
    wallet = address(24, "layer_e")  # receives 1,000,000 USDT in the story: the swap's payout here
    memo = f"=:TRON.USDT-TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t:{tron_base58(wallet)}:0/1/0"
    ex = bridges.thorchain_memo("0x" + "ab" * 32, memo)
    assert (ex.dest_chain, ex.dest_address) == ("tron", tron_base58(wallet))
    assert bridges.payout_asset(ex) == USDT
    dest = normalize_address("tron", ex.dest_address)
    assert dest == wallet

    deposit_time = story.blocks[5].timestamp_ms // 1000
    incoming = await client.transfers(TransferQuery([dest], 0, await client.head(), outgoing=True, incoming=True))
    match = bridges.match_payout(incoming, replace(ex, dest_address=dest), deposit_time)
    assert match is not None and match.method == bridges.MATCH_SINGLE
    assert (match.transfer.asset, match.transfer.amount, match.transfer.to_address) == (USDT, 1_000_000 * 10**6, wallet)
    # Matched on the memo's own spelling (T...), nothing would be found: the worker passes the stored form.
    assert bridges.match_payout(incoming, ex, deposit_time) is None
