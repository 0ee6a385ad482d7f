"""TronChain against the Tron devchain (tracer/devchain/tron_server.py): TRC-20 by eth_getLogs,
TRX / TRC-10 / internal transactions from blocks and their execution results, the solidified head,
balances at the head, token metadata, the transport's retries on a misbehaving node, and garbage in
well-formed answers told as such."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tests.garbage_support import KEY, Case, Garble, judge
from tracer.chains.errors import StateUnavailable, WrongChain
from tracer.chains.retry import RetryPolicy, TransportOptions
from tracer.chains.tron import TronChain
from tracer.devchain.http import FaultPlan
from tracer.devchain.tron import SOLID_LAG, TRC10_ID, USD, USDT, TronStory, generate
from tracer.devchain.tron_server import TronServer
from tracer.domain.transfers import NATIVE, TransferKind, TransferQuery

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(scope="module")
def story() -> TronStory:
    return generate()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def server(story: TronStory) -> AsyncIterator[TronServer]:
    s = TronServer(story)
    await s.start()
    yield s
    await s.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client(server: TronServer) -> AsyncIterator[TronChain]:
    c = TronChain(server.jsonrpc_url, transport=TransportOptions(policy=RetryPolicy(backoff=0.01)))
    await c.connect()
    yield c
    await c.close()


async def test_connects_with_the_genesis_chain_id_and_solidified_head(client: TronChain, story: TronStory) -> None:
    assert client.chain_id == 0x2B6653DC  # Tron mainnet: the genesis block id's last 4 bytes
    assert await client.head() == story.head - SOLID_LAG


async def test_transfers_of_every_kind(client: TronChain, story: TronStory) -> None:
    by = {(o.entity, o.asset): o for o in story.truth.offramps}
    trx_in, usdt_in = by[("OKX", NATIVE)], by[("Binance", USDT)]
    okx2 = trx_in.address
    got = await client.transfers(TransferQuery([okx2], 0, await client.head(), outgoing=False, incoming=True))
    by_kind = {(t.kind, t.asset): t for t in got}
    internal = by_kind[(TransferKind.INTERNAL, NATIVE)]
    assert internal.amount == trx_in.amount and internal.position == "call:0"
    assert by_kind[(TransferKind.TOKEN, "trc10:" + TRC10_ID)].amount == 5_000_000_000
    assert internal.decimals == 6 and internal.symbol == "TRX"
    # Outgoing: the sweeps, TRX at the top level and the TRC-10 token.
    out = await client.transfers(TransferQuery([okx2], 0, await client.head()))
    assert {(t.kind, t.to_address) for t in out} == {(TransferKind.NATIVE, story.truth.hot_wallets["OKX"]),
                                                    (TransferKind.TOKEN, story.truth.hot_wallets["OKX"])}
    # TRC-20 from logs, addresses back in tracer's 0x41 form, the log's position and block time.
    into_usdt = TransferQuery([usdt_in.address], 0, await client.head(), outgoing=False, incoming=True)
    usdt = await client.transfers(into_usdt)
    (t,) = usdt
    assert (t.asset, t.amount, t.to_address) == (USDT, usdt_in.amount, usdt_in.address)
    assert t.position.startswith("log:") and t.block_time == story.blocks[t.block_number].timestamp_ms // 1000


async def test_balances_at_the_head_only(client: TronChain, story: TronStory) -> None:
    head = await client.head()
    hot = story.truth.hot_wallets["Binance"]
    native = await client.native_balances([(hot, head)])
    assert native[(hot, head)] == story.trx[hot] > 0
    tokens = await client.token_balances([(hot, USDT, head)])
    assert tokens[(hot, USDT, head)] == story.trc20[(USDT, hot)] == 612_345 * USD + 678_901
    okx = story.truth.hot_wallets["OKX"]
    trc10 = await client.token_balances([(okx, "trc10:" + TRC10_ID, head)])
    assert trc10[(okx, "trc10:" + TRC10_ID, head)] == 5_000_000_000
    with pytest.raises(StateUnavailable):
        await client.native_balances([(hot, head - 5)])
    meta = await client.token_meta([USDT, "trc10:" + TRC10_ID])
    assert meta == {USDT: (6, "USDT"), "trc10:" + TRC10_ID: (6, "BTT")}


async def test_logs_and_block_reads(client: TronChain, story: TronStory) -> None:
    from tracer.devchain.tron import ADDED_BLACKLIST

    logs = await client.logs(USDT, [ADDED_BLACKLIST], 0, await client.head())
    (freeze,) = logs
    assert freeze.address == USDT and freeze.block_number == story.truth.freeze.block
    assert freeze.data.endswith(story.truth.freeze.address[4:])
    hashes = await client.block_hashes([0, 5])
    assert hashes[0] == "0x" + story.blocks[0].block_id and hashes[5] == "0x" + story.blocks[5].block_id


async def test_a_misbehaving_node_is_retried(story: TronStory) -> None:
    s = TronServer(story, faults=FaultPlan(seed=3, http_500=0.3, reset=0.1))
    await s.start()
    try:
        c = TronChain(s.jsonrpc_url, transport=TransportOptions(policy=RetryPolicy(retries=12, backoff=0.01)))
        await c.connect()
        try:
            got = await c.transfers(TransferQuery([story.seeds[0]], 0, await c.head()))
            # Out of the thief: USDT twice, TRX twice, the TRC-10 token once (its id decoded from hex).
            assert sorted((t.asset, t.amount) for t in got) == sorted(
                (a, n) for a, n in [(USDT, 900_000 * USD + 123_456), (USDT, 1_000_000 * USD), (NATIVE, 450_000 * 10**6),
                                    (NATIVE, 250_000 * 10**6), ("trc10:" + TRC10_ID, 5_000_000_000)])
        finally:
            await c.close()
        assert s.fault_counts["http_500"] > 0
    finally:
        await s.stop()


async def test_two_urls_on_different_chains_are_refused(server: TronServer, story: TronStory) -> None:
    other = generate(seed=7)
    s = TronServer(other)
    await s.start()
    try:
        # The devchain's genesis is mainnet's for every seed: a node of another chain id (Nile's) differs.
        from tracer.devchain import tron_server

        original = tron_server.CHAIN_ID
        tron_server.CHAIN_ID = 0xCD8690DC
        try:
            c = TronChain(s.jsonrpc_url, api_url=server.url,
                          transport=TransportOptions(policy=RetryPolicy(backoff=0.01)))
            with pytest.raises(WrongChain, match="TRACER_TRON_API_URL"):
                await c.connect()
            await c.close()
        finally:
            tron_server.CHAIN_ID = original
    finally:
        await s.stop()


async def test_garbage_in_an_answer_is_a_clear_chain_error(server: TronServer, story: TronStory) -> None:
    """Each API path's and eth_getLogs' answers garbled in turn (tests/garbage_support.py): a
    MalformedAnswer naming the node and the path or method, never the KeyError... of mapping it."""

    async def connect(garble: Garble, case: Case) -> TronChain:
        client = TronChain(server.jsonrpc_url + f"?apikey={KEY}", api_url=server.url,
                           transport=TransportOptions(policy=RetryPolicy(retries=2, backoff=0.01)))
        await client.connect()
        post, batch = client.api.post, client.rpc.batch

        async def garbled_post(path: str, body: dict[str, Any]) -> Any:
            return garble(path, await post(path, body))

        async def garbled_batch(calls: Any) -> list[Any]:
            return [garble(m, a) for (m, _), a in zip(calls, await batch(calls), strict=True)]

        client.api.post = garbled_post  # type: ignore[method-assign]
        client.rpc.batch = garbled_batch  # type: ignore[method-assign]
        return client

    solid = story.head - SOLID_LAG
    hot, okx = story.truth.hot_wallets["Binance"], story.truth.hot_wallets["OKX"]

    async def transfers(c: TronChain) -> Any:
        return await c.transfers(TransferQuery([story.seeds[0], okx], 0, solid, incoming=True))

    async def head(c: TronChain) -> int:
        return await c.head()

    cases = [
        Case("/wallet/getnodeinfo", head, http=True),
        Case("/wallet/getblockbylimitnext", transfers, http=True),
        Case("/wallet/gettransactioninfobyblocknum", transfers, http=True),
        Case("/wallet/getaccount", lambda c: c.native_balances([(hot, solid)]), http=True),
        Case("/wallet/triggerconstantcontract", lambda c: c.token_balances([(hot, USDT, solid)]), http=True),
        Case("eth_getLogs", transfers, null_is_an_answer=True),
    ]
    problems = await judge(cases, connect, lambda c, method: f"Tron node at {c.api.name}" if method.startswith("/")
                           else f"Tron JSON-RPC at {c.name}")
    assert not problems, "\n".join(problems)
