"""A family of mixer scenarios made to measure the mixer linker honestly (bench/mixer_linker.py).

The main generator (tracer.devchain.scenario) gives every laundering note exactly one planted clue, and its
unrelated pool users only ever use whole-gwei gas prices, fresh recipients and no common wallets,
so each clue stands out against a crowd that never imitates it. Here the crowd does what real pool
users do, and some launderers leave nothing:

- gas prices: some users pay the block's market price (base fee plus a tip: not a whole gwei, and
  shared by every market-priced transaction of that block, launderers' included), some set an odd
  price by hand for both their deposit and their own withdrawal, the rest a wallet's whole-gwei
  default;
- address reuse: some users withdraw to the address they deposited from, some to an address
  another user withdrew to before;
- shared counterparties: friends' wallets pay both a user's depositing address and its recipient,
  and a few unlabelled wallets (an OTC desk) pay launderers' feeders as well as a few unrelated
  recipients (a coincidental shared counterparty: evidence that points the wrong way);
- launderers: each group leaves one clue (an odd gas price shared by deposit and withdrawal,
  withdrawal to the depositing address, a gas station paying depositor and recipient, several
  notes of mixed denominations out to one recipient) or none at all (`no_clue_share`): one note,
  a market or whole-gwei gas price, a relayer, a fresh recipient nobody else knows.

`generate_family(params)` returns the scenario (served by `DevChainServer` like any other) with
`truth.mixer_links` holding every laundering note: its depositor, pool, the exact recipient and
its clue ("none" for no clue). Every recipient then cashes out at an exchange deposit address.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

from tracer.devchain.scenario import (
    ETHER,
    GWEI,
    MixerLinkTruth,
    MixerPool,
    Scenario,
    ScenarioBlock,
    ScenarioLabel,
    Truth,
)
from tracer.devchain.scenario.builder import ALL, Builder
from tracer.domain.transfers import NATIVE

CLUES = ("gas_price", "address", "counterparty", "multi_denomination")
NO_CLUE = "none"
DENOMINATIONS = (1, 10, 100)
EXCHANGES = ("Binance", "Coinbase", "Kraken")


@dataclass(frozen=True)
class MixerFamilyParams:
    seed: int = 1
    launderers: int = 12  # laundering groups (a multi-denomination group deposits 2 or 3 notes)
    no_clue_share: float = 0.25  # groups that leave no clue at all
    users: int = 200  # unrelated pool users
    market_gas_share: float = 0.35  # users paying the block's market price (non-round, shared in the block)
    hand_gas_share: float = 0.15  # users setting an odd price by hand for deposit and withdrawal
    reuse_own_share: float = 0.15  # users withdrawing to their depositing address
    reuse_other_share: float = 0.10  # users withdrawing to an address another user withdrew to
    friend_share: float = 0.15  # users whose depositor and recipient a friend's wallet pays
    otc_desks: int = 3  # unlabelled wallets paying launderers' feeders and a few unrelated recipients
    otc_customers: int = 2  # unrelated recipients each desk pays (kept under the linker's "popular" cut)
    blocks: int = 400
    block_time: int = 12
    genesis_time: int = 1_700_000_000


def _round_gas(rng: random.Random) -> int:
    return rng.randint(8, 40) * GWEI


def _hand_gas(rng: random.Random) -> int:
    # Not a whole gwei, and drawn per wallet: almost nobody else uses it.
    return int((12 + 40 * rng.random()) * GWEI) + rng.randint(1, 999_999)


class _Market:
    """The block's market price: base fee plus a 1-gwei tip, never a whole gwei."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.prices: dict[int, int] = {}

    def __call__(self, block: int) -> int:
        price = self.prices.get(block)
        if price is None:
            price = self.prices[block] = int((9 + 30 * self.rng.random()) * GWEI) + self.rng.randint(1, 999_999)
        return price


def generate_family(p: MixerFamilyParams) -> Scenario:
    rng = random.Random(p.seed)
    b = Builder(rng)
    new = b.new_address
    market = _Market(rng)
    labels: list[ScenarioLabel] = []
    contracts: dict[str, str] = {}
    pools = {}
    for denom in DENOMINATIONS:
        pools[denom] = pool = new()
        labels.append(ScenarioLabel(pool, f"Tornado Cash {denom} ETH", "mixer"))
        contracts[pool] = "mixer"
    hot: dict[str, str] = {}
    for name in EXCHANGES:
        hot[name] = h = new()
        labels.append(ScenarioLabel(h, name, "exchange"))
        b.fund(h, NATIVE, 100_000 * ETHER)
    relayers = [new() for _ in range(4)]
    gas_station = new()
    b.fund(gas_station, NATIVE, 50 * ETHER)
    desks = [new() for _ in range(p.otc_desks)]
    for d in desks:
        b.fund(d, NATIVE, 100 * ETHER)
    seeds = [new() for _ in range(2)]
    for s in seeds:
        b.fund(s, NATIVE, 5_000 * ETHER)

    def cash_out(block: int, wallet: str) -> None:
        dep = new()
        b.deposit_sweeps_to[dep] = hot[rng.choice(EXCHANGES)]
        b.native(block, wallet, dep, ALL)

    top = p.blocks - 60
    # Launderers come once the crowd is in: a note deposited into a near-empty pool is given away
    # by the anonymity set alone (the only unspent note), which is not what a clue measures.
    warm = p.blocks // 3
    notes: list[tuple[str, str, str, int, str, str]] = []  # (clue, pool, dep tag, amount, wd tag, recipient)
    n_none = round(p.launderers * p.no_clue_share)
    clues = [NO_CLUE] * n_none + [CLUES[k % len(CLUES)] for k in range(p.launderers - n_none)]
    rng.shuffle(clues)
    for g, clue in enumerate(clues):
        members = [rng.choice(DENOMINATIONS)]
        if clue == "multi_denomination":
            members = rng.sample(DENOMINATIONS, 2) + ([rng.choice(DENOMINATIONS[:2])] if rng.random() < 0.5 else [])
        feeder = new()
        t = rng.randint(warm, top)
        b.native(t, seeds[g % len(seeds)], feeder, sum(members) * ETHER)
        if desks:
            # Gas money from an OTC desk that also pays unrelated recipients: the trap.
            b.native(t, desks[g % len(desks)], feeder, rng.randint(5, 20) * 10**15)
        if clue == "counterparty":
            b.native(t, gas_station, feeder, rng.randint(10, 40) * 10**15)
        t_dep = t + rng.randint(1, 5)
        recipient = feeder if clue == "address" else new()
        t_w = t_dep + rng.randint(4, 40)
        if clue == "counterparty":
            b.native(t_w - 1, gas_station, recipient, rng.randint(10, 40) * 10**15)
        hand = _hand_gas(rng) if clue == "gas_price" else 0
        for j, denom in enumerate(members):
            amount = denom * ETHER
            dep_tag, wd_tag = f"fam:{g}:{j}:d", f"fam:{g}:{j}:w"
            gas = hand or (market(t_dep) if rng.random() < 0.5 else _round_gas(rng))
            b.mixer(t_dep, feeder, pools[denom], amount, extra=("", gas, dep_tag))
            if clue == "gas_price":
                b.withdraw(t_w + j, recipient, pools[denom], [(recipient, amount)], extra=("", hand, wd_tag))
            else:
                relayer = rng.choice(relayers)
                fee = amount * rng.choice((10, 20, 30)) // 10_000
                b.withdraw(t_w + j, relayer, pools[denom], [(recipient, amount - fee), (relayer, fee)],
                           extra=("", _round_gas(rng), wd_tag))
            notes.append((clue, pools[denom], dep_tag, amount, wd_tag, recipient))
        cash_out(t_w + len(members) + rng.randint(1, 5), recipient)

    _crowd(b, p, pools, relayers, desks, market, top)
    txs = b.run()
    last = max([p.blocks, *txs])
    blocks = [ScenarioBlock(n, p.genesis_time + n * p.block_time, txs.get(n, [])) for n in range(1, last + 1)]
    truth = Truth(stolen={NATIVE: sum(v.get(NATIVE, 0) for a, v in b.genesis.items() if a in seeds)})
    for clue, pool, dep_tag, amount, wd_tag, recipient in notes:
        dep_block, dep_tx = b.tagged[dep_tag]
        wd_block, wd_tx = b.tagged[wd_tag]
        relayer, fee = (wd_tx.payouts[1][0], wd_tx.payouts[1][1]) if len(wd_tx.payouts) > 1 else ("", 0)
        truth.mixer_links.append(MixerLinkTruth(
            pool=pool, denomination=amount, depositor=dep_tx.sender, deposit_block=dep_block, recipient=recipient,
            withdrawal_block=wd_block, relayer=relayer, fee=fee, clue=clue, flagged=amount))
    return Scenario(
        genesis_time=p.genesis_time, blocks=blocks, tokens=[], genesis_balances=b.genesis, contracts=contracts,
        seeds=seeds, labels=labels, truth=truth,
        mixer_pools=[MixerPool(addr, NATIVE, d * ETHER) for d, addr in sorted(pools.items())],
        params={"family": "mixer", **asdict(p)})


def _crowd(b: Builder, p: MixerFamilyParams, pools: dict[int, str], relayers: list[str], desks: list[str],
           market: _Market, top: int) -> None:
    """The unrelated users: deposits and withdrawals with the habits the module docstring lists."""
    rng = b.rng
    new = b.new_address
    earlier_recipients: list[str] = []
    desk_customers = {d: p.otc_customers for d in desks}
    for _ in range(p.users):
        u = new()
        # Every pool gets its crowd: a thin pool gives a note away by its anonymity set alone.
        denom = rng.choice(DENOMINATIONS)
        n_notes = 2 if rng.random() < 0.15 else 1
        b.fund(u, NATIVE, (denom * n_notes + 1) * ETHER)
        t = rng.randint(1, top)
        r = rng.random()
        habit = ("market" if r < p.market_gas_share else
                 "hand" if r < p.market_gas_share + p.hand_gas_share else "round")
        hand = _hand_gas(rng)
        r = rng.random()
        if r < p.reuse_own_share:
            recipient = u
        elif r < p.reuse_own_share + p.reuse_other_share and earlier_recipients:
            recipient = rng.choice(earlier_recipients)
        else:
            recipient = new()
        t_w = t + rng.randint(1, max(10, top // 3))
        if recipient != u and rng.random() < p.friend_share:
            friend = new()
            b.fund(friend, NATIVE, ETHER)
            b.native(t, friend, u, rng.randint(1, 9) * 10**15)
            b.native(t_w - 1 if t_w - 1 > t else t_w, friend, recipient, rng.randint(1, 9) * 10**15)
        open_desks = [d for d, n in desk_customers.items() if n > 0]
        if recipient != u and open_desks and rng.random() < 0.1:
            desk = rng.choice(open_desks)
            desk_customers[desk] -= 1
            b.native(t_w - 1 if t_w - 1 > t else t_w, desk, recipient, rng.randint(5, 20) * 10**15)
        for _ in range(n_notes):
            gas = market(t) if habit == "market" else hand if habit == "hand" else _round_gas(rng)
            b.mixer(t, u, pools[denom], denom * ETHER, extra=("", gas, ""), strict=False)
        for j in range(n_notes):
            amount = denom * ETHER
            when = t_w + j
            if habit == "hand" or rng.random() < 0.3:
                gas = hand if habit == "hand" else market(when) if habit == "market" else _round_gas(rng)
                b.withdraw(when, recipient, pools[denom], [(recipient, amount)], extra=("", gas, ""), strict=False)
            else:
                relayer = rng.choice(relayers)
                fee = amount * rng.choice((10, 20, 30)) // 10_000
                b.withdraw(when, relayer, pools[denom], [(recipient, amount - fee), (relayer, fee)],
                           extra=("", _round_gas(rng), ""), strict=False)
        if recipient != u:
            earlier_recipients.append(recipient)
