"""What a trace costs on a real provider: the shared real cases and the generated bench scenario
replayed on the devchain behind a provider-like cap, side by side with the previous code.

The provider (served by this script, in its own process, on the devchain): a cap of `--rate`
calls per second where each member of a JSON-RPC batch counts as one call (a bucket of one
second's calls; a request that finds it empty gets HTTP 429 with Retry-After, a batch bigger than
the bucket passes when the bucket is full and leaves it in debt), `-32005 query returned more
than N results` on eth_getLogs / trace_filter answers over `--max-logs` (Infura's cap), and
`--latency-ms` per HTTP request. The tracer (a child process, one per case and version) runs the
trace with the default policy (the generated scenario: min_share 0, as bench/trace_speed.py) and a
client that paces itself to the same cap, counting batch members (the previous code has no pacer of
its own: the child lends it the same one, so both are compared on the calls they make).

Per case and version it prints and writes bench/results/provider_replay.json: calls per 1,000 hops
by method (counted at the node), total calls, wall time of the trace, the floor (calls / cap),
wall / floor, and whether the hops are the same as the previous code's (a digest of every hop).
Target (issue 22): <= 400 calls per 1,000 hops on every case and wall time within 1.3x of the floor.

    python bench/provider_replay.py ../shared/data/cases/mftracer         # every case + generated
    python bench/provider_replay.py ../shared/data/cases/mftracer --before none   # this code only
    python bench/provider_replay.py --smoke                               # made-up case, tiny scenario, at once

The cases are read at run time from the path given (evaluation only: nothing of them is copied
into the project, and the JSON names no address). `--before REF` (default: the commit before the
#22 RPC work) runs that code from a detached git worktree in /tmp, with its own migrations.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve()
ROOT = SCRIPT.parent.parent
# The child runs another version of tracer: its tree goes first on the path, and ROOT (whose
# bench/common.py would otherwise put the current tree first) last.
CODE = Path(os.environ.get("TRACER_BENCH_CODE") or ROOT)
sys.path.insert(0, str(CODE))
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

from common import (  # noqa: E402
    add_common_args,
    before_tree,
    drop_database,
    head_commit,
    migrated_database,
    new_db_name,
    server_url,
    slug,
    table,
    write_result,
)

NAME = "provider_replay"
#: The code before issue 22's RPC economy work of session 4 (headers-only and token names done).
BEFORE = "a86e49f"
TARGET_CALLS_PER_1000 = 400
TARGET_WALL_RATIO = 1.3
GENERATED = "generated"


# ------------------------------------------------------------------------------- the scenarios


def scenario_for(case: str, args: argparse.Namespace) -> Any:
    """The chain of a case: a shared real case replayed with noise, or the generated bench's."""
    if case == GENERATED:
        from trace_speed import bench_params

        from tracer.devchain.scenario import generate

        return generate(bench_params(args.gen_transfers, args.gen_scale, args.seed))
    from tracer.devchain.replay import load_case

    return load_case(Path(case), seed=args.seed, noise=args.noise)


def policy_for(case: str) -> dict[str, Any]:
    # The generated bench follows every flagged wei (bench/trace_speed.py); real cases the default.
    return {"min_share": 0.0} if case == GENERATED else {}


# --------------------------------------------------------------------------------- the provider


class CallBucket:
    """`rate` calls/s, a bucket of one second's calls. A request of n calls passes when the bucket
    holds min(n, capacity) and takes n (a big batch leaves it in debt): over any stretch of time
    no more than rate x seconds + capacity calls pass."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def take(self, n: int) -> bool:
        self._refill()
        if self.tokens >= min(n, self.capacity):
            self.tokens -= n
            return True
        return False

    def wait_for(self, n: int) -> float:
        """Seconds until `take(n)` would pass."""
        self._refill()
        need = min(n, self.capacity) - self.tokens
        return max(0.0, need / self.rate)


def capped_server(sc: Any, args: argparse.Namespace) -> Any:
    """The devchain with the provider's cap counting batch members (HTTP 429 beyond it)."""
    from aiohttp import web

    from tracer.devchain.server import DevChainServer

    class CappedDevChain(DevChainServer):
        def __init__(self) -> None:
            super().__init__(sc, latency=args.latency_ms / 1000.0, max_logs=args.max_logs)
            self.bucket = CallBucket(args.rate)
            self.refused_calls = 0
            self.served_calls = 0

        async def _handle(self, request: web.Request) -> web.StreamResponse:
            body = await request.read()
            try:
                payload = json.loads(body)
                calls = len(payload) if isinstance(payload, list) else 1
            except ValueError:
                calls = 1
            if not self.bucket.take(calls):
                self.refused_calls += calls
                self.request_counts["http_429"] += 1
                return web.Response(status=429, text=self.TOO_MANY_TEXT, headers={"Retry-After": "1"})
            self.served_calls += calls
            early, _ = await self._misbehave(request)
            if early is not None:
                return early
            answer = self.handle_body(body)
            if answer is None:
                return web.Response(status=204)
            return web.Response(body=json.dumps(answer, separators=(",", ":")).encode(),
                                content_type="application/json")

    return CappedDevChain()


# ------------------------------------------------------------------------- the tracer (a child)


def install_pacer(rate: float) -> None:
    """Make every JSON-RPC POST of this process wait for the provider's bucket (batch members
    counted one by one), so that the trace is paced to the cap instead of refused by it. The wait
    sits right before the bytes go out (inside the transport's concurrency limit): a pacer in
    front of the queue would let posts that waited there reach the node in a bunch."""
    from tracer.chains import jsonrpc

    bucket = CallBucket(rate)
    lock = asyncio.Lock()
    original = jsonrpc.RpcHttpProvider.post_raw

    async def paced(self: Any, payload: bytes) -> tuple[int, dict[str, str], bytes]:
        calls = payload.count(b'"jsonrpc"') or 1
        async with lock:
            # The bucket fills with time, not on an event: sleep until it holds enough.
            while not bucket.take(calls):  # noqa: ASYNC110
                await asyncio.sleep(max(bucket.wait_for(calls), 0.001))
        return await original(self, payload)

    jsonrpc.RpcHttpProvider.post_raw = paced  # type: ignore[method-assign]


async def hop_digest(pool: Any, trace_id: int) -> tuple[str, dict[str, Any]]:
    rows = await pool.fetch(
        """SELECT t.tx_hash, t.position, h.from_addr, h.to_addr, h.asset, h.amount::text AS amount, h.status,
                  coalesce(h.reason, '') AS reason
           FROM hops h JOIN transfers t ON t.id = h.transfer_id WHERE h.trace_id = $1""", trace_id)
    lines = sorted("|".join(str(v) for v in r.values()) for r in rows)
    digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]
    exits = await pool.fetchrow(
        """SELECT count(DISTINCT to_addr) AS exits, coalesce(sum(amount), 0)::text AS amount
           FROM hops WHERE trace_id = $1 AND status = 'exit'""", trace_id)
    return digest, {"exit_addresses": exits["exits"], "exit_amount": exits["amount"]}


def module_home(module: Any) -> str:
    return os.path.dirname(os.path.realpath(module.__file__))


async def child(args: argparse.Namespace) -> dict[str, Any]:
    import tracer
    from tracer.chains.evm import EvmChain
    from tracer.demo import load_scenario_labels
    from tracer.engine.service import create_trace
    from tracer.labels.defaults import load_default_labels
    from tracer.runner import run_with_workers
    from tracer.store.db import Database

    sc = scenario_for(args.case, args)
    install_pacer(args.rate)
    pg = server_url(args.database_url)
    db_name = new_db_name(f"prov_{slug(Path(args.case).name)}")
    try:
        db_url = await migrated_database(pg, db_name)
        db = await Database.connect(db_url, migrate=False, max_size=6)
        client = EvmChain(args.rpc, chain=sc.chain, expected_chain_id=sc.chain_id)
        try:
            await client.connect()
            await load_default_labels(db.pool)
            await load_scenario_labels(db.pool, sc)
            started = time.perf_counter()
            trace_id = await create_trace(db.pool, client, chain=sc.chain, seeds=sc.seeds,
                                          policy=policy_for(args.case), label=f"bench:{NAME}")
            status = await run_with_workers(db.pool, {sc.chain: client}, trace_id, workers=args.workers,
                                            progress=False, timeout=args.timeout)
            wall = time.perf_counter() - started
            hops = int(await db.pool.fetchval("SELECT count(*) FROM hops WHERE trace_id = $1", trace_id))
            digest, exits = await hop_digest(db.pool, trace_id)
            client_calls = {k: v for k, v in client.request_counts.items() if k != "http"}
        finally:
            await client.close()
            await db.close()
    finally:
        await drop_database(pg, db_name)
    return {"status": status, "wall_seconds": round(wall, 2), "hops": hops, "hop_digest": digest, **exits,
            "client_calls": sum(client_calls.values()), "client_http_posts": client.request_counts["http"],
            "tracer_module": module_home(tracer)}


# ------------------------------------------------------------------------------------- the driver


async def run_case(case: str, version: str, tree: Path, args: argparse.Namespace, sc: Any) -> dict[str, Any]:
    server = capped_server(sc, args)
    url = await server.start("127.0.0.1", 0)
    load = os.getloadavg()[0]
    try:
        cmd = [sys.executable, str(SCRIPT), "--child", "--case", case, "--rpc", url,
               "--rate", str(args.rate), "--seed", str(args.seed), "--noise", str(args.noise),
               "--gen-transfers", str(args.gen_transfers), "--gen-scale", str(args.gen_scale),
               "--workers", str(args.workers), "--timeout", str(args.timeout)]
        if args.database_url:
            cmd += ["--database-url", args.database_url]
        env = {**os.environ, "TRACER_BENCH_CODE": str(tree), "PYTHONPATH": str(tree)}
        proc = await asyncio.create_subprocess_exec(*cmd, env=env, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"{version} trace of {case} failed:\n{err.decode()[-4000:]}")
        result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    finally:
        await server.stop()
    if Path(result.pop("tracer_module")) != (tree / "tracer").resolve():
        raise SystemExit(f"the {version} child imported the wrong tracer")
    by_method = Counter({k: v for k, v in server.request_counts.items() if not k.startswith("http")})
    calls = sum(by_method.values())
    hops = result["hops"]
    floor = calls / args.rate
    return {
        "version": version, **result,
        "calls": calls,
        "calls_refused_429": server.refused_calls,
        "http_posts": server.request_counts["http"],
        "calls_per_1000_hops": round(1000 * calls / hops, 1) if hops else None,
        "calls_per_1000_hops_by_method": {m: round(1000 * v / hops, 1) if hops else None
                                          for m, v in sorted(by_method.items())},
        "calls_by_method": dict(sorted(by_method.items())),
        "floor_seconds": round(floor, 2),
        "wall_over_floor": round(result["wall_seconds"] / floor, 3) if floor else None,
        "load_average_before": round(load, 2),
    }


def meets(r: dict[str, Any]) -> dict[str, bool]:
    return {"calls": r["calls_per_1000_hops"] is not None and r["calls_per_1000_hops"] <= TARGET_CALLS_PER_1000,
            "wall": r["wall_over_floor"] is not None and r["wall_over_floor"] <= TARGET_WALL_RATIO}


async def driver(args: argparse.Namespace) -> dict[str, Any]:
    from tracer.devchain.replay import read_case

    cases: list[str] = []
    if args.cases is not None:
        from accuracy import case_dirs

        cases = [str(p) for p in case_dirs(args.cases)]
    if not args.no_generated:
        cases.append(GENERATED)
    versions: list[tuple[str, Path, str]] = []
    if args.before not in ("", "none"):
        tree, commit = before_tree(args.before)
        versions.append(("before", tree, commit))
    versions.append(("after", ROOT, head_commit()))

    async def one(case: str) -> dict[str, Any]:
        name = GENERATED if case == GENERATED else read_case(case)[0]
        sc = scenario_for(case, args)
        entry: dict[str, Any] = {"case": name, "chain_transfers": sc.transfer_count(), "policy": policy_for(case)}
        # Side by side: each version right after the other on the same chain, same load.
        for version, tree, _ in versions:
            print(f"{name}: {version}...", flush=True)
            r = await run_case(case, version, tree, args, sc)
            r["meets_target"] = meets(r)
            entry[version] = r
            print(f"  {name} {version} {r['status']}: {r['hops']} hops, {r['calls']} calls "
                  f"({r['calls_per_1000_hops']}/1k hops), wall {r['wall_seconds']}s, floor {r['floor_seconds']}s "
                  f"(x{r['wall_over_floor']}), {r['calls_refused_429']} calls refused", flush=True)
        if "before" in entry:
            entry["same_hops"] = entry["before"]["hop_digest"] == entry["after"]["hop_digest"]
        return entry

    if args.smoke:
        # A smoke run's figures mean nothing (it shows that the bench works end to end): its cases
        # go at once, each with its own provider and tracer process, so their start-ups overlap.
        out = list(await asyncio.gather(*(one(case) for case in cases)))
    else:
        out = [await one(case) for case in cases]
    return {
        "benchmark": NAME,
        "smoke": bool(args.smoke),
        "cases_path": "(made-up smoke case)" if args.smoke else (str(args.cases) if args.cases else None),
        "provider": {"calls_per_second": args.rate, "batch_members_counted": True,
                     "bucket_calls": max(1.0, args.rate), "latency_ms": args.latency_ms,
                     "max_logs": args.max_logs},
        "replay": {"noise": args.noise, "seed": args.seed, "workers": args.workers},
        "generated": {"transfers": args.gen_transfers, "scale": args.gen_scale, "seed": args.seed,
                      "params": "bench/trace_speed.py bench_params", "policy": policy_for(GENERATED)},
        "targets": {"calls_per_1000_hops": TARGET_CALLS_PER_1000, "wall_over_floor": TARGET_WALL_RATIO},
        "versions": {v: {"commit": c} for v, _, c in versions},
        "cases": out,
    }


def print_tables(report: dict[str, Any]) -> None:
    rows = []
    methods: set[str] = set()
    for c in report["cases"]:
        for v in ("before", "after"):
            if v in c:
                r = c[v]
                methods |= set(r["calls_by_method"])
                rows.append([c["case"], v, r["hops"], r["calls"], r["calls_per_1000_hops"], r["wall_seconds"],
                             r["floor_seconds"], r["wall_over_floor"], r["calls_refused_429"],
                             "yes" if all(r["meets_target"].values()) else "no",
                             {True: "yes", False: "NO"}.get(c.get("same_hops"), "-")])
    cap = report["provider"]["calls_per_second"]
    print()
    p = report["provider"]
    print(table(f"Provider replay: cap {cap:g} calls/s (batch members counted), "
                f"{p['latency_ms']:g} ms/request, -32005 over {p['max_logs']} results",
                ["case", "code", "hops", "calls", "calls/1k hops", "wall s", "floor s", "wall/floor", "429 calls",
                 "target", "same hops"], rows))
    ms = sorted(methods)
    print()
    print(table("Calls per 1,000 hops by method", ["case", "code", *ms],
                [[c["case"], v, *(c[v]["calls_per_1000_hops_by_method"].get(m, 0) for m in ms)]
                 for c in report["cases"] for v in ("before", "after") if v in c]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cases", nargs="?", type=Path,
                        help="a case folder, or a folder of them (e.g. ../shared/data/cases/mftracer)")
    parser.add_argument("--before", default=None, help=f"the previous code's commit (default {BEFORE}; none: skip)")
    parser.add_argument("--rate", type=float, default=25.0, help="provider cap, calls/s (default 25)")
    parser.add_argument("--latency-ms", type=float, default=30.0, help="provider latency per HTTP request")
    parser.add_argument("--max-logs", type=int, default=10_000, help="-32005 over this many results")
    parser.add_argument("--noise", type=float, default=1.0, help="replay noise scale (default 1.0)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gen-transfers", type=int, default=20_000, help="generated scenario noise size")
    parser.add_argument("--gen-scale", type=float, default=0.03, help="generated laundering tree scale")
    parser.add_argument("--no-generated", action="store_true", help="the cases only, not the generated scenario")
    parser.add_argument("--workers", type=int, default=1, help="worker loops (1: batches in a fixed order)")
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--rpc", help=argparse.SUPPRESS)
    add_common_args(parser)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(asyncio.run(child(args))), flush=True)
        return 0
    if args.before is None:
        args.before = BEFORE
    with tempfile.TemporaryDirectory(prefix="tracer-bench-provider-") as tmp:
        if args.smoke:
            from accuracy import write_smoke_case

            args.cases = write_smoke_case(Path(tmp)) if args.cases is None else args.cases
            args.gen_transfers, args.gen_scale, args.rate, args.latency_ms = 2_000, 0.002, 200.0, 5.0
        report = asyncio.run(driver(args))
    print_tables(report)
    write_result(NAME, report, args.smoke, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
