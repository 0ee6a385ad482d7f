"""Tracing speed and RPC efficiency: one big trace, 1, 2 and 4 worker processes, a paid-node budget.

A generated chain of more than a million transfers whose laundering tree is large enough for a
trace of more than 100,000 hops is served by the devchain JSON-RPC server with 30 ms latency per
HTTP request and a cap of 50 requests/s (HTTP 429 beyond it, as a typical paid provider does).
For each fleet size the bench starts real `tracer worker` processes against a fresh Postgres
database, starts a trace from the thieves' wallets, waits for it to finish and prints wall time,
hops/s, JSON-RPC requests per 1,000 hops, the lower bound and the ratio to it, and each worker's
peak RSS (item 6 of the benchmark issue; the API's is measured by bench/memory.py).

    python bench/trace_speed.py                       # ~1.25M transfers, ~110k hops, 1/2/4 workers
    python bench/trace_speed.py --workers 4           # one fleet size
    python bench/trace_speed.py --smoke               # tiny, seconds (the test suite runs it)

Policy. The default policy stops following below 0.05% of the stolen total, which caps any trace
at a few thousand followed hops, however big the laundering. This bench measures how fast the
engine walks a big tree, so it uses the default policy with `min_share` 0: every flagged wei is
followed. The scenario is `ScenarioParams.for_size(N)` (noise, exchanges, hubs, mixers) with its
laundering knobs scaled up (`--scale`): thousands of fan-out wallets, peel chains and batch
payouts, each hop carrying at least 1e-7 of the theft.

The lower bound: what must an ideal client ask? The trace is a breadth-first walk: the wallets
at depth d are known only once the transfers of depth d-1 are, so a client needs at least one
round of requests per depth level. In round d it must read, for the A_d addresses of that level
whose history decides something (followed wallets, and the deposit addresses and hubs recognised
by their behaviour; labelled services are judged without a request):

- native and internal transfers in and out: 1 `trace_filter` with fromAddress and toAddress in
  union mode per 500 addresses (the address-list size our client and common providers allow);
  incoming transfers are needed because the haircut model dilutes taint by clean inflows;
- ERC-20 transfers: 2 `eth_getLogs` (Transfer with the addresses in topic 1, then in topic 2) per
  500 addresses: one filter cannot OR two topic positions;
- the balance just before the first flagged inflow, per followed non-seed wallet and asset
  (`eth_getBalance` / `balanceOf`): clean money already there dilutes the flagged share, and it
  cannot be summed from transfers (genesis allocations, gas);
- whether an internal transfer it follows was undone by a reverting parent call (trace_filter
  does not say): 1 `trace_block` per block holding followed internal transfers;
- block timestamps for the report: the first and last block of the hops into each exit;
- decimals and symbol of each token that carried flagged money (2 `eth_call`s per token), plus
  `eth_chainId` and `eth_blockNumber` once.

These calls are counted from the finished trace itself (its depth levels, wallets, hops). Paging
of large results is left out (the devchain does not cap results), so the bound is below any real
client. The devchain's cap counts HTTP requests, and a JSON-RPC batch is one HTTP request; an
ideal client packs each round into batches of at most 100 calls (the batch size our client and
many providers use). So the bound on wall time is max(posts / cap, rounds x latency), with posts =
sum over rounds of ceil(calls in the round / 100). Providers that bill each call of a batch make
the bound calls / cap instead; that figure is in the JSON too (`seconds_if_cap_counted_calls`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from common import (
    WorkerFleet,
    add_common_args,
    create_database,
    drop_database,
    machine,
    migrated_database,
    new_db_name,
    postgres_info,
    sample_while,
    server_url,
    table,
    write_result,
)

from tracer.config import DEFAULT_BATCH_SIZE
from tracer.demo import load_scenario_labels
from tracer.devchain.scenario import Scenario, ScenarioParams, generate
from tracer.devchain.server import DevChainServer
from tracer.engine.service import create_trace
from tracer.store.db import create_pool

NAME = "trace_speed"
ADDRESSES_PER_REQUEST = 500  # EvmChain's default address-list size per trace_filter/getLogs
BATCH_CALLS = 100  # EvmChain's default JSON-RPC batch size


def bench_params(transfers: int, scale: float, seed: int) -> ScenarioParams:
    """`for_size` noise with a laundering tree of about `scale` x 78k hops (the default policy, min_share 0)."""

    def n(base: float, lo: int = 1) -> int:
        return max(lo, round(base * scale))

    return replace(
        ScenarioParams.for_size(transfers, seed=seed),
        # Every hop keeps at least 1e-7 of the theft: enough for a tree of millions of hops.
        min_hop_share=1e-7,
        n_fanout=n(8000, 8),
        n_consolidation=n(100, 2),
        n_peel_chains=n(2000, 2),
        peel_length=12,
        n_batch_payouts=n(300),
        batch_size=12,
        n_token_fanout=n(3000, 4),
        n_token_peel_chains=n(600),
        n_launder_deposits=n(1500, 4),
        n_mixer_deposits=30,
    )


class _Head:
    """The trace's block range comes from the chain head; ask the chain object, not the node, so
    the bench itself spends none of the node budget it measures."""

    def __init__(self, server: DevChainServer) -> None:
        self.server = server

    async def head(self) -> int:
        return self.server.chain.head

    async def block_times(self, numbers: Sequence[int]) -> dict[int, int]:
        blocks = self.server.chain.blocks
        return {n: blocks[n].timestamp for n in numbers}


async def lower_bound(conn: Any, trace_id: int, chain: str, latency: float, rate: float | None) -> dict[str, Any]:
    """The requests an ideal client cannot avoid for this trace (see the module docstring)."""
    history = {r["depth"]: r["n"] for r in await conn.fetch(
        """SELECT j.depth, count(*) AS n FROM jobs j
           JOIN address_coverage c ON c.chain = $2 AND c.address = j.address
           WHERE j.trace_id = $1 AND j.kind = 'address' GROUP BY j.depth""", trace_id, chain)}
    balances = {r["depth"]: r["n"] for r in await conn.fetch(
        """SELECT j.depth, count(*) AS n FROM (SELECT DISTINCT to_addr, asset FROM hops WHERE trace_id = $1) x
           JOIN jobs j ON j.trace_id = $1 AND j.address = x.to_addr
           WHERE j.role = 'followed' AND NOT j.is_seed GROUP BY j.depth""", trace_id)}
    # A hop at depth d is known after round d-1, so its checks can ride in round d.
    reverts = {r["d"]: r["n"] for r in await conn.fetch(
        """SELECT d, count(*) AS n FROM (SELECT block_number, min(depth) AS d FROM hops
               WHERE trace_id = $1 AND kind = 'internal' AND status = 'followed' GROUP BY block_number) b
           GROUP BY d""", trace_id)}
    times = {r["d"]: r["n"] for r in await conn.fetch(
        """SELECT d, count(*) AS n FROM (
               SELECT b, min(d) AS d FROM (
                   SELECT min(block_number) AS lo, max(block_number) AS hi, min(depth) AS d FROM hops
                   WHERE trace_id = $1 AND status = 'exit' GROUP BY to_addr) e,
               LATERAL (VALUES (e.lo), (e.hi)) AS v(b) GROUP BY b) x
           GROUP BY d""", trace_id)}
    tokens = int(await conn.fetchval(
        "SELECT count(DISTINCT asset) FROM hops WHERE trace_id = $1 AND asset <> 'native'", trace_id))
    depths = sorted(set(history) | set(balances) | set(reverts) | set(times))
    rounds: list[dict[str, int]] = []
    for d in depths:
        hist = 3 * math.ceil(history.get(d, 0) / ADDRESSES_PER_REQUEST)
        calls = hist + balances.get(d, 0) + reverts.get(d, 0) + times.get(d, 0)
        if d == 0:
            calls += 2  # eth_chainId, eth_blockNumber
        if d == 1:
            calls += 2 * tokens  # tokens are known once the seeds' transfers are
        if calls:
            rounds.append({"depth": d, "addresses": history.get(d, 0), "calls": calls,
                           "posts": math.ceil(calls / BATCH_CALLS)})
    calls_min = sum(r["calls"] for r in rounds)
    posts_min = sum(r["posts"] for r in rounds)
    by_cap = posts_min / rate if rate else 0.0
    return {
        "calls": calls_min,
        "http_posts": posts_min,
        "rounds": len(rounds),
        "history_addresses": sum(history.values()),
        "balance_calls": sum(balances.values()),
        "revert_checks": sum(reverts.values()),
        "block_time_calls": sum(times.values()),
        "tokens": tokens,
        "seconds": round(max(by_cap, len(rounds) * latency), 3),
        "seconds_if_cap_counted_calls": round(calls_min / rate, 3) if rate else None,
        "per_round": rounds,
    }


async def outcome(conn: Any, trace_id: int) -> dict[str, Any]:
    """What the trace found, to check every fleet size found the same."""
    row = await conn.fetchrow(
        """SELECT count(*) AS hops, coalesce(sum(amount), 0)::text AS amount,
                  count(*) FILTER (WHERE status = 'exit') AS exit_hops,
                  coalesce(sum(amount) FILTER (WHERE status = 'exit'), 0)::text AS exit_amount,
                  count(DISTINCT to_addr) FILTER (WHERE status = 'exit') AS exits,
                  coalesce(max(depth), 0) AS max_depth
           FROM hops WHERE trace_id = $1""", trace_id)
    addresses = await conn.fetchval("SELECT count(*) FROM jobs WHERE trace_id = $1 AND kind = 'address'", trace_id)
    return {**dict(row), "addresses": addresses}


async def run_fleet(
    args: argparse.Namespace, sc: Scenario, server: DevChainServer, server_pg: str, template: str, workers: int,
) -> dict[str, Any]:
    name = new_db_name(f"speed_w{workers}")
    url = await create_database(server_pg, name, template=template)
    # No statement timeout: the bench's own queries over the finished trace may take a while.
    pool = await create_pool(url, min_size=1, max_size=2, command_timeout=None)
    fleet = WorkerFleet(url, server.url, workers, Path(tempfile.mkdtemp(prefix="tracer-bench-workers-")),
                        extra_args=["--concurrency", str(args.concurrency), "--batch-size", str(args.batch_size)])
    stop = asyncio.Event()
    sampler: asyncio.Task[None] | None = None
    try:
        await fleet.start()
        sampler = asyncio.create_task(sample_while(fleet, stop))
        # The node budget is the trace's alone: workers' connect probes are in, set-up is not.
        await asyncio.sleep(0.5)
        server.request_counts.clear()
        started = time.monotonic()
        trace_id = await create_trace(pool, _Head(server), chain=sc.chain, seeds=sc.seeds,
                                      policy={"min_share": 0.0}, label=f"bench:{NAME}:{workers}")
        last = 0.0
        progress: list[list[float]] = []
        loads: list[float] = []
        while True:
            status = await pool.fetchval("SELECT status FROM traces WHERE id = $1", trace_id)
            if status not in ("queued", "running"):
                break
            if not fleet.alive():
                raise RuntimeError("a worker died:\n" + fleet.logs())
            elapsed = time.monotonic() - started
            if elapsed > args.timeout:
                raise RuntimeError(f"trace not done after {args.timeout:.0f}s")
            if elapsed - last >= args.progress_every:
                last = elapsed
                loads.append(os.getloadavg()[0])
                p = await pool.fetchrow(
                    """SELECT (SELECT count(*) FROM hops WHERE trace_id = $1) AS hops,
                              (SELECT count(*) FROM jobs WHERE trace_id = $1 AND state <> 'done') AS frontier""",
                    trace_id)
                c = server.request_counts
                print(f"  [{workers}w {elapsed:6.0f}s] {p['hops']:>8} hops, frontier {p['frontier']:>6}, "
                      f"{c['http']:>6} posts ({c['http_429']} refused 429), load {loads[-1]:.1f}", flush=True)
                progress.append([round(elapsed, 1), p["hops"], c["http"]])
            await asyncio.sleep(0.2)
        times = await pool.fetchrow("SELECT created_at, finished_at, status, error FROM traces WHERE id = $1",
                                    trace_id)
        wall = (times["finished_at"] - times["created_at"]).total_seconds() if times["finished_at"] else (
            time.monotonic() - started)
        counts = Counter(server.request_counts)
        fleet.sample()
        async with pool.acquire() as conn:
            # The tables grew from nothing during the trace; without statistics (a new database,
            # autovacuum off or not yet run) the planner picks nested scans that take minutes.
            await conn.execute("ANALYZE hops; ANALYZE jobs; ANALYZE address_coverage")
            found = await outcome(conn, trace_id)
            bound = await lower_bound(conn, trace_id, sc.chain, args.latency_ms / 1000, args.rate_limit)
    finally:
        stop.set()
        if sampler is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
        fleet.stop()
        await pool.close()
        if not args.keep:
            await drop_database(server_pg, name)
    if times["status"] != "done":
        raise RuntimeError(f"trace ended {times['status']}: {times['error']}\n{fleet.logs()}")
    hops = int(found["hops"])
    calls = sum(v for k, v in counts.items() if not k.startswith("http"))
    posts = counts["http"] - counts["http_429"]
    peaks = sorted(fleet.peaks.values())
    return {
        "workers": workers,
        "database": name if args.keep else None,
        "wall_seconds": round(wall, 2),
        "hops": hops,
        "hops_per_second": round(hops / wall, 1) if wall else None,
        "outcome": found,
        "jsonrpc_calls": calls,
        "http_posts_served": posts,
        "http_429": counts["http_429"],
        "calls_per_1000_hops": round(1000 * calls / hops, 2) if hops else None,
        "posts_per_1000_hops": round(1000 * posts / hops, 2) if hops else None,
        "calls_by_method": dict(sorted((k, v) for k, v in counts.items() if not k.startswith("http"))),
        "lower_bound": bound,
        "calls_ratio_to_bound": round(calls / bound["calls"], 2) if bound["calls"] else None,
        "posts_ratio_to_bound": round(posts / bound["http_posts"], 2) if bound["http_posts"] else None,
        "wall_ratio_to_bound": round(wall / bound["seconds"], 2) if bound["seconds"] else None,
        "worker_peak_rss_mb": [round(p, 1) for p in peaks],
        # Other work on the machine slows a run down: the 1-minute load average while it ran.
        "load_average_during": round(sum(loads) / len(loads), 2) if loads else None,
        "progress": progress,
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.perf_counter()
    sc = generate(bench_params(args.transfers, args.scale, args.seed))
    gen_s = time.perf_counter() - t0
    transfers = sc.transfer_count()
    print(f"scenario: {sc.summary()} (generated in {gen_s:.0f}s)", flush=True)
    t0 = time.perf_counter()
    server = DevChainServer(sc, latency=args.latency_ms / 1000, rate_limit=args.rate_limit)
    rpc = await server.start("127.0.0.1", 0)
    print(f"devchain: {rpc}, {args.latency_ms:g} ms per request, cap {args.rate_limit} requests/s "
          f"(indexed in {time.perf_counter() - t0:.0f}s)", flush=True)
    pg = server_url(args.database_url)
    template = new_db_name("speed_tpl")
    runs: list[dict[str, Any]] = []
    try:
        url = await migrated_database(pg, template)
        pool = await create_pool(url, min_size=1, max_size=1)
        try:
            await load_scenario_labels(pool, sc)
        finally:
            await pool.close()  # a template database must have no sessions when it is copied
        for n in args.workers:
            print(f"trace with {n} worker process(es)...", flush=True)
            run = await run_fleet(args, sc, server, pg, template, n)
            print(f"  done: {run['hops']} hops in {run['wall_seconds']:.1f}s, {run['jsonrpc_calls']} calls, "
                  f"{run['http_posts_served']} posts, {run['http_429']} refused", flush=True)
            runs.append(run)
    finally:
        await server.stop()
        await drop_database(pg, template)
    reference = runs[0]["outcome"]
    for run in runs:
        # The engine promises the same hops whatever the fleet; compare what was found, and
        # separately whether each hop got the same verdict (exit / followed / stopped).
        run["same_result_as_first"] = run["outcome"] == reference
        run["same_hops_and_amounts_as_first"] = all(
            run["outcome"][k] == reference[k] for k in ("hops", "amount", "addresses"))
    return {
        "benchmark": NAME,
        "smoke": bool(args.smoke),
        "scenario": {"transfers": transfers, "transactions": sc.tx_count, "blocks": len(sc.blocks),
                     "seeds": len(sc.seeds), "laundering_wallets": len(sc.truth.launderers),
                     "transfers_arg": args.transfers, "scale": args.scale, "seed": args.seed,
                     "generate_seconds": round(gen_s, 1)},
        "node": {"latency_ms": args.latency_ms, "rate_limit_per_s": args.rate_limit},
        "worker": {"concurrency": args.concurrency, "batch_size": args.batch_size},
        "policy": {"min_share": 0.0},
        "machine": machine(),
        "postgres": await postgres_info(pg),
        "runs": runs,
    }


def print_tables(report: dict[str, Any]) -> None:
    sc = report["scenario"]
    node = report["node"]
    print()
    print(table(
        f"Tracing speed: {sc['transfers']:,} transfers, {node['latency_ms']:g} ms/request, "
        f"cap {node['rate_limit_per_s']} requests/s",
        ["workers", "wall s", "hops", "hops/s", "calls/1k hops", "posts/1k hops", "429s", "bound s",
         "x bound", "same", "peak RSS MB", "load"],
        [[r["workers"], r["wall_seconds"], r["hops"], r["hops_per_second"], r["calls_per_1000_hops"],
          r["posts_per_1000_hops"], r["http_429"], r["lower_bound"]["seconds"], r["wall_ratio_to_bound"],
          "yes" if r["same_result_as_first"] else "NO",
          max(r["worker_peak_rss_mb"]) if r["worker_peak_rss_mb"] else None, r["load_average_during"]]
         for r in report["runs"]]))
    print()
    print(table(
        "JSON-RPC requests against the lower bound (what an ideal client must ask)",
        ["workers", "calls", "bound calls", "x", "posts", "bound posts", "x", "rounds"],
        [[r["workers"], r["jsonrpc_calls"], r["lower_bound"]["calls"], r["calls_ratio_to_bound"],
          r["http_posts_served"], r["lower_bound"]["http_posts"], r["posts_ratio_to_bound"],
          r["lower_bound"]["rounds"]] for r in report["runs"]]))
    first = report["runs"][0]
    print()
    print(table("JSON-RPC calls by method (first run)", ["method", "calls", "per 1k hops"],
                [[m, v, 1000 * v / first["hops"] if first["hops"] else None]
                 for m, v in sorted(first["calls_by_method"].items(), key=lambda kv: -kv[1])]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transfers", type=int, default=1_000_000, help="noise size (for_size), default 1000000")
    parser.add_argument("--scale", type=float, default=1.4,
                        help="laundering tree size; 1.0 is ~78k hops (default 1.4)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 4],
                        help="fleet sizes, comma-separated (default 1,2,4)")
    parser.add_argument("--concurrency", type=int, default=2, help="batch loops per worker process (default 2)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                        help=f"frontier addresses per batch (default {DEFAULT_BATCH_SIZE}, the worker's)")
    parser.add_argument("--latency-ms", type=float, default=30.0)
    parser.add_argument("--rate-limit", type=float, default=50.0, help="HTTP requests/s before 429")
    parser.add_argument("--timeout", type=float, default=4 * 3600.0, help="give up a trace after this many s")
    parser.add_argument("--progress-every", type=float, default=30.0)
    parser.add_argument("--keep", action="store_true", help="keep the per-run databases")
    add_common_args(parser)
    args = parser.parse_args(argv)
    if args.smoke:
        args.transfers, args.scale, args.workers = 3_000, 0.002, [1, 2]
        args.latency_ms, args.rate_limit, args.progress_every = 2.0, 500.0, 5.0
    report = asyncio.run(main_async(args))
    print_tables(report)
    write_result(NAME, report, args.smoke, args.out)
    if not all(r["same_result_as_first"] for r in report["runs"]):
        # Reported, not fatal: a bench measures; the engine's tests own correctness.
        print("WARNING: fleet sizes disagree on the trace's result (see same_result_as_first in the JSON)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
