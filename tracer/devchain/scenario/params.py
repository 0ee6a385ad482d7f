"""The knobs of a generated scenario (`ScenarioParams`) and how they scale with its size."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

from tracer.devchain.scenario.model import ETHER, USD6


def _grows(default: int, power: float, lo: int, hi: int) -> int:
    """A laundering knob that `ScenarioParams.for_size` scales: its default (the knob at 300
    transfers) times g**power, kept within [lo, hi]."""
    return field(default=default, metadata={"growth": (default, power, lo, hi)})


@dataclass(frozen=True)
class ScenarioParams:
    """Every size knob of a generated scenario; the same params and seed give the same scenario."""

    seed: int = 1
    genesis_time: int = 1_700_000_000
    block_time: int = 12
    n_blocks: int = 100  # at least this many blocks; more if the laundering needs them
    # theft
    n_seeds: int = 2  # 1-3 thief wallets
    stolen_eth: int = 3_000 * ETHER
    stolen_usdt: int = 8_000_000 * USD6
    min_hop_share: float = 0.002  # every laundering hop carries at least this share of its asset's theft
    # ETH laundering
    n_fanout: int = _grows(8, 1.0, 3, 150)  # fresh wallets the seeds fan out to
    n_consolidation: int = _grows(2, 0.5, 1, 12)  # wallets the fan-out comes back together in
    n_peel_chains: int = _grows(2, 0.5, 1, 16)
    peel_length: int = _grows(4, 0.3, 2, 8)  # peels per chain
    n_mixer_deposits: int = _grows(4, 0.5, 2, 30)  # flagged deposits into the 10 / 100 ETH pools
    n_batch_payouts: int = _grows(1, 0.5, 1, 8)
    batch_size: int = _grows(4, 0.3, 3, 12)  # recipients per batch payout
    # stablecoin laundering
    n_token_fanout: int = _grows(4, 0.7, 2, 60)
    n_token_peel_chains: int = _grows(1, 0.5, 1, 8)
    # exchanges
    n_exchanges: int = _grows(3, 0.25, 2, 10)
    n_launder_deposits: int = _grows(4, 0.5, 2, 60)  # deposit addresses of the launderers' exchange accounts
    sweep_delay_max: int = 4  # a deposit address sweeps 1..this many blocks after it receives
    max_hop_delay: int = 3  # a laundering wallet moves money on 1..this many blocks after receiving it
    # noise
    n_noise_users: int = 30
    n_customers: int = 10  # noise users with an exchange deposit address
    n_noise_events: int = 150  # unrelated transactions (their sweeps come on top)
    n_mixer_noise: int = 8  # unrelated mixer deposits (the anonymity set)
    n_hub_senders: int = 40  # distinct customers paying the unlabelled hub, once each
    n_dust: int = _grows(3, 0.5, 1, 200)
    gas_topup_rate: float = 0.3  # share of ETH laundering wallets that get a small clean top-up
    n_traps: int = _grows(2, 0.3, 1, 10)  # clean money through wallets touched by the laundering, into noise off-ramps
    failed_rate: float = 0.02  # share of noise transactions that revert
    # mixers, swaps and bridges: off by default, so scenarios made before them stay identical
    mixer_withdrawals: bool = False  # launderers withdraw their mixer notes, each leaving a de-mixing clue
    n_mixer_users: int = 0  # unrelated users who deposit into the pools and withdraw later (the anonymity set)
    n_swaps: int = 0  # laundering USDT -> ETH swaps on a Uniswap-V2-like pair (USDT in, ETH out internally)
    n_swap_users: int = 0  # unrelated swaps on the same pair
    n_bridges: int = 0  # laundering ETH deposits into a THORChain-like router, with destination memos
    n_bridge_users: int = 0  # unrelated bridge deposits

    @classmethod
    def for_size(cls, n_transfers: int, seed: int = 1, *, services: bool = False) -> ScenarioParams:
        """Knobs for about `n_transfers` value transfers (50 for unit tests .. millions for benches).

        The laundering grows slowly with the size (real cases have tens to a few hundred hops and
        every hop must stay above the relative threshold); the rest is noise and exchange traffic.
        `services` adds mixer withdrawals with de-mixing clues, DEX swaps and bridge deposits (and
        unrelated users of each) on top; without it the scenario is exactly what it always was.
        """
        n = max(50, n_transfers)
        g = math.sqrt(n / 300)  # growth of the laundering structure

        def k(base: float, power: float, lo: int, hi: int) -> int:
            return max(lo, min(hi, round(base * g**power)))

        laundering: dict[str, Any] = {f.name: k(*f.metadata["growth"]) for f in fields(cls) if "growth" in f.metadata}
        laundering["n_seeds"] = 1 if n < 150 else (2 if n < 5_000 else 3)
        est = _estimate_laundering_transfers(laundering)
        # A service is recognised by its many distinct payers (tracer's default: 300 senders).
        hub_senders = max(10, min(3_000, n // 8))
        rest = max(10, n - est - hub_senders)
        # A noise event makes ~1.2 transfers on average (deposits add a sweep, batches several calls).
        events = max(10, round(rest / 1.2))
        users = max(8, events // 12)
        extra: dict[str, Any] = {}
        if services:
            extra = dict(
                mixer_withdrawals=True,
                n_mixer_users=max(40, min(2_000, n // 40)),
                n_swaps=k(1, 0.3, 1, 4),
                n_swap_users=max(12, min(500, n // 200)),
                n_bridges=k(2, 0.3, 2, 6),
                n_bridge_users=max(8, min(300, n // 300)),
            )
        return cls(
            seed=seed,
            n_blocks=max(40, n // 100),
            n_noise_events=events,
            n_noise_users=users,
            n_customers=max(3, users // 4),
            n_mixer_noise=max(4, events // 30),
            n_hub_senders=hub_senders,
            **laundering,
            **extra,
        )


def _estimate_laundering_transfers(k: dict[str, int]) -> int:
    eth = (
        2 * k["n_fanout"]
        + k["n_peel_chains"] * (3 * k["peel_length"] + 2)
        + k["n_mixer_deposits"] * 2
        + k["n_batch_payouts"] * (1 + 3 * k["batch_size"])
        + 3 * k["n_consolidation"]
    )
    tok = 4 * k["n_token_fanout"] + k["n_token_peel_chains"] * (3 * 4 + 3) + 6
    return 2 * k["n_seeds"] + eth + tok + 4 * k["n_traps"] + k["n_dust"]


def params_from_dict(data: dict[str, Any]) -> ScenarioParams:
    """ScenarioParams from a saved scenario's `params` (unknown keys ignored)."""
    names = {f.name for f in fields(ScenarioParams)}
    return ScenarioParams(**{k: v for k, v in data.items() if k in names})
