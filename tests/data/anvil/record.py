"""Record what Anvil answers to the requests whose quirks the chain layer handles (see README.md).

    TRACER_ANVIL=/path/to/anvil python tests/data/anvil/record.py   # rewrites answers.json
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from tracer.devchain.anvil import artifacts as art  # noqa: E402
from tracer.devchain.anvil.node import running_anvil  # noqa: E402
from tracer.devchain.anvil.rpc import AnvilRpc  # noqa: E402

OUT = Path(__file__).with_name("answers.json")
FUNDER = "0x" + "f0" * 20
PAYEE = "0x" + "9b" * 20
START = 1_700_000_000


async def _answer(rpc: AnvilRpc, method: str, *params: Any) -> dict[str, Any]:
    [value] = await rpc.batch([(method, list(params))], tolerate=True)
    if isinstance(value, Exception):
        return {"request": {"method": method, "params": list(params)}, "error": value.error}  # type: ignore[attr-defined]
    return {"request": {"method": method, "params": list(params)}, "result": value}


async def main() -> None:
    async with running_anvil(mode="prune_history", timestamp=START) as node, AnvilRpc(node.url) as rpc:
        coin = art.artifact(art.STABLECOIN)
        await rpc.call("anvil_setBalance", FUNDER, hex(10**21))
        made = await rpc.call("eth_sendTransaction", {"from": FUNDER, "data": coin.bytecode, "gas": hex(3_000_000),
                                                      "gasPrice": "0x0"})
        await rpc.call("evm_mine")
        token = (await rpc.call("eth_getTransactionReceipt", made))["contractAddress"]
        for data in (coin.call_data("initialize", "Tether USD", "USDT", 6), coin.call_data("mint", [PAYEE], [10**9])):
            await rpc.call("eth_sendTransaction", {"from": FUNDER, "to": token, "data": data, "gas": hex(500_000),
                                                   "gasPrice": "0x0"})
        await rpc.call("eth_sendTransaction", {"from": FUNDER, "to": PAYEE, "value": hex(10**18),
                                               "gasPrice": hex(10**9)})
        await rpc.call("evm_setNextBlockTimestamp", hex(START + 12))
        await rpc.call("evm_mine")
        await rpc.call("evm_mine")
        answers = {
            "client": await rpc.call("web3_clientVersion"),
            "old_balance": await _answer(rpc, "eth_getBalance", PAYEE, "0x1"),
            "old_call": await _answer(rpc, "eth_call", {"to": token, "data": coin.call_data("balanceOf", PAYEE)},
                                      "0x1"),
            "trace_filter_latest": await _answer(rpc, "trace_filter", {"fromBlock": "0x0", "toBlock": "latest",
                                                                       "fromAddress": [FUNDER]}),
            "logs": await _answer(rpc, "eth_getLogs", {"fromBlock": "0x2", "toBlock": "0x2", "address": token}),
            "block_receipts": await _answer(rpc, "eth_getBlockReceipts", "0x2"),
        }
    OUT.write_text(json.dumps(answers, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    asyncio.run(main())
