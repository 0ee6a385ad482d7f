"""The chain layer against a real EVM nobody here wrote: eth-tester/py-evm over HTTP (tests/evm_bridge.py).

Real ETH transfers and real ERC-20 transfers (contracts compiled from tests/data/chain/) are made
on the chain; `EvmChain` must find exactly those, through the block-scan + eth_getLogs path
(eth-tester has neither trace_filter nor debug tracing), also when the node caps getLogs answers
and when the HTTP layer misbehaves.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from web3.contract import Contract

from tests.evm_bridge import EvmBridge
from tracer.addresses import InvalidAddress
from tracer.chains.evm import ChainError, EvmChain, WrongChain
from tracer.chains.evm.mappers import TRANSFER_TOPIC
from tracer.chains.retry import RetryPolicy, TransportOptions
from tracer.domain.transfers import NATIVE, Transfer, TransferKind, TransferQuery

DATA = Path(__file__).resolve().parents[1] / "data"
CONTRACTS = json.loads((DATA / "chain" / "test_contracts.json").read_text())["contracts"]
ETH = 10**18

Row = tuple[int, int, str, int, str, str, str, str, int, TransferKind]


@dataclass
class World:
    bridge: EvmBridge
    seeds: list[str]
    token: str
    token2: str
    forwarder: str
    head: int
    truth: list[Row] = field(default_factory=list)  # every transfer that really moved value

    def expected(self, outgoing: bool = True, incoming: bool = False) -> list[Row]:
        seeds = set(self.seeds)
        rows = [r for r in self.truth if (outgoing and r[5] in seeds) or (incoming and r[6] in seeds)]
        return sorted(rows, key=_row_order)


def _row_order(r: Row) -> tuple[int, int, int, str]:
    t = _to_transfer(r)
    return t.order


def _to_transfer(r: Row) -> Transfer:
    return Transfer("ethereum", r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9])


def rows(transfers: list[Transfer]) -> list[Row]:
    return [
        (
            t.block_number,
            t.block_time,
            t.tx_hash,
            t.tx_index,
            t.position,
            t.from_address,
            t.to_address,
            t.asset,
            t.amount,
            t.kind,
        )
        for t in transfers
    ]


def build_world() -> World:
    """Make real transactions on a fresh eth-tester chain and write down what they moved."""
    bridge = EvmBridge()
    w3 = bridge.w3
    tester = bridge.provider.ethereum_tester
    acct = list(w3.eth.accounts)
    s1, s2 = acct[1], acct[2]
    truth: list[Row] = []

    def receipt_of(tx_hash: bytes) -> Any:
        return w3.eth.get_transaction_receipt(tx_hash)

    def note_native(tx_hash: bytes, frm: str, to: str, value: int) -> None:
        r = receipt_of(tx_hash)
        assert r.status == 1
        ts = w3.eth.get_block(r.blockNumber).timestamp
        truth.append(
            (
                r.blockNumber,
                ts,
                "0x" + bytes(tx_hash).hex(),
                r.transactionIndex,
                "tx",
                frm.lower(),
                to.lower(),
                NATIVE,
                value,
                TransferKind.NATIVE,
            )
        )

    def note_token(tx_hash: bytes, token: Contract, frm: str, to: str, value: int) -> None:
        r = receipt_of(tx_hash)
        assert r.status == 1
        ts = w3.eth.get_block(r.blockNumber).timestamp
        # The log index is the chain's to choose; which log it is, is ours to know.
        (log_index,) = [
            lg.logIndex
            for lg in r.logs
            if lg.topics[0].hex().removeprefix("0x") == TRANSFER_TOPIC[2:]
            and lg.topics[2].hex()[-40:] == to.lower()[2:]
            and int(lg.data.hex(), 16) == value
        ]
        truth.append(
            (
                r.blockNumber,
                ts,
                "0x" + bytes(tx_hash).hex(),
                r.transactionIndex,
                f"log:{log_index}",
                frm.lower(),
                to.lower(),
                token.address.lower(),
                value,
                TransferKind.TOKEN,
            )
        )

    def deploy(name: str, *args: Any) -> Contract:
        factory = w3.eth.contract(abi=CONTRACTS[name]["abi"], bytecode=CONTRACTS[name]["bytecode"])
        r = receipt_of(factory.constructor(*args).transact({"from": acct[0]}))
        return w3.eth.contract(address=r.contractAddress, abi=CONTRACTS[name]["abi"])

    token = deploy("TestToken", "Test Token", "TST", 6, 10**15)
    forwarder = deploy("Forwarder")

    # One block with several transactions, to check tx_index ordering. (eth-tester drops failing
    # transactions from a block mined by hand, and gives a sender's second pending transaction the
    # same nonce: so one transaction per sender here, and failures are sent with auto-mining on.)
    tester.disable_auto_mine_transactions()
    batch = [
        (w3.eth.send_transaction({"from": s1, "to": acct[3], "value": 1 * ETH}), s1, acct[3], 1 * ETH),
        (w3.eth.send_transaction({"from": s2, "to": acct[4], "value": 2 * ETH}), s2, acct[4], 2 * ETH),
        (w3.eth.send_transaction({"from": acct[3], "to": acct[4], "value": 5}), acct[3], acct[4], 5),
        (w3.eth.send_transaction({"from": acct[6], "to": s1, "value": 7 * ETH}), acct[6], s1, 7 * ETH),
    ]
    token_in = token.functions.transfer(s1, 1_000_000).transact({"from": acct[0], "gas": 100_000})
    tester.mine_blocks(1)
    tester.enable_auto_mine_transactions()
    for tx_hash, frm, to, value in batch:
        if value:
            note_native(tx_hash, frm, to, value)
    note_token(token_in, token, acct[0], s1, 1_000_000)
    assert len({receipt_of(h).blockNumber for h, *_ in batch} | {receipt_of(token_in).blockNumber}) == 1
    w3.eth.send_transaction({"from": s1, "to": acct[5], "value": 0})  # zero value: moves nothing

    h = token.functions.transfer(acct[6], 300_000).transact({"from": s1})
    note_token(h, token, s1, acct[6], 300_000)
    h = token.functions.multiTransfer([acct[7], acct[8]], [100_000, 50_000]).transact({"from": s1})
    note_token(h, token, s1, acct[7], 100_000)
    note_token(h, token, s1, acct[8], 50_000)
    token.functions.transfer(acct[6], 0).transact({"from": s1})  # zero value: moves nothing
    failed = token.functions.transferThenRevert(acct[6], 10).transact({"from": s1, "gas": 200_000})
    assert receipt_of(failed).status == 0
    h = forwarder.functions.forward(acct[9]).transact({"from": s1, "value": 3 * ETH})
    # Top-level value to the forwarder; the forwarded internal call is invisible without tracing.
    note_native(h, s1, forwarder.address, 3 * ETH)
    failed = forwarder.functions.forwardThenRevert(acct[9]).transact({"from": s2, "value": ETH, "gas": 200_000})
    assert receipt_of(failed).status == 0
    h = w3.eth.send_transaction({"from": s2, "to": acct[9], "value": 4 * ETH})
    note_native(h, s2, acct[9], 4 * ETH)

    token2 = deploy("TestToken", "Dollar X", "USDX", 18, 10**24)
    h = token2.functions.transfer(s2, 500 * ETH).transact({"from": acct[0]})
    note_token(h, token2, acct[0], s2, 500 * ETH)
    h = token2.functions.transfer(acct[3], 200 * ETH).transact({"from": s2})
    note_token(h, token2, s2, acct[3], 200 * ETH)
    h = w3.eth.send_transaction({"from": acct[4], "to": acct[5], "value": ETH})  # unrelated
    tester.mine_blocks(3)

    return World(
        bridge=bridge,
        seeds=[s1.lower(), s2.lower()],
        token=token.address.lower(),
        token2=token2.address.lower(),
        forwarder=forwarder.address.lower(),
        head=w3.eth.block_number,
        truth=truth,
    )


@pytest.fixture(scope="module")
async def world() -> AsyncIterator[World]:
    w = build_world()
    await w.bridge.start()
    yield w
    await w.bridge.stop()


async def connected(world: World, *, concurrency: int = 8, timeout: float = 20.0, retries: int = 6,
                    **kwargs: Any) -> EvmChain:
    transport = TransportOptions(concurrency, timeout, RetryPolicy(retries, backoff=0.01))
    client = EvmChain(world.bridge.url, transport=transport, **kwargs)
    await client.connect()
    return client


async def test_connect_detects_block_scan_path(world: World) -> None:
    client = await connected(world, expected_chain_id=world.bridge.w3.eth.chain_id)
    try:
        assert not client.supports_trace
        assert client.debug_method is None
        assert not client.supports_block_receipts
        assert client.path == "block-scan (no internal calls)"
        assert await client.head() == world.head
    finally:
        await client.close()


async def test_finds_exactly_the_real_transfers(world: World) -> None:
    client = await connected(world)
    try:
        out = await client.transfers(TransferQuery(world.seeds, 0, world.head))
        assert rows(out) == world.expected(outgoing=True)
        both = await client.transfers(TransferQuery(world.seeds, 0, world.head, outgoing=True, incoming=True))
        assert rows(both) == world.expected(outgoing=True, incoming=True)
        only_in = await client.transfers(TransferQuery(world.seeds, 0, world.head, outgoing=False, incoming=True))
        assert rows(only_in) == world.expected(outgoing=False, incoming=True)
        kinds = {t.kind for t in both}
        assert kinds == {TransferKind.NATIVE, TransferKind.TOKEN}
        assert {t.asset for t in both} == {NATIVE, world.token, world.token2}
    finally:
        await client.close()


async def test_addresses_are_normalised_and_validated(world: World) -> None:
    client = await connected(world)
    try:
        checksummed = [world.bridge.w3.to_checksum_address(s) for s in world.seeds]
        upper = ["0x" + s[2:].upper() for s in world.seeds]
        base = rows(await client.transfers(TransferQuery(world.seeds, 0, world.head)))
        assert rows(await client.transfers(TransferQuery(checksummed, 0, world.head))) == base
        assert rows(await client.transfers(TransferQuery(upper, 0, world.head))) == base
        with pytest.raises(InvalidAddress):
            await client.transfers(TransferQuery(["0x1234"], 0, world.head))
        broken = checksummed[0][:-1] + ("a" if checksummed[0][-1] != "a" else "b")
        if broken.lower() != broken and broken.upper() != broken:
            with pytest.raises(InvalidAddress):
                await client.transfers(TransferQuery([broken], 0, world.head))
    finally:
        await client.close()


async def test_sub_ranges_and_block_cache(world: World) -> None:
    client = await connected(world)
    try:
        first = await client.transfers(TransferQuery(world.seeds[:1], 0, world.head))
        fetched = client.request_counts["eth_getBlockByNumber"]
        assert fetched == world.head + 1
        # Another address batch over an overlapping range: blocks come from the cache.
        second = await client.transfers(TransferQuery(world.seeds[1:], 2, world.head))
        assert client.request_counts["eth_getBlockByNumber"] == fetched
        s1, s2 = world.seeds
        assert rows(first) == [r for r in world.expected() if r[5] == s1]
        assert rows(second) == [r for r in world.expected() if r[5] == s2 and r[0] >= 2]
        mid = world.expected()[len(world.expected()) // 2][0]
        part = await client.transfers(TransferQuery(world.seeds, mid, mid))
        assert rows(part) == [r for r in world.expected() if r[0] == mid]
        assert await client.transfers(TransferQuery(world.seeds, 5, 4)) == []
        assert await client.transfers(TransferQuery([], 0, world.head)) == []
    finally:
        await client.close()


async def test_missing_internal_calls_warned_once(world: World, caplog: pytest.LogCaptureFixture) -> None:
    client = await connected(world)
    try:
        with caplog.at_level(logging.WARNING, logger="tracer.chains.evm"):
            await client.transfers(TransferQuery(world.seeds, 0, world.head))
            await client.transfers(TransferQuery(world.seeds, 0, world.head))
        warnings = [r for r in caplog.records if "internal native transfers" in r.getMessage()]
        assert len(warnings) == 1
    finally:
        await client.close()


async def test_getlogs_cap_is_split(world: World) -> None:
    world.bridge.max_logs = 2  # one transaction below emits two logs from one sender
    try:
        client = await connected(world, batch_size=3)
        try:
            got = await client.transfers(TransferQuery(world.seeds, 0, world.head, incoming=True))
            assert rows(got) == world.expected(outgoing=True, incoming=True)
            assert client.request_counts["eth_getLogs"] > 4  # it really had to split
        finally:
            await client.close()
    finally:
        world.bridge.max_logs = None


async def test_cap_even_for_one_block_gives_up_clearly(world: World) -> None:
    world.bridge.max_logs = 0
    try:
        client = await connected(world)
        try:
            with pytest.raises(ChainError, match="even for one block"):
                await client.transfers(TransferQuery(world.seeds, 0, world.head))
        finally:
            await client.close()
    finally:
        world.bridge.max_logs = None


async def test_faulty_http_layer_gives_identical_results(world: World) -> None:
    world.bridge.slow_seconds = 1.0
    client = await connected(world, batch_size=4, concurrency=2, timeout=0.5)
    try:
        world.bridge.faults = [
            "429",
            "partial",
            "503",
            "reverse",
            "garbage",
            "rate-err",
            "timeout",
            "partial",
        ] * 2
        got = await client.transfers(TransferQuery(world.seeds, 0, world.head, incoming=True))
        assert not world.bridge.faults  # every fault was served
        assert rows(got) == world.expected(outgoing=True, incoming=True)
    finally:
        world.bridge.faults = []
        await client.close()


async def test_gives_up_with_a_clear_message(world: World) -> None:
    client = await connected(world, retries=3)
    try:
        await client.head()  # the head connect() read, handed out once: the next one is asked
        world.bridge.faults = ["503"] * 3
        with pytest.raises(ChainError, match=r"gave up after 3 tries on eth_blockNumber.*HTTP 503"):
            await client.head()
    finally:
        world.bridge.faults = []
        await client.close()


async def test_wrong_chain_is_refused_at_connect(world: World) -> None:
    client = EvmChain(world.bridge.url, expected_chain_id=1)
    try:
        with pytest.raises(WrongChain, match="expects 1"):
            await client.connect()
    finally:
        await client.close()


async def test_state_reads(world: World) -> None:
    w3 = world.bridge.w3
    client = await connected(world)
    try:
        s1, s2 = world.seeds
        blocks = [1, world.head]
        balances = await client.native_balances([(s, b) for s in world.seeds for b in blocks])
        for (address, block), value in balances.items():
            assert value == w3.eth.get_balance(w3.to_checksum_address(address), block)
        token = w3.eth.contract(address=w3.to_checksum_address(world.token), abi=CONTRACTS["TestToken"]["abi"])
        tb = await client.token_balances([(s1, world.token, world.head), (s2, world.token2, world.head)])
        assert tb[(s1, world.token, world.head)] == token.functions.balanceOf(w3.to_checksum_address(s1)).call()
        assert tb[(s2, world.token2, world.head)] == 300 * ETH
        # Before the token existed there is no balanceOf to call: left out, not a made-up zero.
        assert await client.token_balances([(s1, world.token2, 1)]) == {}
        meta = await client.token_meta([world.token, world.token2, s1])
        assert meta == {world.token: (6, "TST"), world.token2: (18, "USDX"), s1: (None, None)}
        assert await client.is_contract([world.token, s1, world.forwarder]) == {
            world.token: True,
            s1: False,
            world.forwarder: True,
        }
        times = await client.block_times([0, 1, world.head])
        assert times == {n: w3.eth.get_block(n).timestamp for n in (0, 1, world.head)}
    finally:
        await client.close()


async def test_raw_logs(world: World) -> None:
    client = await connected(world)
    try:
        records = await client.logs([world.token, world.token2], [TRANSFER_TOPIC], 0, world.head)
        # Two mints plus every token row of the truth; the zero-value transfer is a real log too.
        token_rows = [r for r in world.truth if r[9] == TransferKind.TOKEN]
        assert len(records) == len(token_rows) + 2 + 1
        assert {r.address for r in records} == {world.token, world.token2}
        assert records == sorted(records, key=lambda r: (r.block_number, r.log_index))
        single = await client.logs(world.token2, [TRANSFER_TOPIC, None, None], 0, world.head)
        assert len(single) == 3
        assert all(r.block_time > 0 and len(r.topics) == 3 for r in single)
    finally:
        await client.close()


async def test_transport_matches_batch_answers_by_id(world: World) -> None:
    client = await connected(world, batch_size=50)
    try:
        numbers = list(range(world.head + 1))
        world.bridge.faults = ["reverse", "partial", "partial"]
        answers = await client.rpc.batch([("eth_getBlockByNumber", [hex(n), False]) for n in numbers])
        assert [int(a["number"], 16) for a in answers] == numbers
        assert client.request_counts["http"] >= 4  # connect + 3 tries for the batch
    finally:
        world.bridge.faults = []
        await client.close()
