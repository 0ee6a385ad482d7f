"""Alert latency: time from a block becoming confirmed to its webhook arriving, with N subscriptions.

A devchain and a webhook receiver run in this process; `tracer worker`, `tracer monitor` and
`tracer alerts deliver` run as real processes on the same Postgres, as in a deployment. A watching
trace (confirmations C) follows a wallet; N webhook subscriptions (default 1,000, with assorted
filters that all match) point at the receiver, each with its own path and secret. Each round mines
a block where the wallet sends money to a fresh address, then the C blocks that confirm it; the
clock starts when the confirming block is mined and stops when each subscription's signed
`hop_added` webhook for that transfer arrives (signatures are checked). Prints p50/p99 over every
delivery, and the time to the first and the last of each round's N, then writes
bench/results/alert_latency.json.

    python bench/alert_latency.py --server-url postgresql://postgres@127.0.0.1/postgres
    python bench/alert_latency.py --smoke --server-url …   # tiny and quick (the test suite runs it)

Each run creates a throwaway database `tracer_bench_alerts_*` on that server and drops it after,
so no earlier run's blocks or subscriptions are in the way.

The monitor polls the head every --poll seconds (default 0.2) and workers look for work every
0.2 s, so both add their polling delay to the figures, as they would in production.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets as secrets_mod
import signal
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import write_result  # noqa: E402

from tracer.alerts import signing  # noqa: E402
from tracer.alerts import subscriptions as subs  # noqa: E402
from tracer.alerts.guard import UrlPolicy  # noqa: E402
from tracer.chains.evm import EvmChain  # noqa: E402
from tracer.devchain.chain import Chain  # noqa: E402
from tracer.devchain.scenario import KIND_NATIVE, ScenarioTx  # noqa: E402
from tracer.devchain.server import DevChainServer  # noqa: E402
from tracer.engine.service import create_trace  # noqa: E402
from tracer.store.db import Database  # noqa: E402
from tracer.store.urls import quote_ident, with_database  # noqa: E402

ETH = 10**18
SEED = "0x" + "5e" * 20
WALLET = "0x" + "a1" * 20


def _fresh(i: int) -> str:
    return f"0x{0xF0000000 + i:040x}"


class Receiver:
    """Counts each subscription's hop_added webhooks per recipient, with arrival times, and every
    event a receiver (a subscription's path) got more than once: delivery is at least once, so a
    retry after a lost answer is where a duplicate can happen."""

    def __init__(self, secrets: dict[str, str]) -> None:
        self.secrets = secrets
        self.arrivals: dict[str, list[float]] = {}  # recipient -> arrival times (one per subscription)
        self.bad_signatures = 0
        self.requests = 0
        self.seen: Counter[tuple[str, Any]] = Counter()  # (subscription path, event id) -> deliveries
        self.changed = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0, backlog=2048)
        await site.start()
        self.port = self.runner.addresses[0][1]

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        at = time.time()
        self.requests += 1
        if not signing.verify(self.secrets.get(request.path, ""), body, request.headers.get(signing.TIMESTAMP_HEADER),
                              request.headers.get(signing.SIGNATURE_HEADER)):
            self.bad_signatures += 1
        event = json.loads(body)
        self.seen[(request.path, event.get("id"))] += 1
        if event["type"] == "hop_added":
            self.arrivals.setdefault(event["hop"]["to"], []).append(at)
            self.changed.set()
        return web.Response(text="ok")

    @property
    def duplicates(self) -> int:
        return sum(n - 1 for n in self.seen.values() if n > 1)

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


async def _spawn(args: list[str], env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(sys.executable, "-m", "tracer.cli", *args, cwd=ROOT, env=env,
                                                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)


async def _wait_status(db: Database, trace_id: int, status: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while await db.pool.fetchval("SELECT status FROM traces WHERE id = $1", trace_id) != status:
        if time.monotonic() > deadline:
            raise TimeoutError(f"trace {trace_id} never became {status}")
        await asyncio.sleep(0.05)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    import asyncpg

    name = f"tracer_bench_alerts_{secrets_mod.token_hex(4)}"
    admin = await asyncpg.connect(args.server_url)
    try:
        await admin.execute(f"CREATE DATABASE {quote_ident(name)}")
    finally:
        await admin.close()
    try:
        return await _measure(args, with_database(args.server_url, name))
    finally:
        admin = await asyncpg.connect(args.server_url)
        try:
            await admin.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")
        finally:
            await admin.close()


async def _measure(args: argparse.Namespace, database_url: str) -> dict[str, Any]:
    n_subs, rounds = (50, 3) if args.smoke else (args.subscriptions, args.rounds)
    load_before = os.getloadavg()
    confirmations = args.confirmations
    chain = Chain(chain_id=1337, genesis_balances={SEED: {"native": 1000 * ETH}})
    chain.append_block([ScenarioTx(KIND_NATIVE, SEED, WALLET, 100 * ETH)])
    for _ in range(confirmations + 2):
        chain.append_block([])
    node = DevChainServer(chain)
    rpc = await node.start("127.0.0.1", 0)
    db = await Database.connect(database_url, max_size=8)
    client = EvmChain(rpc, chain="ethereum", expected_chain_id=1337)
    await client.connect()
    secrets = {f"/s/{i}": f"bench-secret-{i:06d}" for i in range(n_subs)}
    rx = Receiver(secrets)
    await rx.start()
    env = dict(os.environ, TRACER_WEBHOOK_ALLOW="127.0.0.1", TRACER_LOG_LEVEL="WARNING", DATABASE_URL=db.url)
    procs: list[asyncio.subprocess.Process] = []
    sub_ids: list[int] = []
    trace_id = 0
    try:
        procs.append(await _spawn(["worker", "--rpc", rpc, "--concurrency", "2"], env))
        procs.append(await _spawn(["monitor", "--rpc", rpc, "--poll", str(args.poll)], env))
        procs.append(await _spawn(["alerts", "deliver", "--concurrency", str(args.deliver_concurrency),
                                   "--poll", "0.5"], env))
        trace_id = await create_trace(db.pool, client, chain="ethereum", seeds=[SEED], label="alert-latency bench",
                                      policy={"watch": True, "confirmations": confirmations}, created_by="bench")
        await _wait_status(db, trace_id, "watching")
        policy = UrlPolicy(allow=frozenset({"127.0.0.1"}))
        # Assorted filters, all of which the measured hops match: the fan-out evaluates them all.
        shapes: list[dict[str, Any]] = [{}, {"event_types": ["hop_added", "exit_reached"]},
                                        {"min_amount": {"native": "1000"}}, {"addresses": [WALLET], "watch": False}]
        for i in range(n_subs):
            body = {"url": f"http://127.0.0.1:{rx.port}/s/{i}", "secret": secrets[f"/s/{i}"], "trace_id": trace_id,
                    "name": f"bench {i}", **shapes[i % len(shapes)]}
            sub_ids.append((await subs.create(db.pool, {}, body, url_policy=policy, created_by="bench")).id)
        latencies: list[float] = []
        firsts: list[float] = []
        lasts: list[float] = []
        commits: list[float] = []
        for r in range(rounds):
            target = _fresh(r)
            block = chain.append_block([ScenarioTx(KIND_NATIVE, WALLET, target, ETH)]).number
            for _ in range(confirmations):
                chain.append_block([])
            confirmed_at = time.time()  # block `block` has its confirmations from now on
            deadline = time.monotonic() + 120
            while len(rx.arrivals.get(target, ())) < n_subs:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"round {r}: {len(rx.arrivals.get(target, ()))}/{n_subs} webhooks arrived")
                rx.changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(rx.changed.wait(), 1.0)
            got = [t - confirmed_at for t in rx.arrivals[target]]
            latencies.extend(got)
            firsts.append(min(got))
            lasts.append(max(got))
            committed = await db.pool.fetchval(
                """SELECT extract(epoch FROM created_at) FROM events
                   WHERE trace_id = $1 AND type = 'hop_added' AND payload->>'to' = $2""", trace_id, target)
            commits.append(float(committed) - confirmed_at)
            print(f"round {r + 1}/{rounds}: block {block}, first {min(got) * 1000:.0f} ms, "
                  f"last {max(got) * 1000:.0f} ms", file=sys.stderr, flush=True)
            await _wait_status(db, trace_id, "watching")
            await asyncio.sleep(args.pause)
        other = rx.requests - rounds * n_subs
        return {
            "bench": "alert_latency",
            "smoke": args.smoke,
            "subscriptions": n_subs,
            "rounds": rounds,
            "confirmations": confirmations,
            "monitor_poll_s": args.poll,
            "deliver_concurrency": args.deliver_concurrency,
            "deliveries": len(latencies),
            "bad_signatures": rx.bad_signatures,
            "duplicate_deliveries": rx.duplicates,
            "other_events_delivered": other,
            "latency_ms": {"p50": _percentile(latencies, 50) * 1000, "p90": _percentile(latencies, 90) * 1000,
                           "p99": _percentile(latencies, 99) * 1000, "max": max(latencies) * 1000},
            "first_webhook_ms": {"p50": statistics.median(firsts) * 1000, "max": max(firsts) * 1000},
            "last_webhook_ms": {"p50": statistics.median(lasts) * 1000, "max": max(lasts) * 1000},
            "hop_committed_ms": {"p50": statistics.median(commits) * 1000, "max": max(commits) * 1000},
            # Everything (Postgres, node, receiver, 3 processes) shares the CPUs: other load on the
            # machine shows in the figures (write_result adds the load at the end).
            "machine": {"load_average_before": [round(x, 2) for x in load_before]},
        }
    finally:
        for p in procs:
            if p.returncode is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                await asyncio.wait_for(p.wait(), 30)
            except TimeoutError:
                p.kill()
        if sub_ids:
            await db.pool.execute("DELETE FROM subscriptions WHERE id = ANY($1::bigint[])", sub_ids)
        if trace_id:
            await db.pool.execute("UPDATE traces SET status = 'cancelled' WHERE id = $1 AND status <> 'cancelled'",
                                  trace_id)
        await rx.stop()
        await client.close()
        await node.stop()
        await db.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server-url", default=os.environ.get("TRACER_BENCH_DATABASE_URL",
                                                              "postgresql://postgres@127.0.0.1:5432/postgres"),
                        help="a Postgres server to create the throwaway database on (env TRACER_BENCH_DATABASE_URL)")
    parser.add_argument("--subscriptions", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--confirmations", type=int, default=2)
    parser.add_argument("--poll", type=float, default=0.2, help="monitor head poll interval, seconds")
    parser.add_argument("--deliver-concurrency", type=int, default=64)
    parser.add_argument("--pause", type=float, default=0.5, help="seconds between rounds")
    parser.add_argument("--smoke", action="store_true", help="50 subscriptions, 3 rounds")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    report = asyncio.run(run(args))
    lat, first, last = report["latency_ms"], report["first_webhook_ms"], report["last_webhook_ms"]
    print(f"\nblock confirmed -> webhook arrived, {report['subscriptions']} subscriptions x {report['rounds']} "
          f"blocks ({report['deliveries']} webhooks, confirmations {report['confirmations']}, monitor poll "
          f"{report['monitor_poll_s']}s)")
    print(f"  {'':<28}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}")
    print(f"  {'every webhook':<28}{lat['p50']:>10.0f}{lat['p99']:>10.0f}{lat['max']:>10.0f}")
    print(f"  {'first webhook of a block':<28}{first['p50']:>10.0f}{'':>10}{first['max']:>10.0f}")
    print(f"  {'last webhook of a block':<28}{last['p50']:>10.0f}{'':>10}{last['max']:>10.0f}")
    print(f"  {'hop committed (worker)':<28}{report['hop_committed_ms']['p50']:>10.0f}{'':>10}"
          f"{report['hop_committed_ms']['max']:>10.0f}")
    print(f"  events delivered twice to one subscription: {report['duplicate_deliveries']}")
    print(f"  bad signatures: {report['bad_signatures']}; other events delivered (trace_watching to unfiltered "
          f"subscriptions): {report['other_events_delivered']}")
    write_result("alert_latency", report, args.smoke, args.out, database_url=args.server_url)
    return 0 if report["bad_signatures"] == 0 and report["duplicate_deliveries"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
