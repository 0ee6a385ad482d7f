"""Mixers, swaps and bridges of a generated scenario (only with their knobs on): the services,
the launderers' notes, swaps and bridge deposits, their unrelated users, and the ground truth of
following money through them.
"""

from __future__ import annotations

import math
import random

from tracer.devchain.scenario.builder import ALL, Builder
from tracer.devchain.scenario.history import Scenario
from tracer.devchain.scenario.model import (
    ETHER,
    GWEI,
    USD6,
    BridgeTruth,
    MixerLinkTruth,
    OfframpTruth,
    ScenarioLabel,
    SwapTruth,
)
from tracer.devchain.scenario.params import ScenarioParams
from tracer.devchain.scenario.truth import reference_through
from tracer.devchain.scenario.world import World, any_hot
from tracer.domain.transfers import NATIVE

_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
# THORChain memo assets the generated bridge deposits ask for: (memo asset, chain name)
_THOR_TARGETS = (("BTC.BTC", "bitcoin"), ("AVAX.AVAX", "avalanche"), ("BSC.BNB", "bsc"))


def has_services(p: ScenarioParams) -> bool:
    return bool(p.mixer_withdrawals or p.n_mixer_users or p.n_swaps or p.n_swap_users or p.n_bridges
                or p.n_bridge_users)


def make_services(b: Builder, p: ScenarioParams, w: World) -> None:
    """The DEX pair, the bridge router and its vault, mixer relayers and the launderers' gas station."""
    new = b.new_address
    w.pair, w.router, w.vault = new(), new(), new()
    w.labels.append(ScenarioLabel(w.pair, "Uniswap V2: USDT-WETH", "dex"))
    w.labels.append(ScenarioLabel(w.router, "THORChain Router", "bridge"))
    w.contracts[w.pair] = "dex"
    w.contracts[w.router] = "bridge"
    # Deep liquidity: every planned swap is paid out, whatever the noise does.
    b.fund(w.pair, NATIVE, 1_000_000 * ETHER)
    b.fund(w.pair, w.usdt, 2_000_000_000 * USD6)
    w.relayers = [new() for _ in range(4)]
    w.gas_station = new()
    b.fund(w.gas_station, NATIVE, 50 * ETHER)


def _round_gas(rng: random.Random) -> int:
    # What wallets and relayers suggest: whole gwei, so many transactions share each value.
    return rng.randint(8, 40) * GWEI


def _btc_address(rng: random.Random) -> str:
    return "bc1q" + "".join(rng.choice(_BECH32) for _ in range(38))


def _through_deposit(b: Builder, w: World) -> str:
    """A fresh exchange deposit address reached only through a mixer or a swap: its amounts are
    ground truth of following money through them, kept apart from the plain off-ramps."""
    dep = w.exchanges.open_deposit(b)
    w.through_deposits.append(dep)
    return dep


def swap_job(b: Builder, p: ScenarioParams, w: World, holder: str, amount: int, t: int) -> None:
    """A fresh wallet takes USDT, swaps all of it for ETH on the pair and cashes the ETH out."""
    rng = b.rng
    wallet = b.new_address()
    w.launderers.append(wallet)
    b.token(t, w.usdt, holder, wallet, amount)
    t_swap = t + rng.randint(1, p.max_hop_delay)
    price = rng.randint(1_900, 2_100)  # USDT per ETH; the pair keeps a 0.3 % fee
    out = amount * 10**12 * 997 // (1000 * price)
    tag = f"swap:{len(w.swap_plans)}"
    b.swap(t_swap, wallet, w.pair, w.usdt, amount, wallet, out, extra=("", 0, tag))
    b.native(t_swap + rng.randint(1, p.max_hop_delay), wallet, _through_deposit(b, w), ALL)
    w.swap_plans.append((wallet, tag))


def bridge_job(b: Builder, p: ScenarioParams, w: World, funder: str, amount: int, t: int) -> None:
    """A fresh wallet takes ETH and deposits it into the router with a memo naming where it goes."""
    rng = b.rng
    k = len(w.bridge_plans)
    sender = b.new_address()
    w.launderers.append(sender)
    b.native(t, funder, sender, amount)
    asset, chain = _THOR_TARGETS[k % len(_THOR_TARGETS)]
    dest = _btc_address(rng) if chain == "bitcoin" else b.new_address()
    # Both memo spellings THORChain accepts, one with a trade limit / streaming suffix.
    memo = f"=:{asset}:{dest}" if k % 2 == 0 else f"SWAP:{asset}:{dest}:0/1/0"
    tag = f"bridge:{k}"
    b.bridge(t + rng.randint(1, p.max_hop_delay), sender, w.router, w.vault, amount, extra=(memo, 0, tag))
    w.bridge_plans.append((tag, memo, chain, dest))


_CLUES = ("gas_price", "address", "counterparty")


def plan_mixer_notes(b: Builder, p: ScenarioParams, w: World) -> None:
    """Deposit the launderers' mixer money and withdraw it, each note leaving one published
    de-mixing clue (Tutela; Wang et al. 2023): the first few notes come from one wallet and go to
    one recipient (multi-denomination), the rest cycle through an unusual gas price shared by
    deposit and withdrawal, withdrawing to the depositing address itself, and a gas station that
    pays both the depositor and the recipient."""
    rng = b.rng
    d = p.max_hop_delay
    jobs = list(w.mixer_jobs)
    if not jobs:
        return
    groups: list[tuple[str, list[tuple[str, int, int]]]] = []
    first = 0
    if len(jobs) >= 4:
        first = 3 if len(jobs) >= 6 else 2
        groups.append(("multi_denomination", jobs[:first]))
    groups.extend((_CLUES[k % len(_CLUES)], [job]) for k, job in enumerate(jobs[first:]))
    for g, (clue, members) in enumerate(groups):
        feeder = b.new_address()
        w.launderers.append(feeder)
        funded = max(t for _, _, t in members)
        for funder, amount, t in members:
            b.native(t, funder, feeder, amount)
        if clue == "counterparty":
            b.native(funded, w.gas_station, feeder, rng.randint(10, 40) * 10**15)
        t_dep = funded + rng.randint(1, d)
        # Not a whole gwei: a gas price set by hand, which almost nobody else uses.
        unusual = int((12 + 40 * rng.random()) * GWEI) + rng.randint(1, 999_999) if clue == "gas_price" else 0
        recipient = feeder if clue == "address" else b.new_address()
        if recipient != feeder:
            w.launderers.append(recipient)
        t_w = t_dep + rng.randint(4, 30)
        if clue == "counterparty":
            b.native(t_w - 1, w.gas_station, recipient, rng.randint(10, 40) * 10**15)
        for j, (_, amount, _) in enumerate(members):
            pool = w.pools[amount // ETHER]
            dep_tag, wd_tag = f"note:{g}:{j}:d", f"note:{g}:{j}:w"
            b.mixer(t_dep, feeder, pool, amount, extra=("", unusual or _round_gas(rng), dep_tag))
            if clue == "gas_price":
                # The recipient sends its withdrawal itself, with the gas price it deposited with.
                b.withdraw(t_w + j, recipient, pool, [(recipient, amount)], extra=("", unusual, wd_tag))
            else:
                relayer = rng.choice(w.relayers)
                fee = amount * rng.choice((10, 20, 30)) // 10_000
                b.withdraw(t_w + j, relayer, pool, [(recipient, amount - fee), (relayer, fee)],
                           extra=("", _round_gas(rng), wd_tag))
            w.note_plans.append((clue, pool, dep_tag, amount, wd_tag, recipient))
        b.native(t_w + len(members) + rng.randint(1, d), recipient, _through_deposit(b, w), ALL)


def plan_service_users(b: Builder, p: ScenarioParams, w: World, n_blocks: int) -> None:
    """Unrelated users of the pools, the pair and the router: the crowd the laundering hides in."""
    rng = b.rng
    new = b.new_address
    top = max(5, n_blocks)
    denominations = (1, 1, 1, 10, 10, 10, 100)
    for _ in range(p.n_mixer_users):
        u = new()
        notes = [rng.choice(denominations)]
        if rng.random() < 0.15:  # some mix two notes and withdraw both to one address
            notes.append(notes[0] if rng.random() < 0.5 else rng.choice(denominations))
        b.fund(u, NATIVE, (sum(notes) + 1) * ETHER)
        t = rng.randint(1, top)
        gas = _round_gas(rng)
        for denom in notes:
            b.mixer(t, u, w.pools[denom], denom * ETHER, extra=("", gas, ""))
        r = rng.random()
        recipient = new() if r < 0.65 else (u if r < 0.80 else rng.choice(w.users))
        t_w = t + rng.randint(1, max(10, top // 2))
        for j, denom in enumerate(notes):
            amount = denom * ETHER
            if rng.random() < 0.7:
                relayer = rng.choice(w.relayers)
                fee = amount * rng.choice((10, 20, 30)) // 10_000
                b.withdraw(t_w + j, relayer, w.pools[denom], [(recipient, amount - fee), (relayer, fee)],
                           extra=("", _round_gas(rng), ""))
            else:
                b.withdraw(t_w + j, recipient, w.pools[denom], [(recipient, amount)], extra=("", _round_gas(rng), ""))
        if recipient != u and recipient not in w.users and rng.random() < 0.5:
            b.native(t_w + len(notes) + rng.randint(1, 5), recipient, any_hot(w, rng), ALL)
    for _ in range(p.n_swap_users):
        u = new()
        amount = int(rng.lognormvariate(math.log(3_000), 1.0) * USD6) + USD6
        b.fund(u, w.usdt, amount)
        b.fund(u, NATIVE, ETHER // 10)
        price = rng.randint(1_900, 2_100)
        b.swap(rng.randint(1, top), u, w.pair, w.usdt, amount, u, amount * 10**12 * 997 // (1000 * price))
    for _ in range(p.n_bridge_users):
        u = new()
        amount = rng.randint(1, 50) * ETHER // 10
        b.fund(u, NATIVE, amount + ETHER // 10)
        memo = f"=:BTC.BTC:{_btc_address(rng)}"
        b.bridge(rng.randint(1, top), u, w.router, w.vault, amount, extra=(memo, 0, ""))


def through_truth(sc: Scenario, b: Builder, w: World) -> None:
    """Ground truth of the mixer links, swaps and bridge deposits, from `reference_through`."""
    truth = sc.truth
    tagged = b.tagged
    note_links = {id(tagged[wd][1]): id(tagged[dep][1]) for _, _, dep, _, wd, _ in w.note_plans}
    label_of = {lb.address: lb for lb in sc.labels}
    stops = set(truth.deposit_addresses) | set(truth.hubs)
    stops |= {a for a, lb in label_of.items() if lb.category in ("exchange", "mixer", "bridge", "dex")}
    flows = reference_through((tx for _, tx in sc.iter_txs()), sc.genesis_balances, sc.seeds, stops, note_links)
    for clue, pool, dep_tag, amount, wd_tag, recipient in w.note_plans:
        dep_block, dep_tx = tagged[dep_tag]
        wd_block, wd_tx = tagged[wd_tag]
        relayer, fee = (wd_tx.payouts[1][0], wd_tx.payouts[1][1]) if len(wd_tx.payouts) > 1 else ("", 0)
        truth.mixer_links.append(MixerLinkTruth(
            pool=pool, denomination=amount, depositor=dep_tx.sender, deposit_block=dep_block, recipient=recipient,
            withdrawal_block=wd_block, relayer=relayer, fee=fee, clue=clue, flagged=flows.put_in.get(id(dep_tx), 0),
        ))
    for wallet, tag in w.swap_plans:
        block, tx = tagged[tag]
        truth.swaps.append(SwapTruth(
            wallet=wallet, block=block, asset_in=tx.token, amount_in=tx.value, flagged_in=flows.put_in.get(id(tx), 0),
            asset_out=NATIVE, amount_out=sum(v for _, v in tx.payouts), flagged_out=flows.swapped_out.get(id(tx), 0),
        ))
    for tag, memo, chain, dest in w.bridge_plans:
        block, tx = tagged[tag]
        truth.bridges.append(BridgeTruth(
            router=tx.to, sender=tx.sender, block=block, asset=NATIVE, amount=tx.value,
            flagged=flows.put_in.get(id(tx), 0), memo=memo, dest_chain=chain, dest_address=dest,
        ))
    through = set(w.through_deposits)
    for (address, asset), amount in sorted(flows.received.items()):
        if address in through and amount:
            truth.through_offramps.append(
                OfframpTruth(address, truth.deposit_addresses[address], asset, amount, "deposit_address"))
