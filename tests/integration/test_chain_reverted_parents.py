"""An internal transfer undone by a reverted ancestor call is dropped, and the trace_filter answers
decide it without reading the whole transaction when they hold every ancestor.

Real nodes list the calls below a reverted call without an `error` of their own (the devchain's
failed transactions stop at the top, so it never shows one): a scripted node serves such traces.
Three transactions pay R from contract A in an internal call:

- T1: an EOA calls A, which reverts after paying R: the root call is in A's incoming answer, so
  the payout is dropped with no trace_block / trace_transaction;
- T2: the same, succeeding: kept, again with no whole-transaction read;
- T3: the EOA calls a router, which calls A, which pays R, and the router's call reverts: the root
  is in no answer about A, so T3 alone is read whole (trace_transaction) and its payout dropped.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import web

from tests.fixtures_chain import serving
from tracer.chains.evm import EvmChain
from tracer.domain.transfers import TransferQuery

pytestmark = pytest.mark.asyncio(loop_scope="session")

EOA = "0x" + "e0" * 20
A = "0x" + "aa" * 20
ROUTER = "0x" + "cc" * 20
R = "0x" + "11" * 20
T1, T2, T3 = ("0x" + c * 64 for c in ("1", "2", "3"))


def _call(tx: str, block: int, path: list[int], sender: str, to: str, value: int, subtraces: int,
          error: str | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {
        "action": {"from": sender, "to": to, "value": hex(value), "callType": "call", "input": "0x", "gas": "0x0"},
        "blockNumber": block, "blockHash": "0x" + f"{block:064x}", "transactionHash": tx,
        "transactionPosition": 0, "traceAddress": path, "subtraces": subtraces, "type": "call",
        "result": None if error else {"gasUsed": "0x0", "output": "0x"},
    }
    if error:
        row["error"] = error
    return row


TRACES = [
    _call(T1, 5, [], EOA, A, 0, 1, "Reverted"), _call(T1, 5, [0], A, R, 5, 0),
    _call(T2, 6, [], EOA, A, 0, 1), _call(T2, 6, [0], A, R, 7, 0),
    _call(T3, 7, [], EOA, ROUTER, 0, 1, "Reverted"), _call(T3, 7, [0], ROUTER, A, 0, 1),
    _call(T3, 7, [0, 0], A, R, 9, 0),
]


class Node:
    def __init__(self) -> None:
        self.asked: list[str] = []

    def answer(self, method: str, params: list[Any]) -> Any:
        if method == "eth_chainId":
            return "0x1"
        if method == "eth_blockNumber":
            return "0x10"
        if method in ("eth_getLogs", "eth_getBlockReceipts"):
            return []
        if method == "eth_getBalance":
            return "0x0"
        if method == "eth_getCode":  # the state probe at first contact
            return "0x"
        if method == "trace_filter":
            flt = params[0]
            senders, receivers = set(flt.get("fromAddress") or ()), set(flt.get("toAddress") or ())
            rows = [t for t in TRACES if int(flt["fromBlock"], 16) <= t["blockNumber"] <= int(flt["toBlock"], 16)
                    and (not senders or t["action"]["from"] in senders)
                    and (not receivers or t["action"]["to"] in receivers)]
            after = int(flt.get("after", 0))
            return rows[after: after + int(flt.get("count", len(rows)))]
        if method == "trace_transaction":
            return [t for t in TRACES if t["transactionHash"] == params[0]]
        if method == "trace_block":
            return [t for t in TRACES if t["blockNumber"] == int(params[0], 16)]
        raise AssertionError(f"unexpected {method}")

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = json.loads(await request.read())
        answers = []
        for req in body if isinstance(body, list) else [body]:
            self.asked.append(req["method"])
            answers.append({"jsonrpc": "2.0", "id": req["id"], "result": self.answer(req["method"], req["params"])})
        return web.json_response(answers if isinstance(body, list) else answers[0])


async def test_reverted_ancestors_decided_from_the_answers_where_they_hold_them() -> None:
    node = Node()
    async with serving(node.handle) as url:
        client = EvmChain(url, chain="ethereum")
        await client.connect()
        try:
            node.asked.clear()
            got = await client.transfers(TransferQuery([A], 0, 16, outgoing=True, incoming=True, times=False))
        finally:
            await client.close()
    assert [(t.tx_hash, t.to_address, t.amount) for t in got] == [(T2, R, 7)]
    whole = [m for m in node.asked if m in ("trace_transaction", "trace_block")]
    assert whole == ["trace_transaction"]  # T3 only: T1's and T2's ancestors were in the answers
