"""Look-ups over a generated Bitcoin history (spends, address histories, times), as Esplora needs them."""

from __future__ import annotations

import bisect
from collections import defaultdict

from tracer.chains.bitcoin import NETWORKS
from tracer.devchain.bitcoin.records import BitcoinScenario, BtcBlock, BtcInput, BtcOutput, BtcTx


class BitcoinChainIndex:
    """Look-ups over a scenario's blocks, as an Esplora server needs them."""

    def __init__(self, scenario: BitcoinScenario) -> None:
        self.scenario = scenario
        self.network = NETWORKS[scenario.network]
        self.blocks = scenario.blocks
        self.by_hash = {blk.hash: blk for blk in self.blocks}
        self.txs: dict[str, tuple[BtcTx, BtcBlock, int]] = {}
        self.spent_by: dict[tuple[str, int], tuple[str, int, int]] = {}  # outpoint -> (txid, vin, height)
        self.address_txs: dict[str, list[tuple[int, int, str]]] = defaultdict(list)  # (height, pos, txid)
        for blk in self.blocks:
            for pos, tx in enumerate(blk.txs):
                self.txs[tx.txid] = (tx, blk, pos)
                involved: set[str] = set()
                if not tx.coinbase:
                    for k, i in enumerate(tx.inputs):
                        self.spent_by[(i.txid, i.vout)] = (tx.txid, k, blk.height)
                        prev = self.txs[i.txid][0].outputs[i.vout]
                        if prev.address:
                            involved.add(prev.address)
                involved.update(o.address for o in tx.outputs if o.address)
                for a in involved:
                    self.address_txs[a].append((blk.height, pos, tx.txid))

    @property
    def head(self) -> int:
        return self.blocks[-1].height

    def prevout(self, i: BtcInput) -> BtcOutput:
        return self.txs[i.txid][0].outputs[i.vout]

    def history(self, address: str) -> list[str]:
        """Txids of an address, newest first (as Esplora pages them)."""
        return [t for _h, _p, t in sorted(self.address_txs.get(address, ()), reverse=True)]

    def height_at(self, when: int) -> int:
        times = [blk.timestamp for blk in self.blocks]
        return bisect.bisect_left(times, when)
