"""The dev chain's JSON-RPC server over real HTTP: aiohttp requests and web3's AsyncHTTPProvider."""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import eth_abi
import pytest
import pytest_asyncio
from web3 import AsyncHTTPProvider, AsyncWeb3

from tests.fixtures_chain import DevChainFactory, RunningDevChain
from tracer.devchain import multicall
from tracer.devchain.chain import DEPOSIT_TOPIC, TRANSFER_TOPIC, Chain, pad_address
from tracer.devchain.rpc_params import RpcError
from tracer.devchain.scenario import (
    ETHER,
    KIND_BATCH,
    KIND_MIXER,
    KIND_NATIVE,
    KIND_TOKEN,
    Scenario,
    ScenarioParams,
    ScenarioTx,
    generate,
)
from tracer.devchain.server import FaultPlan
from tracer.domain.transfers import NATIVE

pytestmark = pytest.mark.asyncio(loop_scope="session")

_ERC20_ABI = [
    {"name": "balanceOf", "type": "function", "stateMutability": "view",
     "inputs": [{"name": "owner", "type": "address"}], "outputs": [{"name": "", "type": "uint256"}]},
    {"name": "decimals", "type": "function", "stateMutability": "view", "inputs": [],
     "outputs": [{"name": "", "type": "uint8"}]},
    {"name": "symbol", "type": "function", "stateMutability": "view", "inputs": [],
     "outputs": [{"name": "", "type": "string"}]},
]  # fmt: skip


@pytest_asyncio.fixture(loop_scope="session")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest_asyncio.fixture(loop_scope="session")
async def w3(devchain: RunningDevChain) -> AsyncIterator[AsyncWeb3]:
    web3 = AsyncWeb3(AsyncHTTPProvider(devchain.url))
    yield web3
    await web3.provider.disconnect()


async def rpc(http: aiohttp.ClientSession, url: str, method: str, *params: Any) -> Any:
    async with http.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}) as r:
        assert r.status == 200
        return await r.json()


async def result(http: aiohttp.ClientSession, url: str, method: str, *params: Any) -> Any:
    answer = await rpc(http, url, method, *params)
    assert "error" not in answer, answer
    return answer["result"]


def _balances(sc: Scenario, block: int) -> dict[tuple[str, str], int]:
    bal: dict[tuple[str, str], int] = defaultdict(int)
    for address, assets in sc.genesis_balances.items():
        for asset, amount in assets.items():
            bal[(address, asset)] += amount
    for b, tx in sc.iter_txs():
        if b.number > block:
            break
        for frm, to, asset, amount in tx.transfers():
            bal[(frm, asset)] -= amount
            bal[(to, asset)] += amount
    return bal


def _busiest_block(sc: Scenario) -> int:
    return max(sc.blocks, key=lambda b: len(b.txs)).number


# -- eth_* through web3 ------------------------------------------------------------------------


async def test_web3_reads_blocks_transactions_and_receipts(devchain: RunningDevChain, w3: AsyncWeb3) -> None:
    sc = devchain.scenario
    assert sc is not None
    assert await w3.eth.chain_id == 1337
    assert await w3.eth.block_number == sc.head
    n = _busiest_block(sc)
    block = await w3.eth.get_block(n, full_transactions=True)
    parent = await w3.eth.get_block(n - 1)
    assert block["number"] == n and block["parentHash"] == parent["hash"]
    assert block["timestamp"] == sc.blocks[n - 1].timestamp
    assert (await w3.eth.get_block(block["hash"]))["number"] == n
    assert (await w3.eth.get_block("earliest"))["number"] == 0
    assert (await w3.eth.get_block("latest"))["number"] == sc.head
    want = sc.blocks[n - 1].txs
    full: list[Any] = list(block["transactions"])
    assert len(full) == len(want)
    for got, tx in zip(full, want, strict=True):
        assert got["from"].lower() == tx.sender
        target = tx.token if tx.kind == KIND_TOKEN else tx.to
        assert got["to"].lower() == target
        assert got["value"] == (0 if tx.kind == KIND_TOKEN else tx.value)
        by_hash = await w3.eth.get_transaction(got["hash"])
        assert by_hash["blockNumber"] == n and by_hash["transactionIndex"] == got["transactionIndex"]
    token_tx = next(i for i, tx in enumerate(want) if tx.kind == KIND_TOKEN and tx.ok)
    receipt = await w3.eth.get_transaction_receipt(full[token_tx]["hash"])
    assert receipt["status"] == 1 and receipt["blockHash"] == block["hash"]
    (lg,) = list[Any](receipt["logs"])
    assert lg["topics"][0].hex() == TRANSFER_TOPIC[2:] and lg["transactionIndex"] == token_tx
    assert int.from_bytes(lg["data"], "big") == want[token_tx].value
    hashes = await w3.eth.get_block(n)
    assert hashes["transactions"] == [t["hash"] for t in full]


async def test_block_receipts_and_failed_transactions(devchain: RunningDevChain, http: aiohttp.ClientSession) -> None:
    sc = devchain.scenario
    assert sc is not None
    failed_block = next(b for b in sc.blocks if any(not tx.ok for tx in b.txs))
    receipts = await result(http, devchain.url, "eth_getBlockReceipts", hex(failed_block.number))
    assert len(receipts) == len(failed_block.txs)
    log_indexes = []
    for r, tx in zip(receipts, failed_block.txs, strict=True):
        assert r["status"] == ("0x1" if tx.ok else "0x0")
        if not tx.ok:
            assert r["logs"] == []
        log_indexes += [int(lg["logIndex"], 16) for lg in r["logs"]]
    assert log_indexes == list(range(len(log_indexes)))  # numbered through the block
    cumulative = [int(r["cumulativeGasUsed"], 16) for r in receipts]
    assert cumulative == sorted(cumulative)
    missing = await result(http, devchain.url, "eth_getTransactionReceipt", "0x" + "ab" * 32)
    assert missing is None


async def test_balances_code_and_erc20_calls(devchain: RunningDevChain, w3: AsyncWeb3) -> None:
    sc = devchain.scenario
    assert sc is not None
    usdt = sc.token("USDT")
    mid = sc.head // 2
    at_mid, at_head = _balances(sc, mid), _balances(sc, sc.head)
    hot = next(lb.address for lb in sc.labels if lb.category == "exchange")
    token = w3.eth.contract(address=w3.to_checksum_address(usdt.address), abi=_ERC20_ABI)
    assert await token.functions.decimals().call() == 6
    assert await token.functions.symbol().call() == "USDT"
    for address in [*sc.seeds, hot, sc.truth.launderers[0], sc.truth.offramps[0].address]:
        cs = w3.to_checksum_address(address)
        assert await w3.eth.get_balance(cs, mid) == at_mid[(address, NATIVE)]
        assert await w3.eth.get_balance(cs) == at_head[(address, NATIVE)]
        assert await token.functions.balanceOf(cs).call(block_identifier=mid) == at_mid[(address, usdt.address)]
        assert await token.functions.balanceOf(cs).call() == at_head[(address, usdt.address)]
    assert await w3.eth.get_balance(w3.to_checksum_address(hot), 0) == sc.genesis_balances[hot][NATIVE]
    assert len(await w3.eth.get_code(w3.to_checksum_address(usdt.address))) > 0
    assert await w3.eth.get_code(w3.to_checksum_address(sc.seeds[0])) == b""
    pool = sc.mixer_pools[0].address
    assert len(await w3.eth.get_code(w3.to_checksum_address(pool))) > 0


async def test_multicall3_answers_balances_at_the_block_asked(devchain: RunningDevChain) -> None:
    """aggregate3 at Multicall3's address runs each inner call at the outer call's block, as the
    contract does on a node: getEthBalance and balanceOf there equal eth_getBalance and a direct
    balanceOf; a call that reverts is (false, "") with allowFailure, reverts the whole without."""
    sc = devchain.scenario
    assert sc is not None
    usdt = sc.token("USDT").address
    mid = sc.head // 2
    holders = [*sc.seeds, sc.truth.launderers[0], sc.truth.offramps[0].address]
    word = lambda a: bytes.fromhex(a[2:].rjust(64, "0"))  # noqa: E731
    calls = [(multicall.ADDRESS, True, bytes.fromhex(multicall.GET_ETH_BALANCE[2:]) + word(a)) for a in holders]
    calls += [(usdt, True, bytes.fromhex("70a08231") + word(a)) for a in holders]
    calls.append((usdt, True, bytes.fromhex("deadbeef")))  # no such function: reverts
    data = multicall.AGGREGATE3 + eth_abi.encode(["(address,bool,bytes)[]"], [calls]).hex()
    srv = devchain.server
    (results,) = eth_abi.decode(["(bool,bytes)[]"], bytes.fromhex(
        srv.call("eth_call", {"to": multicall.ADDRESS, "data": data}, hex(mid))[2:]))
    want = [int(srv.call("eth_getBalance", a, hex(mid)), 16) for a in holders]
    want += [int(srv.call("eth_call", {"to": usdt, "data": "0x70a08231" + word(a).hex()}, hex(mid)), 16)
             for a in holders]
    assert [int.from_bytes(r, "big") for ok, r in results[:-1]] == want and all(ok for ok, _ in results[:-1])
    assert len(set(want)) > 2 and tuple(results[-1]) == (False, b"")
    strict = [*calls[:-1], (usdt, False, bytes.fromhex("deadbeef"))]
    with pytest.raises(RpcError):
        srv.call("eth_call", {"to": multicall.ADDRESS, "data": multicall.AGGREGATE3 + eth_abi.encode(
            ["(address,bool,bytes)[]"], [strict]).hex()}, hex(mid))
    assert srv.call("eth_getCode", multicall.ADDRESS, "latest") == multicall.runtime_code() != "0x"


# -- eth_getLogs ------------------------------------------------------------------------------


async def test_get_logs_by_address_topics_and_block_hash(devchain: RunningDevChain, w3: AsyncWeb3) -> None:
    sc = devchain.scenario
    assert sc is not None
    usdt = sc.token("USDT").address
    seeds = set(sc.seeds)
    want = [
        (b.number, tx.sender, tx.to, tx.value)
        for b, tx in sc.iter_txs()
        if tx.kind == KIND_TOKEN and tx.ok and tx.sender in seeds and tx.token == usdt
    ]
    logs = await w3.eth.get_logs({
        "fromBlock": 0, "toBlock": "latest",
        "address": [w3.to_checksum_address(usdt), w3.to_checksum_address(sc.token("DAI").address)],
        "topics": [TRANSFER_TOPIC, [pad_address(s) for s in sc.seeds], None],
    })  # fmt: skip
    got = [
        (lg["blockNumber"], "0x" + lg["topics"][1].hex()[-40:], "0x" + lg["topics"][2].hex()[-40:],
         int.from_bytes(lg["data"], "big"))
        for lg in logs
    ]  # fmt: skip
    assert got == want and len(want) >= 2
    # Receivers: topic2 OR-list, any token.
    receivers = {to for _, _, to, _ in want}
    inbound = await w3.eth.get_logs(
        {"fromBlock": 0, "toBlock": "latest", "topics": [None, None, [pad_address(r) for r in receivers]]}
    )
    assert {("0x" + lg["topics"][2].hex()[-40:]) for lg in inbound} == receivers
    # One block by hash.
    n = want[0][0]
    block = await w3.eth.get_block(n)
    in_block = await w3.eth.get_logs({"blockHash": block["hash"]})
    ok_logs = sum(1 for tx in sc.blocks[n - 1].txs if tx.ok and tx.kind in (KIND_TOKEN, KIND_MIXER))
    assert len(in_block) == ok_logs and all(lg["blockNumber"] == n for lg in in_block)
    # Tornado-style Deposit logs from the mixer pools, leaf indexes counting per pool.
    deposits = await w3.eth.get_logs({"fromBlock": 0, "toBlock": "latest", "topics": [DEPOSIT_TOPIC]})
    assert len(deposits) == sum(1 for _, tx in sc.iter_txs() if tx.kind == KIND_MIXER and tx.ok)
    leaves: dict[str, list[int]] = defaultdict(list)
    for lg in deposits:
        leaves[lg["address"].lower()].append(int.from_bytes(lg["data"][:32], "big"))
    assert all(v == list(range(len(v))) for v in leaves.values())
    assert set(leaves) <= {p.address for p in sc.mixer_pools}


# -- trace_* and debug_* -------------------------------------------------------------------------


def _frames(sc: Scenario) -> list[tuple[int, str, str, int, tuple[int, ...], bool]]:
    """(block, from, to, value, traceAddress, ok) of every call frame, in execution order."""
    out: list[tuple[int, str, str, int, tuple[int, ...], bool]] = []
    for b, tx in sc.iter_txs():
        target = tx.token if tx.kind == KIND_TOKEN else tx.to
        out.append((b.number, tx.sender, target, 0 if tx.kind == KIND_TOKEN else tx.value, (), tx.ok))
        if tx.kind == KIND_BATCH and tx.ok:
            out += [(b.number, tx.to, who, v, (k,), True) for k, (who, v) in enumerate(tx.payouts)]
    return out


def _trace_key(t: dict[str, Any]) -> tuple[int, str, str, int, tuple[int, ...], bool]:
    a = t["action"]
    return (t["blockNumber"], a["from"], a["to"], int(a["value"], 16), tuple(t["traceAddress"]), "error" not in t)


async def test_trace_filter_addresses_intersection_and_paging(
    devchain: RunningDevChain, http: aiohttp.ClientSession
) -> None:
    sc = devchain.scenario
    assert sc is not None
    frames = _frames(sc)
    seeds = set(sc.seeds)
    out = await result(http, devchain.url, "trace_filter", {"fromAddress": sc.seeds, "toBlock": "latest"})
    assert [_trace_key(t) for t in out] == [f for f in frames if f[1] in seeds]
    # Internal calls of a laundering batch payout, found by recipient.
    batch = next(tx for _, tx in sc.iter_txs() if tx.kind == KIND_BATCH and tx.ok and tx.sender in sc.truth.launderers)
    recipients = [who for who, _ in batch.payouts]
    inner = await result(http, devchain.url, "trace_filter", {"fromBlock": "0x0", "toAddress": recipients})
    internal = [t for t in inner if t["traceAddress"]]
    assert {t["action"]["to"] for t in internal} == set(recipients)
    assert all(t["action"]["from"] == batch.to and t["type"] == "call" for t in internal)
    assert all(t["action"]["callType"] == "call" and t["subtraces"] == 0 for t in internal)
    top = await result(http, devchain.url, "trace_transaction", internal[0]["transactionHash"])
    assert top[0]["traceAddress"] == [] and top[0]["subtraces"] == len(batch.payouts)
    # Both lists: a frame must match both (OpenEthereum); "union" mode: either.
    both = await result(
        http, devchain.url, "trace_filter", {"fromBlock": "0x0", "fromAddress": [batch.to], "toAddress": recipients[:1]}
    )
    assert [t["action"]["to"] for t in both] == recipients[:1]
    union = await result(
        http,
        devchain.url,
        "trace_filter",
        {"fromBlock": "0x0", "fromAddress": sc.seeds, "toAddress": recipients[:1], "mode": "union"},
    )
    assert len(union) == len(out) + len([t for t in inner if t["action"]["to"] == recipients[0]])
    # after/count page through the same list.
    every = await result(http, devchain.url, "trace_filter", {"fromBlock": "0x0", "toBlock": hex(sc.head)})
    assert [_trace_key(t) for t in every] == frames
    pages = []
    for after in range(0, len(every), 40):
        pages += await result(http, devchain.url, "trace_filter", {"fromBlock": "0x0", "after": after, "count": 40})
    assert pages == every
    # A failed transaction's trace carries an error and no result.
    failed = [t for t in every if "error" in t]
    assert failed and all(t["result"] is None for t in failed)


async def test_trace_block_and_call_tracer(devchain: RunningDevChain, http: aiohttp.ClientSession) -> None:
    sc = devchain.scenario
    assert sc is not None
    n, batch = next((b.number, tx) for b, tx in sc.iter_txs() if tx.kind == KIND_BATCH and tx.ok)
    traces = await result(http, devchain.url, "trace_block", hex(n))
    assert [_trace_key(t) for t in traces] == [f for f in _frames(sc) if f[0] == n]
    tx_hash = next(
        t["transactionHash"]
        for t in traces
        if t["action"]["to"] == batch.to and "error" not in t and int(t["action"]["value"], 16) == batch.value
    )
    tree = await result(http, devchain.url, "debug_traceTransaction", tx_hash, {"tracer": "callTracer"})
    assert tree["type"] == "CALL" and tree["from"] == batch.sender and int(tree["value"], 16) == batch.value
    assert [(c["to"], int(c["value"], 16)) for c in tree["calls"]] == list(batch.payouts)
    per_block = await result(http, devchain.url, "debug_traceBlockByNumber", hex(n), {"tracer": "callTracer"})
    assert len(per_block) == len(sc.blocks[n - 1].txs)
    assert next(x for x in per_block if x["txHash"] == tx_hash)["result"] == tree
    failed_hash = next(
        t["transactionHash"] for t in await result(http, devchain.url, "trace_filter", {}) if "error" in t
    )
    failed = await result(http, devchain.url, "debug_traceTransaction", failed_hash, {"tracer": "callTracer"})
    assert failed["error"] and "calls" not in failed
    bad = await rpc(http, devchain.url, "debug_traceTransaction", tx_hash, {})
    assert bad["error"]["code"] == -32602


# -- JSON-RPC plumbing ------------------------------------------------------------------------------


async def test_batches_answer_every_member_by_id(devchain: RunningDevChain, http: aiohttp.ClientSession) -> None:
    batch = [
        {"jsonrpc": "2.0", "id": "a", "method": "eth_blockNumber", "params": []},
        {"jsonrpc": "2.0", "id": 7, "method": "eth_chainId"},
        {"jsonrpc": "2.0", "id": 8, "method": "eth_noSuchThing", "params": []},
        {"jsonrpc": "2.0", "id": 9, "method": "eth_getBalance", "params": ["0xnope", "latest"]},
        {"jsonrpc": "2.0", "method": "eth_blockNumber", "params": []},  # a notification: no answer
        {"jsonrpc": "2.0", "id": 10, "method": "net_version", "params": []},
    ]
    async with http.post(devchain.url, json=batch) as r:
        answers = await r.json()
    by_id = {a["id"]: a for a in answers}
    assert set(by_id) == {"a", 7, 8, 9, 10}
    assert int(by_id["a"]["result"], 16) == devchain.chain.head
    assert by_id[7]["result"] == "0x539" and by_id[10]["result"] == "1337"
    assert by_id[8]["error"]["code"] == -32601 and by_id[9]["error"]["code"] == -32602
    assert devchain.server.request_counts["eth_blockNumber"] == 2
    assert devchain.server.request_counts["http"] == 1
    async with http.post(devchain.url, data=b"{not json") as r:
        assert (await r.json())["error"]["code"] == -32700
    async with http.post(devchain.url, json=[]) as r:
        assert (await r.json())["error"]["code"] == -32600


async def test_web3_batch_requests(devchain: RunningDevChain, w3: AsyncWeb3) -> None:
    async with w3.batch_requests() as batch:
        batch.add(w3.eth.get_block(1))
        batch.add(w3.eth.get_block(2))
        batch.add(w3.eth.get_balance(w3.to_checksum_address(devchain.chain.txs[0].sender), 1))
        answers: list[Any] = list(await batch.async_execute())
    assert [answers[0]["number"], answers[1]["number"]] == [1, 2]
    assert isinstance(answers[2], int)


async def test_result_caps_answer_minus_32005(devchain_factory: DevChainFactory, http: aiohttp.ClientSession) -> None:
    dc = await devchain_factory(max_logs=5)
    everything = await rpc(http, dc.url, "eth_getLogs", {"fromBlock": "0x0", "toBlock": "latest"})
    assert everything["error"] == {"code": -32005, "message": "query returned more than 5 results"}
    assert len(await result(http, dc.url, "eth_getLogs", {"fromBlock": "0x1", "toBlock": "0x1"})) <= 5
    traces = await rpc(http, dc.url, "trace_filter", {"fromBlock": "0x0"})
    assert traces["error"]["code"] == -32005
    assert len(await result(http, dc.url, "trace_filter", {"fromBlock": "0x0", "count": 3})) == 3


async def test_rate_limit_answers_429_with_retry_after(
    devchain_factory: DevChainFactory, http: aiohttp.ClientSession
) -> None:
    dc = await devchain_factory(rate_limit=5)
    body = {"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []}

    async def one() -> tuple[int, str | None]:
        async with http.post(dc.url, json=body) as r:
            await r.read()
            return r.status, r.headers.get("Retry-After")

    answers = await asyncio.gather(*(one() for _ in range(20)))
    statuses = [s for s, _ in answers]
    assert statuses.count(200) >= 5 and statuses.count(429) >= 10
    assert all(h == "1" for s, h in answers if s == 429)
    assert dc.server.request_counts["http_429"] == statuses.count(429)


async def test_without_traces_trace_methods_are_missing(
    devchain_factory: DevChainFactory, http: aiohttp.ClientSession
) -> None:
    dc = await devchain_factory(traces=False)
    cases: list[tuple[str, list[Any]]] = [
        ("trace_filter", [{}]),
        ("trace_block", ["0x1"]),
        ("trace_transaction", ["0x" + "00" * 32]),
        ("debug_traceTransaction", ["0x" + "00" * 32, {"tracer": "callTracer"}]),
        ("debug_traceBlockByNumber", ["0x1", {"tracer": "callTracer"}]),
    ]
    for method, params in cases:
        assert (await rpc(http, dc.url, method, *params))["error"]["code"] == -32601
    assert await result(http, dc.url, "eth_getBlockReceipts", "0x1")


async def test_latency_delays_every_request(devchain_factory: DevChainFactory, http: aiohttp.ClientSession) -> None:
    dc = await devchain_factory(latency=0.15)
    t0 = time.monotonic()
    await result(http, dc.url, "eth_blockNumber")
    assert time.monotonic() - t0 >= 0.15


async def test_faults(devchain_factory: DevChainFactory, http: aiohttp.ClientSession) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []}
    batch = [{"jsonrpc": "2.0", "id": k, "method": "eth_blockNumber", "params": []} for k in range(20)]
    dc = await devchain_factory(faults=FaultPlan(http_503=1.0))
    async with http.post(dc.url, json=body) as r:
        assert r.status == 503
    dc = await devchain_factory(faults=FaultPlan(malformed=1.0))
    async with http.post(dc.url, json=body) as r:
        with pytest.raises(ValueError):
            json.loads(await r.read())
    dc = await devchain_factory(faults=FaultPlan(reset=1.0))
    with pytest.raises(aiohttp.ClientError):
        async with http.post(dc.url, json=body) as r:
            await r.read()
    dc = await devchain_factory(faults=FaultPlan(hang=1.0, hang_seconds=5.0))
    with pytest.raises(asyncio.TimeoutError):
        async with http.post(dc.url, json=body, timeout=aiohttp.ClientTimeout(total=0.3)) as r:
            await r.read()
    dc = await devchain_factory(faults=FaultPlan(partial_batch=1.0))
    async with http.post(dc.url, json=batch) as r:
        answers = await r.json()
    assert len(answers) < 20 and {a["id"] for a in answers} < set(range(20))
    dc = await devchain_factory(faults=FaultPlan(shuffle_batch=1.0, seed=3))
    async with http.post(dc.url, json=batch) as r:
        ids = [a["id"] for a in await r.json()]
    assert sorted(ids) == list(range(20)) and ids != list(range(20))
    dc = await devchain_factory(faults=FaultPlan(wrong_chain_id=1.0))
    assert await result(http, dc.url, "eth_chainId") != "0x539"
    # Seeded: the same plan misbehaves on the same requests.
    plan = FaultPlan(seed=11, http_500=0.3, http_502=0.2)
    seen = []
    for _ in range(2):
        dc = await devchain_factory(faults=plan)
        statuses = []
        for _ in range(15):
            async with http.post(dc.url, json=body) as r:
                statuses.append(r.status)
        seen.append(statuses)
    assert seen[0] == seen[1] and {500, 502, 200} <= set(seen[0])


async def test_same_seed_same_hashes_over_http(devchain_factory: DevChainFactory, http: aiohttp.ClientSession) -> None:
    a = await devchain_factory(generate(ScenarioParams.for_size(120, seed=5)))
    b = await devchain_factory(generate(ScenarioParams.for_size(120, seed=5)))
    c = await devchain_factory(generate(ScenarioParams.for_size(120, seed=6)))
    blocks = [await result(http, dc.url, "eth_getBlockByNumber", "latest", False) for dc in (a, b, c)]
    assert blocks[0] == blocks[1]
    assert blocks[0]["hash"] != blocks[2]["hash"]


async def test_new_blocks_and_reorgs(devchain_factory: DevChainFactory, http: aiohttp.ClientSession) -> None:
    sc = generate(ScenarioParams.for_size(120, seed=9))
    chain = Chain.from_scenario(sc)
    dc = await devchain_factory(chain)
    alice, bob, carol = (f"0x{c * 40}" for c in "abc")
    chain.genesis_balances[alice] = {NATIVE: 100 * ETHER}
    head = chain.head
    chain.append_block([ScenarioTx(KIND_NATIVE, alice, bob, 3 * ETHER)])
    chain.append_block([ScenarioTx(KIND_NATIVE, alice, carol, 4 * ETHER)])
    assert int(await result(http, dc.url, "eth_blockNumber"), 16) == head + 2
    assert int(await result(http, dc.url, "eth_getBalance", bob, "latest"), 16) == 3 * ETHER
    old = [await result(http, dc.url, "eth_getBlockByNumber", hex(n), False) for n in (head + 1, head + 2)]
    gone = old[1]["transactions"][0]
    # Replace the top two blocks: same first block content, a different second one, one more block.
    chain.reorg(
        2, [[ScenarioTx(KIND_NATIVE, alice, bob, 3 * ETHER)], [ScenarioTx(KIND_NATIVE, alice, bob, 1 * ETHER)], []]
    )
    new = [await result(http, dc.url, "eth_getBlockByNumber", hex(n), False) for n in (head + 1, head + 2, head + 3)]
    assert new[0]["hash"] != old[0]["hash"] and new[1]["hash"] != old[1]["hash"]
    assert new[0]["parentHash"] == old[0]["parentHash"] and new[1]["parentHash"] == new[0]["hash"]
    assert new[0]["transactions"] == old[0]["transactions"]  # the same tx keeps its hash
    assert await result(http, dc.url, "eth_getTransactionByHash", gone) is None
    assert int(await result(http, dc.url, "eth_getBalance", carol, "latest"), 16) == 0
    assert int(await result(http, dc.url, "eth_getBalance", bob, "latest"), 16) == 4 * ETHER
    traces = await result(http, dc.url, "trace_filter", {"fromBlock": hex(head), "fromAddress": [alice]})
    assert [(t["blockNumber"], int(t["action"]["value"], 16)) for t in traces] == [
        (head + 1, 3 * ETHER),
        (head + 2, ETHER),
    ]
    assert int(await result(http, dc.url, "eth_getTransactionCount", alice, "latest"), 16) == 2


async def test_a_bigger_chain_is_served_quickly(devchain_factory: DevChainFactory, http: aiohttp.ClientSession) -> None:
    sc = generate(ScenarioParams.for_size(30_000, seed=2))
    dc = await devchain_factory(sc)
    hot = next(lb.address for lb in sc.labels if lb.category == "exchange")
    t0 = time.monotonic()
    for _ in range(20):
        seeds = await result(http, dc.url, "trace_filter", {"fromBlock": "0x0", "fromAddress": sc.seeds})
        logs = await result(
            http,
            dc.url,
            "eth_getLogs",
            {"fromBlock": "0x0", "toBlock": "latest", "topics": [TRANSFER_TOPIC, [pad_address(s) for s in sc.seeds]]},
        )
        await result(http, dc.url, "eth_getBalance", hot, "latest")
    assert seeds and logs
    assert time.monotonic() - t0 < 5.0


async def test_filter_edges(devchain: RunningDevChain, http: aiohttp.ClientSession) -> None:
    head = devchain.chain.head
    future = {"fromBlock": hex(head + 5), "toBlock": hex(head + 9)}
    assert await result(http, devchain.url, "eth_getLogs", future) == []
    assert await result(http, devchain.url, "trace_filter", future) == []
    backwards = await rpc(http, devchain.url, "eth_getLogs", {"fromBlock": "0x5", "toBlock": "0x2"})
    assert backwards["error"]["code"] == -32602
    everything = await result(http, devchain.url, "eth_getLogs", {"fromBlock": "0x0", "toBlock": hex(head + 100)})
    assert await result(http, devchain.url, "eth_getLogs", {"fromBlock": "0x0", "address": []}) == everything
    assert await result(http, devchain.url, "eth_getBlockByNumber", hex(head + 1), False) is None
    assert (await rpc(http, devchain.url, "eth_getBalance", "0x" + "1" * 40, hex(head + 1)))["error"]["code"] == -32000
