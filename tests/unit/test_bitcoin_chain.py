"""EsploraChain over real HTTP against the devchain's Esplora server: paging, the proportional
flattening of transactions into transfers, OP_RETURN memos, balances, faults and retries, the
network check; Bitcoin address validation with the BIP-173/BIP-350 vectors.

This file holds the tests that need nothing outside the process; those over a devchain, Postgres
or a subprocess are in tests/integration/test_bitcoin_chain.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracer.addresses import (
    InvalidAddress,
    btc_script_type,
    checksum,
    normalize_address,
    normalize_btc,
)
from tracer.chains.bitcoin import split_amounts
from tracer.chains.bitcoin.mappers import COINBASE, coinbase_transfers, flatten
from tracer.chains.utxo_records import TxIn, TxOut, UtxoTx

# -- addresses ----------------------------------------------------------------------------------

VALID = [
    ("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa", "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa", "p2pkh"),
    ("3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy", "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy", "p2sh"),
    ("BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4", "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4", "p2wpkh"),
    ("bc1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3qccfmv3",
     "bc1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3qccfmv3", "p2wsh"),
    ("bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0",
     "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0", "p2tr"),
    ("tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7",
     "tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7", "p2wsh"),
    ("mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn", "mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn", "p2pkh"),
    ("2MzQwSSnBHWHqSAqtTVQ6v47XtaisrJa1Vc", "2MzQwSSnBHWHqSAqtTVQ6v47XtaisrJa1Vc", "p2sh"),
    ("  bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4 ", "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4", "p2wpkh"),
]

INVALID = [
    ("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNb", "checksum"),  # last character changed
    ("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfN0", "checksum"),  # 0 is not base58
    ("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t5", "checksum"),
    ("bc1qW508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4", "mixed-case"),
    # BIP-350: a v1+ program with a bech32 (not bech32m) checksum, and v0 with bech32m.
    ("bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqh2y7hd", "bech32m"),
    ("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4x", "checksum"),
    ("tc1qw508d6qejxtdg4y5r3zarvary0c5xw7kg3g4ty", "Bitcoin address"),
    ("bc1zw508d6qejxtdg4y5r3zarvaryvqyzf3du", "checksum"),
    ("0x098b716b8aaf21512996dc57eb0615e2383e2f96", "Bitcoin address"),
    ("", "empty"),
    (None, "not a string"),
    (12345, "not a string"),
]


@pytest.mark.parametrize(("text", "canonical", "kind"), VALID)
def test_valid_bitcoin_addresses_normalise(text: str, canonical: str, kind: str) -> None:
    assert normalize_btc(text) == canonical
    assert normalize_address("bitcoin", text) == canonical
    assert btc_script_type(canonical) == kind
    assert checksum(canonical) == canonical  # no EIP-55 form: displayed as it is


@pytest.mark.parametrize(("text", "reason"), INVALID)
def test_invalid_bitcoin_addresses_are_refused_with_a_reason(text: Any, reason: str) -> None:
    with pytest.raises(InvalidAddress) as err:
        normalize_btc(text)
    assert reason.lower() in err.value.reason.lower(), err.value.reason


def test_normalize_address_dispatches_by_chain() -> None:
    evm = "0x098B716B8Aaf21512996dC57EB0615e2383E2f96"
    assert normalize_address("ethereum", evm) == evm.lower()
    assert normalize_address("arbitrum", evm) == evm.lower()
    with pytest.raises(InvalidAddress):
        normalize_address("bitcoin", evm)
    with pytest.raises(InvalidAddress):
        normalize_address("ethereum", "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(1, 10**12), min_size=1, max_size=7),
       st.lists(st.integers(1, 10**12), min_size=1, max_size=7), st.integers(0, 10**6))
def test_split_amounts_keeps_every_input_share_and_every_output_exact(ins: list[int], outs: list[int],
                                                                      fee: int) -> None:
    total_in = sum(outs) + fee
    # Scale the inputs so they hold exactly the outputs plus the fee.
    ins = [max(1, v * total_in // sum(ins)) for v in ins]
    ins[-1] += total_in - sum(ins)
    if ins[-1] <= 0:
        return
    m = split_amounts(ins, outs)
    assert all(c >= 0 for row in m for c in row)
    assert [sum(m[i][j] for i in range(len(ins))) for j in range(len(outs))] == outs
    for i, row in enumerate(m):
        exact = ins[i] * sum(outs) / total_in
        assert abs(sum(row) - exact) < 1  # the input's share, rounded
        for j, cell in enumerate(row):
            assert abs(cell - ins[i] * outs[j] / total_in) <= len(ins) + len(outs)


def test_a_coinbase_is_paid_from_coinbase_and_nothing_else_is() -> None:
    """New coins have no sender: `flatten` leaves a coinbase out, `coinbase_transfers` gives one
    transfer per paid output from COINBASE (a backward trace's mining-reward source); an ordinary
    transaction and an unconfirmed coinbase give none."""
    miner, other = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4", "1BoatSLRHtKNngkdXEeobR76b53LETtpyT"
    coinbase = UtxoTx("aa" * 32, 7, 1_700_000_000, 0, (TxIn(0, None, 0, "00" * 32, 0xFFFFFFFF, None, True),),
                      (TxOut(0, miner, 625_000_000), TxOut(1, None, 0, "op_return", b"\x00"), TxOut(2, other, 1_000)))
    assert flatten(coinbase) == []
    paid = coinbase_transfers(coinbase)
    assert [(t.from_address, t.to_address, t.amount, t.position) for t in paid] == [
        (COINBASE, miner, 625_000_000, "coinbase:0"), (COINBASE, other, 1_000, "coinbase:2")]
    assert all(t.block_number == 7 and t.tx_index == 0 and t.symbol == "BTC" for t in paid)
    spend = UtxoTx("bb" * 32, 8, 1_700_000_600, 1, (TxIn(0, miner, 625_000_000, "aa" * 32, 0),),
                   (TxOut(0, other, 624_990_000),), 10_000)
    assert coinbase_transfers(spend) == [] and len(flatten(spend)) == 1
    assert coinbase_transfers(UtxoTx("cc" * 32, None, None, -1, coinbase.inputs, coinbase.outputs)) == []
