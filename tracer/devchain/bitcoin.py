"""A generated Bitcoin history with ground truth, for the Esplora devchain (tracer/devchain/esplora.py).

Deterministic by seed. Blocks every ~10 minutes, each with a coinbase first. The story:

- a **theft**: a hacked exchange's hot wallet pays `stolen` to the thief's address (the seed);
- a **peel chain** of `peel_hops` hops: each hop pays a round amount to a fresh deposit address
  at an exchange (legacy or P2SH at some exchanges, segwit at others) and the non-round change to
  a fresh address of the thief's own script type; exchanges sweep their deposit addresses (many
  customers' in one multi-input sweep) to a labelled hot wallet a few blocks later;
- a **CoinJoin** (Wasabi-like: equal outputs of one denomination, change outputs, a coordinator
  fee) that the rest of the stolen money enters; afterwards the thief consolidates its mixed
  outputs and pays them into an exchange, and pays its CoinJoin change into another one;
- **THORChain vault payouts**: for each `Handoff` (an EVM-side deposit: destination, amount,
  time, memo) the vault pays the amount with an OP_RETURN memo (`OUT:<inbound tx hash>`), among
  payouts to other users; the destination then pays it on into an exchange deposit address;
- **noise**: wallets paying wallets (with change back to themselves), customers depositing into
  fresh deposit addresses (swept like the thief's), exchanges paying withdrawals.

`BitcoinTruth` says what a trace from the seeds must find (haircut: every peel hop is fully
flagged, so the deposit addresses' flagged amounts are the payments themselves).
"""

from __future__ import annotations

import bisect
import hashlib
import json
import random
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from tracer.addresses import encode_btc_base58, encode_btc_segwit
from tracer.chains.bitcoin import NETWORKS, BtcNetwork
from tracer.chains.records import NATIVE
from tracer.devchain.scenario import OfframpTruth, ScenarioLabel

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
class BitcoinScenarioParams:
    seed: int = 1
    network: str = "mainnet"
    genesis_time: int = 1_700_000_000
    block_interval: int = 600
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


def _sha256d(data: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


class _Builder:
    """Blocks, transactions and the UTXO set while the story is written."""

    def __init__(self, params: BitcoinScenarioParams, genesis_time: int) -> None:
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
        return _sha256d(body.encode())[::-1].hex()

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
            block_hash = _sha256d(body)[::-1].hex()
        block = BtcBlock(height, block_hash, prev, self.time_of(height), txs)
        self.blocks.append(block)
        self.pending = []
        self.fees = 0
        return block


@dataclass
class _Exchange:
    name: str
    hot: str
    deposit_kind: str
    due: list[tuple[int, str]] = field(default_factory=list)  # (sweep at height, deposit address)


def _round_payment(rng: random.Random, balance: int) -> int:
    """A round amount (what a peel chain pays an exchange) of at most ~8% of the balance."""
    steps = [COIN // 4, COIN // 2, COIN, 3 * COIN // 2, 2 * COIN, 5 * COIN // 2, 3 * COIN, 4 * COIN, 5 * COIN]
    fitting = [s for s in steps if s <= balance * 8 // 100] or [max(COIN // 100, balance * 5 // 100 // 10**6 * 10**6)]
    return rng.choice(fitting)


def generate(params: BitcoinScenarioParams | None = None) -> BitcoinScenario:
    p = params or BitcoinScenarioParams()
    if p.network not in NETWORKS:
        raise ValueError(f"unknown network {p.network!r}")
    genesis_time = p.genesis_time
    if p.handoffs:
        # The chain must be running before the first hand-off's deposit.
        genesis_time = min(genesis_time, min(h.time for h in p.handoffs) - 20 * p.block_interval)
    b = _Builder(p, genesis_time)
    rng = b.rng
    truth = BitcoinTruth()
    labels: list[ScenarioLabel] = []

    # -- actors ---------------------------------------------------------------------------------
    kinds = ["p2sh", "p2wpkh", "p2pkh"]
    names = ["Binance", "Kraken", "OKX", "Bybit", "Bitfinex", "HTX"][: max(1, p.exchanges)]
    exchanges = [_Exchange(name, b.address("p2wpkh"), kinds[k % len(kinds)]) for k, name in enumerate(names)]
    for ex in exchanges:
        labels.append(ScenarioLabel(ex.hot, ex.name, "exchange"))
    victim = b.address("p2wpkh")
    labels.append(ScenarioLabel(victim, "HackedEx", "exchange"))
    vault = b.address("p2wpkh")
    labels.append(ScenarioLabel(vault, "THORChain", "bridge"))
    coordinator = b.address("p2wpkh")
    labels.append(ScenarioLabel(coordinator, "Wasabi coordinator", "mixer"))
    noise = [b.address(rng.choice(["p2wpkh", "p2wpkh", "p2pkh", "p2sh", "p2tr"])) for _ in range(p.noise_wallets)]
    thief_kind = "p2wpkh"
    thief = b.address(thief_kind)
    truth.launderers.append(thief)
    cj_others = [b.address("p2wpkh") for _ in range(p.coinjoin_participants if p.coinjoin else 0)]

    # -- block 0 (genesis) and block 1 (funding) ------------------------------------------------
    b.close_block()
    funding = [(victim, 5_000 * COIN), (vault, 2_000 * COIN)]
    funding += [(ex.hot, 3_000 * COIN) for ex in exchanges]
    funding += [(w, rng.randint(2, 60) * COIN + rng.randint(0, COIN)) for w in noise]
    funding += [(w, p.coinjoin_denomination + rng.randint(p.coinjoin_denomination // 5, 4 * p.coinjoin_denomination))
                for w in cj_others]
    b.fund(funding)
    b.close_block()

    # -- schedule -------------------------------------------------------------------------------
    events: dict[int, list[Any]] = defaultdict(list)
    theft_height = 4
    events[theft_height].append(("theft",))
    h = theft_height
    for i in range(p.peel_hops):
        h += rng.randint(1, 3)
        events[h].append(("peel", i))
    last = h
    if p.coinjoin:
        cj_height = h + 2
        events[cj_height].append(("coinjoin",))
        events[cj_height + 2].append(("cj_change",))
        events[cj_height + rng.randint(3, 6)].append(("consolidate",))
        last = cj_height + 8
    for k, ho in enumerate(sorted(p.handoffs, key=lambda x: x.time)):
        at = _first_height_at(b, ho.time) + max(1, ho.delay_blocks)
        events[at].append(("handoff", k, ho))
        if ho.onward:
            events[at + rng.randint(2, 4)].append(("onward", k))
        last = max(last, at + 5)
    for k in range(p.vault_noise_payouts):
        events[rng.randint(3, max(4, last))].append(("vault_noise", k))
    end = last + p.tail_blocks

    state: dict[str, Any] = {"hop_address": thief}
    handoffs_sorted = sorted(p.handoffs, key=lambda x: x.time)
    pending_onward: dict[int, tuple[str, int]] = {}
    deposit_owner: dict[str, str] = {}

    def new_deposit(ex: _Exchange, sweep_within: int = 12) -> str:
        d = b.address(ex.deposit_kind)
        ex.due.append((b.height + rng.randint(1, sweep_within), d))
        truth.deposit_addresses[d] = ex.name
        deposit_owner[d] = ex.name
        return d

    def fee() -> int:
        return rng.randint(1_000, 6_000)

    while b.height <= end:
        height = b.height
        for ev in events.get(height, []):
            kind = ev[0]
            if kind == "theft":
                b.spend_all(victim, [(thief, p.stolen)], victim, fee())
                truth.stolen[NATIVE] = p.stolen
            elif kind == "peel":
                src = state["hop_address"]
                ex = exchanges[rng.randrange(len(exchanges))]
                d = new_deposit(ex)
                pay = _round_payment(rng, b.balance(src))
                nxt = b.address(thief_kind)
                tx = b.spend_all(src, [(d, pay)], nxt, fee())
                change = b.balance(nxt)
                truth.peel.append(PeelHop(ev[1], tx.txid, height, src, d, pay, ex.name, nxt, change))
                truth.offramps.append(OfframpTruth(d, ex.name, NATIVE, pay, "deposit_address"))
                truth.launderers.append(nxt)
                state["hop_address"] = nxt
            elif kind == "coinjoin":
                _coinjoin(b, p, state, cj_others, coordinator, truth)
            elif kind == "cj_change":
                src = state["cj_change"]
                ex = exchanges[0]
                d = new_deposit(ex)
                amount = b.balance(src) - 2_000
                b.spend_all(src, [(d, amount)], None, 2_000)
                truth.postmix_offramps.append(OfframpTruth(d, ex.name, NATIVE, amount, "deposit_address"))
            elif kind == "consolidate":
                outs = state["cj_equal"]
                merged = b.address(thief_kind)
                truth.launderers.append(merged)
                inputs = [op for a in outs for op in b.by_address[a]]
                tx = b.spend(inputs, [], merged, 3_000)
                events[height + 2].append(("postmix_pay", merged, tx.txid))
            elif kind == "postmix_pay":
                ex = exchanges[-1]
                d = new_deposit(ex)
                amount = b.balance(ev[1]) - 1_500
                b.spend_all(ev[1], [(d, amount)], None, 1_500)
                truth.postmix_offramps.append(OfframpTruth(d, ex.name, NATIVE, amount, "deposit_address"))
            elif kind == "handoff":
                _k, ho = ev[1], ev[2]
                dest = ho.address or b.address("p2wpkh")
                tx = b.spend_all(vault, [(dest, ho.amount)], vault, fee(), op_return=ho.memo.encode())
                pending_onward[ev[1]] = (dest, ho.amount)
                truth.handoffs.append(HandoffTruth(ho.memo, dest, ho.amount, tx.txid, height, vault,
                                                   None, None, None, None))
            elif kind == "onward":
                dest, _amount = pending_onward[ev[1]]
                ex = exchanges[ev[1] % len(exchanges)]
                d = new_deposit(ex)
                amount = b.balance(dest) - 1_200
                if amount < DUST:
                    continue
                tx = b.spend_all(dest, [(d, amount)], None, 1_200)
                idx = next(k for k, t in enumerate(truth.handoffs) if t.memo == handoffs_sorted[ev[1]].memo
                           and t.address == dest)
                old = truth.handoffs[idx]
                truth.handoffs[idx] = HandoffTruth(old.memo, old.address, old.amount, old.txid, old.block, old.vault,
                                                   tx.txid, d, amount, ex.name)
            elif kind == "vault_noise":
                other = b.address("p2wpkh")
                memo = "OUT:" + hashlib.sha256(f"{p.seed}:vault:{ev[1]}".encode()).hexdigest().upper()
                b.spend_all(vault, [(other, rng.randint(1, 30) * COIN // 10)], vault, fee(), op_return=memo.encode())
        if height >= 2:
            _noise(b, p, noise, exchanges, new_deposit, truth)
        for ex in exchanges:
            due = sorted(d for at, d in ex.due if at <= height)
            if due:
                inputs = [op for d in due for op in b.by_address[d]]
                if inputs:
                    b.spend(inputs, [], ex.hot, 500 + 300 * len(inputs))
                ex.due = [(at, d) for at, d in ex.due if at > height]
        b.close_block()

    thief_deposits = {o.address for o in truth.offramps} | {o.address for o in truth.postmix_offramps}
    thief_deposits |= {h.onward_deposit for h in truth.handoffs if h.onward_deposit}
    truth.noise_offramps = sorted(d for d in truth.deposit_addresses if d not in thief_deposits)
    return BitcoinScenario(network=p.network, genesis_time=genesis_time, blocks=b.blocks, seeds=[thief], labels=labels,
                           truth=truth, params={k: v for k, v in asdict(p).items() if k != "handoffs"}
                           | {"handoffs": len(p.handoffs)})


def _first_height_at(b: _Builder, when: int) -> int:
    """The first height whose timestamp is at or after `when` (never before block 2)."""
    lo = max(2, (when - b.genesis_time) // b.p.block_interval - 1)
    while b.time_of(lo) < when:
        lo += 1
    return lo


def _noise(b: _Builder, p: BitcoinScenarioParams, wallets: list[str], exchanges: list[_Exchange],
           new_deposit: Any, truth: BitcoinTruth) -> None:
    rng = b.rng
    for _ in range(p.noise_per_block):
        roll = rng.random()
        if roll < 0.2:
            ex = exchanges[rng.randrange(len(exchanges))]
            to = wallets[rng.randrange(len(wallets))]
            amount = rng.randint(COIN // 100, 3 * COIN)
            if b.balance(ex.hot) > amount + COIN:
                b.spend_all(ex.hot, [(to, amount)], ex.hot, 2_500)
            continue
        src = wallets[rng.randrange(len(wallets))]
        bal = b.balance(src)
        if bal < COIN // 10:
            continue
        amount = rng.randint(COIN // 1000, bal // 3)
        if roll < 0.55:
            to = new_deposit(exchanges[rng.randrange(len(exchanges))])
        else:
            to = wallets[rng.randrange(len(wallets))]
            if to == src:
                continue
        b.spend_all(src, [(to, amount)], src, rng.randint(800, 4_000))


def _coinjoin(b: _Builder, p: BitcoinScenarioParams, state: dict[str, Any], others: list[str], coordinator: str,
              truth: BitcoinTruth) -> None:
    """Wasabi-like: every participant gets one equal output (the thief several) and its change;
    the coordinator takes 0.3% of the mixed amount per participant."""
    d = p.coinjoin_denomination
    thief_in = state["hop_address"]
    inputs: list[tuple[str, int]] = []
    payments: list[tuple[str, int]] = []
    owners: dict[tuple[str, int], str] = {}
    thief_equal: list[str] = []
    coord_fee = 0
    mining_fee = 0
    for who in [thief_in, *others]:
        ops = list(b.by_address[who])
        value = sum(b.utxos[op][1] for op in ops)
        count = p.coinjoin_thief_outputs if who == thief_in else 1
        fee_part = 1_000 + 500 * count
        cfee = d * count * 3 // 1000
        change = value - d * count - fee_part - cfee
        if change < 0:
            continue
        for op in ops:
            inputs.append(op)
            owners[op] = who
        for _ in range(count):
            out = b.address("p2wpkh")
            payments.append((out, d))
            if who == thief_in:
                thief_equal.append(out)
        change_addr = b.address("p2wpkh")
        if change >= DUST:
            payments.append((change_addr, change))
        if who == thief_in:
            state["cj_change"] = change_addr
        coord_fee += cfee
        mining_fee += fee_part
    payments.append((coordinator, coord_fee))
    inputs.sort(key=lambda op: (b.utxos[op][1], op))
    thief_vins = tuple(k for k, op in enumerate(inputs) if owners[op] == thief_in)
    tainted_in = sum(b.utxos[op][1] for op in inputs if owners[op] == thief_in)
    tx = b.spend(inputs, payments, None, mining_fee, sort_outputs=True)
    equal = tuple(k for k, o in enumerate(tx.outputs) if o.value == d)
    coord_vout = next(k for k, o in enumerate(tx.outputs) if o.address == coordinator)
    change_vouts = tuple(k for k, o in enumerate(tx.outputs) if o.value != d and k != coord_vout)
    thief_equal_vouts = tuple(k for k, o in enumerate(tx.outputs) if o.address in set(thief_equal))
    thief_change_vout = next(k for k, o in enumerate(tx.outputs) if o.address == state["cj_change"])
    truth.coinjoins.append(CoinJoinTruth(
        txid=tx.txid, block=b.height, pattern="wasabi", denomination=d, anonymity_set=len(equal), equal_vouts=equal,
        change_vouts=change_vouts, coordinator_vout=coord_vout, tainted_vins=thief_vins, tainted_in=tainted_in,
        thief_equal_vouts=thief_equal_vouts, thief_change_vout=thief_change_vout, participants=1 + len(others)))
    state["cj_equal"] = thief_equal
    truth.launderers.extend([*thief_equal, state["cj_change"]])


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
