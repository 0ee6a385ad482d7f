"""A generated Tron history: a sanctioned wallet launders USDT-TRC20, TRX and a TRC-10 token
through a few wallets and a forwarding contract to exchange deposit addresses, which sweep to the
exchanges' labelled hot wallets; Tether freezes one of the wallets (`AddedBlackList`) while it
holds USDT. tracer/devchain/tron_server.py serves it as a java-tron node would.

The story is pure data: blocks of transactions (TransferContract, TransferAssetContract,
TriggerSmartContract with their logs and internal transactions), the state they leave, and the
truth a trace must find (`TronTruth`): each deposit address with the exact amount of each asset it received.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass, field

from tracer.addresses import normalize_tron
from tracer.chains.tron_mappers import ADDED_BLACKLIST, TRANSFER_TOPIC, TRC10_PREFIX
from tracer.devchain.scenario import OfframpTruth, ScenarioLabel
from tracer.domain.transfers import NATIVE

CHAIN = "tron"
MAINNET_GENESIS = "00000000000000001ebf88508a03865c71d452e25f4d51194196a1d22b6653dc"
"""Tron mainnet's genesis block id; its last 4 bytes are the chain id `eth_chainId` answers."""
CHAIN_ID = int(MAINNET_GENESIS[-8:], 16)
USDT = normalize_tron("TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t")
"""Tether's USDT-TRC20 contract (6 decimals)."""
TRC10_ID = "1002000"  # BitTorrent's old TRC-10 token id (6 decimals)
SOLID_LAG = 19  # blocks between the head and the solidified block (2/3 of 27 SRs, one block each)
BLOCK_MS = 3000
START_MS = 1_735_689_600_000  # 2025-01-01T00:00:00Z
TRX = 10**6  # sun per TRX
USD = 10**6  # USDT's smallest unit per dollar


def address(seed: int, name: str) -> str:
    return "0x41" + hashlib.sha256(f"tron:{seed}:{name}".encode()).digest()[:20].hex()


@dataclass(frozen=True, slots=True)
class TronLog:
    contract: str  # 0x41 + 20 bytes
    topics: tuple[str, ...]
    data: str  # 0x + hex


@dataclass(frozen=True, slots=True)
class TronCall:
    """An internal transaction: a contract moving TRX (token_id None) or a TRC-10 token."""

    caller: str
    to: str
    amount: int
    token_id: str | None = None


@dataclass(frozen=True, slots=True)
class TronTxn:
    txid: str  # 64 hex
    kind: str  # TransferContract | TransferAssetContract | TriggerSmartContract
    owner: str
    to: str  # the payee, or the contract called
    amount: int  # sun, TRC-10 units, or the call's call_value
    token_id: str | None = None
    logs: tuple[TronLog, ...] = ()
    internal: tuple[TronCall, ...] = ()
    fee: int = 0
    memo: str | None = None  # raw_data.data: THORChain's vault writes `OUT:<inbound hash>` there


@dataclass(frozen=True, slots=True)
class TronBlockSpec:
    number: int
    block_id: str  # 64 hex: the number in the first 8 bytes, as java-tron makes them
    timestamp_ms: int
    txs: tuple[TronTxn, ...]


@dataclass(frozen=True, slots=True)
class Freeze:
    address: str
    token: str
    block: int
    held: int  # USDT the frozen wallet held when it was frozen


@dataclass
class TronTruth:
    offramps: list[OfframpTruth]  # exchange deposit addresses, one per asset the laundering sent them
    freeze: Freeze | None  # None: a story without an issuer freeze
    hot_wallets: dict[str, str]  # entity -> address
    stolen: dict[str, int]  # asset -> what left the thief


@dataclass
class TronStory:
    chain: str
    seeds: list[str]
    blocks: list[TronBlockSpec]
    labels: list[ScenarioLabel]
    truth: TronTruth
    token_meta: dict[str, tuple[int, str]]  # TRC-20 contract or trc10:<id> -> (decimals, symbol)
    trx: dict[str, int] = field(default_factory=dict)  # the state at the head
    trc20: dict[tuple[str, str], int] = field(default_factory=dict)
    trc10: dict[tuple[str, str], int] = field(default_factory=dict)
    contracts: set[str] = field(default_factory=set)

    @property
    def head(self) -> int:
        return self.blocks[-1].number


def _word(a: str) -> str:
    return "0x" + "0" * 24 + a[4:]


def _uint(n: int) -> str:
    return "0x" + f"{n:064x}"


class StoryBuilder:
    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.blocks: list[TronBlockSpec] = [self._block(0, ())]
        self.n = 0

    def _block(self, number: int, txs: tuple[TronTxn, ...]) -> TronBlockSpec:
        if number == 0:
            return TronBlockSpec(0, MAINNET_GENESIS, START_MS, ())
        body = hashlib.sha256(f"block:{self.seed}:{number}".encode()).hexdigest()[16:]
        return TronBlockSpec(number, f"{number:016x}{body}", START_MS + number * BLOCK_MS, txs)

    def txid(self) -> str:
        self.n += 1
        return hashlib.sha256(f"tx:{self.seed}:{self.n}".encode()).hexdigest()

    def add(self, *txs: TronTxn, gap: int = 1) -> int:
        for _ in range(gap - 1):
            self.blocks.append(self._block(len(self.blocks), ()))
        self.blocks.append(self._block(len(self.blocks), txs))
        return len(self.blocks) - 1

    # The story's wallets pay with staked energy and free bandwidth, as launderers on Tron do: their
    # transactions burn no TRX (fee 0), so the state is exactly the transfers; the issuer's freeze
    # burns some.

    def trx(self, src: str, dst: str, sun: int, memo: str | None = None) -> TronTxn:
        return TronTxn(self.txid(), "TransferContract", src, dst, sun, fee=0, memo=memo)

    def trc10(self, src: str, dst: str, amount: int, token_id: str = TRC10_ID) -> TronTxn:
        return TronTxn(self.txid(), "TransferAssetContract", src, dst, amount, token_id=token_id, fee=0)

    def usdt(self, src: str, dst: str, units: int) -> TronTxn:
        log = TronLog(USDT, (TRANSFER_TOPIC, _word(src), _word(dst)), _uint(units))
        return TronTxn(self.txid(), "TriggerSmartContract", src, USDT, 0, logs=(log,), fee=0)

    def freeze(self, issuer: str, target: str) -> TronTxn:
        log = TronLog(USDT, (ADDED_BLACKLIST,), _word(target))
        return TronTxn(self.txid(), "TriggerSmartContract", issuer, USDT, 0, logs=(log,), fee=9_500_000)

    def forward(self, src: str, contract: str, dst: str, sun: int, token: tuple[str, int] | None = None) -> TronTxn:
        """A call paying `sun` TRX to `contract`, which passes it (and a TRC-10 amount) on to `dst`."""
        calls = [TronCall(contract, dst, sun)]
        if token is not None:
            calls.append(TronCall(contract, dst, token[1], token[0]))
        return TronTxn(self.txid(), "TriggerSmartContract", src, contract, sun, internal=tuple(calls), fee=0)


def generate(seed: int = 24) -> TronStory:
    """The laundering history (see the module docstring); amounts are odd, as stolen sums are."""
    b = StoryBuilder(seed)
    a = {n: address(seed, n) for n in (
        "thief", "funder", "layer_a", "layer_b", "layer_c", "layer_e", "frozen", "router", "issuer",
        "dep_binance_1", "dep_binance_2", "dep_okx_1", "dep_okx_2", "hot_binance", "hot_okx", "bystander")}
    thief, hot_b, hot_o = a["thief"], a["hot_binance"], a["hot_okx"]

    # Funding: the stolen USDT, TRX and TRC-10 reach the thief (before the trace's story starts).
    b.add(b.usdt(a["issuer"], thief, 1_900_000 * USD + 123_456), b.trx(a["funder"], thief, 700_000 * TRX + 1),
          b.trc10(a["funder"], thief, 5_000_000_000))
    # The thief splits the loot over three wallets.
    b.add(b.usdt(thief, a["layer_a"], 900_000 * USD + 123_456), b.usdt(thief, a["layer_b"], 1_000_000 * USD),
          gap=5)
    b.add(b.trx(thief, a["layer_c"], 450_000 * TRX), b.trx(thief, a["layer_b"], 250_000 * TRX),
          b.trc10(thief, a["layer_c"], 5_000_000_000))
    # Layer A: part to a Binance deposit address, the rest to a wallet Tether freezes.
    b.add(b.usdt(a["layer_a"], a["dep_binance_1"], 612_345 * USD + 678_901), gap=3)
    b.add(b.usdt(a["layer_a"], a["frozen"], 287_654 * USD + 444_555))
    freeze_block = b.add(b.freeze(a["issuer"], a["frozen"]), gap=4)
    # Layer B: USDT through one more wallet to OKX; its TRX straight to a second Binance address.
    b.add(b.usdt(a["layer_b"], a["layer_e"], 1_000_000 * USD), b.trx(a["layer_b"], a["dep_binance_2"], 249_998 * TRX),
          gap=2)
    b.add(b.usdt(a["layer_e"], a["dep_okx_1"], 1_000_000 * USD), gap=2)
    # Layer C: TRX and the TRC-10 token through a forwarding contract (internal transactions).
    b.add(b.forward(a["layer_c"], a["router"], a["dep_okx_2"], 449_997 * TRX), gap=2)
    b.add(b.trc10(a["layer_c"], a["router"], 5_000_000_000))
    b.add(TronTxn(b.txid(), "TriggerSmartContract", a["layer_c"], a["router"], 0,
                  internal=(TronCall(a["router"], a["dep_okx_2"], 5_000_000_000, TRC10_ID),), fee=0))
    # Sweeps: each deposit address empties into its exchange's hot wallet within minutes.
    b.add(b.usdt(a["dep_binance_1"], hot_b, 612_345 * USD + 678_901), b.trx(a["dep_binance_2"], hot_b, 249_997 * TRX),
          b.usdt(a["dep_okx_1"], hot_o, 1_000_000 * USD), b.trx(a["dep_okx_2"], hot_o, 449_996 * TRX),
          b.trc10(a["dep_okx_2"], hot_o, 5_000_000_000), gap=10)
    # Somebody else's business, in the same blocks: not part of the trace.
    b.add(b.trx(a["funder"], a["bystander"], 1_000 * TRX), b.usdt(a["issuer"], a["bystander"], 5 * USD))
    for _ in range(SOLID_LAG + 6):  # the chain goes on: everything above is solidified
        b.add()

    usdt, trc10 = USDT, TRC10_PREFIX + TRC10_ID
    truth = TronTruth(
        offramps=[
            OfframpTruth(a["dep_binance_1"], "Binance", usdt, 612_345 * USD + 678_901, "deposit_address"),
            OfframpTruth(a["dep_binance_2"], "Binance", NATIVE, 249_998 * TRX, "deposit_address"),
            OfframpTruth(a["dep_okx_1"], "OKX", usdt, 1_000_000 * USD, "deposit_address"),
            OfframpTruth(a["dep_okx_2"], "OKX", NATIVE, 449_997 * TRX, "deposit_address"),
            OfframpTruth(a["dep_okx_2"], "OKX", trc10, 5_000_000_000, "deposit_address"),
        ],
        freeze=Freeze(a["frozen"], usdt, freeze_block, 287_654 * USD + 444_555),
        hot_wallets={"Binance": hot_b, "OKX": hot_o},
        stolen={usdt: 1_900_000 * USD + 123_456, NATIVE: 700_000 * TRX, trc10: 5_000_000_000},
    )
    story = TronStory(
        chain=CHAIN, seeds=[thief], blocks=b.blocks,
        labels=[ScenarioLabel(hot_b, "Binance", "exchange"), ScenarioLabel(hot_o, "OKX", "exchange")],
        truth=truth, token_meta={usdt: (6, "USDT"), trc10: (6, "BTT")}, contracts={USDT, a["router"]},
    )
    apply_state(story)
    return story


def apply_state(story: TronStory) -> None:
    """The state the blocks leave (a node answers balances at the head only)."""
    trx: dict[str, int] = defaultdict(int)
    trc20: dict[tuple[str, str], int] = defaultdict(int)
    trc10: dict[tuple[str, str], int] = defaultdict(int)
    for block in story.blocks:
        for tx in block.txs:
            trx[tx.owner] -= tx.fee
            if tx.kind == "TransferAssetContract" and tx.token_id is not None:
                trc10[(tx.owner, tx.token_id)] -= tx.amount
                trc10[(tx.to, tx.token_id)] += tx.amount
            elif tx.amount:
                trx[tx.owner] -= tx.amount
                trx[tx.to] += tx.amount
            for call in tx.internal:
                if call.token_id is None:
                    trx[call.caller] -= call.amount
                    trx[call.to] += call.amount
                else:
                    trc10[(call.caller, call.token_id)] -= call.amount
                    trc10[(call.to, call.token_id)] += call.amount
            for lg in tx.logs:
                if lg.topics[0] == TRANSFER_TOPIC:
                    value = int(lg.data[2:], 16)
                    src, dst = "0x41" + lg.topics[1][-40:], "0x41" + lg.topics[2][-40:]
                    trc20[(lg.contract, src)] -= value
                    trc20[(lg.contract, dst)] += value
    # Funders and the issuer are outside the story (they had what they sent): no negative balances.
    story.trx = {k: max(0, v) for k, v in trx.items()}
    story.trc20 = {k: max(0, v) for k, v in trc20.items()}
    story.trc10 = {k: max(0, v) for k, v in trc10.items()}
