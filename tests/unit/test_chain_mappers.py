"""Node JSON → Transfer: the three native sources agree, and what moved nothing is dropped."""

from __future__ import annotations

from typing import Any

from tracer.chains.errors import RpcError
from tracer.chains.evm import is_result_cap, mappers
from tracer.domain.transfers import NATIVE, TransferKind

A = "0x" + "aa" * 20
B = "0x" + "bb" * 20
C = "0x" + "cc" * 20
D = "0x" + "dd" * 20
TX = "0x" + "12" * 32


def parity(path: list[int], frm: str, to: str, value: int, **extra: Any) -> dict[str, Any]:
    trace: dict[str, Any] = {
        "type": "call",
        "action": {"callType": "call", "from": frm, "to": to, "value": hex(value), "input": "0x"},
        "traceAddress": path,
        "transactionHash": TX,
        "transactionPosition": 3,
        "blockNumber": 77,
        "subtraces": 0,
    }
    trace.update(extra)
    return trace


def test_quantity_accepts_node_variants() -> None:
    assert mappers.quantity("0x1a") == 26
    assert mappers.quantity("0x") == 0
    assert mappers.quantity(26) == 26
    assert mappers.quantity("26") == 26


def test_parity_top_level_and_internal_positions() -> None:
    top = mappers.parity_trace_transfer("ethereum", parity([], A.upper().replace("0X", "0x"), B, 5), 1000)
    assert top is not None
    assert (top.position, top.kind, top.from_address, top.amount, top.tx_index) == (
        "tx",
        TransferKind.NATIVE,
        A,
        5,
        3,
    )
    inner = mappers.parity_trace_transfer("ethereum", parity([0, 2], B, C, 9), 1000)
    assert inner is not None and (inner.position, inner.kind, inner.asset) == (
        "call:0.2",
        TransferKind.INTERNAL,
        NATIVE,
    )


def test_parity_drops_failed_zero_delegate_and_rewards() -> None:
    assert mappers.parity_trace_transfer("ethereum", parity([0], B, C, 9, error="Reverted"), 0) is None
    assert mappers.parity_trace_transfer("ethereum", parity([0], B, C, 0), 0) is None
    delegate = parity([0], B, C, 9)
    delegate["action"]["callType"] = "delegatecall"
    assert mappers.parity_trace_transfer("ethereum", delegate, 0) is None
    reward = {
        "type": "reward",
        "action": {"author": A, "value": "0x10"},
        "traceAddress": [],
        "blockNumber": 1,
    }
    assert mappers.parity_trace_transfer("ethereum", reward, 0) is None


def test_parity_create_and_selfdestruct() -> None:
    create = {
        "type": "create",
        "action": {"from": A, "value": "0x5", "init": "0x60"},
        "result": {"address": D},
        "traceAddress": [1],
        "transactionHash": TX,
        "transactionPosition": 0,
        "blockNumber": 5,
    }
    t = mappers.parity_trace_transfer("ethereum", create, 0)
    assert t is not None and (t.to_address, t.amount, t.position) == (D, 5, "call:1")
    suicide = {
        "type": "suicide",
        "action": {"address": D, "refundAddress": C, "balance": "0x7"},
        "traceAddress": [1, 0],
        "transactionHash": TX,
        "transactionPosition": 0,
        "blockNumber": 5,
    }
    t = mappers.parity_trace_transfer("ethereum", suicide, 0)
    assert t is not None and (t.from_address, t.to_address, t.amount) == (D, C, 7)


def test_reverted_ancestor_undoes_descendants() -> None:
    full = [
        parity([], A, B, 0),
        parity([0], B, C, 0, error="Reverted"),
        parity([0, 0], C, D, 4),
        parity([1], B, D, 2),
    ]
    failed = mappers.failed_paths(full)
    assert mappers.undone_by_ancestor((0, 0), failed)
    assert not mappers.undone_by_ancestor((1,), failed)
    assert mappers.undone_by_ancestor((1,), {()})  # the whole transaction failed


def test_call_tracer_tree_matches_parity_paths() -> None:
    frame = {
        "type": "CALL",
        "from": A,
        "to": B,
        "value": "0x1",
        "calls": [
            {
                "type": "STATICCALL",
                "from": B,
                "to": C,
                "calls": [{"type": "CALL", "from": C, "to": D, "value": "0x0"}],
            },
            {
                "type": "DELEGATECALL",
                "from": B,
                "to": C,
                "value": "0x1",
                "calls": [
                    {"type": "CALL", "from": B, "to": D, "value": "0x3"},
                ],
            },
            {
                "type": "CALL",
                "from": B,
                "to": C,
                "value": "0x8",
                "error": "execution reverted",
                "calls": [
                    {"type": "CALL", "from": C, "to": D, "value": "0x8"},
                ],
            },
            {"type": "CALL", "from": B, "to": D, "value": "0x2"},
            {"type": "CREATE2", "from": B, "to": C, "value": "0x6"},
            {"type": "SELFDESTRUCT", "from": C, "to": A, "value": "0x6"},
        ],
    }
    got = mappers.call_frame_transfers("ethereum", frame, block_number=9, block_time=90, tx_hash=TX, tx_index=1)
    assert [(t.position, t.from_address, t.to_address, t.amount) for t in got] == [
        ("call:1.0", B, D, 3),
        ("call:3", B, D, 2),
        ("call:4", B, C, 6),
        ("call:5", C, A, 6),
    ]
    assert (
        mappers.call_frame_transfers(
            "ethereum",
            {**frame, "error": "out of gas"},
            block_number=9,
            block_time=90,
            tx_hash=TX,
            tx_index=1,
        )
        == []
    )
    assert not mappers.is_call_frame({"structLogs": [], "gas": 1})


def test_token_logs() -> None:
    entry = {
        "address": C.upper().replace("0X", "0x"),
        "topics": [mappers.TRANSFER_TOPIC, mappers.pad_topic(A), mappers.pad_topic(B)],
        "data": "0x" + f"{1234:064x}",
        "blockNumber": "0x10",
        "transactionHash": TX,
        "transactionIndex": "0x2",
        "logIndex": "0x11",
        "removed": False,
    }
    t = mappers.log_transfer("ethereum", entry, 5)
    assert t is not None
    assert (t.from_address, t.to_address, t.asset, t.amount, t.position, t.tx_index, t.kind) == (
        A,
        B,
        C,
        1234,
        "log:17",
        2,
        TransferKind.TOKEN,
    )
    assert mappers.log_transfer("ethereum", {**entry, "data": "0x" + "0" * 64}, 5) is None
    assert mappers.log_transfer("ethereum", {**entry, "removed": True}, 5) is None
    nft = {**entry, "topics": [*entry["topics"], "0x" + "0" * 63 + "1"], "data": "0x"}
    assert mappers.log_transfer("ethereum", nft, 5) is None


def test_symbol_decoding() -> None:
    abi_string = "0x" + f"{32:064x}" + f"{3:064x}" + b"TST".hex().ljust(64, "0")
    assert mappers.decode_symbol(abi_string) == "TST"
    assert mappers.decode_symbol("0x" + b"MKR".hex().ljust(64, "0")) == "MKR"
    assert mappers.decode_symbol("0x") is None
    assert mappers.decode_uint("0x" + f"{18:064x}") == 18
    assert mappers.decode_uint("0x") is None


def test_result_cap_messages() -> None:
    for code, message in [
        (-32005, "query returned more than 10000 results"),
        (-32602, "Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range"),
        (-32000, "block range too large"),
        (-32600, "eth_getLogs is limited to a 10,000 range; limit exceeded"),
        (-32000, "response size exceeded"),
    ]:
        assert is_result_cap(RpcError("eth_getLogs", code, message))
    assert not is_result_cap(RpcError("eth_getLogs", -32000, "invalid params"))
