"""The Tron HTTP API mapping against answers real java-tron nodes gave, as published in the node's
documentation and in public test data (tests/data/tron/README.md says where each comes from)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tracer.chains import tron_mappers as tm
from tracer.domain.transfers import NATIVE, TransferKind

DATA = json.loads((Path(__file__).resolve().parents[1] / "data" / "tron" / "documented.json").read_text())


def _block(txs: list[Any]) -> dict[str, Any]:
    """The documented Nile block header holding `txs` (the documentation omits its transactions)."""
    return {**DATA["getblockbynum_nile_66987565_header"], "transactions": txs}


def test_the_solidified_block_of_a_real_getnodeinfo() -> None:
    assert tm.solidified(DATA["getnodeinfo_nile_4.8.1"]) == 66987547
    with pytest.raises(Exception, match="solidityBlock"):
        tm.solidified({"block": "Num:1,ID:" + "0" * 64})


def test_a_real_block_header() -> None:
    block = tm.parse_block(DATA["getblockbynum_nile_66987565_header"])
    assert block is not None and block.txs == ()
    assert block.ref.number == 66987565 and block.ref.timestamp == 1777445121
    assert block.ref.hash == "0x0000000003fe262d52bfa4b2814f816fd2e57af5b98a33d60d8630a03a908e0e"
    assert tm.parse_block({}) is None  # what a node answers past its head


def test_real_trx_and_trc10_transfers() -> None:
    block = tm.parse_block(_block(DATA["block_transactions_mainnet_2018"]))
    assert block is not None
    seed, trx = tm.block_transfers("tron", block)
    assert (seed.asset, seed.amount, seed.kind, seed.position) == ("trc10:SEED", 1834, TransferKind.TOKEN, "tx")
    assert seed.from_address == "0x41a94763c92d7e6b79dd87d99ce622e225237c450b"
    assert (trx.asset, trx.amount, trx.kind, trx.decimals) == (NATIVE, 1485302129, TransferKind.NATIVE, 6)
    assert trx.tx_hash == "0x041b67ebfccce58ac650446e9093aecc3e05764cbbcacb938ffaa525de956a0f"
    assert trx.to_address == "0x41c5a162189b779237d481e542d56f0c3dc0995ce4" and trx.tx_index == 1


def test_a_real_contract_call_moves_no_value() -> None:
    block = tm.parse_block(_block([DATA["gettransactionbyid_nile_trigger"]]))
    assert block is not None and block.calls_contracts()
    (tx,) = block.txs
    assert (tx.kind, tx.to, tx.amount) == ("TriggerSmartContract", "0x419ff8fc48fb114ccd5bbdc24a86f0c73082f08825", 0)
    assert tm.block_transfers("tron", block) == []
    # Its one internal call carries no value (callValueInfo [{}]): no transfer either.
    infos = tm.parse_infos([DATA["gettransactioninfobyid_nile_trigger"]])
    assert tm.internal_transfers("tron", block, infos) == []
    assert tm.fees(infos) == {tx.tx_hash: 5254500}


def test_a_reverted_call_with_a_rejected_internal_transaction_moves_nothing() -> None:
    info = DATA["gettransactioninfobyblocknum_mainnet_2000000_first"]
    # The block's transaction as its result describes it (the page shows only the result).
    call = {"owner_address": "41b0d801f4df5df9ab8801a4d523f7fda9889b9d4a", "contract_address": info["contract_address"],
            "call_value": 1}
    tx = {"ret": [{"contractRet": "REVERT"}], "txID": info["id"],
          "raw_data": {"contract": [{"type": "TriggerSmartContract", "parameter": {"value": call}}]}}
    block = tm.parse_block(_block([tx]))
    assert block is not None and tm.block_transfers("tron", block) == []
    # Even were the call's value non-zero, a reverted transaction and a rejected call move nothing.
    paid = json.loads(json.dumps(info))
    paid["internal_transactions"][0]["callValueInfo"] = [{"callValue": 5}]
    assert tm.internal_transfers("tron", block, tm.parse_infos([paid])) == []
    paid["receipt"]["result"] = "SUCCESS"
    assert tm.internal_transfers("tron", block, tm.parse_infos([paid])) == []  # still rejected
    del paid["internal_transactions"][0]["rejected"]
    (t,) = tm.internal_transfers("tron", block, tm.parse_infos([paid]))
    assert (t.amount, t.kind, t.position) == (5, TransferKind.INTERNAL, "call:0")
    assert tm.internal_transfers("tron", block, tm.parse_infos({})) == []  # `{}`: num <= 0


def test_a_transactions_note_is_its_memo() -> None:
    """raw_data.data carries a transaction's note (hex text): THORChain's outbounds name their
    inbound there, which is how a payout on Tron is matched to its deposit."""
    tx = json.loads(json.dumps(DATA["block_transactions_mainnet_2018"][1]))
    tx["raw_data"]["data"] = b"OUT:ABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABAB".hex()
    block = tm.parse_block(_block([tx]))
    assert block is not None
    (t,) = tm.block_transfers("tron", block)
    assert t.memo is not None and t.memo.startswith("OUT:ABAB")
