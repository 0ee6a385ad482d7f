"""`generate(ScenarioParams)`: a whole scenario, deterministically, from its seed."""

from __future__ import annotations

import random
from dataclasses import asdict

from tracer.devchain.scenario.builder import Builder
from tracer.devchain.scenario.history import Scenario
from tracer.devchain.scenario.model import ETHER, MixerPool, ScenarioBlock, Truth, gc_paused
from tracer.devchain.scenario.noise import plan_noise
from tracer.devchain.scenario.params import ScenarioParams
from tracer.devchain.scenario.plans import plan_dust_and_traps, plan_eth, plan_usdt
from tracer.devchain.scenario.services import (
    has_services,
    make_services,
    plan_mixer_notes,
    plan_service_users,
    through_truth,
)
from tracer.devchain.scenario.truth import build_truth
from tracer.devchain.scenario.world import make_world
from tracer.domain.transfers import NATIVE


def generate(params: ScenarioParams) -> Scenario:
    """Build a scenario deterministically from `params` (same params -> identical scenario)."""
    with gc_paused():
        return _generate(params)


def _generate(p: ScenarioParams) -> Scenario:
    rng = random.Random(p.seed)
    b = Builder(rng)
    b.sweep_delay_max = max(1, p.sweep_delay_max)
    w = make_world(b, p)
    if has_services(p):
        make_services(b, p, w)
    t0 = max(8, p.n_blocks // 10)  # theft block; room before it for pre-theft history (a trap)
    plan_eth(b, p, w, t0)
    plan_usdt(b, p, w, t0)
    plan_dust_and_traps(b, p, w, t0)
    n_blocks = max(p.n_blocks, b.last_block + p.sweep_delay_max + 2)
    plan_noise(b, p, w, n_blocks)
    if has_services(p):
        plan_mixer_notes(b, p, w)
        plan_service_users(b, p, w, n_blocks)
    txs = b.run()
    last = max(n_blocks, max(txs) if txs else 0)
    blocks = [ScenarioBlock(n, p.genesis_time + n * p.block_time, txs.get(n, [])) for n in range(1, last + 1)]
    sc = Scenario(
        genesis_time=p.genesis_time,
        blocks=blocks,
        tokens=w.tokens,
        genesis_balances=b.genesis,
        contracts=w.contracts,
        seeds=list(w.seeds),
        labels=w.labels,
        truth=Truth(),
        mixer_pools=[MixerPool(addr, NATIVE, d * ETHER) for d, addr in sorted(w.pools.items())],
        params=asdict(p),
    )
    sc.truth = build_truth(
        sc,
        stolen={NATIVE: p.stolen_eth, w.usdt: p.stolen_usdt},
        deposit_addresses=w.exchanges.deposit_exchange,
        hubs=[w.hub],
        noise_offramps=w.noise_offramps,
        launderers=w.launderers,
    )
    if has_services(p):
        through_truth(sc, b, w)
    return sc
