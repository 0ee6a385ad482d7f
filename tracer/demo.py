"""`tracer demo`: a generated laundering case, traced end to end on embedded parts.

Starts (or reuses) Postgres, serves a generated chain over real JSON-RPC on 127.0.0.1, loads the
scenario's exchange labels, traces from the thieves' wallets with several workers and prints the
report, then checks it against the scenario's ground truth.
"""

from __future__ import annotations

import json
import sys
import time

import asyncpg

from tracer.chains.evm import EvmChain
from tracer.devchain.scenario import Scenario, ScenarioParams, generate
from tracer.devchain.server import DevChainServer
from tracer.engine import report as treport
from tracer.engine.service import create_trace
from tracer.labels.defaults import load_default_labels
from tracer.labels.vocab import normalize_category
from tracer.runner import run_with_workers
from tracer.store import labels as label_store
from tracer.store.db import Database


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


async def run_demo(*, size: int, seed: int, workers: int, as_json: bool, database_url: str | None) -> int:
    t0 = time.monotonic()
    db = await Database.connect(database_url)
    _say(f"postgres: {'embedded at ' + db.url if db.embedded else db.url}")
    scenario = generate(ScenarioParams.for_size(size, seed=seed))
    server = DevChainServer(scenario)
    url = await server.start("127.0.0.1", 0)
    _say(f"devchain: {url} ({size} transfers generated, seed {seed})")
    client = EvmChain(url, chain=scenario.chain, expected_chain_id=scenario.chain_id)
    try:
        await client.connect()
        n = await load_scenario_labels(db.pool, scenario)
        defaults = await load_default_labels(db.pool)
        _say(f"labels: default set {'already loaded' if defaults.skipped else f'{defaults.inserted} loaded'}")
        _say(f"labels: {n} scenario labels loaded (exchange hot wallets, mixer, ...)")
        trace_id = await create_trace(db.pool, client, chain=scenario.chain, seeds=scenario.seeds, policy={},
                                      label=f"demo seed {seed}", created_by="demo")
        _say(f"trace #{trace_id}: {len(scenario.seeds)} seeds, default policy, {workers} workers")
        status = await run_with_workers(db.pool, {scenario.chain: client}, trace_id, workers=workers)
        rep = await treport.build(db.pool, trace_id)
        if as_json:
            print(json.dumps(rep.to_json(), indent=2))
        else:
            print(treport.render(rep))
            print()
            print(_truth_check(rep, scenario))
            calls = sum(v for k, v in client.request_counts.items() if k != "http")
            print(f"\n{calls} JSON-RPC calls in {client.request_counts.get('http', 0)} HTTP requests; "
                  f"{time.monotonic() - t0:.1f}s in all")
        return 0 if status == "done" else 1
    finally:
        await client.close()
        await server.stop()
        await db.close()


async def load_scenario_labels(pool: asyncpg.Pool, scenario: Scenario) -> int:
    """The scenario's labelled services (exchange hot wallets, mixer, ...) as labels."""
    labels = []
    for lb in scenario.labels:
        category, extra = normalize_category(lb.category)
        labels.append(label_store.Label(
            chain=scenario.chain, address=lb.address, entity=lb.entity, category=category, source="scenario",
            confidence=1.0, evidence=extra or None, created_by="demo"))
    async with pool.acquire() as conn:
        return await label_store.upsert_labels(conn, labels)


def _truth_check(rep: treport.Report, scenario: Scenario) -> str:
    """How the report compares with what the generator knows it did."""
    truth = scenario.truth
    found = {(e.address, e.asset): e.amount for e in rep.exits}
    lines = ["Ground truth check (the generator knows where the money went):"]
    hit = 0
    worst = 0.0
    for o in truth.offramps:
        got = found.get((o.address, o.asset), 0)
        if got:
            hit += 1
            worst = max(worst, abs(got - o.amount) / o.amount if o.amount else 0.0)
    lines.append(f"  off-ramps found: {hit} of {len(truth.offramps)}; worst amount error {worst:.4%}")
    noise = set(truth.noise_offramps)
    false_exits = [e for e in rep.exits if e.address in noise]
    lines.append(f"  noise off-ramps wrongly reported: {len(false_exits)}")
    return "\n".join(lines)
