"""Accuracy on real cases: replay each hand-checked laundering case on the devchain, trace it from
its source addresses with the default policy, and compare what the trace reached with the case.

The case folders (mftracer format: `<name>.csv` of edges with USD values, `source_addresses.csv`,
`terminal_addresses.csv`) are read at run time from the path given; nothing of them is copied
into the project. `tracer.devchain.replay.load_case` turns a case into a chain with the noise a
real one has: clean inflows into the launderers' wallets, gas money in and out, busy exchange hot
wallets with unrelated customers, deposit addresses that sweep to their exchange. Amounts become
a 6-decimal USD stablecoin (the cases carry USD only). Labels are the default label set plus the
case's own service labels (exchange hot wallets, bridges, DEXes: what an explorer shows); deposit
addresses stay unlabelled, as on a real chain, and must be recognised by their sweeps.

Per case it prints:

- terminal recall: share of the case's terminal addresses the trace reaches (a hop into it);
- value recall: share of the USD that reached terminals which the trace attributes to them. The
  USD that reached a terminal is the replayed chain's own haircut ground truth (the case's edges
  diluted by the clean money the replay adds); the JSON also has the share of the case's raw edge
  USD into terminals (`value_recall_vs_edges`), which no taint model can reach once clean money
  mixes in;
- false exits: exits the trace reports that are not terminals of the case (and their USD); how
  many of them pay a terminal in the case is shown apart: they are mostly the deposit address in
  front of an exchange wallet the case lists as the terminal, i.e. the same off-ramp one hop early.
  A second table scores those as reaching the terminal they pay (terminal and value recall "same
  off-ramp"), the USD split as the case's edges out of the exit split;
- hops explored per ground-truth edge: hops the trace wrote / edges of the case.

    python bench/accuracy.py ../shared/data/cases/mftracer          # every case in the folder
    python bench/accuracy.py ../shared/data/cases/mftracer/54m      # one case
    python bench/accuracy.py --smoke        # a tiny made-up case, seconds (the test suite runs it)
    python bench/accuracy.py --node anvil ../shared/data/cases/mftracer   # devchain and Anvil, side by side

`--node anvil` also executes each replayed case as real transactions on Anvil (Foundry's EVM
node, archive-like; `tracer.devchain.anvil.executor`, which first checks the node ends with the
replay's balances) and traces it there the same way; the tables put the devchain's figures and
Anvil's side by side, and the JSON goes to bench/results/accuracy_anvil.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import (
    add_common_args,
    drop_database,
    machine,
    migrated_database,
    new_db_name,
    server_url,
    slug,
    table,
    write_result,
)

from tracer.chains.evm import EvmChain
from tracer.demo import load_scenario_labels
from tracer.devchain.replay import load_case, read_case
from tracer.devchain.scenario import Scenario
from tracer.devchain.server import DevChainServer
from tracer.engine import report as treport
from tracer.engine.service import create_trace
from tracer.labels.defaults import load_default_labels
from tracer.runner import run_with_workers
from tracer.store.db import Database

NAME = "accuracy"
NODES = ("devchain", "anvil")
USD = 10**6  # the replay's stablecoin has 6 decimals


def case_dirs(path: Path) -> list[Path]:
    """A case folder, or a folder of case folders (the ones holding source_addresses.csv)."""
    if (path / "source_addresses.csv").exists():
        return [path]
    found = sorted(p for p in path.iterdir() if p.is_dir() and (p / "source_addresses.csv").exists())
    if not found:
        raise SystemExit(f"{path}: no case folders (with source_addresses.csv) found")
    return found


def truth_at_terminals(sc: Scenario, terminals: set[str], asset: str) -> dict[str, int]:
    """Flagged raw amount of `asset` the replayed chain's haircut ground truth puts on each terminal."""
    t = sc.truth
    out: dict[str, int] = {}
    items: list[Any] = [*t.offramps, *t.other_exits, *t.hub_receipts, *t.mixer_deposits]
    for item in items:
        if item.address in terminals and item.asset == asset:
            out[item.address] = out.get(item.address, 0) + item.amount
    return out


@contextlib.asynccontextmanager
async def serving(sc: Scenario, node: str, facts: dict[str, Any]) -> AsyncIterator[str]:
    """The replayed chain served by the devchain's emulator, or executed on a fresh Anvil node."""
    if node == "devchain":
        server = DevChainServer(sc)
        url = await server.start("127.0.0.1", 0)
        try:
            yield url
        finally:
            await server.stop()
        return
    from tracer.devchain.anvil.executor import execute_scenario
    from tracer.devchain.anvil.node import running_anvil

    async with running_anvil(chain_id=sc.chain_id, mode="archive", timestamp=sc.genesis_time) as anvil:
        run = await execute_scenario(anvil.url, sc)
        if run.mismatches:
            raise SystemExit(f"Anvil does not hold the replayed chain: {run.summary()}")
        facts.update(anvil_execution_seconds=round(run.seconds, 2), anvil_transactions=run.transactions,
                     anvil_setup_transactions=run.setup_transactions, anvil_state="archive")
        yield anvil.url


@dataclass
class CaseRun:
    """A replayed case traced with the default policy and labels (its database still open)."""

    db: Database
    client: EvmChain
    trace_id: int
    status: str
    seconds: float  # the trace's own time, database and labels set up before


@contextlib.asynccontextmanager
async def traced_case(sc: Scenario, url: str, args: argparse.Namespace, db_prefix: str,
                      label: str) -> AsyncIterator[CaseRun]:
    """A fresh migrated database, the default and the case's labels, the case traced from its seeds
    by args.workers workers; the database is dropped afterwards unless args.keep."""
    pg = server_url(args.database_url)
    db_name = new_db_name(db_prefix)
    try:
        db_url = await migrated_database(pg, db_name)
        db = await Database.connect(db_url, migrate=False, max_size=6)
        client = EvmChain(url, chain=sc.chain, expected_chain_id=sc.chain_id)
        try:
            await client.connect()
            await load_default_labels(db.pool)
            await load_scenario_labels(db.pool, sc)
            trace_id = await create_trace(db.pool, client, chain=sc.chain, seeds=sc.seeds, policy={}, label=label)
            started = time.perf_counter()
            status = await run_with_workers(db.pool, {sc.chain: client}, trace_id, workers=args.workers,
                                            progress=False, timeout=args.timeout)
            yield CaseRun(db, client, trace_id, status, time.perf_counter() - started)
        finally:
            await client.close()
            await db.close()
    finally:
        if not getattr(args, "keep", False):
            await drop_database(pg, db_name)


async def evaluate_case(case: Path, args: argparse.Namespace, node: str = "devchain") -> dict[str, Any]:
    name, edges, sources, terminal_list = read_case(case)
    terminals = set(terminal_list)
    t0 = time.perf_counter()
    sc = load_case(case, seed=args.seed, noise=args.noise)
    usd = sc.tokens[0].address
    facts: dict[str, Any] = {}
    async with serving(sc, node, facts) as url:
        return await _trace_case(name, edges, sources, terminals, sc, usd, url, t0, args, node, facts)


async def _trace_case(name: str, edges: list[Any], sources: list[str], terminals: set[str], sc: Scenario, usd: str,
                      url: str, t0: float, args: argparse.Namespace, node: str,
                      facts: dict[str, Any]) -> dict[str, Any]:
    async with traced_case(sc, url, args, f"acc_{slug(name)}", f"bench:{NAME}:{name}") as run:
        db, client, trace_id, status, trace_s = run.db, run.client, run.trace_id, run.status, run.seconds
        rep = await treport.build(db.pool, trace_id, with_paths=False)
        into = {(r["to_addr"], r["asset"]): int(r["amount"]) for r in await db.pool.fetch(
            "SELECT to_addr, asset, sum(amount) AS amount FROM hops WHERE trace_id = $1 GROUP BY 1, 2",
            trace_id)}
        hops = int(await db.pool.fetchval("SELECT count(*) FROM hops WHERE trace_id = $1", trace_id))
        calls = sum(v for k, v in client.request_counts.items() if k != "http")
        by_method = dict(sorted((k, v) for k, v in client.request_counts.items() if k != "http"))

    reached = {a for a in terminals if any((a, asset) in into for asset in {usd, "native"})}
    truth = truth_at_terminals(sc, terminals, usd)
    attributed = {a: min(into.get((a, usd), 0), v) for a, v in truth.items()}
    edge_usd: dict[str, float] = {}
    for edge in edges:
        if edge.to in terminals:
            edge_usd[edge.to] = edge_usd.get(edge.to, 0.0) + edge.usd
    exit_addresses = {e.address for e in rep.exits}
    false_exits = sorted(exit_addresses - terminals)
    # A false exit that pays a terminal in the case is usually the terminal's own deposit address
    # (the case names the exchange's hot wallet, the trace stops one hop earlier, at the
    # customer's deposit address): counted apart, since it points at the same off-ramp.
    feeds = {edge.sender for edge in edges if edge.to in terminals}
    fed = {edge.to for edge in edges if edge.sender in exit_addresses and edge.to in terminals}
    # Why each false exit was taken for an off-ramp: the label or behaviour that decided it.
    why: dict[str, dict[str, Any]] = {}
    for e in rep.exits:
        if e.address in terminals:
            continue
        w = why.setdefault(e.address, {"address": e.address, "entity": e.entity, "category": e.category,
                                       "reason": e.reason, "pays_a_terminal": e.address in feeds, "usd": 0.0})
        if e.asset == usd:
            w["usd"] = round(w["usd"] + e.amount / USD, 2)
    false_usd = sum(e.amount for e in rep.exits if e.address not in terminals and e.asset == usd) / USD
    # The same off-ramp one hop early: an exit that pays terminals in the case hands its flagged USD
    # on to them (split as the case's edges from it split), e.g. a deposit address in front of the
    # exchange wallet the case names. Scored apart from the strict figures above.
    paid: dict[str, dict[str, float]] = {}
    sent: dict[str, float] = {}
    for edge in edges:
        if edge.sender in exit_addresses and edge.sender not in terminals:
            sent[edge.sender] = sent.get(edge.sender, 0.0) + edge.usd
            if edge.to in terminals:
                paid.setdefault(edge.sender, {})
                paid[edge.sender][edge.to] = paid[edge.sender].get(edge.to, 0.0) + edge.usd
    via_exit: dict[str, float] = {}
    for e in rep.exits:
        split = paid.get(e.address)
        if e.asset != usd or not split or sent[e.address] <= 0:
            continue
        for t, part in split.items():
            via_exit[t] = via_exit.get(t, 0.0) + e.amount * part / sent[e.address]
    same_offramp = {a: min(into.get((a, usd), 0) + via_exit.get(a, 0.0), v) for a, v in truth.items()}
    truth_usd = sum(truth.values()) / USD
    edges_total = sum(edge_usd.values())
    into_terminals_usd = sum(into.get((a, usd), 0) for a in terminals) / USD
    return {
        "case": name,
        "node": node,
        **facts,
        "status": status,
        "edges": len(edges),
        "sources": len(sources),
        "terminals": len(terminals),
        "terminals_with_flagged_usd_in_truth": sum(1 for v in truth.values() if v > 0),
        "terminals_reached": len(reached),
        "terminal_recall": round(len(reached) / len(terminals), 4) if terminals else None,
        "terminal_recall_of_reachable": round(
            len(reached & {a for a, v in truth.items() if v > 0}) / max(1, sum(1 for v in truth.values() if v > 0)),
            4),
        "truth_usd_at_terminals": round(truth_usd, 2),
        "attributed_usd_at_terminals": round(sum(attributed.values()) / USD, 2),
        "value_recall": round(sum(attributed.values()) / USD / truth_usd, 4) if truth_usd else None,
        "value_recall_same_offramp": (round(sum(same_offramp.values()) / USD / truth_usd, 4)
                                      if truth_usd else None),
        "edge_usd_into_terminals": round(edges_total, 2),
        "value_recall_vs_edges": round(min(into_terminals_usd, edges_total) / edges_total, 4) if edges_total else None,
        "stolen_usd": round(sc.truth.stolen.get(usd, 0) / USD, 2),
        "exits_reported": len(exit_addresses),
        "false_exits": len(false_exits),
        "false_exits_paying_a_terminal": sum(1 for a in false_exits if a in feeds),
        "terminals_reached_or_fed_by_an_exit": len(reached | fed),
        "terminal_recall_same_offramp": round(len(reached | fed) / len(terminals), 4) if terminals else None,
        "false_exit_usd": round(false_usd, 2),
        "false_exit_details": [
            w if args.addresses else {k: v for k, v in w.items() if k != "address"}
            for w in sorted(why.values(), key=lambda w: -w["usd"])[:50]],
        "hops": hops,
        "hops_per_edge": round(hops / len(edges), 2) if edges else None,
        "chain_transfers": sc.transfer_count(),
        "jsonrpc_calls": calls,
        "calls_per_1000_hops": round(1000 * calls / hops, 1) if hops else None,
        "calls_by_method": by_method,
        "trace_seconds": round(trace_s, 2),
        "seconds": round(time.perf_counter() - t0, 2),
        "missed_terminals": sorted(terminals - reached)[:50] if args.addresses else len(terminals - reached),
    }


def write_smoke_case(root: Path) -> Path:
    """A made-up three-hop case in the mftracer format (the suite must not need the real ones):
    a thief splits the money, one part goes through a wallet into an exchange deposit address,
    one into a labelled hot wallet, one stays put."""
    d = root / "smoke"
    d.mkdir(parents=True, exist_ok=True)

    def a(i: int) -> str:
        return f"0x{0xACC0000 + i:040x}"

    rows = [
        ("2024-01-01 00:00:00", 100, 1, a(1), "Thief", a(2), "", 50_000.0),
        ("2024-01-01 00:01:00", 101, 2, a(1), "Thief", a(3), "", 30_000.0),
        ("2024-01-01 00:02:00", 102, 3, a(2), "", a(4), "", 49_000.0),
        ("2024-01-01 00:03:00", 103, 4, a(4), "", a(5), "Binance_Deposit_0x5", 48_000.0),
        ("2024-01-01 00:04:00", 104, 5, a(3), "", a(6), "Kraken 4", 29_000.0),
        ("2024-01-01 00:05:00", 105, 6, a(1), "Thief", a(7), "", 5_000.0),
    ]
    lines = ["Timestamp,Block,Tx_hash,From,From_label,To,To_label,Value_in_USD"]
    for ts, block, tx, frm, fl, to, tl, usd in rows:
        lines.append(f"{ts},{block},0x{tx:064x},{frm},{fl},{to},{tl},{usd}")
    (d / "smoke.csv").write_text("\n".join(lines) + "\n")
    (d / "source_addresses.csv").write_text(a(1) + "\n")
    (d / "terminal_addresses.csv").write_text(f"{a(5)}\n{a(6)}\n")
    return d


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    nodes = ["devchain"] if args.node == "devchain" else ["devchain", "anvil"]
    results: dict[str, list[dict[str, Any]]] = {n: [] for n in nodes}
    for case in case_dirs(args.cases):
        for node in nodes:
            print(f"case {case.name} on {node}...", flush=True)
            r = await evaluate_case(case, args, node)
            print(f"  {r['status']}: {r['terminals_reached']}/{r['terminals']} terminals, value recall "
                  f"{r['value_recall']}, {r['false_exits']} false exits, {r['hops']} hops in {r['trace_seconds']}s",
                  flush=True)
            results[node].append(r)
    report: dict[str, Any] = {
        "benchmark": NAME if args.node == "devchain" else f"{NAME}_anvil",
        "smoke": bool(args.smoke),
        "cases_path": str(args.cases) if not args.smoke else "(made-up smoke case)",
        "noise": args.noise,
        "seed": args.seed,
        "policy": "default",
        "workers": args.workers,
        "cases": results["devchain"],
        "machine": machine(),
    }
    if args.node == "anvil":
        report["anvil_cases"] = results["anvil"]
        report["machine"]["anvil"] = anvil_version()
    return report


def anvil_version() -> str:
    from tracer.devchain.anvil.node import find_anvil

    out = subprocess.run([find_anvil(), "--version"], capture_output=True, text=True, timeout=30).stdout
    return out.splitlines()[0].strip() if out else "unknown"


def print_table(report: dict[str, Any]) -> None:
    print()
    print(table(
        f"Accuracy on real cases (replayed with noise {report['noise']:g}, default policy)",
        ["case", "edges", "terminals", "reached", "terminal recall", "value recall", "false exits",
         "(paying a terminal)", "false exit USD", "hops", "hops/edge"],
        [[r["case"], r["edges"], r["terminals"], r["terminals_reached"], r["terminal_recall"], r["value_recall"],
          r["false_exits"], r["false_exits_paying_a_terminal"], r["false_exit_usd"], r["hops"], r["hops_per_edge"]]
         for r in report["cases"]]))
    print()
    print(table(
        "Counting an exit that pays a terminal in the case as reaching it (the same off-ramp one hop early)",
        ["case", "terminal recall", "value recall", "false exits left"],
        [[r["case"], r["terminal_recall_same_offramp"], r["value_recall_same_offramp"],
          r["false_exits"] - r["false_exits_paying_a_terminal"]] for r in report["cases"]]))


def print_side_by_side(report: dict[str, Any]) -> None:
    """The same two tables, each figure as devchain | Anvil."""
    pairs = list(zip(report["cases"], report["anvil_cases"], strict=True))

    def both(key: str, dev: dict[str, Any], anvil: dict[str, Any]) -> str:
        return f"{dev[key]} | {anvil[key]}"

    print()
    print(table(
        f"Accuracy on real cases, devchain | Anvil (replayed with noise {report['noise']:g}, default policy)",
        ["case", "edges", "terminals", "reached", "terminal recall", "value recall", "false exits",
         "(paying a terminal)", "false exit USD", "hops", "hops/edge"],
        [[d["case"], d["edges"], d["terminals"], *(both(k, d, a) for k in (
            "terminals_reached", "terminal_recall", "value_recall", "false_exits", "false_exits_paying_a_terminal",
            "false_exit_usd", "hops", "hops_per_edge"))] for d, a in pairs]))
    print()
    print(table(
        "Counting an exit that pays a terminal in the case as reaching it, devchain | Anvil",
        ["case", "terminal recall", "value recall", "false exits left"],
        [[d["case"], both("terminal_recall_same_offramp", d, a), both("value_recall_same_offramp", d, a),
          f"{d['false_exits'] - d['false_exits_paying_a_terminal']} | "
          f"{a['false_exits'] - a['false_exits_paying_a_terminal']}"] for d, a in pairs]))
    print()
    print(table(
        "Anvil runs (archive-like node; the replay executed as real transactions first)",
        ["case", "transactions", "executed in s", "trace s (devchain | Anvil)", "JSON-RPC calls (devchain | Anvil)"],
        [[a["case"], a["anvil_transactions"], a["anvil_execution_seconds"], both("trace_seconds", d, a),
          both("jsonrpc_calls", d, a)] for d, a in pairs]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cases", nargs="?", type=Path,
                        help="a case folder, or a folder of them (e.g. ../shared/data/cases/mftracer)")
    parser.add_argument("--noise", type=float, default=1.0, help="replay noise scale (default 1.0)")
    parser.add_argument("--seed", type=int, default=0, help="replay noise seed")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per case trace")
    parser.add_argument("--keep", action="store_true", help="keep the per-case databases")
    parser.add_argument("--node", choices=NODES, default="devchain",
                        help="anvil: also execute each replay on Anvil and trace it there (side by side)")
    # Off by default: results are committed, and the cases' contents must not be copied into the project.
    parser.add_argument("--addresses", action="store_true",
                        help="list the addresses of false exits and missed terminals in the JSON")
    add_common_args(parser)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tracer-bench-accuracy-") as tmp:
        if args.smoke and args.cases is None:
            args.cases = write_smoke_case(Path(tmp))
        if args.cases is None:
            parser.error("give the case folder (e.g. ../shared/data/cases/mftracer), or --smoke")
        report = asyncio.run(main_async(args))
    if args.node == "anvil":
        print_side_by_side(report)
    else:
        print_table(report)
    write_result(report["benchmark"], report, args.smoke, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
