#!/usr/bin/env python3
"""What indirect-exposure screening costs: `source_of_funds` (tracer/engine/backward.py, the
walk behind GET /v1/screen?depth=N) from a generated case's deposit addresses at several depths.

A devchain serves the scenario over JSON-RPC; labels are the scenario's plus the thieves' wallets
as `hacker`. For each depth it prints, over the deposit addresses screened: wallets walked,
sources found, JSON-RPC requests (batch members) and HTTP requests, wall time (median and max),
how many walks the size limit cut, and how many found stolen money. No Postgres is needed.

    python bench/screen.py                 # 20,000-transfer scenario, depths 1 2 4 6
    python bench/screen.py --smoke         # tiny, a few seconds (the test suite runs it)
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import add_common_args, write_result

from tracer.chains.evm import EvmChain
from tracer.devchain.scenario import ScenarioParams, generate
from tracer.devchain.server import DevChainServer
from tracer.engine import backward
from tracer.labels.vocab import normalize_category


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=20_000, help="scenario size (transfers)")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--depths", default="1,2,4,6")
    parser.add_argument("--targets", type=int, default=10, help="deposit addresses screened per depth")
    parser.add_argument("--max-addresses", type=int, default=500)
    add_common_args(parser, database=False)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    size = 400 if args.smoke else args.size
    depths = [1, 2] if args.smoke else [int(d) for d in args.depths.split(",")]
    scenario = generate(ScenarioParams.for_size(size, seed=args.seed))
    known: dict[str, backward.SourceLabel] = {}
    for lb in scenario.labels:
        known[lb.address] = backward.SourceLabel(lb.entity, normalize_category(lb.category)[0])
    for seed in scenario.seeds:
        known[seed] = backward.SourceLabel("thief", "hacker")

    async def lookup(addresses: Sequence[str]) -> dict[str, backward.SourceLabel]:
        return {a: known[a] for a in addresses if a in known}

    # The deposit addresses the stolen money reached first (the ones a screening must flag), then
    # the other deposit addresses (customers'), up to --targets.
    laundering = sorted({o.address for o in scenario.truth.offramps if o.kind == "deposit_address"})
    others = sorted(set(scenario.truth.deposit_addresses) - set(laundering))
    targets = (laundering + others)[: (3 if args.smoke else args.targets)]
    node = DevChainServer(scenario)
    url = await node.start("127.0.0.1", 0)
    runs: list[dict[str, Any]] = []
    try:
        client = EvmChain(url, chain=scenario.chain, expected_chain_id=scenario.chain_id)
        async with client:
            head = await client.head()
            for depth in depths:
                seconds, walked, sources, rpc, http, cut, stolen = [], [], [], [], [], 0, 0
                for target in targets:
                    before = dict(client.request_counts)
                    started = time.perf_counter()
                    r = await backward.source_of_funds(client, scenario.chain, lookup, target, from_block=1,
                                                       to_block=head, depth=depth, max_addresses=args.max_addresses)
                    seconds.append(time.perf_counter() - started)
                    after = dict(client.request_counts)
                    http.append(after.get("http", 0) - before.get("http", 0))
                    rpc.append(sum(v for k, v in after.items() if k != "http")
                               - sum(v for k, v in before.items() if k != "http"))
                    walked.append(r.walked)
                    sources.append(len(r.sources))
                    cut += r.truncated
                    stolen += any(s.flagged for s in r.sources)
                row = {"depth": depth, "targets": len(targets), "walked_median": statistics.median(walked),
                       "walked_max": max(walked), "sources_median": statistics.median(sources),
                       "rpc_requests_median": statistics.median(rpc), "http_requests_median": statistics.median(http),
                       "seconds_median": round(statistics.median(seconds), 4), "seconds_max": round(max(seconds), 4),
                       "truncated": cut, "found_stolen": stolen}
                runs.append(row)
    finally:
        await node.stop()
    print(f"scenario: {scenario.transfer_count()} transfers, {len(scenario.blocks)} blocks; "
          f"{len(targets)} deposit addresses screened per depth "
          f"({len(set(targets) & set(laundering))} got stolen money), "
          f"at most {args.max_addresses} wallets a walk")
    print(f"{'depth':>5} {'walked':>12} {'sources':>8} {'rpc req':>8} {'http':>5} {'s median':>9} {'s max':>7} "
          f"{'cut':>4} {'stolen':>6}")
    for r in runs:
        print(f"{r['depth']:>5} {r['walked_median']:>6} / {r['walked_max']:<4} {r['sources_median']:>8} "
              f"{r['rpc_requests_median']:>8} {r['http_requests_median']:>5} {r['seconds_median']:>9.3f} "
              f"{r['seconds_max']:>7.3f} {r['truncated']:>4} {r['found_stolen']:>6}")
    write_result("screen", {"smoke": args.smoke, "size": size, "seed": args.seed, "runs": runs}, args.smoke,
                 args.out)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
