"""The dev contracts on a real Anvil node: each is deployed, called, and its events and internal
calls seen as a tracer sees them (the topics tracer's decoders look for); the committed artifacts
are what the sources compile to."""

from __future__ import annotations

from typing import Any

import pytest

from tests.anvil_support import AnvilRpc, anvil_node, require_anvil
from tests.anvil_support import send_mined as _send
from tracer.chains.evm.mappers import TRANSFER_TOPIC
from tracer.devchain.anvil import artifacts as art
from tracer.devchain.anvil import compile as solc
from tracer.devchain.anvil.node import NODE_DIR
from tracer.engine import bridges, mixer_events

ETHER = 10**18
ALICE = "0x" + "a1" * 20
BOB = "0x" + "b0" * 20
VAULT = "0x" + "7a" * 20
SWAP_V2 = "0xd78ad95fa46c994b6551d0da85fc275fe613ce37657fb8d5e3d130840159d822"
SYNC_V2 = "0x1c411e9a96e071241c2f21f7726b17ae89e3cab4c78be50e062b03a9fffbbad1"


async def _deploy(rpc: AnvilRpc, name: str) -> str:
    receipt = await _send(rpc, ALICE, None, art.artifact(name).bytecode)
    return str(receipt["contractAddress"])


def _topics(receipt: dict[str, Any]) -> list[str]:
    return [lg["topics"][0] for lg in receipt["logs"]]


def _word(log: dict[str, Any], i: int) -> int:
    """The i-th 32-byte word of a log's data (a static field of the event's unindexed ones)."""
    return int(log["data"][2 + 64 * i:2 + 64 * (i + 1)], 16)


@pytest.mark.asyncio(loop_scope="session")
async def test_dev_contracts_emit_the_real_protocols_events() -> None:
    async with anvil_node(chain_id=31337, mode="archive") as node, AnvilRpc(node.url) as rpc:
        await rpc.call("anvil_setBalance", ALICE, hex(1_000 * ETHER))

        token = await _deploy(rpc, art.STABLECOIN)
        coin = art.artifact(art.STABLECOIN)
        await _send(rpc, ALICE, token, coin.call_data("initialize", "Tether USD", "USDT", 6))
        minted = await _send(rpc, ALICE, token, coin.call_data("mint", [ALICE], [5_000 * 10**6]))
        assert _topics(minted) == [TRANSFER_TOPIC]
        moved = await _send(rpc, ALICE, token, coin.call_data("transfer", BOB, 1_234_567))
        assert _topics(moved) == [TRANSFER_TOPIC] and moved["logs"][0]["topics"][2] == "0x" + "0" * 24 + BOB[2:]
        assert int(await rpc.call("eth_call", {"to": token, "data": coin.call_data("decimals")}, "latest"), 16) == 6

        batch = await _deploy(rpc, art.BATCH)
        paid = await _send(rpc, ALICE, batch, art.artifact(art.BATCH).call_data(
            "disperseEther", [BOB, VAULT], [ETHER, 2 * ETHER]), value=3 * ETHER)
        calls = await rpc.call("trace_transaction", paid["transactionHash"])
        inner = [(c["action"]["to"], int(c["action"]["value"], 16)) for c in calls if c["traceAddress"]]
        assert inner == [(BOB, ETHER), (VAULT, 2 * ETHER)]

        pool = await _deploy(rpc, art.POOL)
        mixer = art.artifact(art.POOL)
        await _send(rpc, ALICE, pool, mixer.call_data("initialize", 10 * ETHER))
        dep = await _send(rpc, ALICE, pool, mixer.call_data("deposit", b"\x01" * 32), value=10 * ETHER)
        assert _topics(dep) == [mixer_events.DEPOSIT_TOPIC]
        wd = await _send(rpc, BOB, pool, mixer.call_data(
            "withdraw", b"", b"\x02" * 32, b"\x03" * 32, BOB, VAULT, ETHER // 10, 0))
        assert _topics(wd) == [mixer_events.WITHDRAWAL_TOPIC]
        assert wd["logs"][0]["topics"][1] == "0x" + "0" * 24 + VAULT[2:]  # the relayer, indexed

        pair = await _deploy(rpc, art.PAIR)
        cp = art.artifact(art.PAIR)
        await _send(rpc, ALICE, pair, cp.call_data("initialize", token))
        await _send(rpc, ALICE, token, coin.call_data("transfer", pair, 2_000 * 10**6))
        await _send(rpc, ALICE, pair, "0x", value=ETHER)
        lp = await _send(rpc, ALICE, pair, cp.call_data("mint", ALICE))
        assert TRANSFER_TOPIC in _topics(lp) and SYNC_V2 in _topics(lp)
        await _send(rpc, ALICE, token, coin.call_data("approve", pair, 100 * 10**6))
        before = int(await rpc.call("eth_getBalance", BOB, "latest"), 16)
        swap = await _send(rpc, ALICE, pair, cp.call_data("swapTokensForETH", 100 * 10**6, 0, BOB))
        assert _topics(swap) == [TRANSFER_TOPIC, SYNC_V2, SWAP_V2] and cp.topic("Swap") == SWAP_V2
        got = int(await rpc.call("eth_getBalance", BOB, "latest"), 16) - before
        assert got == 100 * 10**6 * 997 * ETHER // (2_000 * 10**6 * 1000 + 100 * 10**6 * 997)  # x*y=k, 0.3 % fee

        router = await _deploy(rpc, art.ROUTER)
        thor = art.artifact(art.ROUTER)
        memo = "=:BTC.BTC:bc1qexample"
        vault_before = int(await rpc.call("eth_getBalance", VAULT, "latest"), 16)
        bridged = await _send(rpc, ALICE, router, thor.call_data(
            "deposit", VAULT, "0x" + "0" * 40, 0, memo), value=ETHER)
        assert _topics(bridged) == [bridges.THORCHAIN_DEPOSIT]
        assert memo.encode().hex() in bridged["logs"][0]["data"]
        # ETH: the call's value is forwarded and logged, whatever the amount argument says.
        assert _word(bridged["logs"][0], 0) == ETHER
        assert int(await rpc.call("eth_getBalance", VAULT, "latest"), 16) - vault_before == ETHER
        await _send(rpc, ALICE, token, coin.call_data("approve", router, 7 * 10**6))
        pulled = await _send(rpc, ALICE, router, thor.call_data("deposit", VAULT, token, 7 * 10**6, memo))
        assert _topics(pulled) == [TRANSFER_TOPIC, bridges.THORCHAIN_DEPOSIT]
        assert _word(pulled["logs"][1], 0) == 7 * 10**6
        assert int(await rpc.call("eth_call", {"to": token, "data": coin.call_data("balanceOf", VAULT)}, "latest"),
                   16) == 7 * 10**6
        bob_before = int(await rpc.call("eth_getBalance", BOB, "latest"), 16)
        out = await _send(rpc, VAULT, router, thor.call_data(
            "transferOut", BOB, "0x" + "0" * 40, 0, "OUT:" + "ab" * 32), value=ETHER // 2)
        assert _topics(out) == [bridges.THORCHAIN_TRANSFER_OUT]
        assert _word(out["logs"][0], 1) == ETHER // 2  # (asset, amount, memo)
        assert int(await rpc.call("eth_getBalance", BOB, "latest"), 16) - bob_before == ETHER // 2

        sink = await _deploy(rpc, art.RECEIVER)
        await _send(rpc, ALICE, sink, "0x", value=ETHER)
        assert int(await rpc.call("eth_getBalance", sink, "latest"), 16) == ETHER


def test_committed_artifacts_are_what_the_sources_compile_to() -> None:
    require_anvil()  # the same npm install brings solc-js
    if not (NODE_DIR / "node_modules" / "solc").is_dir():
        pytest.fail("solc-js missing from tests/node/node_modules: npm ci --prefix tests/node")
    assert solc.stale(solc.compile_all()) == []
