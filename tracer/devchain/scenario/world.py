"""The cast of a generated scenario (`World`): victim, thieves, exchanges and their deposit
addresses, pools, hub, noise users; and the small helpers the planners share.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from tracer.devchain.scenario.builder import Builder
from tracer.devchain.scenario.model import ETHER, USD6, ScenarioLabel, Token
from tracer.devchain.scenario.params import ScenarioParams
from tracer.domain.transfers import NATIVE

EXCHANGE_NAMES = ("Binance", "Coinbase", "Kraken", "OKX", "KuCoin", "Bybit", "Gate.io", "HTX", "Bitfinex", "MEXC")


@dataclass
class Exchanges:
    """The scenario's exchanges: their hot wallets and every deposit address opened at them (the
    launderers', the noise users', the traps' and the services' alike). A deposit address sweeps
    what it receives into one of its exchange's hot wallets."""

    hot_wallets: dict[str, list[str]]  # exchange -> hot wallets
    deposit_exchange: dict[str, str] = field(default_factory=dict)  # every deposit address -> exchange

    def open_deposit(self, b: Builder, exchange: str | None = None) -> str:
        """A fresh deposit address at `exchange`; with none named, at one drawn after the address
        (generated scenarios depend on that order of draws)."""
        address = b.new_address()
        if exchange is None:
            exchange = b.rng.choice(list(self.hot_wallets))
        self.deposit_exchange[address] = exchange
        b.deposit_sweeps_to[address] = b.rng.choice(self.hot_wallets[exchange])
        return address


@dataclass
class World:
    victim: str
    seeds: list[str]
    usdt: str
    tokens: list[Token]
    exchanges: Exchanges
    launder_deposits: list[tuple[str, str]]  # (deposit address, exchange)
    customer_deposit: dict[str, str]  # noise user -> its deposit address
    pools: dict[int, str]  # denomination (ETH) -> pool address
    hub: str
    hub_senders: list[str]
    dex: str
    bridge: str
    dusters: list[str]
    users: list[str]
    launderers: list[str] = field(default_factory=list)
    noise_offramps: list[str] = field(default_factory=list)
    labels: list[ScenarioLabel] = field(default_factory=list)
    contracts: dict[str, str] = field(default_factory=dict)
    trap_candidates: list[str] = field(default_factory=list)  # fan-out wallets that end with nothing
    topped: set[str] = field(default_factory=set)  # laundering wallets that got a gas top-up
    # mixers, swaps, bridges (only with their knobs on)
    pair: str = ""  # Uniswap-V2-like USDT/WETH pair
    router: str = ""  # THORChain-like router
    vault: str = ""  # the router forwards deposits to this vault
    relayers: list[str] = field(default_factory=list)  # Tornado relayers: send withdrawals for a fee
    gas_station: str = ""  # a clean wallet of the launderers that pays gas to their fresh wallets
    mixer_jobs: list[tuple[str, int, int]] = field(default_factory=list)  # (funder, amount, block) to mix
    note_plans: list[tuple[str, str, str, int, str, str]] = field(default_factory=list)  # see plan_mixer_notes
    swap_plans: list[tuple[str, str]] = field(default_factory=list)  # (wallet, swap tag)
    bridge_plans: list[tuple[str, str, str, str]] = field(default_factory=list)  # (tag, memo, chain, address)
    through_deposits: list[str] = field(default_factory=list)  # off-ramps reached only through a service


def split(total: int, n: int, rng: random.Random, spread: float = 0.4) -> list[int]:
    """`total` in n random parts that add up exactly (each within +-spread of the mean)."""
    weights = [1 + rng.uniform(-spread, spread) for _ in range(n)]
    s = sum(weights)
    parts = [int(total * w / s) for w in weights]
    parts[-1] += total - sum(parts)
    return parts


def make_world(b: Builder, p: ScenarioParams) -> World:
    rng = b.rng
    new = b.new_address
    usdt = Token(new(), "USDT", 6)
    usdc = Token(new(), "USDC", 6)
    dai = Token(new(), "DAI", 18)
    tokens = [usdt, usdc, dai]
    labels = [
        ScenarioLabel(t.address, {"USDT": "Tether", "USDC": "Circle", "DAI": "MakerDAO"}[t.symbol], "token")
        for t in tokens
    ]
    contracts = {t.address: "token" for t in tokens}
    victim = new()
    labels.append(ScenarioLabel(victim, "VictimDAO Treasury", "victim"))
    b.fund(victim, NATIVE, p.stolen_eth + 500 * ETHER)
    b.fund(victim, usdt.address, p.stolen_usdt + 1_000_000 * USD6)
    seeds = [new() for _ in range(max(1, min(3, p.n_seeds)))]

    hot: dict[str, list[str]] = {}
    for k in range(max(1, min(len(EXCHANGE_NAMES), p.n_exchanges))):
        name = EXCHANGE_NAMES[k]
        hot[name] = [new() for _ in range(2 if k == 0 else 1)]
        for h in hot[name]:
            labels.append(ScenarioLabel(h, name, "exchange"))
            b.fund(h, NATIVE, 250_000 * ETHER)
            for t in tokens:
                b.fund(h, t.address, 2_000_000_000 * 10**t.decimals)
    names = list(hot)
    exchanges = Exchanges(hot)
    launder_deposits = []
    for k in range(max(1, p.n_launder_deposits)):
        ex = names[k % len(names)]
        launder_deposits.append((exchanges.open_deposit(b, ex), ex))

    pools = {}
    for denom in (1, 10, 100):
        pools[denom] = pool = new()
        labels.append(ScenarioLabel(pool, f"Tornado Cash {denom} ETH", "mixer"))
        contracts[pool] = "mixer"
    dex, bridge, batch = new(), new(), new()
    labels.append(ScenarioLabel(dex, "Uniswap", "dex"))
    labels.append(ScenarioLabel(bridge, "Across Protocol", "bridge"))
    contracts.update({dex: "dex", bridge: "bridge", batch: "batch"})
    b.batch_contract = batch
    hub = new()  # an unlabelled payment service: many counterparties, no public label
    b.fund(hub, NATIVE, 5_000 * ETHER)
    b.fund(hub, usdt.address, 50_000_000 * USD6)

    hub_senders = [new() for _ in range(p.n_hub_senders)]
    for u in hub_senders:
        b.fund(u, NATIVE, rng.randint(1, 20) * ETHER)
        b.fund(u, usdt.address, rng.randint(100, 5_000) * USD6)
    users = [new() for _ in range(max(2, p.n_noise_users))]
    for u in users:
        b.fund(u, NATIVE, int(rng.lognormvariate(math.log(30), 1.0) * ETHER))
        if rng.random() < 0.7:
            for t in tokens:
                b.fund(u, t.address, int(rng.lognormvariate(math.log(20_000), 1.2) * 10**t.decimals))
    customer_deposit = {}
    for u in users[: max(1, min(len(users), p.n_customers))]:
        customer_deposit[u] = exchanges.open_deposit(b, rng.choice(names))
    dusters = [new() for _ in range(2)]
    for d in dusters:
        b.fund(d, NATIVE, 10 * ETHER)
        b.fund(d, usdt.address, 10_000 * USD6)
    return World(
        victim=victim,
        seeds=seeds,
        usdt=usdt.address,
        tokens=tokens,
        exchanges=exchanges,
        launder_deposits=launder_deposits,
        customer_deposit=customer_deposit,
        pools=pools,
        hub=hub,
        hub_senders=hub_senders,
        dex=dex,
        bridge=bridge,
        dusters=dusters,
        users=users,
        noise_offramps=sorted(customer_deposit.values()),
        labels=labels,
        contracts=contracts,
    )


def any_hot(w: World, rng: random.Random) -> str:
    hot = w.exchanges.hot_wallets
    return rng.choice(hot[rng.choice(list(hot))])


def gas_topup(b: Builder, w: World, block: int, wallet: str) -> None:
    # Laundering wallets get gas money from somewhere clean: an exchange withdrawal.
    b.native(block, any_hot(w, b.rng), wallet, b.rng.randint(5, 60) * 10**15)


def allocate(total: int, jobs: list[tuple[str, float, int]], rng: random.Random) -> list[tuple[str, int]]:
    """Share `total` exactly over jobs (name, weight, minimum): each gets its minimum plus a share.

    When the minimums don't fit, instances of the most repeated job are dropped first, so a big
    scenario keeps every shape and every hop above the relative threshold.
    """
    jobs = list(jobs)
    while len(jobs) > 1 and sum(m for _, _, m in jobs) > total * 0.8:
        names = [name for name, _, _ in jobs]
        most = max(set(names), key=lambda n: (names.count(n), n))
        if names.count(most) == 1:
            break
        del jobs[len(names) - 1 - names[::-1].index(most)]
    minimum = sum(m for _, _, m in jobs)
    if minimum > total:  # still too tight: plain shares by weight
        jobs = [(name, wt, 0) for name, wt, _ in jobs]
        minimum = 0
    weights = [wt * rng.uniform(0.85, 1.15) for _, wt, _ in jobs]
    wsum = sum(weights) or 1.0
    extra = total - minimum
    out = [(name, m + int(extra * wt / wsum)) for (name, _, m), wt in zip(jobs, weights, strict=True)]
    name, amount = out[-1]
    out[-1] = (name, amount + total - sum(a for _, a in out))
    return out
