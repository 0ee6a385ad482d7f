"""Transfer.order is execution order: numbers inside positions compare as numbers, not as text."""

from __future__ import annotations

from tracer.domain.transfers import NATIVE, Transfer, TransferKind


def _t(position: str, tx_index: int = 0) -> Transfer:
    return Transfer("ethereum", 5, 0, "0x" + "ab" * 32, tx_index, position, "0x" + "11" * 20, "0x" + "22" * 20,
                    NATIVE, 1, TransferKind.TOKEN)


def test_positions_sort_in_execution_order() -> None:
    shuffled = ["log:17", "call:0.10", "log:9", "tx", "call:0.2", "call:0.2.1", "call:1"]
    ordered = [t.position for t in sorted((_t(p) for p in shuffled), key=lambda t: t.order)]
    assert ordered == ["tx", "call:0.2", "call:0.2.1", "call:0.10", "call:1", "log:9", "log:17"]


def test_bitcoin_inputs_sort_by_vin_then_vout() -> None:
    shuffled = ["io:10:0", "io:2:11", "io:2:3", "io:0:0"]
    ordered = [t.position for t in sorted((_t(p) for p in shuffled), key=lambda t: t.order)]
    assert ordered == ["io:0:0", "io:2:3", "io:2:11", "io:10:0"]


def test_transaction_index_comes_before_position() -> None:
    assert _t("log:99", tx_index=1).order < _t("tx", tx_index=2).order
