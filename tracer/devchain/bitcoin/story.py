"""The main Bitcoin story (see the package docstring): theft, peel chain, CoinJoin, THORChain
vault payouts and noise, with its ground truth."""

from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

from tracer.chains.bitcoin import NETWORKS
from tracer.devchain.bitcoin.builder import BlockBuilder
from tracer.devchain.bitcoin.records import (
    COIN,
    DUST,
    BitcoinScenario,
    BitcoinScenarioParams,
    BitcoinTruth,
    CoinJoinTruth,
    HandoffTruth,
    PeelHop,
)
from tracer.devchain.scenario import OfframpTruth, ScenarioLabel
from tracer.domain.transfers import NATIVE


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
    b = BlockBuilder(p, genesis_time)
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


def _first_height_at(b: BlockBuilder, when: int) -> int:
    """The first height whose timestamp is at or after `when` (never before block 2)."""
    lo = max(2, (when - b.genesis_time) // b.p.block_interval - 1)
    while b.time_of(lo) < when:
        lo += 1
    return lo


def _noise(b: BlockBuilder, p: BitcoinScenarioParams, wallets: list[str], exchanges: list[_Exchange],
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


def _coinjoin(b: BlockBuilder, p: BitcoinScenarioParams, state: dict[str, Any], others: list[str], coordinator: str,
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
