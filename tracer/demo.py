"""`tracer demo`: a generated laundering case, traced end to end on embedded parts.

Starts (or reuses) Postgres, serves a generated chain over real JSON-RPC on 127.0.0.1, loads the
scenario's exchange labels, traces from the thieves' wallets with several workers and prints the
report, then checks it against the scenario's ground truth. The launderers use services: a
Tornado-style mixer (whose withdrawals leave de-mixing clues), a DEX swap and a cross-chain
bridge, so the report shows the mixer links with their confidence, the swap legs and the bridge
exit with its destination.
"""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from typing import Any

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
from tracer.store import mixers as mixer_store
from tracer.store import traces as trace_store
from tracer.store.db import Database


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


async def run_demo(*, size: int, seed: int, workers: int, as_json: bool, database_url: str | None) -> int:
    t0 = time.monotonic()
    db = await Database.connect(database_url)
    _say(f"postgres: {'embedded at ' + db.url if db.embedded else db.url}")
    scenario = generate(ScenarioParams.for_size(size, seed=seed, services=True))
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
            async with db.pool.acquire() as conn:
                mixer_rows = await mixer_store.mixer_links(conn, trace_id, limit=1000)
                hop_rows = await trace_store.all_hops(conn, trace_id)
            print(_services(rep, list(mixer_rows), [h for h in hop_rows if h["reason"] == "swap"]))
            print()
            print(_truth_check(rep, scenario, list(mixer_rows)))
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


def _short(address: str) -> str:
    return f"{address[:8]}…{address[-6:]}" if len(address) > 16 else address


def _units(raw: Any, decimals: int | None, symbol: str | None, asset: str) -> str:
    sym = symbol or ("ETH" if asset == "native" else asset[:10])
    dec = 18 if asset == "native" else decimals
    return f"{treport.format_amount(int(raw), dec, 4)} {sym}"


def _services(rep: treport.Report, mixer_rows: list[Any], swap_hops: list[Any]) -> str:
    """Where the money changed form: mixer links (with confidence and why), swap legs, bridge exits."""
    lines = ["Through services:"]
    for r in mixer_rows:
        links = r["links"]
        if isinstance(links, str):
            links = json.loads(links)
        denom = _units(r["denomination"], r["decimals"], r["symbol"], r["asset"])
        head = f"  mixer  {_short(r['pool'])} ({denom} pool): {_short(r['depositor'])} deposited"
        followed = [lk for lk in links if lk["status"] == "followed"]
        if not followed:
            best = f"; best candidate {links[0]['confidence']:.2f}" if links else ""
            lines.append(f"{head}; entered mixer, amount "
                         f"{_units(r['flagged'], r['decimals'], r['symbol'], r['asset'])}, anonymity set "
                         f"{r['anonymity_set']} at deposit time, not linked{best}")
            continue
        for lk in followed:
            why = ", ".join(x["heuristic"] for x in lk["reasons"] if x["heuristic"] not in ("anonymity_set", "timing"))
            lines.append(f"{head} -> withdrawn to {_short(lk['recipient'])}, confidence "
                         f"{lk['confidence']:.2f} ({why or 'timing'}; anonymity set {r['anonymity_set']}), carried "
                         f"{_units(lk['carried'], r['decimals'], r['symbol'], r['asset'])}")
    # A swap is two hops of one transaction: the wallet pays asset A in and gets asset B back.
    legs: dict[str, list[Any]] = defaultdict(list)
    for h in swap_hops:
        legs[h["tx_hash"]].append(h)
    for tx, hops in sorted(legs.items(), key=lambda kv: kv[1][0]["block_number"]):
        wallets = {h["from_addr"] for h in hops} & {h["to_addr"] for h in hops}
        wallet = next(iter(wallets), hops[0]["from_addr"])
        paid = [h for h in hops if h["from_addr"] == wallet]
        got = [h for h in hops if h["to_addr"] == wallet]
        lines.append(f"  swap   {_short(wallet)} paid "
                     + " + ".join(_units(h["amount"], h["decimals"], h["symbol"], h["asset"]) for h in paid)
                     + " and got " + " + ".join(_units(h["amount"], h["decimals"], h["symbol"], h["asset"])
                                                  for h in got)
                     + f" back (flagged shares, tx {tx[:10]}…)")
    for e in rep.exits:
        if e.reason != "bridge":
            continue
        for d in (e.evidence or {}).get("destinations", []):
            where = (d.get("continue") or {}).get("note") or "not followed on the destination chain"
            lines.append(f"  bridge {(e.entity or 'bridge')[:18]} ({d.get('protocol')}): "
                         f"{_short(str(d.get('from')))} sent "
                         f"{_units(d.get('amount', 0), e.decimals, e.symbol, e.asset)} -> {d.get('chain')} "
                         f"{d.get('address')} ({where})")
    if len(lines) == 1:
        lines.append("  (none reached)")
    return "\n".join(lines)


def _truth_check(rep: treport.Report, scenario: Scenario, mixer_rows: list[Any] | None = None) -> str:
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
    if truth.mixer_links and mixer_rows is not None:
        linked = {(r["depositor"], r["pool"]) for r in mixer_rows if r["status"] == "linked"}
        hit = sum(1 for m in truth.mixer_links if (m.depositor, m.pool) in linked)
        lines.append(f"  laundering mixer notes linked: {hit} of {len(truth.mixer_links)}")
    if truth.bridges:
        dests = {str(d.get("address")).lower() for e in rep.exits if e.reason == "bridge"
                 for d in (e.evidence or {}).get("destinations", [])}
        hit = sum(1 for b in truth.bridges if b.dest_address.lower() in dests)
        lines.append(f"  bridge destinations decoded: {hit} of {len(truth.bridges)}")
    return "\n".join(lines)
