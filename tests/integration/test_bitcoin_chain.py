"""EsploraChain over real HTTP against the devchain's Esplora server: paging, the proportional
flattening of transactions into transfers, OP_RETURN memos, balances, faults and retries, the
network check, garbage in well-formed answers told as such; Bitcoin address validation with the
BIP-173/BIP-350 vectors.

The tests that need nothing outside the process are in tests/unit/test_bitcoin_chain.py.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tests.garbage_support import Case, Garble, judge
from tracer.addresses import (
    InvalidAddress,
)
from tracer.chains.bitcoin import EsploraChain, NotFound, flatten
from tracer.chains.errors import ChainError, WrongChain
from tracer.chains.factory import connect_chain
from tracer.chains.retry import RetryPolicy, TransportOptions
from tracer.devchain.bitcoin.index import BitcoinChainIndex
from tracer.devchain.bitcoin.records import COIN, BitcoinScenario, BitcoinScenarioParams, Handoff
from tracer.devchain.bitcoin.story import generate
from tracer.devchain.esplora import EsploraServer
from tracer.devchain.server import FaultPlan
from tracer.domain.transfers import NATIVE, TransferQuery

aio = pytest.mark.asyncio(loop_scope="session")

INBOUND = "0x" + "5e" * 32


# -- addresses ----------------------------------------------------------------------------------


# -- flattening arithmetic ------------------------------------------------------------------------


# -- over HTTP ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def scenario() -> BitcoinScenario:
    handoffs = (Handoff.thorchain(INBOUND, 3 * COIN, 1_700_006_000),)
    return generate(BitcoinScenarioParams(seed=5, peel_hops=10, handoffs=handoffs, noise_per_block=4))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def servers(scenario: BitcoinScenario) -> AsyncIterator[dict[str, EsploraServer]]:
    started = {"healthy": EsploraServer(scenario), "paged": EsploraServer(scenario, page_size=3)}
    for s in started.values():
        await s.start()
    yield started
    for s in started.values():
        await s.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client(servers: dict[str, EsploraServer]) -> AsyncIterator[EsploraChain]:
    c = EsploraChain(servers["healthy"].url)
    await c.connect()
    yield c
    await c.close()


def _all_addresses(scenario: BitcoinScenario) -> list[str]:
    index = BitcoinChainIndex(scenario)
    return sorted(index.address_txs)


@aio
async def test_connect_checks_the_network_by_its_genesis_block(servers: dict[str, EsploraServer]) -> None:
    c = EsploraChain(servers["healthy"].url, network="mainnet")
    await c.connect()
    assert c.network is not None and c.network.name == "mainnet" and c.chain_id == 0xD9B4BEF9
    await c.close()
    wrong = EsploraChain(servers["healthy"].url, network="regtest")
    with pytest.raises(WrongChain, match="mainnet"):
        await wrong.connect()
    await wrong.close()

    regtest = generate(BitcoinScenarioParams(seed=2, network="regtest", peel_hops=3, coinjoin=False,
                                             noise_per_block=1, tail_blocks=5))
    assert all(s.startswith("bcrt1") for s in regtest.seeds)
    server = EsploraServer(regtest)
    url = await server.start()
    try:
        with pytest.raises(WrongChain, match="regtest"):
            await connect_chain("bitcoin", url)  # mainnet by default
        c = await connect_chain("bitcoin", url, network="regtest")
        assert isinstance(c, EsploraChain) and c.chain_id == 0xDAB5BFFA
        transfers = await c.transfers(TransferQuery(regtest.seeds, 0, await c.head()))
        assert transfers and transfers[0].from_address == regtest.seeds[0]
        await c.close()
    finally:
        await server.stop()


@aio
async def test_head_and_block_times(client: EsploraChain, scenario: BitcoinScenario) -> None:
    assert await client.head() == scenario.head
    times = await client.block_times([0, 1, scenario.head])
    assert times == {0: scenario.blocks[0].timestamp, 1: scenario.blocks[1].timestamp,
                     scenario.head: scenario.blocks[-1].timestamp}
    with pytest.raises(NotFound):
        await client.block_times([scenario.head + 5])


@aio
async def test_paging_gives_the_same_transfers_with_small_pages(
    client: EsploraChain, servers: dict[str, EsploraServer], scenario: BitcoinScenario
) -> None:
    exchanges = [lb.address for lb in scenario.labels if lb.category == "exchange"]
    addresses = exchanges + scenario.seeds + [h.change_address for h in scenario.truth.peel]
    full = await client.transfers(TransferQuery(addresses, 0, scenario.head, outgoing=True, incoming=True))
    paged_client = EsploraChain(servers["paged"].url, page_size=3)
    await paged_client.connect()
    try:
        paged = await paged_client.transfers(TransferQuery(addresses, 0, scenario.head, outgoing=True, incoming=True))
        assert paged == full
        assert paged_client.request_counts["address/txs/chain"] > 10  # the hot wallets paged
        # A window in the middle: paging stops once a page ends below it.
        lo, hi = scenario.head // 3, scenario.head // 2
        before = paged_client.request_counts["address/txs/chain"]
        window = await paged_client.transfers(TransferQuery(exchanges, lo, hi, outgoing=True, incoming=True))
        assert window == [t for t in full if lo <= t.block_number <= hi
                          and (t.from_address in exchanges or t.to_address in exchanges)]
        assert paged_client.request_counts["address/txs/chain"] - before < before
    finally:
        await paged_client.close()
    assert [t.order for t in full] == sorted(t.order for t in full)
    assert len({t.key for t in full}) == len(full)


@aio
async def test_directions(client: EsploraChain, scenario: BitcoinScenario) -> None:
    hop = scenario.truth.peel[3]
    out = await client.transfers(TransferQuery([hop.from_address], 0, scenario.head, outgoing=True, incoming=False))
    inc = await client.transfers(TransferQuery([hop.from_address], 0, scenario.head, outgoing=False, incoming=True))
    assert {t.to_address: t.amount for t in out} == {hop.deposit_address: hop.payment, hop.change_address: hop.change}
    assert [t.to_address for t in inc] == [hop.from_address]
    assert all(t.asset == NATIVE and t.decimals == 8 and t.symbol == "BTC" for t in out + inc)
    neither = TransferQuery([hop.from_address], 0, scenario.head, outgoing=False, incoming=False)
    assert await client.transfers(neither) == []


@aio
async def test_flattening_sums_over_every_transaction(client: EsploraChain, scenario: BitcoinScenario) -> None:
    """Over the whole chain: each output address receives exactly its outputs (unless it also
    paid in: change back to an input address does not move), each input pays its proportional
    share, and nothing comes out of the fee."""
    everything = TransferQuery(_all_addresses(scenario), 0, scenario.head, outgoing=True, incoming=True)
    transfers = await client.transfers(everything)
    by_tx: dict[str, list[Any]] = defaultdict(list)
    for t in transfers:
        by_tx[t.tx_hash].append(t)
    txs = await client.transactions(list(by_tx))
    checked = 0
    for txid, tx in txs.items():
        assert tx.block_number is not None and tx.tx_index >= 1  # coinbase first, never flattened
        mine = by_tx[txid]
        assert sorted(mine, key=lambda t: t.position) == sorted(flatten(tx), key=lambda t: t.position)
        assert sum(t.amount for t in mine) <= tx.total_in - tx.fee
        senders = set(tx.input_addresses())
        for out in tx.outputs:
            if out.address is None or out.address in senders:
                continue
            got = sum(t.amount for t in mine if t.to_address == out.address)
            assert got == sum(o.value for o in tx.outputs if o.address == out.address)
        if not senders & set(tx.output_addresses()):
            assert sum(t.amount for t in mine) == tx.total_out
            for inp in tx.inputs:
                share = sum(t.amount for t in mine if t.position.startswith(f"io:{inp.index}:"))
                assert abs(share - inp.value * tx.total_out / tx.total_in) < 1
            checked += 1
    assert checked > 50
    cj = scenario.truth.coinjoins[0]
    coinjoin = [t for t in transfers if t.tx_hash == cj.txid]
    assert len(coinjoin) == len(txs[cj.txid].inputs) * len(txs[cj.txid].outputs)


@aio
async def test_transactions_and_memos(client: EsploraChain, scenario: BitcoinScenario) -> None:
    ho = scenario.truth.handoffs[0]
    cj = scenario.truth.coinjoins[0]
    txs = await client.transactions([ho.txid, cj.txid, ho.txid.upper()])
    payout = txs[ho.txid]
    assert payout.memo == "OUT:" + INBOUND[2:].upper() == ho.memo
    assert payout.outputs[0].script_type == "op_return" and payout.outputs[0].address is None
    assert {o.address: o.value for o in payout.outputs if o.address == ho.address} == {ho.address: ho.amount}
    # The payout's transfers carry the memo (cross-chain continuation matches on it).
    incoming = await client.transfers(TransferQuery([ho.address], 0, scenario.head, outgoing=False, incoming=True))
    assert [(t.from_address, t.amount, t.memo) for t in incoming] == [(ho.vault, ho.amount, ho.memo)]

    mix = txs[cj.txid]
    equal = [o for o in mix.outputs if o.value == cj.denomination]
    assert len(equal) == cj.anonymity_set == len(cj.equal_vouts)
    assert {o.script_type for o in mix.outputs} == {"p2wpkh"}
    assert [i.index for i in mix.inputs if i.index in cj.tainted_vins] == list(cj.tainted_vins)
    assert sum(mix.inputs[k].value for k in cj.tainted_vins) == cj.tainted_in

    spends = await client.outspends(ho.txid)
    assert len(spends) == len(payout.outputs)
    dest_vout = next(o.index for o in payout.outputs if o.address == ho.address)
    assert spends[dest_vout].spent and spends[dest_vout].txid == ho.onward_txid
    assert not spends[0].spent  # the OP_RETURN


@aio
async def test_native_balances_from_history(client: EsploraChain, servers: dict[str, EsploraServer],
                                            scenario: BitcoinScenario) -> None:
    index = BitcoinChainIndex(scenario)
    wallets = [lb.address for lb in scenario.labels] + scenario.seeds + [h.change_address for h in scenario.truth.peel]
    heights = [0, 3, scenario.truth.peel[2].block, scenario.head // 2, scenario.head]
    got = await client.native_balances([(a, h) for a in wallets for h in heights])
    for a in wallets:
        for h in heights:
            expected = 0
            for blk in scenario.blocks[: h + 1]:
                for tx in blk.txs:
                    expected += sum(o.value for o in tx.outputs if o.address == a)
                    if not tx.coinbase:
                        expected -= sum(index.prevout(i).value for i in tx.inputs if index.prevout(i).address == a)
            assert got[(a, h)] == expected, (a, h)
    # Small pages: the long histories (the labelled wallets) are read back from their stats only
    # down to the lowest block asked, not to their first transaction.
    paged = EsploraChain(servers["paged"].url, page_size=3)
    await paged.connect()
    try:
        assert await paged.native_balances([(a, h) for a in wallets for h in heights]) == got
        assert paged.request_counts["address"] > 0
        hot = next(lb.address for lb in scenario.labels if lb.entity == "Binance")
        start = paged.request_counts["address/txs/chain"]
        assert (await paged.native_balances([(hot, scenario.head)]))[(hot, scenario.head)] == got[(hot, scenario.head)]
        assert paged.request_counts["address/txs/chain"] == start  # nothing after the head: no paging
    finally:
        await paged.close()
    before_first_hop = (scenario.seeds[0], scenario.truth.peel[0].block - 1)
    assert (await client.native_balances([before_first_hop]))[before_first_hop] == scenario.truth.stolen[NATIVE]


@aio
async def test_bad_addresses_are_refused_before_any_request(client: EsploraChain) -> None:
    before = client.request_counts["http"]
    with pytest.raises(InvalidAddress):
        await client.transfers(TransferQuery(["bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t5"], 0, 10))
    with pytest.raises(InvalidAddress):
        await client.native_balances([("0x098b716b8aaf21512996dc57eb0615e2383e2f96", 1)])
    assert client.request_counts["http"] == before


@aio
async def test_a_server_on_another_network_refuses_the_address(servers: dict[str, EsploraServer]) -> None:
    c = EsploraChain(servers["healthy"].url)
    await c.connect()
    try:
        with pytest.raises(ChainError, match="invalid network"):
            await c.transfers(TransferQuery(["tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7"], 0, 10))
    finally:
        await c.close()


@aio
async def test_faults_and_rate_limits_are_ridden_out(
    client: EsploraChain, servers: dict[str, EsploraServer], scenario: BitcoinScenario
) -> None:
    addresses = scenario.seeds + [h.change_address for h in scenario.truth.peel] + \
        [lb.address for lb in scenario.labels if lb.category == "exchange"]
    healthy = await client.transfers(TransferQuery(addresses, 0, scenario.head, outgoing=True, incoming=True))
    balances = await client.native_balances([(a, scenario.head // 2) for a in addresses])
    plan = FaultPlan(seed=3, hang=0.03, hang_seconds=2.0, http_500=0.06, http_502=0.03, http_503=0.06,
                     reset=0.05, malformed=0.08)
    faulty = EsploraServer(scenario, faults=plan, rate_limit=150.0, page_size=5)
    url = await faulty.start()
    c = EsploraChain(url, page_size=5, transport=TransportOptions(
        timeout=0.5, policy=RetryPolicy(retries=12, backoff=0.01, max_backoff=0.2)))
    try:
        await c.connect()
        assert await c.transfers(TransferQuery(addresses, 0, scenario.head, outgoing=True, incoming=True)) == healthy
        assert await c.native_balances([(a, scenario.head // 2) for a in addresses]) == balances
    finally:
        await c.close()
        await faulty.stop()
    for kind in ("hang", "http_500", "http_503", "reset", "malformed"):
        assert faulty.fault_counts[kind] > 0, faulty.fault_counts
    assert c.request_counts["http"] > sum(v for k, v in c.request_counts.items() if k != "http") / 2


@aio
async def test_429_retry_after_pauses_every_request(scenario: BitcoinScenario) -> None:
    server = EsploraServer(scenario, rate_limit=5.0)
    url = await server.start()
    c = EsploraChain(url, transport=TransportOptions(concurrency=4, policy=RetryPolicy(retries=8, backoff=0.01)))
    try:
        await c.connect()
        times = await c.block_times(range(0, 12))
        assert len(times) == 12
        assert server.request_counts["http_429"] > 0
    finally:
        await c.close()
        await server.stop()


@aio
async def test_a_dead_server_is_a_chain_error(scenario: BitcoinScenario) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    c = EsploraChain(f"http://127.0.0.1:{port}",
                     transport=TransportOptions(policy=RetryPolicy(retries=2, backoff=0.01)))
    with pytest.raises(ChainError, match="gave up after 2 tries"):
        await c.connect()
    await c.close()
    # A server that only ever answers 5xx gives up the same way, naming the endpoint.
    server = EsploraServer(scenario, faults=FaultPlan(http_502=1.0))
    url = await server.start()
    c = EsploraChain(url, transport=TransportOptions(policy=RetryPolicy(retries=3, backoff=0.01)))
    try:
        with pytest.raises(ChainError, match="block-height"):
            await asyncio.wait_for(c.connect(), 10)
    finally:
        await c.close()
        await server.stop()


@aio
async def test_block_hashes_for_the_live_monitor(client: EsploraChain, scenario: BitcoinScenario) -> None:
    got = await client.block_hashes([0, 5, scenario.head, scenario.head + 1])
    assert got == {0: scenario.blocks[0].hash, 5: scenario.blocks[5].hash, scenario.head: scenario.blocks[-1].hash}


@aio
async def test_devchain_cli_serves_bitcoin_over_esplora() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tracer.cli", "devchain", "--bitcoin", "--port", "0", "--seed", "4",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    assert proc.stdout is not None
    try:
        url = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode().strip()
        seeds = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode().split()[1:]
        expected = generate(BitcoinScenarioParams(seed=4))
        assert url.startswith("http://") and seeds == expected.seeds
        c = await connect_chain("bitcoin", url)
        try:
            assert await c.head() == expected.head
        finally:
            await c.close()
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 30)


@aio
async def test_positions_from_merkle_proofs_or_block_lists_agree(
    servers: dict[str, EsploraServer], scenario: BitcoinScenario
) -> None:
    """A transaction's position in its block comes from its merkle proof when few of a block's
    transactions are wanted, from the block's txid list when many are: both say the same."""
    addresses = scenario.seeds + [h.change_address for h in scenario.truth.peel] + \
        [h.deposit_address for h in scenario.truth.peel]
    results = []
    for threshold in (1, 10**6):
        c = EsploraChain(servers["healthy"].url, block_list_threshold=threshold)
        await c.connect()
        try:
            results.append(await c.transfers(TransferQuery(addresses, 0, scenario.head, outgoing=True, incoming=True)))
            counts = c.request_counts
        finally:
            await c.close()
        used, unused = ("block/txids", "tx/merkle-proof") if threshold == 1 else ("tx/merkle-proof", "block/txids")
        assert counts[used] > 0 and counts[unused] == 0
    assert results[0] == results[1]
    index = BitcoinChainIndex(scenario)
    for t in results[0]:
        assert t.tx_index == index.txs[t.tx_hash][2]


@aio
async def test_merkle_proofs_fold_to_the_block_merkle_root(servers: dict[str, EsploraServer],
                                                           scenario: BitcoinScenario) -> None:
    import hashlib

    import aiohttp

    def h(data: bytes) -> bytes:
        return hashlib.sha256(hashlib.sha256(data).digest()).digest()

    block = max(scenario.blocks, key=lambda b: len(b.txs))
    base = servers["healthy"].url
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/block/{block.hash}") as r:
            root = (await r.json())["merkle_root"]
        for pos, tx in enumerate(block.txs):
            async with session.get(f"{base}/tx/{tx.txid}/merkle-proof") as r:
                proof = await r.json()
            assert proof["pos"] == pos and proof["block_height"] == block.height
            acc, k = bytes.fromhex(tx.txid)[::-1], pos
            for sibling in proof["merkle"]:
                s = bytes.fromhex(sibling)[::-1]
                acc = h(s + acc) if k & 1 else h(acc + s)
                k //= 2
            assert acc[::-1].hex() == root


@aio
async def test_garbage_in_an_answer_is_a_clear_chain_error(servers: dict[str, EsploraServer],
                                                            scenario: BitcoinScenario) -> None:
    """Each endpoint's answers garbled in turn (tests/garbage_support.py), on the server with pages
    of 3 (so a balance reads the address's stats): a MalformedAnswer naming the server and the
    endpoint, never the KeyError... of mapping it."""

    async def connect(garble: Garble, case: Case) -> EsploraChain:
        client = EsploraChain(servers["paged"].url, network=scenario.network, page_size=3,
                              transport=TransportOptions(policy=RetryPolicy(retries=2, backoff=0.01)))
        await client.connect()
        get = client._get

        async def garbled_get(path: str, endpoint: str, *, text: Any = None) -> Any:
            return garble(endpoint, await get(path, endpoint, text=text))

        client._get = garbled_get  # type: ignore[method-assign]
        return client

    index = BitcoinChainIndex(scenario)
    busiest = max(index.address_txs, key=lambda a: len(index.address_txs[a]))
    spent = next(t for t, _vout in index.spent_by)  # its outspends name the inputs spending them

    async def transfers(c: EsploraChain) -> Any:
        return await c.transfers(TransferQuery(scenario.seeds, 0, index.head, incoming=True))

    cases = [
        Case("block", lambda c: c.block_times([1, 2, 3]), http=True),
        Case("address/txs", transfers, http=True),
        Case("tx/merkle-proof", transfers, http=True),
        Case("tx", lambda c: c.transactions([spent]), http=True),
        Case("tx/outspends", lambda c: c.outspends(spent), http=True),
        Case("address", lambda c: c.native_balances([(busiest, 1)]), http=True),
    ]
    problems = await judge(cases, connect, lambda c, _endpoint: f"Esplora server at {c.name}")
    assert not problems, "\n".join(problems)
