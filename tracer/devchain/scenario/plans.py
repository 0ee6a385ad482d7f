"""The laundering of a generated scenario: the theft, fan-out and consolidation, peel chains,
batch payouts, mixer deposits, the stablecoin's path, dust and traps.
"""

from __future__ import annotations

from tracer.devchain.scenario.builder import Builder
from tracer.devchain.scenario.model import ETHER
from tracer.devchain.scenario.params import ScenarioParams
from tracer.devchain.scenario.services import bridge_job, swap_job
from tracer.devchain.scenario.world import World, allocate, any_hot, gas_topup, split
from tracer.domain.transfers import NATIVE


def plan_eth(b: Builder, p: ScenarioParams, w: World, t0: int) -> None:
    rng = b.rng
    S = p.stolen_eth
    min_hop = max(1, int(S * p.min_hop_share))
    d = p.max_hop_delay

    # Mixer deposits first: fixed denominations, at most a quarter of the theft, each above min_hop.
    denoms = [x for x in (100, 10) if x * ETHER >= min_hop] or [100]
    mixer_amounts: list[int] = []
    for k in range(p.n_mixer_deposits):
        denom = denoms[0] if (k % 3 == 0 or len(denoms) == 1) else denoms[1]
        if sum(mixer_amounts) + denom * ETHER > S // 4:
            break
        mixer_amounts.append(denom * ETHER)

    # Jobs the consolidation wallets carry out, with the minimum each needs to keep hops >= min_hop.
    n_cons = max(1, p.n_consolidation)
    jobs: list[tuple[str, float, int]] = []
    for _ in range(p.n_peel_chains):
        jobs.append(("peel", 3.0, int(min_hop * (p.peel_length + 3) * 1.6)))
    for _ in range(p.n_batch_payouts):
        jobs.append(("batch", 2.0, int(min_hop * p.batch_size * 1.3)))
    for _ in range(n_cons):
        jobs.append(("deposit", 1.0, int(min_hop * 1.5)))
    jobs.append(("hub", 0.1, int(min_hop * 1.5)))
    jobs.append(("hot", 0.4, int(min_hop * 1.5)))
    for _ in range(p.n_bridges):
        jobs.append(("bridge", 1.0, int(min_hop * 1.5)))
    # Consolidation wallets keep ~0.5% dormant: real launderers rarely empty every wallet.
    budget = int((S - sum(mixer_amounts)) * 0.995)
    allocated = allocate(budget, jobs, rng)
    per_cons: list[list[tuple[str, int]]] = [[] for _ in range(n_cons)]
    for k, job in enumerate(allocated):
        per_cons[k % n_cons].append(job)
    for k, amount in enumerate(mixer_amounts):
        per_cons[k % n_cons].append(("mixer", amount))
    cons = [b.new_address() for _ in range(n_cons)]
    w.launderers.extend(cons)
    needs = [sum(a for _, a in jobs_c) for jobs_c in per_cons]
    # Whatever is left over stays with the first consolidation wallet, dormant.
    needs[0] += S - sum(needs)

    # Fan-out wallets: each consolidation wallet is fed by its own group, sized by what it needs.
    counts = [max(1, min(needs[c] // min_hop, round(max(n_cons, p.n_fanout) * needs[c] / S))) for c in range(n_cons)]
    n_fan = sum(counts)
    group_of = [c for c in range(n_cons) for _ in range(counts[c])]
    fan_amount: list[int] = []
    for c in range(n_cons):
        fan_amount.extend(split(needs[c], counts[c], rng))
    fans = [b.new_address() for _ in range(n_fan)]
    w.launderers.extend(fans)
    w.trap_candidates = list(fans)
    seed_of = [k % len(w.seeds) for k in range(n_fan)]
    theft = [0] * len(w.seeds)
    for k in range(n_fan):
        theft[seed_of[k]] += fan_amount[k]
    for s, amount in zip(w.seeds, theft, strict=True):
        if amount:
            b.native(t0, w.victim, s, amount)

    cons_ready = [t0] * n_cons
    topped: set[str] = set()
    for k in range(n_fan):
        t_in = t0 + rng.randint(1, d)
        b.native(t_in, w.seeds[seed_of[k]], fans[k], fan_amount[k])
        if k >= 2 and rng.random() < p.gas_topup_rate:  # fans 0-1 stay clean for the traps
            gas_topup(b, w, t_in, fans[k])
            topped.add(fans[k])
        t_out = t_in + rng.randint(1, d)
        c = group_of[k]
        b.native(t_out, fans[k], cons[c], fan_amount[k])
        cons_ready[c] = max(cons_ready[c], t_out)

    failed_trap_done = False
    for c, jobs_c in enumerate(per_cons):
        t = cons_ready[c] + 1
        rng.shuffle(jobs_c)
        for n_job, (name, amount) in enumerate(jobs_c):
            t_job = t + n_job // 2
            if name == "peel":
                start = t_job
                first = b.new_address()
                w.launderers.append(first)
                b.native(start, cons[c], first, amount)
                _peel_from(b, p, w, first, start, NATIVE, amount, min_hop)
            elif name == "batch":
                size = max(2, min(p.batch_size, amount // max(1, min_hop) - 1))
                recipients = [b.new_address() for _ in range(size)]
                w.launderers.extend(recipients)
                parts = split(amount, size, rng, 0.2)
                if not failed_trap_done:
                    # A reverted payout right before the real one: it moves nothing.
                    b.batch(t_job, cons[c], list(zip(recipients, parts, strict=True)), ok=False)
                    failed_trap_done = True
                b.batch(t_job, cons[c], list(zip(recipients, parts, strict=True)))
                for r, part in zip(recipients, parts, strict=True):
                    t_r = t_job + rng.randint(1, d)
                    if rng.random() < p.gas_topup_rate:
                        gas_topup(b, w, t_job, r)
                    b.native(t_r, r, rng.choice(w.launder_deposits)[0], part)
            elif name == "mixer" and p.mixer_withdrawals:
                w.mixer_jobs.append((cons[c], amount, t_job))  # plan_mixer_notes takes it from here
            elif name == "bridge":
                bridge_job(b, p, w, cons[c], amount, t_job)
            elif name == "mixer":
                # Through a fresh feeder wallet, as launderers do, then into the pool.
                feeder = b.new_address()
                w.launderers.append(feeder)
                b.native(t_job, cons[c], feeder, amount)
                denom = amount // ETHER
                b.mixer(t_job + rng.randint(1, d), feeder, w.pools[denom], amount)
            elif name == "deposit":
                b.native(t_job, cons[c], rng.choice(w.launder_deposits)[0], amount)
            elif name == "hub":
                b.native(t_job, cons[c], w.hub, amount)
            elif name == "hot":
                b.native(t_job, cons[c], any_hot(w, rng), amount)
    w.topped |= topped


def _peel_from(
    b: Builder, p: ScenarioParams, w: World, first: str, start: int, asset: str, amount: int, min_hop: int
) -> None:
    """Peel chain starting at wallet `first`, which receives `amount` at block `start`."""
    rng = b.rng
    token = asset != NATIVE
    dep_idx = rng.randrange(len(w.launder_deposits))
    wallet = first
    t = start
    remaining = amount
    for _ in range(p.peel_length):
        if remaining < 3 * min_hop:
            break
        if token or rng.random() < p.gas_topup_rate:
            gas_topup(b, w, t, wallet)
        peel = max(min_hop, int(remaining * rng.uniform(0.03, 0.10)))
        if rng.random() < 0.25:  # the account sometimes changes: another deposit address
            dep_idx = rng.randrange(len(w.launder_deposits))
        dep = w.launder_deposits[dep_idx][0]
        t += rng.randint(1, p.max_hop_delay)
        nxt = b.new_address()
        w.launderers.append(nxt)
        if token:
            b.token(t, asset, wallet, dep, peel)
            b.token(t, asset, wallet, nxt, remaining - peel)
        else:
            b.native(t, wallet, dep, peel)
            b.native(t, wallet, nxt, remaining - peel)
        remaining -= peel
        wallet = nxt
    # The last wallet of the chain cashes out the rest in one deposit.
    if token:
        gas_topup(b, w, t, wallet)
    t += rng.randint(1, p.max_hop_delay)
    dep = w.launder_deposits[dep_idx][0]
    if token:
        b.token(t, asset, wallet, dep, remaining)
    else:
        b.native(t, wallet, dep, remaining)


def plan_usdt(b: Builder, p: ScenarioParams, w: World, t0: int) -> None:
    rng = b.rng
    S = p.stolen_usdt
    usdt = w.usdt
    min_hop = max(1, int(S * p.min_hop_share))
    d = p.max_hop_delay
    n_fan = max(1, p.n_token_fanout)
    direct = [k for k in range(n_fan) if k % 3 == 2]  # a third go straight to a deposit address
    n_hold = 1 if n_fan < 20 else 2
    holders = [b.new_address() for _ in range(n_hold)]
    w.launderers.extend(holders)
    parts = split(S, n_fan, rng)
    fans = [b.new_address() for _ in range(n_fan)]
    w.launderers.extend(fans)
    theft = [0] * len(w.seeds)
    for k in range(n_fan):
        theft[k % len(w.seeds)] += parts[k]
    for s, amount in zip(w.seeds, theft, strict=True):
        if amount:
            b.token(t0, usdt, w.victim, s, amount)
    held = [0] * n_hold
    ready = [t0] * n_hold
    for k in range(n_fan):
        t_in = t0 + rng.randint(1, d)
        b.token(t_in, usdt, w.seeds[k % len(w.seeds)], fans[k], parts[k])
        gas_topup(b, w, t_in, fans[k])  # a token wallet needs ETH for gas before it can move
        t_out = t_in + rng.randint(1, d)
        if k == 0:
            # A transfer of more than the wallet holds reverts: no log, nothing moves.
            b.token(t_out, usdt, fans[k], holders[0], parts[k] * 2, ok=False)
        if k in direct:
            b.token(t_out, usdt, fans[k], rng.choice(w.launder_deposits)[0], parts[k])
        else:
            h = k % n_hold
            b.token(t_out, usdt, fans[k], holders[h], parts[k])
            held[h] += parts[k]
            ready[h] = max(ready[h], t_out)
    for h, total in enumerate(held):
        if not total:
            continue
        t = ready[h] + 1
        gas_topup(b, w, ready[h], holders[h])
        n_peel = max(1, p.n_token_peel_chains // n_hold + (1 if h < p.n_token_peel_chains % n_hold else 0))
        jobs: list[tuple[str, float, int]] = [("peel", 3.0, int(min_hop * (p.peel_length + 3) * 1.6))] * n_peel
        jobs += [
            ("deposit", 1.5, int(min_hop * 1.5)),
            ("hub", 0.1, int(min_hop * 1.5)),
            ("hot", 0.3, int(min_hop * 1.5)),
        ]
        jobs += [("swap", 0.5, int(min_hop * 1.5))] * (p.n_swaps // n_hold + (1 if h < p.n_swaps % n_hold else 0))
        allocated = allocate(int(total * 0.995), jobs, rng)
        for n_job, (name, amount) in enumerate(allocated):
            t_job = t + n_job // 2
            if name == "peel":
                first = b.new_address()
                w.launderers.append(first)
                b.token(t_job, usdt, holders[h], first, amount)
                _peel_from(b, p, w, first, t_job, usdt, amount, min_hop)
            elif name == "deposit":
                b.token(t_job, usdt, holders[h], rng.choice(w.launder_deposits)[0], amount)
            elif name == "hub":
                b.token(t_job, usdt, holders[h], w.hub, amount)
            elif name == "swap":
                swap_job(b, p, w, holders[h], amount, t_job)
            else:
                b.token(t_job, usdt, holders[h], any_hot(w, rng), amount)


def plan_dust_and_traps(b: Builder, p: ScenarioParams, w: World, t0: int) -> None:
    rng = b.rng
    end = max(b.last_block, t0 + 5)
    for _ in range(p.n_dust):
        # Dust (address poisoning, airdrops) lands on the thieves' wallets: clean and tiny.
        target = rng.choice(w.seeds)
        t = rng.randint(t0 + 1, end)
        if rng.random() < 0.5:
            b.native(t, rng.choice(w.dusters), target, rng.randint(1, 1000) * 10**9)
        else:
            b.token(t, w.usdt, rng.choice(w.dusters), target, rng.randint(1, 999))
    fans = w.trap_candidates
    topped = w.topped
    clean_fans = [f for f in fans if f not in topped]
    for k in range(p.n_traps):
        # A laundering wallet emptied of flagged money later moves clean money of its owner into an
        # unrelated deposit address: taint-insensitive (poison) tracing would report that off-ramp.
        if k >= len(clean_fans):
            break
        f = clean_fans[k]
        dep = w.exchanges.open_deposit(b)
        w.noise_offramps.append(dep)
        t = end + rng.randint(2, 6)
        amount = rng.randint(2, 20) * ETHER
        b.native(t, any_hot(w, rng), f, amount)
        b.native(t + rng.randint(1, 3), f, dep, amount)
    # A consolidation wallet with history before the theft: its earlier deposit is clean.
    cons = [a for a in w.launderers if a not in fans][:1]
    if cons and t0 > 4:
        dep = w.exchanges.open_deposit(b)
        w.noise_offramps.append(dep)
        b.native(2, any_hot(w, rng), cons[0], 3 * ETHER)
        b.native(3, cons[0], dep, 2 * ETHER)
