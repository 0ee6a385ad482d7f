"""Esplora JSON -> `UtxoTx` records, and a transaction flattened into `Transfer`s.

A transaction is flattened into `Transfer`s between every (input address, output address) pair:
amount = in_value * out_value / total_input, in integers, with the remainders placed so that each
input's transfers sum exactly to its share of the outputs and each output receives exactly its
value. The fee is not transferred (it leaves the traced money), and nor is change paid back to an
input's own address (the money did not move). The heuristics that need a transaction's shape
(change outputs, CoinJoin) read whole `UtxoTx` records instead.

An answer in another shape makes these functions raise TypeError or ValueError, which EsploraChain
turns into a MalformedAnswer naming the server and the endpoint (tracer.chains.answers).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tracer.addresses import address_or_none, normalize_btc
from tracer.chains.bitcoin.records import BTC_DECIMALS, BTC_SYMBOL
from tracer.chains.utxo_records import Outspend, TxIn, TxOut, UtxoTx
from tracer.domain.chains import BITCOIN
from tracer.domain.transfers import NATIVE, Transfer, TransferKind

# The sender of new coins (a coinbase's outputs): no address of any network is spelled so.
COINBASE = "coinbase"

# Esplora names script types by witness version; the records use the plain names.
_SCRIPT_TYPES = {"v0_p2wpkh": "p2wpkh", "v0_p2wsh": "p2wsh", "v1_p2tr": "p2tr"}


def _script_type(name: Any) -> str | None:
    if not isinstance(name, str):
        return None
    return _SCRIPT_TYPES.get(name, name)


def op_return_data(script_hex: str) -> bytes | None:
    """The pushed bytes of an OP_RETURN output script (all pushes concatenated), or None."""
    try:
        script = bytes.fromhex(script_hex)
    except ValueError:
        return None
    if not script or script[0] != 0x6A:
        return None
    out = bytearray()
    i = 1
    while i < len(script):
        op = script[i]
        i += 1
        if 1 <= op <= 0x4B:
            size = op
        elif op == 0x4C and i < len(script):
            size, i = script[i], i + 1
        elif op == 0x4D and i + 1 < len(script):
            size, i = int.from_bytes(script[i:i + 2], "little"), i + 2
        elif op == 0x4E and i + 3 < len(script):
            size, i = int.from_bytes(script[i:i + 4], "little"), i + 4
        else:
            continue  # OP_0 / small-number opcodes carry no bytes worth reading as a memo
        out += script[i:i + size]
        i += size
    return bytes(out)


def _address(value: Any) -> str | None:
    return address_or_none(normalize_btc, value)


def uint(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} is {value!r}")
    return value


def parse_tx(data: Any, tx_index: int = -1) -> UtxoTx:
    """An Esplora transaction JSON as a UtxoTx (TypeError, ValueError for a malformed one)."""
    if not isinstance(data, Mapping) or not isinstance(data.get("txid"), str):
        raise ValueError("a transaction without txid")
    vin, vout = data.get("vin"), data.get("vout")
    if not isinstance(vin, list) or not isinstance(vout, list):
        raise ValueError(f"transaction {data['txid']} has no vin/vout lists")
    inputs: list[TxIn] = []
    for i, inp in enumerate(vin):
        if not isinstance(inp, Mapping):
            raise ValueError(f"input {i} of {data['txid']} is no object")
        if inp.get("is_coinbase"):
            inputs.append(TxIn(i, None, 0, str(inp.get("txid", "00" * 32)).lower(), 0xFFFFFFFF, None, True))
            continue
        prev = inp.get("prevout")
        if not isinstance(prev, Mapping):
            raise ValueError(f"input {i} of {data['txid']} has no prevout (is the server an Esplora?)")
        inputs.append(TxIn(i, _address(prev.get("scriptpubkey_address")), uint(prev.get("value"), "prevout value"),
                           str(inp.get("txid", "")).lower(), uint(inp.get("vout"), "prevout index"),
                           _script_type(prev.get("scriptpubkey_type"))))
    outputs: list[TxOut] = []
    for j, out in enumerate(vout):
        if not isinstance(out, Mapping):
            raise ValueError(f"output {j} of {data['txid']} is no object")
        stype = _script_type(out.get("scriptpubkey_type"))
        memo = op_return_data(str(out.get("scriptpubkey", ""))) if stype == "op_return" else None
        outputs.append(TxOut(j, _address(out.get("scriptpubkey_address")), uint(out.get("value"), "output value"),
                             stype, memo))
    raw_status = data.get("status")
    status: Mapping[str, Any] = raw_status if isinstance(raw_status, Mapping) else {}
    confirmed = bool(status.get("confirmed"))
    height = status.get("block_height") if confirmed else None
    btime = status.get("block_time") if confirmed else None
    fee = data.get("fee")
    return UtxoTx(
        txid=data["txid"].lower(),
        block_number=height if isinstance(height, int) else None,
        block_time=btime if isinstance(btime, int) else None,
        tx_index=tx_index,
        inputs=tuple(inputs),
        outputs=tuple(outputs),
        fee=fee if isinstance(fee, int) and fee >= 0 else max(0, sum(i.value for i in inputs)
                                                               - sum(o.value for o in outputs)),
    )


def _largest_remainder(total: int, weights: Sequence[int]) -> list[int]:
    """Integers proportional to `weights` that sum exactly to `total` (Hamilton's method,
    ties to the lower index, so the result is deterministic)."""
    denom = sum(weights)
    if denom <= 0 or total <= 0:
        return [0] * len(weights)
    shares = [total * w // denom for w in weights]
    rest = total - sum(shares)
    order = sorted(range(len(weights)), key=lambda k: (-(total * weights[k] % denom), k))
    for k in order[:rest]:
        shares[k] += 1
    return shares


def split_amounts(in_values: Sequence[int], out_values: Sequence[int]) -> list[list[int]]:
    """The (input x output) matrix of the proportional flattening.

    Row i sums to input i's share of the outputs (in_i * total_out / total_in, rounded by largest
    remainder), column j to out_j exactly; each cell is the floor of its exact value or one more,
    unless rounding leaves a residue the greedy pass cannot place (then it goes north-west).
    """
    total_out = sum(out_values)
    rows = _largest_remainder(total_out, in_values)
    n, m = len(in_values), len(out_values)
    if total_out <= 0:
        return [[0] * m for _ in range(n)]
    cells = [[rows[i] * out_values[j] // total_out for j in range(m)] for i in range(n)]
    row_left = [rows[i] - sum(cells[i]) for i in range(n)]
    col_left = [out_values[j] - sum(cells[i][j] for i in range(n)) for j in range(m)]
    if any(row_left):
        frac = sorted(((rows[i] * out_values[j] % total_out, i, j) for i in range(n) if row_left[i]
                       for j in range(m) if col_left[j]), key=lambda x: (-x[0], x[1], x[2]))
        for _f, i, j in frac:
            if row_left[i] and col_left[j]:
                cells[i][j] += 1
                row_left[i] -= 1
                col_left[j] -= 1
        i = j = 0
        while i < n and j < m:
            if not row_left[i]:
                i += 1
            elif not col_left[j]:
                j += 1
            else:
                step = min(row_left[i], col_left[j])
                cells[i][j] += step
                row_left[i] -= step
                col_left[j] -= step
    return cells


def flatten(tx: UtxoTx, chain: str = BITCOIN) -> list[Transfer]:
    """Transfers of a confirmed transaction: one per (input address, output address) pair."""
    if tx.block_number is None or tx.is_coinbase:
        return []  # unconfirmed: not in any block range; coinbase: nobody sent it
    outs = [o for o in tx.outputs if o.address is not None and o.value > 0]
    if not outs or tx.total_in <= 0:
        return []
    memo = tx.memo
    # Inputs without an address (bare multisig, p2pk) take their share too; it just goes untraced.
    matrix = split_amounts([i.value for i in tx.inputs], [o.value for o in outs])
    transfers: list[Transfer] = []
    for inp, row in zip(tx.inputs, matrix, strict=True):
        if inp.address is None:
            continue
        for out, amount in zip(outs, row, strict=True):
            if amount <= 0 or out.address == inp.address:
                continue
            assert out.address is not None
            transfers.append(Transfer(
                chain=chain, block_number=tx.block_number, block_time=tx.block_time or 0, tx_hash=tx.txid,
                tx_index=max(tx.tx_index, 0), position=f"io:{inp.index}:{out.index}",
                from_address=inp.address, to_address=out.address, asset=NATIVE, amount=amount,
                kind=TransferKind.NATIVE, decimals=BTC_DECIMALS, symbol=BTC_SYMBOL, memo=memo,
            ))
    return transfers


def coinbase_transfers(tx: UtxoTx, chain: str = BITCOIN) -> list[Transfer]:
    """What a confirmed coinbase transaction paid, one transfer per output from COINBASE (no
    address: `flatten` leaves these out; a backward trace reports them as mining rewards)."""
    if tx.block_number is None or not tx.is_coinbase:
        return []
    return [Transfer(chain=chain, block_number=tx.block_number, block_time=tx.block_time or 0, tx_hash=tx.txid,
                     tx_index=max(tx.tx_index, 0), position=f"coinbase:{out.index}", from_address=COINBASE,
                     to_address=out.address, asset=NATIVE, amount=out.value, kind=TransferKind.NATIVE,
                     decimals=BTC_DECIMALS, symbol=BTC_SYMBOL)
            for out in tx.outputs if out.address is not None and out.value > 0]


def confirmed_txs(page: Any) -> list[Mapping[str, Any]]:
    """The confirmed transactions of a list of Esplora transactions, each with the txid and the
    block (height and hash) other readers take for granted."""
    if not isinstance(page, list):
        raise TypeError()
    out = []
    for tx in page:
        if not isinstance(tx, Mapping) or not isinstance(tx.get("txid"), str):
            raise ValueError(f"a transaction without txid: {str(tx)[:80]}")
        status = tx.get("status")
        if isinstance(status, Mapping) and status.get("confirmed"):
            if not isinstance(status.get("block_height"), int) or not isinstance(status.get("block_hash"), str):
                raise ValueError(f"the status of {tx['txid']} has no block")
            out.append(tx)
    return out


def outspend(vout: int, item: Any) -> Outspend:
    """One item of `/tx/:txid/outspends`: a spent output names the input that spends it."""
    if not isinstance(item, Mapping):
        raise TypeError()
    raw_status = item.get("status")
    status: Mapping[str, Any] = raw_status if isinstance(raw_status, Mapping) else {}
    height, vin, txid = status.get("block_height"), item.get("vin"), item.get("txid")
    if item.get("spent") and (not isinstance(txid, str) or not isinstance(vin, int)
                              or (height is not None and not isinstance(height, int))):
        raise ValueError(f"output {vout} is spent by txid {txid!r}, input {vin!r}, at height {height!r}")
    return Outspend(vout, bool(item.get("spent")), str(txid).lower() if txid else None,
                    vin if isinstance(vin, int) else None, height if isinstance(height, int) else None)


def net_paid(address: str, txs: Iterable[Mapping[str, Any]]) -> int:
    """What the transactions paid to `address` less what they spent from it."""
    total = 0
    for raw in txs:
        tx = parse_tx(raw)
        total += sum(o.value for o in tx.outputs if o.address == address)
        total -= sum(i.value for i in tx.inputs if i.address == address)
    return total
