"""Node JSON for a dev `Chain`: blocks, transactions, receipts, logs, Parity traces and Geth
callTracer trees, shaped as geth / Erigon answer them (the server picks what to render)."""

from __future__ import annotations

import hashlib
from typing import Any

from tracer.devchain.chain import ZERO_ADDRESS, ZERO_HASH, Block, Chain, Frame, Log

_EMPTY_UNCLES = "0x1dcc4de8dec75d7aab85b567b6ccd41ad312451b948a7413f0a142fd40d49347"
_ZERO_BLOOM = "0x" + "0" * 512
_BASE_FEE = 10**9


def side_hash(tag: str, h: str) -> str:
    # Deterministic filler for roots and signatures nobody verifies.
    return "0x" + hashlib.sha3_256((tag + h).encode()).hexdigest()


def tx_json(c: Chain, tid: int) -> dict[str, Any]:
    tx = c.txs[tid]
    h = c.tx_hash[tid]
    block = c.blocks[c.tx_block[tid]]
    gas, _ = c.tx_gas(tid)
    return {
        "hash": h,
        "nonce": hex(c.tx_nonce[tid]),
        "blockHash": block.hash,
        "blockNumber": hex(block.number),
        "transactionIndex": hex(tid - block.first_tx),
        "from": tx.sender,
        "to": c.tx_target(tid),
        "value": hex(c.tx_value(tid)),
        "gas": hex(gas),
        "gasPrice": hex(tx.gas_price),
        "input": c.tx_input(tid),
        "type": "0x0",
        "chainId": hex(c.chain_id),
        "v": hex(c.chain_id * 2 + 35),
        "r": side_hash("r", h),
        "s": side_hash("s", h),
    }


def log_json(c: Chain, log_id: int, tid: int, entry: Log, block: Block, timestamp: bool = True) -> dict[str, Any]:
    """A log as Anvil, Geth 1.16+ and Reth serve it: with its block's `blockTimestamp` (older
    nodes leave it out, and clients then read the block's header for its time)."""
    out = {
        "address": entry.address,
        "topics": list(entry.topics),
        "data": entry.data,
        "blockNumber": hex(block.number),
        "blockHash": block.hash,
        "transactionHash": c.tx_hash[tid],
        "transactionIndex": hex(tid - block.first_tx),
        "logIndex": hex(log_id - block.first_log),
        "removed": False,
    }
    if timestamp:
        out["blockTimestamp"] = hex(block.timestamp)
    return out


def block_json(c: Chain, block: Block, full: bool) -> dict[str, Any]:
    tids = range(block.first_tx, block.first_tx + block.n_txs)
    used = sum(c.tx_gas(t)[1] for t in tids)
    txs: list[Any] = [tx_json(c, t) for t in tids] if full else [c.tx_hash[t] for t in tids]
    return {
        "number": hex(block.number),
        "hash": block.hash,
        "parentHash": block.parent_hash,
        "nonce": "0x0000000000000000",
        "mixHash": ZERO_HASH,
        "sha3Uncles": _EMPTY_UNCLES,
        "logsBloom": _ZERO_BLOOM,
        "transactionsRoot": side_hash("txroot", block.hash),
        "stateRoot": side_hash("state", block.hash),
        "receiptsRoot": side_hash("receipts", block.hash),
        "miner": ZERO_ADDRESS,
        "difficulty": "0x0",
        "totalDifficulty": "0x0",
        "extraData": "0x",
        "size": hex(600 + 120 * block.n_txs),
        "gasLimit": hex(max(30_000_000, used)),
        "gasUsed": hex(used),
        "timestamp": hex(block.timestamp),
        "baseFeePerGas": hex(_BASE_FEE),
        "transactions": txs,
        "uncles": [],
    }


def receipt_json(c: Chain, tid: int, cumulative: int) -> dict[str, Any]:
    tx = c.txs[tid]
    block = c.blocks[c.tx_block[tid]]
    _, used = c.tx_gas(tid)
    first = c.tx_first_log[tid]
    logs = [log_json(c, first + k, tid, entry, block) for k, entry in enumerate(c.logs(tid))]
    return {
        "transactionHash": c.tx_hash[tid],
        "transactionIndex": hex(tid - block.first_tx),
        "blockHash": block.hash,
        "blockNumber": hex(block.number),
        "from": tx.sender,
        "to": c.tx_target(tid),
        "cumulativeGasUsed": hex(cumulative),
        "gasUsed": hex(used),
        "effectiveGasPrice": hex(tx.gas_price),
        "contractAddress": None,
        "logs": logs,
        "logsBloom": _ZERO_BLOOM,
        "status": "0x1" if tx.ok else "0x0",
        "type": "0x0",
    }


def receipts_of_block(c: Chain, block: Block) -> list[dict[str, Any]]:
    out = []
    cumulative = 0
    for tid in range(block.first_tx, block.first_tx + block.n_txs):
        cumulative += c.tx_gas(tid)[1]
        out.append(receipt_json(c, tid, cumulative))
    return out


def trace_json(c: Chain, tid: int, frame: Frame) -> dict[str, Any]:
    block = c.blocks[c.tx_block[tid]]
    out: dict[str, Any] = {
        "action": {
            "callType": frame.call_type,
            "from": frame.sender,
            "to": frame.to,
            "value": hex(frame.value),
            "gas": hex(frame.gas),
            "input": frame.input,
        },
        "blockHash": block.hash,
        "blockNumber": block.number,  # Parity/Erigon give these two as JSON numbers
        "transactionHash": c.tx_hash[tid],
        "transactionPosition": tid - block.first_tx,
        "subtraces": frame.subtraces,
        "traceAddress": list(frame.trace_address),
        "type": "call",
    }
    if frame.error is None:
        out["result"] = {"gasUsed": hex(frame.gas_used), "output": "0x"}
    else:
        out["result"] = None
        out["error"] = frame.error
    return out


def traces_of_tx(c: Chain, tid: int) -> list[dict[str, Any]]:
    return [trace_json(c, tid, f) for f in c.frames(tid)]


def call_tracer(c: Chain, tid: int) -> dict[str, Any]:
    frames = c.frames(tid)

    def node(f: Frame) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": f.call_type.upper(),
            "from": f.sender,
            "to": f.to,
            "value": hex(f.value),
            "gas": hex(f.gas),
            "gasUsed": hex(f.gas_used),
            "input": f.input,
            "output": "0x",
        }
        if f.error is not None:
            out["error"] = "execution reverted"
        return out

    # Frames come in pre-order with trace addresses; rebuild the tree from them.
    root = node(frames[0])
    by_address: dict[tuple[int, ...], dict[str, Any]] = {(): root}
    for f in frames[1:]:
        parent = by_address[f.trace_address[:-1]]
        child = node(f)
        parent.setdefault("calls", []).append(child)
        by_address[f.trace_address] = child
    return root
