"""`BlockBuilder`: blocks, transactions and the UTXO set while a Bitcoin story is written."""

from __future__ import annotations

import hashlib
import json
import random
from collections import defaultdict
from collections.abc import Sequence

from tracer.addresses import encode_btc_base58, encode_btc_segwit
from tracer.chains.bitcoin import NETWORKS, BtcNetwork
from tracer.devchain.bitcoin.records import (
    COINBASE_TXID,
    DUST,
    SUBSIDY,
    BtcBlock,
    BtcInput,
    BtcOutput,
    BtcTx,
    HistoryParams,
)


def sha256d(data: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


class BlockBuilder:
    """Blocks, transactions and the UTXO set while the story is written."""

    def __init__(self, params: HistoryParams, genesis_time: int) -> None:
        self.p = params
        self.net: BtcNetwork = NETWORKS[params.network]
        self.rng = random.Random(params.seed)
        self.genesis_time = genesis_time
        self.blocks: list[BtcBlock] = []
        self.pending: list[BtcTx] = []
        self.utxos: dict[tuple[str, int], tuple[str, int]] = {}  # outpoint -> (address, value)
        self.by_address: dict[str, list[tuple[str, int]]] = defaultdict(list)
        self.fees = 0
        self.n_addresses = 0
        self.n_txs = 0
        self.miners = [self.address("p2wpkh") for _ in range(3)]

    @property
    def height(self) -> int:
        """The height of the block being filled."""
        return len(self.blocks)

    def time_of(self, height: int) -> int:
        # Jitter well under the interval keeps timestamps strictly increasing.
        jitter = int.from_bytes(hashlib.sha256(f"{self.p.seed}:t:{height}".encode()).digest()[:2], "big") % 120
        return self.genesis_time + height * self.p.block_interval + jitter

    def address(self, kind: str = "p2wpkh") -> str:
        self.n_addresses += 1
        digest = hashlib.sha256(f"tracer-devchain-btc:{self.p.seed}:{self.n_addresses}".encode()).digest()
        hrp = self.net.bech32_hrp
        if kind == "p2wpkh":
            return encode_btc_segwit(hrp, 0, digest[:20])
        if kind == "p2wsh":
            return encode_btc_segwit(hrp, 0, digest)
        if kind == "p2tr":
            return encode_btc_segwit(hrp, 1, digest)
        if kind == "p2sh":
            return encode_btc_base58(self.net.p2sh_version, digest[:20])
        return encode_btc_base58(self.net.p2pkh_version, digest[:20])

    @staticmethod
    def script_type(address: str) -> str:
        from tracer.addresses import btc_script_type

        return btc_script_type(address)

    def out(self, address: str, value: int) -> BtcOutput:
        return BtcOutput(address, value, self.script_type(address))

    def _txid(self, tx_inputs: Sequence[BtcInput], outputs: Sequence[BtcOutput], tag: str) -> str:
        self.n_txs += 1
        body = json.dumps([tag, self.n_txs, [(i.txid, i.vout) for i in tx_inputs],
                           [(o.address, o.value, o.op_return.hex() if o.op_return else None) for o in outputs]])
        return sha256d(body.encode())[::-1].hex()

    def _record(self, tx: BtcTx) -> BtcTx:
        for i in tx.inputs:
            if tx.coinbase:
                continue
            address, _value = self.utxos.pop((i.txid, i.vout))
            self.by_address[address].remove((i.txid, i.vout))
        for k, o in enumerate(tx.outputs):
            if o.address is not None and o.value > 0:
                self.utxos[(tx.txid, k)] = (o.address, o.value)
                self.by_address[o.address].append((tx.txid, k))
        return tx

    def balance(self, address: str) -> int:
        return sum(self.utxos[op][1] for op in self.by_address.get(address, ()))

    def fund(self, outputs: Sequence[tuple[str, int]]) -> BtcTx:
        """A coinbase-like funding transaction (block 1 only): the wallets' starting balances."""
        outs = [self.out(a, v) for a, v in outputs]
        tx = BtcTx(self._txid([], outs, "fund"), [BtcInput(COINBASE_TXID, 0xFFFFFFFF)], outs, coinbase=True)
        self.pending.append(tx)
        return self._record(tx)

    def spend(
        self,
        inputs: Sequence[tuple[str, int]],
        payments: Sequence[tuple[str, int]],
        change: str | None,
        fee: int | None = None,
        op_return: bytes | None = None,
        *,
        sort_outputs: bool = False,
    ) -> BtcTx:
        """Spend the outpoints `inputs`: pay `payments`, the rest minus the fee to `change`."""
        total = sum(self.utxos[op][1] for op in inputs)
        fee = fee if fee is not None else 110 * (len(inputs) * 68 + len(payments) * 31 + 42) // 100 * 10
        outs = [self.out(a, v) for a, v in payments]
        rest = total - sum(v for _, v in payments) - fee
        if rest < 0:
            raise ValueError(f"inputs hold {total} sat, payments and fee need {total - rest}")
        if change is not None and rest >= DUST:
            outs.append(self.out(change, rest))
        if sort_outputs:
            outs.sort(key=lambda o: (-o.value, o.address or ""))
        if op_return is not None:
            outs.insert(0, BtcOutput(None, 0, "op_return", op_return))
        tx_inputs = [BtcInput(t, v) for t, v in inputs]
        tx = BtcTx(self._txid(tx_inputs, outs, "spend"), tx_inputs, outs)
        self.fees += total - sum(o.value for o in outs)
        self.pending.append(tx)
        return self._record(tx)

    def spend_all(self, address: str, payments: Sequence[tuple[str, int]], change: str | None,
                  fee: int | None = None, op_return: bytes | None = None) -> BtcTx:
        return self.spend(list(self.by_address[address]), payments, change, fee, op_return)

    def close_block(self) -> BtcBlock:
        height = self.height
        miner = self.miners[height % len(self.miners)]
        coinbase_out = [self.out(miner, SUBSIDY + self.fees)]
        coinbase = BtcTx(self._txid([], coinbase_out, f"coinbase:{height}"),
                         [BtcInput(COINBASE_TXID, 0xFFFFFFFF)], coinbase_out, coinbase=True)
        self._record(coinbase)
        txs = [coinbase, *self.pending]
        prev = self.blocks[-1].hash if self.blocks else "00" * 32
        if height == 0:
            block_hash = self.net.genesis_hash
        else:
            body = json.dumps([prev, height, [t.txid for t in txs]]).encode()
            block_hash = sha256d(body)[::-1].hex()
        block = BtcBlock(height, block_hash, prev, self.time_of(height), txs)
        self.blocks.append(block)
        self.pending = []
        self.fees = 0
        return block
