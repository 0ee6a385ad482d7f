"""Plain records of UTXO transactions (Bitcoin) that the chain layer hands to the engine.

`Transfer`s flatten a transaction into input-address -> output-address pairs, which is what the
taint engine walks; the heuristics that need the transaction's shape (change detection, CoinJoin
patterns, common-input ownership) read these records instead. Node JSON never crosses this line.
Addresses are normalised (`tracer.addresses.normalize_btc`); txids lowercase hex; values in
satoshis.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TxIn:
    """One spent output. `address` is None for a script with no standard address (or coinbase)."""

    index: int  # vin position
    address: str | None
    value: int
    prev_txid: str
    prev_vout: int
    script_type: str | None = None  # p2pkh, p2sh, p2wpkh, p2wsh, p2tr (v0_/v1_ prefixes dropped)
    coinbase: bool = False

    @property
    def outpoint(self) -> tuple[str, int]:
        return (self.prev_txid, self.prev_vout)


@dataclass(frozen=True, slots=True)
class TxOut:
    """One created output. OP_RETURN outputs have no address and carry `op_return` (raw bytes)."""

    index: int  # vout position
    address: str | None
    value: int
    script_type: str | None = None  # p2pkh, p2sh, p2wpkh, p2wsh, p2tr, op_return, or the node's name
    op_return: bytes | None = None

    @property
    def memo(self) -> str | None:
        """The OP_RETURN payload as text when it is printable UTF-8 (THORChain memos are)."""
        if self.op_return is None:
            return None
        try:
            text = self.op_return.decode("utf-8")
        except UnicodeDecodeError:
            return None
        return text if text and text.isprintable() else None


@dataclass(frozen=True, slots=True)
class UtxoTx:
    """A confirmed (or mempool, block_number None) transaction with its inputs and outputs."""

    txid: str
    block_number: int | None
    block_time: int | None
    tx_index: int  # position in its block (0 = coinbase); -1 when unknown
    inputs: tuple[TxIn, ...]
    outputs: tuple[TxOut, ...]
    fee: int = 0

    @property
    def total_in(self) -> int:
        return sum(i.value for i in self.inputs)

    @property
    def total_out(self) -> int:
        return sum(o.value for o in self.outputs)

    @property
    def is_coinbase(self) -> bool:
        return any(i.coinbase for i in self.inputs)

    @property
    def memo(self) -> str | None:
        """Text of the first printable OP_RETURN output, if any."""
        for out in self.outputs:
            if out.memo is not None:
                return out.memo
        return None

    def input_addresses(self) -> list[str]:
        return list(dict.fromkeys(i.address for i in self.inputs if i.address is not None))

    def output_addresses(self) -> list[str]:
        return list(dict.fromkeys(o.address for o in self.outputs if o.address is not None))


@dataclass(frozen=True, slots=True)
class Outspend:
    """Whether output `vout` of a transaction is spent, and by which input of which transaction."""

    vout: int
    spent: bool
    txid: str | None = None
    vin: int | None = None
    block_number: int | None = None
