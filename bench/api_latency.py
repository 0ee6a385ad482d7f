"""API latency under load: requests/s, p50 and p99 of GET /exits and of a page of hops.

Synthesises a finished trace of N hops (default 1,000,000) straight into Postgres with COPY — no
engine run — then starts a real `tracer serve` process and drives it from this process with C
concurrent clients (default 50) for a fixed time per endpoint. Hop pages are drawn at random from
cursors collected at both ends of both sort orders plus filtered pages (per depth, per asset), so
the indexes are read at many places, not one hot first page. Exits are measured twice: as served
(finished traces' exit lists are cached in the server) and with that cache off. Prints a table
and writes bench/results/api_latency.json.

    python bench/api_latency.py --database-url postgresql://postgres@127.0.0.1/tracer_bench
    python bench/api_latency.py --smoke --database-url …   # tiny and quick (the test suite runs it)

The synthetic trace is reused by later runs on the same database (found by its label); --fresh
rebuilds it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import write_result  # noqa: E402

from tracer.store import keys as key_store  # noqa: E402
from tracer.store.db import Database  # noqa: E402

CHAIN = "ethereum"
TOKEN = "0xdac17f958d2ee523a2206206994597c13d831ec7"
EXIT_ENTITIES = 25
EXIT_ADDRESSES = 200


def _addr(i: int) -> str:
    return f"0x{(0xB0000000 + i):040x}"


def _tx(i: int) -> str:
    return f"0x{(0x7E000000 + i):064x}"


async def synthesise(pool: asyncpg.Pool, hops: int, label: str) -> int:
    """A done trace with `hops` hops: a fan-out tree from 10 seeds, ~0.5% of hops into labelled
    exchange addresses, some hops stopped below threshold, 10% of value in a token."""
    rng = random.Random(hops)
    # One transaction: an interrupted run leaves no half-built trace for the next run to reuse.
    async with pool.acquire() as conn, conn.transaction():
        base = int(await conn.fetchval("SELECT coalesce(max(id), 0) FROM transfers")) + 1
        seeds = [_addr(i) for i in range(10)]
        exits = [_addr(10_000_000 + i) for i in range(EXIT_ADDRESSES)]
        trace_id = int(await conn.fetchval(
            """INSERT INTO traces (chain, seeds, policy, label, status, from_block, to_block, totals, created_by,
                                   started_at, finished_at)
               VALUES ($1, $2, '{}'::jsonb, $3, 'done', 1, $4, $5, 'bench', now(), now()) RETURNING id""",
            CHAIN, seeds, label, 1 + hops // 10,
            {"native": str(10**24), TOKEN: str(10**14)}))
        transfers: list[tuple[Any, ...]] = []
        hop_rows: list[tuple[Any, ...]] = []
        exit_hops = 0
        for i in range(hops):
            tid = base + i
            block = 1 + i // 10
            # Parent i//4 makes a tree of depth ~log4(N); the first 10 addresses are the seeds.
            src = _addr(i // 4) if i >= 40 else seeds[i % 10]
            token = i % 10 == 0
            asset = TOKEN if token else "native"
            amount = rng.randrange(10**6, 10**9) if token else rng.randrange(10**15, 10**20)
            status, reason = "followed", "flagged funds"
            if i % 200 == 7:
                dst, status, reason = exits[rng.randrange(EXIT_ADDRESSES)], "exit", "label:bench"
                exit_hops += 1
            elif i % 50 == 3:
                dst, status, reason = _addr(20_000_000 + i), "stopped", "below_threshold"
            else:
                dst = _addr(i + 10)
            depth = max(1, (i.bit_length() + 1) // 2)
            transfers.append((tid, CHAIN, _tx(tid), "log:0" if token else "tx", block,
                              1_600_000_000 + block * 12, i % 10, src, dst, asset, Decimal(amount),
                              "token" if token else "native", 6 if token else None, "USDT" if token else None))
            hop_rows.append((trace_id, tid, src, dst, asset, block, depth, Decimal(amount), 1.0,
                             "token" if token else "native", status, reason))
        await conn.copy_records_to_table(
            "transfers", records=transfers,
            columns=["id", "chain", "tx_hash", "position", "block_number", "block_time", "tx_index", "from_addr",
                     "to_addr", "asset", "amount", "kind", "decimals", "symbol"], timeout=1800)
        del transfers
        await conn.execute("SELECT setval('transfers_id_seq', (SELECT max(id) FROM transfers))")
        await conn.copy_records_to_table(
            "hops", records=hop_rows,
            columns=["trace_id", "transfer_id", "from_addr", "to_addr", "asset", "block_number", "depth", "amount",
                     "share", "kind", "status", "reason"], timeout=1800)
        del hop_rows
        await conn.executemany(
            """INSERT INTO jobs (trace_id, address, kind, depth, is_seed, state, role, reason, entity, category)
               VALUES ($1, $2, 'address', $3, $4, 'done', $5, $6, $7, $8)""",
            [(trace_id, s, 0, True, "followed", "seed", None, None) for s in seeds]
            + [(trace_id, a, 5, False, "exit", "label:bench", f"Exchange {i % EXIT_ENTITIES}", "exchange")
               for i, a in enumerate(exits)])
    async with pool.acquire() as conn:
        # Fresh statistics and visibility map, as a long-running database would have.
        await conn.execute("VACUUM ANALYZE transfers", timeout=1800)
        await conn.execute("VACUUM ANALYZE hops", timeout=1800)
        await conn.execute("ANALYZE jobs")
    print(f"synthesised trace #{trace_id}: {hops} hops ({exit_hops} into {EXIT_ADDRESSES} exits)", file=sys.stderr)
    return trace_id


async def find_or_make_trace(pool: asyncpg.Pool, hops: int, fresh: bool) -> tuple[int, float]:
    label = f"bench:api_latency:{hops}"
    if not fresh:
        found = await pool.fetchval("SELECT id FROM traces WHERE label = $1 ORDER BY id DESC LIMIT 1", label)
        if found is not None:
            n = await pool.fetchval("SELECT count(*) FROM hops WHERE trace_id = $1", found)
            if n == hops:
                return int(found), 0.0
    started = time.monotonic()
    trace_id = await synthesise(pool, hops, label)
    return trace_id, time.monotonic() - started


# ------------------------------------------------------------------------------ server and load


def start_server(database_url: str, log_path: Path, **env_extra: str) -> tuple[subprocess.Popen[bytes], str]:
    """A real `tracer serve` process on a free port. Its stderr goes to a file: a pipe nobody
    drains would fill up and stall the server mid-benchmark."""
    env = dict(os.environ, TRACER_LOG_LEVEL="WARNING", DATABASE_URL=database_url, **env_extra)
    env.pop("TRACER_RPC_URL", None)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "tracer.cli", "serve", "--host", "127.0.0.1", "--port", "0",
                                 "--database-url", database_url], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                stderr=log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        m = re.search(r"listening on (http://\S+)", log_path.read_text(errors="replace"))
        if m:
            return proc, m.group(1)
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start:\n" + log_path.read_text(errors="replace"))


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc). The API server's CPU per request does
    not depend on what else runs on the machine, unlike requests/s on a shared 2-core box."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Result:
    name: str
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    wall: float = 0.0
    server_cpu: float = float("nan")

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies)
        n = len(lat)

        def pct(p: float) -> float:
            return round(lat[min(n - 1, int(p * n))] * 1000, 2) if n else 0.0

        return {"requests": n, "errors": self.errors, "seconds": round(self.wall, 2),
                "requests_per_s": round(n / self.wall, 1) if self.wall else 0.0,
                "p50_ms": pct(0.50), "p99_ms": pct(0.99),
                "mean_ms": round(statistics.fmean(lat) * 1000, 2) if n else 0.0,
                "server_cpu_ms_per_request": round(self.server_cpu * 1000 / n, 3) if n else 0.0}


async def collect_cursors(session: aiohttp.ClientSession, base: str, trace_id: int, pages: int) -> list[str]:
    """Hop-page URLs from many places of the trace: both ends of both sort orders (walked page by
    page, so later pages use real cursors), plus filtered pages (per depth, token only, exits only)
    that land in the middle of the indexes."""
    urls: list[str] = []
    for sort in ("block", "-block", "-amount", "amount"):
        url: str | None = f"/v1/traces/{trace_id}/hops?limit=100&sort={sort}"
        for _ in range(max(1, pages // 4)):
            if url is None:
                break
            urls.append(url)
            async with session.get(base + url) as r:
                body = await r.json()
            url = body["links"]["next"]
    filters = [f"depth={d}" for d in range(4, 11)] + [f"asset={TOKEN}", "status=exit", "kind=native&sort=-amount"]
    urls += [f"/v1/traces/{trace_id}/hops?limit=100&{q}" for q in filters]
    return urls


async def load(session: aiohttp.ClientSession, base: str, name: str, urls: list[str], clients: int,
               seconds: float, server_pid: int) -> Result:
    result = Result(name)
    cpu_before = cpu_seconds(server_pid)
    stop_at = time.monotonic() + seconds
    rng = random.Random(1)

    async def client() -> None:
        while time.monotonic() < stop_at:
            url = base + rng.choice(urls)
            t0 = time.perf_counter()
            try:
                async with session.get(url) as r:
                    await r.read()
                    ok = r.status == 200
            except (aiohttp.ClientError, TimeoutError):
                ok = False
            if ok:
                result.latencies.append(time.perf_counter() - t0)
            else:
                result.errors += 1

    started = time.monotonic()
    await asyncio.gather(*(client() for _ in range(clients)))
    result.wall = time.monotonic() - started
    result.server_cpu = cpu_seconds(server_pid) - cpu_before
    return result


async def run(args: argparse.Namespace) -> dict[str, Any]:
    db = await Database.connect(args.database_url, max_size=4)
    try:
        trace_id, synth_s = await find_or_make_trace(db.pool, args.hops, args.fresh)
        async with db.pool.acquire() as conn:
            bench_key, key = await key_store.create_key(conn, "bench", ["read"], created_by="bench")
        hop_count = await db.pool.fetchval("SELECT count(*) FROM hops WHERE trace_id = $1", trace_id)
        exit_count = await db.pool.fetchval(
            "SELECT count(DISTINCT (to_addr, asset)) FROM hops WHERE trace_id = $1 AND status = 'exit'", trace_id)
    finally:
        await db.close()
    timeout = aiohttp.ClientTimeout(total=60)
    exits_url = [f"/v1/traces/{trace_id}/exits"]
    proc, base = start_server(args.database_url, args.server_log)
    try:
        connector = aiohttp.TCPConnector(limit=args.clients)
        async with aiohttp.ClientSession(connector=connector, headers={"X-API-Key": key}, timeout=timeout) as session:
            urls = await collect_cursors(session, base, trace_id, args.pages)
            # Warm the server (imports, pool connections, plan caches) before measuring.
            await load(session, base, "warmup", exits_url + urls[:10], args.clients, min(2.0, args.seconds / 2),
                       proc.pid)
            exits = await load(session, base, "GET /exits", exits_url, args.clients, args.seconds, proc.pid)
            hops = await load(session, base, "GET /hops page (100)", urls, args.clients, args.seconds, proc.pid)
    finally:
        stop_server(proc)
    # The same exits request on a server that keeps no rendered exits: every request runs the
    # aggregate over the trace's exit hops in Postgres.
    proc, base = start_server(args.database_url, args.server_log, TRACER_API_EXITS_CACHE="0")
    try:
        connector = aiohttp.TCPConnector(limit=args.clients)
        async with aiohttp.ClientSession(connector=connector, headers={"X-API-Key": key}, timeout=timeout) as session:
            await load(session, base, "warmup", exits_url, args.clients, min(1.0, args.seconds / 4), proc.pid)
            exits_uncached = await load(session, base, "GET /exits (no cache)", exits_url, args.clients,
                                        args.seconds, proc.pid)
    finally:
        stop_server(proc)
    db = await Database.connect(args.database_url, max_size=2)
    try:  # the benchmark's key is not left usable behind it
        async with db.pool.acquire() as conn:
            await key_store.revoke_key(conn, bench_key.key_id)
    finally:
        await db.close()
    return {
        "benchmark": "api_latency", "smoke": args.smoke, "trace_id": trace_id, "hops_in_trace": hop_count,
        "exit_rows": exit_count, "synthesis_seconds": round(synth_s, 1), "clients": args.clients,
        "seconds_per_endpoint": args.seconds, "hop_page_urls": len(urls),
        # What is measured: the API over a trace synthesised by COPY, not one the engine traced.
        "trace_source": "synthesised with COPY (no engine run)",
        "postgres": {"version": await _server_version(args.database_url)},
        "results": {"exits": exits.summary(), "exits_uncached": exits_uncached.summary(),
                    "hops_page": hops.summary()},
    }


async def _server_version(url: str) -> str:
    conn = await asyncpg.connect(url)
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


def print_table(report: dict[str, Any]) -> None:
    print(f"\nAPI latency: trace #{report['trace_id']} with {report['hops_in_trace']:,} hops, "
          f"{report['exit_rows']} exit rows, {report['clients']} concurrent clients, "
          f"{report['seconds_per_endpoint']} s per endpoint")
    print(f"{'endpoint':<26} {'requests':>9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} "
          f"{'server CPU ms/req':>18}")
    for name, key in (("GET /traces/{id}/exits", "exits"), ("  same, exits cache off", "exits_uncached"),
                      ("GET /traces/{id}/hops", "hops_page")):
        r = report["results"][key]
        print(f"{name:<26} {r['requests']:>9} {r['requests_per_s']:>8} {r['p50_ms']:>8} {r['p99_ms']:>8} "
              f"{r['errors']:>7} {r['server_cpu_ms_per_request']:>18}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--database-url", default=os.environ.get("DATABASE_URL"),
                   help="Postgres URL (env DATABASE_URL); a dedicated database is best")
    p.add_argument("--hops", type=int, default=1_000_000)
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--seconds", type=float, default=15.0, help="load time per endpoint")
    p.add_argument("--pages", type=int, default=200, help="hop pages walked (over four sort orders) to draw from")
    p.add_argument("--fresh", action="store_true", help="synthesise a new trace even if one exists")
    p.add_argument("--smoke", action="store_true", help="tiny and quick: 3,000 hops, 5 clients, 1 s each")
    p.add_argument("--out", type=Path, default=None, help="result file (default bench/results/api_latency.json)")
    args = p.parse_args()
    args.server_log = Path(tempfile.gettempdir()) / f"tracer-api-latency-{os.getpid()}.log"
    if args.smoke:
        args.hops, args.clients, args.seconds, args.pages = 3000, 5, 1.0, 8
    if not args.database_url:
        p.error("--database-url (or DATABASE_URL) is required: the benchmark writes a million rows")
    report = asyncio.run(run(args))
    print_table(report)
    write_result("api_latency", report, args.smoke, args.out, database_url=args.database_url)
    failed = sum(r["errors"] for r in report["results"].values())
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
