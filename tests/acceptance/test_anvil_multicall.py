"""Balances batched through Multicall3 (tracer.chains.evm.state) on a real Anvil node equal the
node's own per-address answers to the wei: eth_getBalance and balanceOf at each block, for
blocks where the contract is there (one eth_call per block) and blocks before it was placed (the
empty answer sends those back to plain calls), and on a node that has none at all."""

from __future__ import annotations

import pytest

from tests.anvil_support import AnvilRpc, anvil_node
from tests.anvil_support import send_mined as _send
from tracer.chains.evm import EvmChain
from tracer.chains.evm.state import MULTICALL3
from tracer.devchain.anvil import artifacts as art
from tracer.domain.transfers import NATIVE

ETHER = 10**18
ALICE = "0x" + "a1" * 20
HOLDERS = ["0x" + f"{i:02x}" * 20 for i in (0x11, 0x22, 0x33, 0x44, 0x55)]


def _calls(client: EvmChain) -> int:
    return sum(n for method, n in client.request_counts.items() if method != "http")


async def _expected(rpc: AnvilRpc, queries: list[tuple[str, str, int]]) -> dict[tuple[str, str, int], int]:
    """The node's own answers, one request per balance."""
    coin = art.artifact(art.STABLECOIN)
    out = {}
    for holder, asset, block in queries:
        if asset == NATIVE:
            out[(holder, asset, block)] = int(await rpc.call("eth_getBalance", holder, hex(block)), 16)
        else:
            answer = await rpc.call("eth_call", {"to": asset, "data": coin.call_data("balanceOf", holder)}, hex(block))
            out[(holder, asset, block)] = int(answer, 16)
    return out


@pytest.mark.asyncio(loop_scope="session")
async def test_multicall_balances_equal_the_nodes_own_to_the_wei() -> None:
    async with anvil_node(chain_id=31337, mode="archive") as node, AnvilRpc(node.url) as rpc:
        await rpc.call("anvil_setBalance", ALICE, hex(1_000 * ETHER))
        coin = art.artifact(art.STABLECOIN)
        token = str((await _send(rpc, ALICE, None, coin.bytecode))["contractAddress"]).lower()
        await _send(rpc, ALICE, token, coin.call_data("initialize", "Tether USD", "USDT", 6))
        await _send(rpc, ALICE, token, coin.call_data("mint", [ALICE], [10**12]))
        blocks: list[int] = []
        for i, holder in enumerate(HOLDERS):  # each block moves both assets, a different amount each
            await _send(rpc, ALICE, holder, value=(i + 1) * ETHER + 12345 * i)
            await _send(rpc, ALICE, token, coin.call_data("transfer", holder, 1_000_003 * (i + 1)))
            blocks.append(int(await rpc.call("eth_blockNumber"), 16))
        # Multicall3 placed now: Anvil writes it into the latest block's state, so the blocks
        # before that have no code at its address, that one and later ones do.
        placed_at = int(await rpc.call("eth_blockNumber"), 16)
        await rpc.call("anvil_setCode", MULTICALL3, art.artifact("Multicall3").runtime)
        await rpc.call("evm_mine")
        for i, holder in enumerate(HOLDERS[:3]):
            await _send(rpc, holder, HOLDERS[-1], value=ETHER // (i + 2))
            await _send(rpc, holder, token, coin.call_data("transfer", HOLDERS[-1], 777 * (i + 1)))
        blocks.append(int(await rpc.call("eth_blockNumber"), 16))
        blocks.append(blocks[-1] - 2)
        queries = [(h, asset, b) for b in blocks for h in HOLDERS for asset in (NATIVE, token)]
        queries.append((HOLDERS[0], HOLDERS[1], blocks[-1]))  # balanceOf on an account without code
        want = await _expected(rpc, queries[:-1])
        assert len(set(want.values())) > 20  # balances that differ by holder, asset and block

        client = EvmChain(node.url, chain="anvil")
        await client.connect()
        try:
            got = await client.balances_at(queries)
            assert got == want
            assert client.multicall is True
            # One aggregate3 per block where Multicall3 is; the older blocks answered "0x" and
            # were asked again one by one: a getBalance and a balanceOf per holder each.
            old = sum(1 for b in blocks if b < placed_at)
            assert 0 < old < len(blocks)
            assert client.request_counts["eth_call"] == len(blocks) + old * len(HOLDERS)
            assert client.request_counts["eth_getBalance"] == old * len(HOLDERS)
            # Asked again: the cache answers, no call; and optional reads (a next batch's
            # wallets) ride along in no call of their own...
            before = _calls(client)
            fresh = [(ALICE, token, b) for b in blocks[-2:]]
            assert await client.balances_at(queries[:10], optional=fresh) == {q: want[q] for q in queries[:10]}
            assert _calls(client) == before
            # ...but in a call made anyway at their block, into the cache (not at another block).
            alice = await _expected(rpc, [*fresh, (ALICE, NATIVE, blocks[-1])])
            await client.balances_at([(ALICE, NATIVE, blocks[-1])], optional=fresh)
            assert _calls(client) == before + 1
            assert await client.balances_at(fresh[1:]) == {fresh[1]: alice[fresh[1]]}
            assert _calls(client) == before + 1
            assert await client.balances_at(fresh[:1]) == {fresh[0]: alice[fresh[0]]}
            assert _calls(client) == before + 2
            before += 2
            # Token names: decimals() and symbol() in one aggregate3 at the latest block.
            assert await client.token_meta([token]) == {token: (6, "USDT")}
            assert _calls(client) == before + 1
        finally:
            await client.close()

        # A node without Multicall3 (its code removed): the same balances, a call each.
        await rpc.call("anvil_setCode", MULTICALL3, "0x")
        plain = EvmChain(node.url, chain="anvil")
        await plain.connect()
        try:
            late = [q for q in queries if q[2] == blocks[-2]]
            before = _calls(plain)
            # (optional reads have no call to ride in there: none is made for them)
            got = await plain.balances_at(late, optional=[(ALICE, NATIVE, blocks[-2])])
            assert got == {q: want[q] for q in late if q in want}
            assert plain.multicall is False
            assert _calls(plain) == before + 1 + len(late)  # the eth_getCode, then a call each
        finally:
            await plain.close()
