"""The records of a generated Bitcoin history: blocks, transactions, inputs and outputs, the
cross-chain hand-offs to pay out, the generators' parameters and the ground truth."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from tracer.devchain.scenario import OfframpTruth, ScenarioLabel
from tracer.domain.transfers import NATIVE

COIN = 100_000_000
SUBSIDY = 50 * COIN
COINBASE_TXID = "00" * 32
DUST = 546


@dataclass(frozen=True, slots=True)
class BtcOutput:
    address: str | None  # None for OP_RETURN
    value: int
    script_type: str  # p2pkh, p2sh, p2wpkh, p2wsh, p2tr, op_return
    op_return: bytes | None = None


@dataclass(frozen=True, slots=True)
class BtcInput:
    txid: str  # the spent outpoint (COINBASE_TXID for a coinbase)
    vout: int


@dataclass(slots=True)
class BtcTx:
    txid: str
    inputs: list[BtcInput]
    outputs: list[BtcOutput]
    coinbase: bool = False


@dataclass(slots=True)
class BtcBlock:
    height: int
    hash: str
    prev_hash: str
    timestamp: int
    txs: list[BtcTx]


@dataclass(frozen=True, slots=True)
class Handoff:
    """A cross-chain hand-off to pay out on Bitcoin: what an EVM-side THORChain deposit asked for."""

    amount: int  # satoshis
    time: int  # unix time of the inbound deposit; the payout comes `delay_blocks` blocks later
    memo: str  # e.g. "OUT:<inbound tx hash>" (THORChain writes the hash upper case without 0x)
    address: str | None = None  # destination; a fresh P2WPKH address when None
    delay_blocks: int = 2
    onward: bool = True  # the destination then pays it all into an exchange deposit address

    @staticmethod
    def thorchain(inbound_tx_hash: str, amount: int, time: int, address: str | None = None) -> Handoff:
        return Handoff(amount, time, "OUT:" + inbound_tx_hash.removeprefix("0x").upper(), address)


@dataclass(frozen=True, slots=True)
class HistoryParams:
    """What every generated Bitcoin history has: its seed, network and block clock (the builder's knobs)."""

    seed: int = 1
    network: str = "mainnet"
    genesis_time: int = 1_700_000_000
    block_interval: int = 600


@dataclass(frozen=True, slots=True)
class BitcoinScenarioParams(HistoryParams):
    stolen: int = 150 * COIN
    peel_hops: int = 12
    exchanges: int = 3
    noise_wallets: int = 24
    noise_per_block: int = 3
    coinjoin: bool = True
    coinjoin_participants: int = 20  # other than the thief
    coinjoin_denomination: int = 10_000_000  # 0.1 BTC
    coinjoin_thief_outputs: int = 5
    vault_noise_payouts: int = 4
    handoffs: tuple[Handoff, ...] = ()
    tail_blocks: int = 30


@dataclass(frozen=True, slots=True)
class PeelHop:
    index: int
    txid: str
    block: int
    from_address: str
    deposit_address: str
    payment: int
    exchange: str
    change_address: str
    change: int


@dataclass(frozen=True, slots=True)
class CoinJoinTruth:
    txid: str
    block: int
    pattern: str  # "wasabi"
    denomination: int
    anonymity_set: int  # equal outputs
    equal_vouts: tuple[int, ...]
    change_vouts: tuple[int, ...]
    coordinator_vout: int
    tainted_vins: tuple[int, ...]  # the thief's inputs
    tainted_in: int  # value of the thief's inputs
    thief_equal_vouts: tuple[int, ...]
    thief_change_vout: int
    participants: int  # input owners, the thief included


@dataclass(frozen=True, slots=True)
class HandoffTruth:
    memo: str
    address: str
    amount: int
    txid: str
    block: int
    vault: str
    onward_txid: str | None
    onward_deposit: str | None
    onward_amount: int | None
    exchange: str | None


@dataclass
class BitcoinTruth:
    offramps: list[OfframpTruth] = field(default_factory=list)  # the peel chain's deposit addresses
    noise_offramps: list[str] = field(default_factory=list)  # other customers' deposit addresses
    stolen: dict[str, int] = field(default_factory=dict)
    peel: list[PeelHop] = field(default_factory=list)
    coinjoins: list[CoinJoinTruth] = field(default_factory=list)
    # After the CoinJoin: where the thief's mixed outputs and its change were paid in (the real
    # path; what a trace finds there depends on how it links through the CoinJoin).
    postmix_offramps: list[OfframpTruth] = field(default_factory=list)
    handoffs: list[HandoffTruth] = field(default_factory=list)
    deposit_addresses: dict[str, str] = field(default_factory=dict)  # every deposit address -> exchange
    launderers: list[str] = field(default_factory=list)  # the thief's addresses


@dataclass
class BitcoinScenario:
    network: str
    genesis_time: int
    blocks: list[BtcBlock]  # blocks 0..N, block 0 the network's genesis
    seeds: list[str]
    labels: list[ScenarioLabel]
    truth: BitcoinTruth
    chain: str = "bitcoin"
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def head(self) -> int:
        return self.blocks[-1].height

    def iter_txs(self) -> Iterator[tuple[BtcBlock, int, BtcTx]]:
        for block in self.blocks:
            for k, tx in enumerate(block.txs):
                yield block, k, tx

    def summary(self) -> str:
        n_txs = sum(len(b.txs) for b in self.blocks)
        return (f"bitcoin {self.network}: {len(self.blocks)} blocks, {n_txs} txs, seeds {len(self.seeds)}, "
                f"peel hops {len(self.truth.peel)}, coinjoins {len(self.truth.coinjoins)}, "
                f"hand-offs {len(self.truth.handoffs)}, stolen {self.truth.stolen.get(NATIVE, 0) / COIN:g} BTC")

    def to_json(self) -> str:
        def enc(o: Any) -> Any:
            if isinstance(o, bytes):
                return {"hex": o.hex()}
            raise TypeError(type(o))
        return json.dumps(asdict(self), default=enc)
