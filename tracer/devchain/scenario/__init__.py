"""Deterministic laundering scenarios for the dev chain, and their ground truth.

A `Scenario` is a whole chain history in compact form: blocks of `ScenarioTx` (native transfers,
ERC-20 transfers, batch payouts through a contract, mixer deposits), genesis balances, tokens,
public labels, the seed (flagged) wallets and a `Truth` saying where the flagged money ended.
`generate(ScenarioParams)` builds one from a seed; `ScenarioParams.for_size(n)` scales the knobs to
about n transfers. `reference_haircut()` is the small independent simulation the truth comes from.

The shapes are the ones investigators meet (see shared/docs/DOMAIN.md): a theft of ETH and a
6-decimal stablecoin to 1-3 seed wallets, fan-out and fan-in, peel chains into exchange deposit
addresses that sweep to hot wallets, mixer pool deposits, batch payouts as internal calls, an
unlabelled hub, busy exchange hot wallets, dust, gas top-ups, failed transactions, and noise.


The package: model (records), params (knobs), history (`Scenario` and its file form), truth (the
haircut simulation), builder (executes planned transactions), world, plans, noise and services (what
is planned), generator (`generate`). The names below are the public ones.
"""

# The model's records are re-exported whole (model.__all__), as asyncio's package re-exports its modules.
from tracer.devchain.scenario import model
from tracer.devchain.scenario.generator import generate
from tracer.devchain.scenario.history import SCENARIO_FORMAT, Scenario
from tracer.devchain.scenario.model import *  # noqa: F403
from tracer.devchain.scenario.params import ScenarioParams, params_from_dict
from tracer.devchain.scenario.truth import ThroughFlows, build_truth, reference_haircut, reference_through
from tracer.devchain.scenario.world import EXCHANGE_NAMES

__all__ = [
    *model.__all__, "EXCHANGE_NAMES", "SCENARIO_FORMAT", "Scenario", "ScenarioParams", "ThroughFlows", "build_truth",
    "generate", "params_from_dict", "reference_haircut", "reference_through",
]
