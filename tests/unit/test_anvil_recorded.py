"""Anvil's recorded answers (tests/data/anvil, see its README) read as the chain layer reads them,
without a node: the refusals of old state are recognised as such, the refusal of a block tag is
not mistaken for a result cap, log timestamps and receipt fees are taken as Anvil gives them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tracer.chains.errors import RpcError
from tracer.chains.evm import history, mappers
from tracer.chains.limits import is_result_cap, suggested_range

ANSWERS = Path(__file__).resolve().parents[1] / "data" / "anvil" / "answers.json"
START = 1_700_000_000


@pytest.fixture(scope="module")
def answers() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(ANSWERS.read_text())
    assert data["client"] == "anvil/v1.7.1"
    return data


def _error(entry: dict[str, Any]) -> RpcError:
    return RpcError(entry["request"]["method"], entry["error"]["code"], entry["error"]["message"])


def test_old_state_refusals_are_recognised(answers: dict[str, Any]) -> None:
    for name in ("old_balance", "old_call"):
        err = _error(answers[name])
        assert err.code == -32602 and history.is_state_missing(err), err.message
        assert not is_result_cap(err)  # a state refusal is not "ask for less"


def test_block_tag_refusal_is_not_a_result_cap(answers: dict[str, Any]) -> None:
    err = _error(answers["trace_filter_latest"])
    assert "latest" in err.message
    assert not is_result_cap(err) and suggested_range(err) is None and not history.is_state_missing(err)


def test_logs_carry_their_block_time(answers: dict[str, Any]) -> None:
    [entry] = answers["logs"]["result"]
    assert mappers.quantity(entry["blockTimestamp"]) == START + 12
    transfer = mappers.log_transfer("ethereum", entry, mappers.quantity(entry["blockTimestamp"]))
    assert transfer is not None and transfer.amount == 10**9 and transfer.block_time == START + 12


def test_receipt_fees(answers: dict[str, Any]) -> None:
    receipts = answers["block_receipts"]["result"]
    paid = [history.receipt_fee(r) for r in receipts]
    assert 21_000 * 10**9 in paid  # the 1 gwei payment
    assert all(mappers.quantity(r["effectiveGasPrice"]) in (0, 10**9) for r in receipts)
