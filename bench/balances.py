"""What a node without historical state costs a trace: prior balances derived from history
instead of read from state.

Generates a devchain scenario, serves it twice over HTTP, both charging gas to balances as a real
chain does: once keeping every state (an archive node: balances read at old blocks), once
keeping only the newest state (`--prune-history`: old-state reads answer Anvil's
BlockOutOfRangeError, so the worker derives each balance from the head balance, the transfers
since and the fees since). Traces the scenario's seeds on each with embedded workers on a fresh
database and prints wall time, JSON-RPC requests by method and HTTP posts, and whether both
traces wrote the same hops (they must: the derivation is exact on the devchain).

    python bench/balances.py             # ~20k-transfer scenario
    python bench/balances.py --smoke     # tiny, a few seconds (run by the tests)
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from common import add_common_args, server_url, throwaway_database, write_result  # noqa: E402

from tracer.chains.evm import EvmChain  # noqa: E402
from tracer.demo import load_scenario_labels  # noqa: E402
from tracer.devchain.scenario import Scenario, ScenarioParams, generate  # noqa: E402
from tracer.devchain.server import DevChainServer  # noqa: E402
from tracer.engine.service import create_trace  # noqa: E402
from tracer.runner import run_with_workers  # noqa: E402
from tracer.store.db import Database  # noqa: E402


async def _one(scenario: Scenario, server: str, keep_states: int | None, workers: int) -> dict[str, Any]:
    node = DevChainServer(scenario, charge_gas=True, keep_states=keep_states)
    url = await node.start("127.0.0.1", 0)
    try:
        async with throwaway_database(server, "balances") as db_url:
            db = await Database.connect(db_url, migrate=False)
            try:
                await load_scenario_labels(db.pool, scenario)
                client = EvmChain(url, chain=scenario.chain, expected_chain_id=scenario.chain_id)
                async with client:
                    started = time.perf_counter()
                    trace_id = await create_trace(db.pool, client, chain=scenario.chain, seeds=scenario.seeds,
                                                  policy={})
                    status = await run_with_workers(db.pool, {scenario.chain: client}, trace_id, workers=workers,
                                                    progress=False, timeout=3600)
                    seconds = time.perf_counter() - started
                    counts = dict(client.request_counts)
                row = await db.pool.fetchrow(
                    "SELECT balance_method, balance_method_reason FROM traces WHERE id = $1", trace_id)
                hops = sorted(tuple(r) for r in await db.pool.fetch(
                    """SELECT t.tx_hash, t.position, h.from_addr, h.to_addr, h.amount::text, h.status
                       FROM hops h JOIN transfers t ON t.id = h.transfer_id WHERE h.trace_id = $1""", trace_id))
            finally:
                await db.close()
    finally:
        await node.stop()
    return {"status": status, "seconds": seconds, "counts": counts, "hops": hops,
            "balance_method": row["balance_method"], "balance_method_reason": row["balance_method_reason"]}


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=20_000, help="scenario size (transfers)")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--workers", type=int, default=4)
    add_common_args(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    size = 300 if args.smoke else args.size
    scenario = generate(ScenarioParams.for_size(size, seed=args.seed))
    server = server_url(args.database_url)
    runs = {"archive (node_state)": await _one(scenario, server, None, args.workers),
            "newest state only (derived_from_history)": await _one(scenario, server, 1, args.workers)}
    same = len({tuple(r["hops"]) for r in runs.values()}) == 1
    methods = sorted({m for r in runs.values() for m in r["counts"] if m != "http"})
    print(f"scenario: {scenario.tx_count} transactions, {len(scenario.blocks)} blocks; "
          f"hops identical on both nodes: {same}")
    print(f"{'node':<42} {'status':<7} {'method':<21} {'seconds':>8} {'requests':>9} {'http':>6} {'hops':>6}")
    for name, r in runs.items():
        total = sum(v for k, v in r["counts"].items() if k != "http")
        print(f"{name:<42} {r['status']:<7} {r['balance_method']:<21} {r['seconds']:>8.2f} {total:>9} "
              f"{r['counts'].get('http', 0):>6} {len(r['hops']):>6}")
    print("\nrequests by method:")
    print(f"{'method':<28}" + "".join(f"{n.split(' ')[0]:>12}" for n in runs))
    for m in methods:
        print(f"{m:<28}" + "".join(f"{r['counts'].get(m, 0):>12}" for r in runs.values()))
    report = {
        "smoke": args.smoke, "size": size, "transactions": scenario.tx_count, "hops_identical": same,
        "runs": {name: {k: v for k, v in r.items() if k != "hops"} | {"hops": len(r["hops"])}
                 for name, r in runs.items()},
    }
    write_result("balances", report, args.smoke, args.out, database_url=server)
    return 0 if same and all(r["status"] == "done" for r in runs.values()) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
