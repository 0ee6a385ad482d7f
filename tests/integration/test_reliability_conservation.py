"""Conservation, as a Hypothesis property over generated laundering scenarios: in every finished
trace, no address other than a seed sends more flagged money (per asset) than flagged money reached
it, and the exits of an asset hold at most what left the seeds in it.

Each example is a real trace: a scenario served by a devchain over HTTP, embedded workers, the
module's Postgres; few examples, since each costs a trace. Addresses where money changes form
(swaps, mixer links, bridges) are left out of the per-asset check: there one asset goes in and
another comes out.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.reliability_support import run_trace
from tracer.chains.evm import EvmChain
from tracer.demo import load_scenario_labels
from tracer.devchain.scenario import ScenarioParams, generate
from tracer.devchain.server import DevChainServer
from tracer.store.db import Database

FORM_CHANGES = ("swap", "mixer", "bridge")


async def check_conservation(database_url: str, size: int, seed: int, taint_model: str) -> int:
    """Trace a generated scenario and assert conservation; returns the number of hops checked."""
    scenario = generate(ScenarioParams.for_size(size, seed=seed))
    db = await Database.connect(database_url, migrate=False, max_size=4)
    server = DevChainServer(scenario)
    url = await server.start("127.0.0.1", 0)
    client = EvmChain(url, chain=scenario.chain, expected_chain_id=scenario.chain_id)
    try:
        await client.connect()
        await load_scenario_labels(db.pool, scenario)
        # The engine's transfers cache is per chain, and every scenario reuses the chain name.
        await db.pool.execute("DELETE FROM address_coverage")
        trace_id, status = await run_trace(db.pool, client, scenario, policy={"taint_model": taint_model})
        assert status == "done"
        totals = {k: int(v) for k, v in (await db.pool.fetchval(
            "SELECT totals FROM traces WHERE id = $1", trace_id) or {}).items()}
        rows = await db.pool.fetch(
            "SELECT from_addr, to_addr, asset, amount, status, reason FROM hops WHERE trace_id = $1", trace_id)
    finally:
        await client.close()
        await server.stop()
        await db.close()
    assert rows, "the trace found no hop"
    seeds = set(scenario.seeds)
    flow_in: dict[tuple[str, str], int] = defaultdict(int)
    flow_out: dict[tuple[str, str], int] = defaultdict(int)
    exits: dict[str, int] = defaultdict(int)
    changes_form: set[str] = set()
    for r in rows:
        amount = int(r["amount"])
        assert amount > 0, dict(r)
        flow_in[(r["to_addr"], r["asset"])] += amount
        flow_out[(r["from_addr"], r["asset"])] += amount
        if r["status"] == "exit":
            exits[r["asset"]] += amount
        if any(word in r["reason"] for word in FORM_CHANGES):
            changes_form.update((r["from_addr"], r["to_addr"]))
    for (address, asset), out in flow_out.items():
        if address in seeds or address in changes_form:
            continue
        assert out <= flow_in[(address, asset)], (address, asset, out, flow_in[(address, asset)])
    for asset, total in exits.items():
        assert total <= totals.get(asset, 0), (asset, total, totals)
    return len(rows)


@settings(max_examples=5, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(size=st.sampled_from([150, 250, 400]), seed=st.integers(0, 10_000),
       taint_model=st.sampled_from(["haircut", "poison"]))
def test_taint_is_conserved_in_generated_scenarios(database_url: str, size: int, seed: int,
                                                   taint_model: str) -> None:
    # A fresh event loop per example: Hypothesis drives a plain function.
    asyncio.run(check_conservation(database_url, size, seed, taint_model))
