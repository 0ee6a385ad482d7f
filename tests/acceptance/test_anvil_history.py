"""Prior balances on real Anvil nodes that keep no old state, with real gas.

The same short history (ETH and a 6-decimal token, fees at several gas prices, legacy and EIP-1559
transactions, a reverted transaction that still pays its fee, a zero-value call, a batch payout as
internal calls) is executed on three Anvil nodes: archive-like, Anvil's default (recent states
only; 5,000 empty blocks are mined afterwards so the history falls out of what it keeps) and
`--prune-history` (only the newest state). On the last two, `eth_getBalance` at the history's
blocks answers `BlockOutOfRangeError` (-32602); the client's probe says so, the balances derived
from history equal to the wei what the archive node reads from state, and a trace from the thief
gives the same hops as on the archive node and says it derived its balances.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import pytest

from tests.anvil_support import AnvilRpc, Mode, anvil_node
from tests.reliability_support import forget_transfers, hop_rows, run_trace
from tracer.chains.evm import EvmChain
from tracer.devchain.anvil import artifacts as art
from tracer.domain.transfers import NATIVE, TransferQuery
from tracer.engine import balances
from tracer.nodes import connect_checked
from tracer.store import traces as trace_store
from tracer.store.db import Database

pytestmark = pytest.mark.asyncio(loop_scope="session")

ETHER = 10**18
GWEI = 10**9
USD = 10**6
CHAIN_ID = 31337
START = 1_700_000_000
FUNDER = "0x" + "f0" * 20
THIEF = "0x" + "7e" * 20
MULE = "0x" + "4d" * 20
SINK = "0x" + "51" * 20
PAYEES = ["0x" + "a1" * 20, "0x" + "a2" * 20]
EMPTY_BLOCKS = 5_000  # past the few thousand recent states Anvil keeps by default


@dataclass
class History:
    token: str
    blocks: dict[str, int]  # step name -> block number


class _Chain:
    """Sends the history's transactions, one block each at fixed times (identical on every node)."""

    def __init__(self, rpc: AnvilRpc) -> None:
        self.rpc = rpc
        self.time = START

    async def block(self, *txs: dict[str, Any], ok: bool = True) -> int:
        hashes = [await self.rpc.call("eth_sendTransaction", {**_free(tx), "gas": hex(500_000), "value": "0x0", **tx})
                  for tx in txs]
        self.time += 12
        await self.rpc.call("evm_setNextBlockTimestamp", hex(self.time))
        await self.rpc.call("evm_mine")
        for h in hashes:
            receipt = await self.rpc.call("eth_getTransactionReceipt", h)
            assert (receipt["status"] == "0x1") is ok, receipt
        return int((await self.rpc.call("eth_getTransactionReceipt", hashes[0]))["blockNumber"], 16)


def _free(tx: dict[str, Any]) -> dict[str, Any]:
    """No fee unless the transaction names one (the node's default fields would conflict)."""
    return {} if "maxFeePerGas" in tx or "gasPrice" in tx else {"gasPrice": "0x0"}


async def _history(rpc: AnvilRpc) -> History:
    coin = art.artifact(art.STABLECOIN)
    payout = art.artifact(art.BATCH)
    await rpc.call("anvil_setBalance", FUNDER, hex(1_000 * ETHER))
    c = _Chain(rpc)
    steps: dict[str, int] = {}
    deployed = await rpc.call("eth_sendTransaction", {"from": FUNDER, "data": coin.bytecode, "gas": hex(3_000_000),
                                                          "gasPrice": "0x0"})
    batch_tx = await rpc.call("eth_sendTransaction", {"from": FUNDER, "data": payout.bytecode, "gas": hex(3_000_000),
                                                           "gasPrice": "0x0"})
    await rpc.call("evm_setNextBlockTimestamp", hex(c.time))
    await rpc.call("evm_mine")
    token = (await rpc.call("eth_getTransactionReceipt", deployed))["contractAddress"]
    batch = (await rpc.call("eth_getTransactionReceipt", batch_tx))["contractAddress"]
    await c.block({"from": FUNDER, "to": token, "data": coin.call_data("initialize", "Tether USD", "USDT", 6)})
    await c.block({"from": FUNDER, "to": token, "data": coin.call_data("mint", [THIEF, MULE], [1_000 * USD, 50 * USD])})
    steps["funded"] = await c.block({"from": FUNDER, "to": THIEF, "value": hex(20 * ETHER)},
                                    {"from": FUNDER, "to": MULE, "value": hex(3 * ETHER)})
    steps["stolen_eth"] = await c.block({"from": THIEF, "to": MULE, "value": hex(8 * ETHER), "gasPrice": hex(3 * GWEI)})
    steps["stolen_usd"] = await c.block({"from": THIEF, "to": token, "gasPrice": hex(2 * GWEI),
                                         "data": coin.call_data("transfer", MULE, 400 * USD)})
    await c.block({"from": MULE, "to": SINK, "value": hex(2 * ETHER), "gasPrice": hex(GWEI)})
    # Reverted (more tokens than it holds): moves nothing, still pays for its gas.
    await c.block({"from": MULE, "to": token, "gasPrice": hex(7 * GWEI),
                   "data": coin.call_data("transfer", SINK, 10**30)}, ok=False)
    await c.block({"from": MULE, "to": token, "gasPrice": hex(GWEI), "data": coin.call_data("approve", SINK, 1)})
    await c.block({"from": MULE, "to": batch, "value": hex(3 * ETHER), "gasPrice": hex(2 * GWEI),
                   "data": payout.call_data("disperseEther", PAYEES, [ETHER, 2 * ETHER])})
    await c.block({"from": MULE, "to": SINK, "value": hex(ETHER), "maxFeePerGas": hex(5 * GWEI),
                   "maxPriorityFeePerGas": hex(2 * GWEI)})
    await c.block({"from": MULE, "to": token, "gasPrice": hex(GWEI),
                   "data": coin.call_data("transfer", SINK, 300 * USD)})
    await c.block({"from": FUNDER, "to": MULE, "value": hex(ETHER)})
    return History(token.lower(), steps)


async def _node_with_history(stack: Any, mode: Mode) -> tuple[str, History]:
    node = await stack.enter_async_context(anvil_node(chain_id=CHAIN_ID, mode=mode, timestamp=START))
    rpc = await stack.enter_async_context(AnvilRpc(node.url))
    history = await _history(rpc)
    if mode == "pruned":
        await rpc.call("anvil_mine", hex(EMPTY_BLOCKS))
    return node.url, history


async def _prior(client: EvmChain, needs: dict[str, tuple[int, set[str]]]) -> balances.PriorBalances:
    head = await client.head()
    lo = min(fb for fb, _ in needs.values())
    moved = await client.transfers(TransferQuery(sorted(needs), lo, head, outgoing=True, incoming=True))
    history = {a: [t for t in moved if a in (t.from_address, t.to_address) and t.block_number >= fb]
               for a, (fb, _) in needs.items()}
    return await balances.prior_balances(client, needs, history, head)


@pytest.mark.parametrize("mode", ["prune_history"])
async def test_derived_balances_equal_archive_state(db: Database, mode: Mode) -> None:
    import contextlib

    async with contextlib.AsyncExitStack() as stack:
        archive_url, h = await _node_with_history(stack, "archive")
        pruned_url, h2 = await _node_with_history(stack, mode)
        assert h2 == h
        archive = await connect_checked(db.pool, "ethereum", archive_url, expected_chain_id=CHAIN_ID)
        stack.push_async_callback(archive.close)
        pruned = await connect_checked(db.pool, "ethereum", pruned_url, expected_chain_id=CHAIN_ID)
        stack.push_async_callback(pruned.close)
        assert isinstance(archive, EvmChain) and isinstance(pruned, EvmChain)
        assert archive.historical_state is True
        assert pruned.historical_state is False and pruned.state_probe is not None
        assert "BlockOutOfRangeError" in pruned.state_probe.detail

        needs = {
            MULE: (h.blocks["stolen_eth"], {NATIVE, h.token}),
            THIEF: (h.blocks["funded"], {NATIVE, h.token}),
            SINK: (h.blocks["stolen_usd"] + 1, {NATIVE, h.token}),
            PAYEES[0]: (h.blocks["stolen_eth"], {NATIVE}),
        }
        truth = await _prior(archive, needs)
        # The archive's token balances are read at one block for all and carried back through the
        # Transfer logs (balances._from_state): the node's own answers at each fb - 1, to the wei.
        rpc = await stack.enter_async_context(AnvilRpc(archive_url))
        coin = art.artifact(art.STABLECOIN)
        for a, (fb, assets) in needs.items():
            own = {NATIVE: int(await rpc.call("eth_getBalance", a, hex(fb - 1)), 16)} if NATIVE in assets else {}
            if h.token in assets:
                own[h.token] = int(await rpc.call(
                    "eth_call", {"to": h.token, "data": coin.call_data("balanceOf", a)}, hex(fb - 1)), 16)
            assert truth.balances[a] == own, a
        derived = await _prior(pruned, needs)
        assert truth.method == balances.NODE_STATE
        assert derived.method == balances.DERIVED and not derived.conservative
        assert derived.balances == truth.balances
        assert truth.balances[MULE] == {NATIVE: 3 * ETHER, h.token: 50 * USD}

        # Fees paid by the mule after its first flagged inflow: every kind of transaction it sent.
        fees = await pruned.fees_paid([MULE], h.blocks["stolen_eth"], await pruned.head())
        assert len(fees) == 6 and all(f.fee > 0 for f in fees)

        # A whole trace from the thief: the same hops as on the archive node, balances derived.
        rows = {}
        for name, client in (("archive", archive), ("pruned", pruned)):
            await forget_transfers(db.pool)
            trace_id, status = await run_trace(db.pool, client, _Seeds(), policy={})
            assert status == "done"
            async with db.pool.acquire() as conn:
                rows[name] = (await trace_store.get_trace(conn, trace_id), await hop_rows(db.pool, trace_id))
        assert rows["archive"][0].balance_method == balances.NODE_STATE
        assert rows["pruned"][0].balance_method == balances.DERIVED
        assert "BlockOutOfRangeError" in rows["pruned"][0].balance_method_reason
        assert len(rows["archive"][1]) >= 8 and rows["pruned"][1] == rows["archive"][1]


class _Seeds:
    """The scenario-shaped argument run_trace wants: chain name, id and seeds."""

    chain = "ethereum"
    chain_id = CHAIN_ID
    seeds: ClassVar[list[str]] = [THIEF]
