"""TronChain's log path against a real EVM node standing in for Tron's JSON-RPC: Anvil with Tron
mainnet's chain id serves eth_getLogs and eth_call for a real ERC-20 (the devchain's Stablecoin,
which emits Transfer as USDT-TRC20 does); the HTTP API beside it is the Tron devchain (its genesis
carries the same chain id). Addresses go in and come out in tracer's Tron form (0x41 + 20 bytes)."""

from __future__ import annotations

import pytest

from tests.anvil_support import AnvilRpc, anvil_node
from tracer.addresses import tron_evm
from tracer.chains.retry import RetryPolicy, TransportOptions
from tracer.chains.tron import TronChain
from tracer.chains.tron_mappers import TRANSFER_TOPIC
from tracer.devchain.anvil.artifacts import artifact
from tracer.devchain.tron import CHAIN_ID, generate
from tracer.devchain.tron_server import TronServer
from tracer.domain.transfers import TransferKind, TransferQuery

pytestmark = pytest.mark.asyncio(loop_scope="session")

TOKEN = "0x41" + "7e" * 20
ALICE = "0x41" + "a1" * 20
BOB = "0x41" + "b0" * 20
CAROL = "0x41" + "c4" * 20


async def test_trc20_transfers_from_a_real_nodes_logs() -> None:
    coin = artifact("Stablecoin")
    server = TronServer(generate())
    await server.start()
    try:
        async with anvil_node(chain_id=CHAIN_ID) as node, AnvilRpc(node.url) as rpc:
            token = tron_evm(TOKEN)
            await rpc.call("anvil_setCode", token, coin.runtime)

            async def send(sender: str, data: str) -> None:
                tx = {"from": tron_evm(sender), "to": token, "data": data, "gas": hex(2_000_000), "gasPrice": "0x0"}
                txid = await rpc.call("eth_sendTransaction", tx)
                await rpc.call("evm_mine")
                receipt = await rpc.call("eth_getTransactionReceipt", txid)
                assert receipt["status"] == "0x1", receipt

            await send(ALICE, coin.call_data("initialize", "Tether USD", "USDT", 6))
            await send(ALICE, coin.call_data("mint", [tron_evm(ALICE)], [5_000_000_123]))
            await send(ALICE, coin.call_data("transfer", tron_evm(BOB), 3_000_000_000))
            await send(BOB, coin.call_data("transfer", tron_evm(CAROL), 2_999_999_999))

            client = TronChain(node.url, api_url=server.url,
                               transport=TransportOptions(policy=RetryPolicy(backoff=0.01)))
            await client.connect()  # Anvil's chain id is the devchain genesis's: the same chain
            try:
                head = int(await rpc.call("eth_blockNumber"), 16)
                got = await client.transfers(TransferQuery([BOB], 0, head, outgoing=True, incoming=True))
                assert [(t.from_address, t.to_address, t.amount, t.asset, t.kind) for t in got] == [
                    (ALICE, BOB, 3_000_000_000, TOKEN, TransferKind.TOKEN),
                    (BOB, CAROL, 2_999_999_999, TOKEN, TransferKind.TOKEN),
                ]
                assert all(t.position.startswith("log:") and t.tx_hash.startswith("0x") for t in got)
                assert await client.token_meta([TOKEN]) == {TOKEN: (6, "USDT")}
                logs = await client.logs(TOKEN, [TRANSFER_TOPIC], 0, head)
                assert [lg.address for lg in logs] == [TOKEN] * 3  # the mint, then both transfers
            finally:
                await client.close()
    finally:
        await server.stop()
