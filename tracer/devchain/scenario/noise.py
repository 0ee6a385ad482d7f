"""Unrelated traffic of a generated scenario: the bulk of a large one."""

from __future__ import annotations

import math

from tracer.devchain.scenario.builder import Builder
from tracer.devchain.scenario.model import ETHER, KIND_BATCH, KIND_MIXER, KIND_NATIVE, KIND_TOKEN, USD6
from tracer.devchain.scenario.params import ScenarioParams
from tracer.devchain.scenario.world import World
from tracer.domain.transfers import NATIVE


def plan_noise(b: Builder, p: ScenarioParams, w: World, n_blocks: int) -> None:
    # The bulk of a large scenario: plain random arithmetic instead of rng.choice/randint, which
    # cost several times more per call and dominate generation time at a million transfers.
    rand = b.rng.random
    gauss = b.rng.gauss  # log-normal amounts as exp(mu + sigma * gauss): cheaper than lognormvariate
    exp = math.exp
    add = b.add
    users = w.users
    n_users = len(users)
    customers = list(w.customer_deposit)
    n_customers = len(customers)
    deposit_of = w.customer_deposit
    tokens = [t.address for t in w.tokens]
    unit = {t.address: 10**t.decimals for t in w.tokens}
    hots = [h for hs in w.exchanges.hot_wallets.values() for h in hs]
    n_hots = len(hots)
    usdt = w.usdt
    hub = w.hub
    services = (w.dex, w.bridge)
    failed_rate = p.failed_rate
    N, T, B, M = KIND_NATIVE, KIND_TOKEN, KIND_BATCH, KIND_MIXER
    ln = math.log

    def user() -> str:
        return users[int(rand() * n_users)]

    def hot() -> str:
        return hots[int(rand() * n_hots)]

    def eth(median: float, sigma: float) -> int:
        return int(min(exp(ln(median) + sigma * gauss()), 5_000.0) * ETHER)

    def tok(token: str, median: float, sigma: float) -> int:
        return int(min(exp(ln(median) + sigma * gauss()), 50_000_000.0) * unit[token])

    for _ in range(p.n_noise_events):
        t = 1 + int(rand() * n_blocks)
        r = rand()
        ok = rand() >= failed_rate
        if r < 0.20:  # users paying each other
            add(t, N, user(), user(), NATIVE, eth(0.5, 1.3), strict=False, ok=ok)
        elif r < 0.32:
            tk = tokens[int(rand() * 3)]
            add(t, T, user(), user(), tk, tok(tk, 300, 1.5), strict=False, ok=ok)
        elif r < 0.46:  # customers depositing to their exchange account (the sweep follows)
            u = customers[int(rand() * n_customers)]
            if rand() < 0.6:
                add(t, N, u, deposit_of[u], NATIVE, eth(1.0, 1.2), strict=False)
            else:
                tk = tokens[int(rand() * 3)]
                add(t, T, u, deposit_of[u], tk, tok(tk, 2000, 1.3), strict=False)
        elif r < 0.66:  # exchange withdrawals: large, to anyone
            if rand() < 0.6:
                add(t, N, hot(), user(), NATIVE, eth(3.0, 1.5), strict=False)
            else:
                tk = tokens[int(rand() * 3)]
                add(t, T, hot(), user(), tk, tok(tk, 5000, 1.5), strict=False)
        elif r < 0.69:  # straight into a hot wallet (some services do)
            add(t, N, user(), hot(), NATIVE, eth(2.0, 1.0), strict=False)
        elif r < 0.76:  # the unlabelled hub: payments in
            if rand() < 0.5:
                add(t, N, user(), hub, NATIVE, eth(0.3, 1.0), strict=False)
            else:
                add(t, T, user(), hub, usdt, tok(usdt, 500, 1.0), strict=False)
        elif r < 0.83:  # ... and payouts
            if rand() < 0.5:
                add(t, N, hub, user(), NATIVE, eth(0.3, 1.0), strict=False)
            else:
                add(t, T, hub, user(), usdt, tok(usdt, 500, 1.0), strict=False)
        elif r < 0.92:  # DEX and bridge traffic
            add(t, N, user(), services[int(rand() * 2)], NATIVE, eth(1.0, 1.0), strict=False, ok=ok)
        elif r < 0.95:  # someone else's batch payout
            payouts = tuple((user(), eth(0.2, 0.8)) for _ in range(2 + int(rand() * 5)))
            add(
                t, B, user(), b.batch_contract, NATIVE, sum(v for _, v in payouts), strict=False, ok=ok, payouts=payouts
            )
        else:  # small change between users
            add(t, N, user(), user(), NATIVE, eth(0.05, 1.0), strict=False)
    for u in w.hub_senders:  # each of the hub's many customers pays it once
        t = 1 + int(rand() * n_blocks)
        if rand() < 0.6:
            add(t, N, u, hub, NATIVE, int(ETHER * (0.01 + rand())), strict=False)
        else:
            add(t, T, u, hub, usdt, int(USD6 * (20 + 2_000 * rand())), strict=False)
    denominations = (1, 1, 10, 10, 100)
    for _ in range(p.n_mixer_noise):
        denom = denominations[int(rand() * 5)]
        u = user()
        t = 1 + int(rand() * n_blocks)
        # Unrelated depositors withdraw what they mix from an exchange first, so they can afford it.
        add(max(1, t - 1), N, hot(), u, NATIVE, denom * ETHER, strict=False)
        add(t, M, u, w.pools[denom], NATIVE, denom * ETHER, strict=False)
