"""API latency under load: requests/s, p50 and p99 of GET /exits and of a page of hops.

Synthesises a finished trace of N hops (default 1,000,000) straight into Postgres with COPY — no
engine run — then starts a real `tracer serve` process and drives it from this process with C
concurrent clients (default 50) for a fixed time per endpoint. Hop pages are drawn at random from
cursors collected at both ends of both sort orders plus filtered pages (per depth, per asset), so
the indexes are read at many places, not one hot first page. Exits are measured twice: as served
(finished traces' exit lists are cached in the server) and with that cache off. Exits of a running trace
(never cached, dollars deferred past TRACER_API_LIVE_USD_MAX_HOPS) are measured a third way. Pages
of hops likewise: as served (pages of finished traces kept, `--processes` API processes), with the
page cache off, and with it off on one process; code without `tracer serve --processes` runs one.

Side by side: with --before REF (default: the commit before the #22 API work) the same load runs,
endpoint by endpoint and one version right after the other, against a server of that commit (a git
worktree of it, with its own database migrated by its own migrations: `<db>_before`; the database
of this code is a copy of it migrated forward, so both hold the same rows). Each run records the
load average before it: the figures are comparable within one run, not across machines. A short
profile of each version follows (one client, the server under cProfile): server CPU per page split
by where it went (SQL driver, JSON, serialising, pricing, aiohttp), and the wall time left for
Postgres. Prints tables and writes bench/results/api_latency.json.

    python bench/api_latency.py --database-url postgresql://postgres@127.0.0.1/tracer_bench
    python bench/api_latency.py --before none --database-url …   # this code only
    python bench/api_latency.py --smoke --database-url …   # tiny and quick (the test suite runs it)

The synthetic trace is reused by later runs on the same database (found by its label); --fresh
rebuilds it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pstats
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import before_tree, head_commit, write_result  # noqa: E402

from tracer.store import hops as hop_store  # noqa: E402
from tracer.store import keys as key_store  # noqa: E402
from tracer.store.db import Database  # noqa: E402
from tracer.store.embedded import ensure_database  # noqa: E402
from tracer.store.urls import database_name, quote_ident, with_database  # noqa: E402

CHAIN = "ethereum"
TOKEN = "0xdac17f958d2ee523a2206206994597c13d831ec7"
EXIT_ENTITIES = 25
EXIT_ADDRESSES = 200
#: The code before the #22 API work (dollars on every page, exits aggregated per request).
BEFORE = "3ad345b~1"


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
        await conn.execute("UPDATE traces SET hop_count = $2 WHERE id = $1", trace_id, hops)
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
                # The count a worker keeps (deciding whether a running trace's dollars are deferred).
                await pool.execute("UPDATE traces SET hop_count = $2 WHERE id = $1 AND hop_count <> $2", found, n)
                return int(found), 0.0
    started = time.monotonic()
    trace_id = await synthesise(pool, hops, label)
    return trace_id, time.monotonic() - started


# ------------------------------------------------------------------------------ server and load


def serves_processes(tree: Path) -> bool:
    """Whether the code in `tree` has `tracer serve --processes` (older code ignores the variable)."""
    cli = tree / "tracer" / "api" / "cli.py"
    return cli.exists() and "--processes" in cli.read_text()


@dataclass
class Spawned:
    """A `tracer serve` process started and not yet seen listening (see `listening`)."""

    proc: subprocess.Popen[bytes]
    log_path: Path
    copies: int  # the processes it starts once it listens (`--processes`), waited for too


def spawn_server(database_url: str, log_path: Path, tree: Path = ROOT, profile: Path | None = None,
                 **env_extra: str) -> Spawned:
    """A real `tracer serve` process of the code in `tree` on a free port (under cProfile when
    `profile` is given). Its stderr goes to a file: a pipe nobody drains would fill up and stall
    the server mid-benchmark."""
    env = dict(os.environ, TRACER_LOG_LEVEL="WARNING", DATABASE_URL=database_url, PYTHONPATH=str(tree),
               **env_extra)
    env.pop("TRACER_RPC_URL", None)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    prof = ["-m", "cProfile", "-o", str(profile)] if profile else []
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, *prof, "-m", "tracer.cli", "serve", "--host", "127.0.0.1",
                                 "--port", "0", "--database-url", database_url], cwd=tree, env=env,
                                stdout=subprocess.DEVNULL, stderr=log)
    copies = max(0, int(env_extra.get("TRACER_API_PROCESSES", "1")) - 1) if serves_processes(tree) else 0
    return Spawned(proc, log_path, copies)


def listening(server: Spawned) -> tuple[subprocess.Popen[bytes], str]:
    """The server's process and base URL once it listens."""
    # With --processes N the copies start after the first process listens: wait for them all
    # (a copy still importing would spend CPU during the load and serve nothing).
    proc, log_path = server.proc, server.log_path
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        text = log_path.read_text(errors="replace")
        m = re.search(r"listening on (http://\S+)", text)
        if m and text.count(" serving port ") >= server.copies:
            return proc, m.group(1)
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start:\n" + log_path.read_text(errors="replace"))


#: The servers a run starts for each version, by what they are for: their TRACER_API_* settings
#: (TRACER_API_PROCESSES "many" is the version's `processes`). The profile_* ones run under cProfile.
SERVERS: dict[str, dict[str, str]] = {
    "default": {"TRACER_API_PROCESSES": "many"},
    "hops_page_uncached": {"TRACER_API_PAGE_CACHE_MB": "0", "TRACER_API_PROCESSES": "many"},
    "hops_page_one_process": {"TRACER_API_PAGE_CACHE_MB": "0", "TRACER_API_PROCESSES": "1"},
    "exits_uncached": {"TRACER_API_EXITS_CACHE": "0", "TRACER_API_PROCESSES": "many"},
    # Started and stopped without a request: what starting and stopping costs, subtracted from the
    # profiles below (no request reaches it, so their cache settings would change nothing in it).
    "profile_idle": {"TRACER_API_PROCESSES": "1"},
    "profile_pages": {"TRACER_API_PAGE_CACHE_MB": "0", "TRACER_API_PROCESSES": "1"},
    "profile_exits": {"TRACER_API_EXITS_CACHE": "0", "TRACER_API_PROCESSES": "1"},
}


class Servers:
    """The run's `tracer serve` processes. A measured run starts each one when it is needed (one
    starting while another is measured would take its CPU). A smoke run, whose figures mean nothing
    (it shows that the bench works end to end), spawns the servers it loads up front, so their
    Python start-ups overlap instead of queueing; and only its default server starts the copies of
    `--processes` (the others would start the same copies the same way again). The profiled servers
    start when needed even then: a profile covers the whole process, idle wait included."""

    def __init__(self, args: argparse.Namespace, versions: list[Version]) -> None:
        self.logs = Path(tempfile.gettempdir()) / f"tracer-api-latency-{os.getpid()}"
        self.spawned: dict[tuple[str, str], Spawned] = {}
        self.smoke = bool(args.smoke)
        if self.smoke:
            for v in versions:
                keys = ["default", "exits_uncached"]
                if serves_processes(v.tree):
                    keys += ["hops_page_uncached", "hops_page_one_process"]
                for key in keys:
                    self.spawned[v.name, key] = self._spawn(v, key)

    def profile(self, v: Version, key: str) -> Path | None:
        if not key.startswith("profile_"):
            return None
        return Path(tempfile.gettempdir()) / f"tracer-api-{key}-{os.getpid()}-{v.name}.prof"

    def _spawn(self, v: Version, key: str) -> Spawned:
        many = str(v.processes if key == "default" or not self.smoke else 1)
        env = {k: many if x == "many" else x for k, x in SERVERS[key].items()}
        prof = self.profile(v, key)
        if prof is not None:
            prof.unlink(missing_ok=True)
        return spawn_server(v.database_url, self.logs / f"{v.name}-{key}.log", v.tree, profile=prof, **env)

    def start(self, v: Version, key: str) -> tuple[subprocess.Popen[bytes], str]:
        """The version's server for `key` (see SERVERS), listening: its process and base URL."""
        spawned = self.spawned.pop((v.name, key), None)
        return listening(spawned if spawned is not None else self._spawn(v, key))

    def close(self) -> None:
        """Stop the servers spawned ahead and never used (a run that failed half way)."""
        for spawned in self.spawned.values():
            stop_server(spawned.proc)
        self.spawned.clear()


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a server process and of the copies it started (`--processes`),
    from Linux /proc. The API server's CPU per request does not depend on what else runs on the
    machine, unlike requests/s on a shared 2-core box."""
    fields = _stat(pid)
    if fields is None:
        return float("nan")
    total = int(fields[11]) + int(fields[12])
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != pid:
            child = _stat(int(entry.name))
            if child is not None and int(child[1]) == pid:
                total += int(child[11]) + int(child[12])
    return total / os.sysconf("SC_CLK_TCK")


@dataclass
class Result:
    name: str
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    wall: float = 0.0
    server_cpu: float = float("nan")
    postgres_cpu: float = float("nan")  # the backends serving the version's database
    client_cpu: float = float("nan")  # this process: the load generator shares the machine's cores

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies)
        n = len(lat)

        def pct(p: float) -> float:
            return round(lat[min(n - 1, int(p * n))] * 1000, 2) if n else 0.0

        return {"requests": n, "errors": self.errors, "seconds": round(self.wall, 2),
                "requests_per_s": round(n / self.wall, 1) if self.wall else 0.0,
                "p50_ms": pct(0.50), "p99_ms": pct(0.99),
                "mean_ms": round(statistics.fmean(lat) * 1000, 2) if n else 0.0,
                "server_cpu_ms_per_request": round(self.server_cpu * 1000 / n, 3) if n else 0.0,
                "postgres_cpu_ms_per_request": round(self.postgres_cpu * 1000 / n, 3) if n else 0.0,
                "client_cpu_ms_per_request": round(self.client_cpu * 1000 / n, 3) if n else 0.0}


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


async def postgres_cpu(database_url: str) -> dict[int, float]:
    """CPU seconds of each Postgres backend connected to the database of `database_url` (the API's
    pools: the other databases on the server, other people's work on a shared box, are left out)."""
    conn = await asyncpg.connect(database_url)
    try:
        pids = [int(p) for p in await conn.fetchval(
            "SELECT array_agg(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()") or []]
    finally:
        await conn.close()
    out = {}
    for pid in pids:
        fields = _stat(pid)
        if fields is not None:
            out[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


async def load(session: aiohttp.ClientSession, base: str, name: str, urls: list[str], clients: int,
               seconds: float, server_pid: int, database_url: str | None = None) -> Result:
    result = Result(name)
    pg_before = await postgres_cpu(database_url) if database_url else {}
    cpu_before = cpu_seconds(server_pid)
    client_before = time.process_time()
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
    result.client_cpu = time.process_time() - client_before
    if database_url:  # a backend opened during the load counts from zero
        result.postgres_cpu = sum(x - pg_before.get(pid, 0.0) for pid, x in (await postgres_cpu(database_url)).items())
    return result


# ------------------------------------------------------------------------------ versions side by side


@dataclass
class Version:
    name: str  # "before" | "after"
    tree: Path
    commit: str
    database_url: str
    processes: int = 1  # API processes its `tracer serve` runs (code without --processes: 1)
    key: str = ""
    key_id: str = ""


async def _database_exists(server_url: str, name: str) -> bool:
    conn = await asyncpg.connect(server_url)
    try:
        return bool(await conn.fetchval("SELECT true FROM pg_database WHERE datname = $1", name))
    finally:
        await conn.close()


async def prepare(args: argparse.Namespace) -> tuple[list[Version], int, float]:
    """The databases and the trace: the previous code's database holds the synthesised trace under
    its own migrations; this code's is a copy of it migrated forward (its trace_exits backfilled by
    migration 019 as on any upgraded database)."""
    after_url = args.database_url
    if args.before in ("", "none"):
        db = await Database.connect(after_url, max_size=4)
        try:
            trace_id, synth_s = await find_or_make_trace(db.pool, args.hops, args.fresh)
            await exits_as_written(db, trace_id)
        finally:
            await db.close()
        return [Version("after", ROOT, head_commit(), after_url)], trace_id, synth_s
    tree, commit = before_tree(args.before)
    name = database_name(after_url)
    before_url = with_database(after_url, f"{name}_before")
    server = with_database(after_url, "postgres")
    await ensure_database(server, f"{name}_before")
    db = await Database.connect(before_url, max_size=4, migrations_dir=tree / "schemas" / "migrations")
    try:
        trace_id, synth_s = await find_or_make_trace(db.pool, args.hops, args.fresh)
    finally:
        await db.close()
    if synth_s or not await _database_exists(server, name):
        conn = await asyncpg.connect(server)
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)}")
            await conn.execute(f"CREATE DATABASE {quote_ident(name)} TEMPLATE {quote_ident(name + '_before')}")
        finally:
            await conn.close()
    db = await Database.connect(after_url, max_size=2)  # migrations of this code (019: trace_exits)
    try:
        await exits_as_written(db, trace_id)
    finally:
        await db.close()
    return [Version("before", tree, commit, before_url), Version("after", ROOT, head_commit(), after_url)], \
        trace_id, synth_s


async def exits_as_written(db: Database, trace_id: int) -> None:
    """The trace's trace_exits rows as this code's commit writes them. Migration 019 rebuilt them from
    the hops COPY wrote, but Postgres cannot compute the address checksums the commit keeps with each
    row since migration 030 (no keccak); without them /exits would compute them as for rows of an
    older release. Refreshed once, in one transaction, by the store function the commit calls."""
    async with db.pool.acquire() as conn:
        if not await conn.fetchval("""SELECT EXISTS (SELECT 1 FROM information_schema.columns
                                      WHERE table_name = 'trace_exits' AND column_name = 'address_checksum')"""):
            return
        missing = await conn.fetch("SELECT DISTINCT chain, address FROM trace_exits WHERE trace_id = $1 "
                                   "AND address_checksum IS NULL", trace_id)
        if missing:
            async with conn.transaction():
                await hop_store.refresh_exits(conn, trace_id, [(r["chain"], r["address"]) for r in missing])
        # Migrations rewrite every exit row (030, 033): as a long-running database's autovacuum would,
        # before measuring (else each read walks the dead versions: 0.37 -> 0.51 ms of Postgres CPU).
        await conn.execute("VACUUM (ANALYZE) trace_exits")


async def _with_key(v: Version, trace_id: int) -> tuple[int, int]:
    db = await Database.connect(v.database_url, max_size=2, migrate=False)
    try:
        async with db.pool.acquire() as conn:
            bench_key, v.key = await key_store.create_key(conn, "bench", ["read"], created_by="bench")
            v.key_id = bench_key.key_id
        hops = await db.pool.fetchval("SELECT count(*) FROM hops WHERE trace_id = $1", trace_id)
        exits = await db.pool.fetchval(
            "SELECT count(DISTINCT (to_addr, asset)) FROM hops WHERE trace_id = $1 AND status = 'exit'", trace_id)
        return int(hops), int(exits)
    finally:
        await db.close()


async def _set_status(v: Version, trace_id: int, status: str) -> None:
    conn = await asyncpg.connect(v.database_url)
    try:
        await conn.execute("UPDATE traces SET status = $2 WHERE id = $1", trace_id, status)
    finally:
        await conn.close()


def _session(v: Version, clients: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients), headers={"X-API-Key": v.key},
                                 timeout=aiohttp.ClientTimeout(total=600))


async def _first(session: aiohttp.ClientSession, url: str) -> None:
    """One request on its own first: a finished trace's dollars are summed once per server (every
    hop priced, tens of seconds on a million hops) and kept; the load measures the requests after."""
    async with session.get(url) as r:
        await r.read()


async def measure(args: argparse.Namespace, versions: list[Version], trace_id: int, servers: Servers
                  ) -> dict[str, Any]:
    """Each endpoint on each version, one version right after the other."""
    out: dict[str, dict[str, Any]] = {v.name: {} for v in versions}
    exits_url = [f"/v1/traces/{trace_id}/exits"]
    urls: dict[str, list[str]] = {}

    def record(v: Version, key: str, result: Result) -> None:
        out[v.name][key] = {**result.summary(), "load_average_before": [round(x, 2) for x in os.getloadavg()]}

    for v in versions:  # the default server: cached exits and pages of hops
        proc, base = servers.start(v, "default")
        try:
            async with _session(v, args.clients) as session:
                urls[v.name] = await collect_cursors(session, base, trace_id, args.pages)
                await _first(session, base + exits_url[0])
                await load(session, base, "warmup", exits_url + urls[v.name][:10], args.clients,
                           min(2.0, args.seconds / 2), proc.pid)
                record(v, "exits", await load(session, base, "GET /exits", exits_url, args.clients, args.seconds,
                                              proc.pid, v.database_url))
                load_avg = [round(x, 2) for x in os.getloadavg()]
                hops = await load(session, base, "GET /hops page (100)", urls[v.name], args.clients, args.seconds,
                                  proc.pid, v.database_url)
                out[v.name]["hops_page"] = {**hops.summary(), "load_average_before": load_avg}
        finally:
            stop_server(proc)
        if not serves_processes(v.tree):
            continue
        # Every page computed (no page kept): what a page of a running trace, or a finished
        # trace's page asked for the first time, costs; and the same on one process.
        for key in ("hops_page_uncached", "hops_page_one_process"):
            proc, base = servers.start(v, key)
            try:
                async with _session(v, args.clients) as session:
                    await load(session, base, "warmup", urls[v.name][:20], args.clients, min(2.0, args.seconds / 2),
                               proc.pid)
                    record(v, key, await load(session, base, "GET /hops page (100), no page cache", urls[v.name],
                                              args.clients, args.seconds, proc.pid, v.database_url))
            finally:
                stop_server(proc)
    # No rendered exits kept: every request reads the exits (and, for the finished trace, the
    # dollars summed once per server); then the same trace as if still running (never cached,
    # its dollars deferred past TRACER_API_LIVE_USD_MAX_HOPS).
    for v in versions:
        proc, base = servers.start(v, "exits_uncached")
        try:
            async with _session(v, args.clients) as session:
                await _first(session, base + exits_url[0])
                await load(session, base, "warmup", exits_url, args.clients, min(1.0, args.seconds / 4), proc.pid)
                record(v, "exits_uncached", await load(session, base, "GET /exits (no cache)", exits_url,
                                                       args.clients, args.seconds, proc.pid, v.database_url))
                await _set_status(v, trace_id, "running")
                try:
                    await load(session, base, "warmup", exits_url, args.clients, min(1.0, args.seconds / 4),
                               proc.pid)
                    record(v, "exits_running", await load(session, base, "GET /exits (running)", exits_url,
                                                          args.clients, args.seconds, proc.pid, v.database_url))
                finally:
                    await _set_status(v, trace_id, "done")
        finally:
            stop_server(proc)
    return {"results": out, "hop_page_urls": len(next(iter(urls.values())))}


# Where a profiled server's CPU went, by the file of the function that spent it (tottime); C
# functions (file "~") by their name. The event loop's wait in epoll is idle time, left out.
PARTS = (("SQL driver (asyncpg)", ("asyncpg",)), ("JSON encoding", ("json/", "orjson", "dumps", "encode")),
         ("serialising rows (api/serialize)", ("api/serialize",)),
         ("dollars (pricing, Decimal)", ("engine/pricing", "decimal", "Decimal", "api/usd", "store/prices")),
         ("EIP-55 checksums", ("eth_utils", "eth_hash", "addresses.py", "keccak")),
         ("HTTP (aiohttp, yarl, multidict)", ("aiohttp", "yarl", "multidict")),
         ("handlers, store and the rest", ("",)))


def cpu_parts(prof: Path) -> dict[str, float]:
    parts: dict[str, float] = {name: 0.0 for name, _ in PARTS}
    stats = pstats.Stats(str(prof))
    for (path, _, func), row in stats.stats.items():  # type: ignore[attr-defined]
        where = func if path == "~" else path
        if "epoll" in where or "select" in where:
            continue
        for name, needles in PARTS:
            if any(n in where for n in needles):
                parts[name] += row[2]
                break
    return parts


async def profile(args: argparse.Namespace, versions: list[Version], trace_id: int, servers: Servers
                  ) -> dict[str, Any]:
    """One client, the server under cProfile: `args.profile_pages` pages of hops in a row (every
    page computed: no page kept), then as many exits of the trace marked running (no exits cache).
    The CPU shares count every request the server answered (the cursors walked, the warm-up and the
    measured ones); the Postgres CPU is that of the backends serving the version's database."""
    out: dict[str, Any] = {}
    rng = random.Random(7)
    for v in versions:
        idle = _idle_parts(v, servers)
        out[v.name] = await _profile_one(args, v, servers, "profile_pages", lambda urls: rng.choice(urls), trace_id,
                                         idle)
        await _set_status(v, trace_id, "running")
        try:
            out[v.name]["exits_running"] = await _profile_one(
                args, v, servers, "profile_exits", lambda urls: f"/v1/traces/{trace_id}/exits", trace_id, idle)
        finally:
            await _set_status(v, trace_id, "done")
    return out


def _idle_parts(v: Version, servers: Servers) -> dict[str, float]:
    """What starting (imports, web3's curve tables) and stopping a server of `v` costs, by part: a
    profile covers the whole process, so each of the version's profiles subtracts this."""
    proc, _ = servers.start(v, "profile_idle")
    stop_server(proc)
    idle = servers.profile(v, "profile_idle")
    return cpu_parts(idle) if idle is not None and idle.exists() else {}


async def _profile_one(args: argparse.Namespace, v: Version, servers: Servers, key: str,
                       pick: Callable[[list[str]], str], trace_id: int, idle: dict[str, float]) -> dict[str, Any]:
    """`pick`: the path of the next request (of the hop pages walked, for "profile_pages"); `idle`:
    the version's start-up and shutdown CPU by part (`_idle_parts`), subtracted."""
    proc, base = servers.start(v, key)
    try:
        async with _session(v, 1) as session:
            urls = await collect_cursors(session, base, trace_id, args.pages) if key == "profile_pages" else []
            for u in urls[:20] or [pick(urls)] * 20:  # warm: plans, pools, caches
                await _first(session, base + u)
            pg0 = await postgres_cpu(v.database_url)
            cpu0, started = cpu_seconds(proc.pid), time.perf_counter()
            for _ in range(args.profile_pages):
                await _first(session, base + pick(urls))
            wall = time.perf_counter() - started
            cpu = cpu_seconds(proc.pid) - cpu0
            pg = sum(x - pg0.get(pid, 0.0) for pid, x in (await postgres_cpu(v.database_url)).items())
    finally:
        stop_server(proc)
    prof = servers.profile(v, key)
    parts = cpu_parts(prof) if prof is not None and prof.exists() else {}
    parts = {k: max(0.0, x - idle.get(k, 0.0)) for k, x in parts.items()}
    total = sum(parts.values()) or 1.0
    n = args.profile_pages
    return {
        "requests": n, "wall_ms_per_request": round(wall * 1000 / n, 2),
        "server_cpu_ms_per_request": round(cpu * 1000 / n, 2),
        "postgres_cpu_ms_per_request": round(pg * 1000 / n, 2),
        # Wall time the server spent not on its CPU: mostly waiting for Postgres (one client, no queueing).
        "waiting_ms_per_request": round(max(0.0, wall - cpu) * 1000 / n, 2),
        # cProfile's own overhead inflates CPU; the shares are what matters.
        "cpu_share_by_part": {k: round(x / total, 3) for k, x in parts.items()},
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    versions, trace_id, synth_s = await prepare(args)
    for v in versions:
        v.processes = args.processes if serves_processes(v.tree) else 1
    hop_count, exit_count = 0, 0
    for v in versions:
        hop_count, exit_count = await _with_key(v, trace_id)
    servers = Servers(args, versions)
    try:
        measured = await measure(args, versions, trace_id, servers)
        profiled = await profile(args, versions, trace_id, servers) if args.profile_pages else {}
    finally:
        servers.close()
        for v in versions:  # the benchmark's keys are not left usable behind it
            db = await Database.connect(v.database_url, max_size=2, migrate=False)
            try:
                async with db.pool.acquire() as conn:
                    await key_store.revoke_key(conn, v.key_id)
            finally:
                await db.close()
    after = measured["results"]["after"]
    return {
        "benchmark": "api_latency", "smoke": args.smoke, "trace_id": trace_id, "hops_in_trace": hop_count,
        "exit_rows": exit_count, "synthesis_seconds": round(synth_s, 1), "clients": args.clients,
        "seconds_per_endpoint": args.seconds, "hop_page_urls": measured["hop_page_urls"],
        # What is measured: the API over a trace synthesised by COPY, not one the engine traced.
        "trace_source": "synthesised with COPY (no engine run)",
        "postgres": {"version": await _server_version(args.database_url)},
        "versions": {v.name: {"commit": v.commit, "tree": str(v.tree), "processes": v.processes} for v in versions},
        # This code's figures (what the README row shows), then each version's side by side.
        "results": after,
        "side_by_side": measured["results"],
        "profile": profiled,
        "targets": targets(after),
    }


TARGETS = {"hops_page": (1500.0, 60.0), "exits_running": (None, 60.0)}


def targets(after: dict[str, Any]) -> dict[str, Any]:
    """#22: a page of 100 hops >= 1,500 req/s with p99 <= 60 ms at 50 clients on 1M hops; exits of
    a running trace p99 <= 60 ms, uncached."""
    out: dict[str, Any] = {}
    for key, (rps, p99) in TARGETS.items():
        r = after.get(key)
        if r is None:
            continue
        met_rps = rps is None or r["requests_per_s"] >= rps
        out[key] = {"requests_per_s_target": rps, "p99_ms_target": p99, "met": bool(met_rps and r["p99_ms"] <= p99)}
    return out


async def _server_version(url: str) -> str:
    conn = await asyncpg.connect(url)
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


ROWS = (("GET /traces/{id}/exits", "exits"), ("  same, exits cache off", "exits_uncached"),
        ("  same, trace running", "exits_running"), ("GET /traces/{id}/hops", "hops_page"),
        ("  same, page cache off", "hops_page_uncached"), ("  same, one process", "hops_page_one_process"))


def print_table(report: dict[str, Any]) -> None:
    print(f"\nAPI latency: trace #{report['trace_id']} with {report['hops_in_trace']:,} hops, "
          f"{report['exit_rows']} exit rows, {report['clients']} concurrent clients, "
          f"{report['seconds_per_endpoint']} s per endpoint")
    for name, v in report["versions"].items():
        print(f"  {name}: {v['commit']}, {v.get('processes', 1)} API process(es)")
    print(f"{'endpoint':<26} {'code':<7} {'requests':>9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} "
          f"{'CPU ms/req':>11} {'Postgres':>9} {'client CPU':>10} {'load avg':>8}")
    for label, key in ROWS:
        for version, results in report["side_by_side"].items():
            r = results.get(key)
            if r is None:
                continue
            print(f"{label:<26} {version:<7} {r['requests']:>9} {r['requests_per_s']:>8} {r['p50_ms']:>8} "
                  f"{r['p99_ms']:>8} {r['errors']:>7} {r['server_cpu_ms_per_request']:>11} "
                  f"{r.get('postgres_cpu_ms_per_request', float('nan')):>9} "
                  f"{r.get('client_cpu_ms_per_request', float('nan')):>10} {r['load_average_before'][0]:>8}")
    for version, prof in report["profile"].items():
        for what, p in (("a page of hops", prof), ("exits of the running trace", prof.get("exits_running"))):
            if p is None:
                continue
            parts = ", ".join(f"{k} {v:.0%}" for k, v in p["cpu_share_by_part"].items() if v >= 0.01)
            print(f"profile {version}, {what}: {p['wall_ms_per_request']} ms wall with one client, "
                  f"{p['server_cpu_ms_per_request']} ms server CPU (under cProfile), "
                  f"{p['postgres_cpu_ms_per_request']} ms Postgres CPU, {p['waiting_ms_per_request']} ms "
                  f"waiting; server CPU: {parts}")
    for key, t in report["targets"].items():
        print(f"target {key}: {'met' if t['met'] else 'NOT met'}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--database-url", default=os.environ.get("DATABASE_URL"),
                   help="Postgres URL (env DATABASE_URL); a dedicated database is best")
    p.add_argument("--hops", type=int, default=1_000_000)
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--seconds", type=float, default=15.0, help="load time per endpoint")
    p.add_argument("--pages", type=int, default=200, help="hop pages walked (over four sort orders) to draw from")
    p.add_argument("--fresh", action="store_true", help="synthesise a new trace even if one exists")
    p.add_argument("--before", default=None,
                   help=f"git ref of the previous code to run side by side (default {BEFORE}; with --smoke "
                        "none); 'none': this code only")
    p.add_argument("--profile-pages", type=int, default=None,
                   help="pages of hops, and exits of the running trace, in the profile (default 300; with --smoke "
                        "0); 0: none")
    p.add_argument("--processes", type=int, default=2,
                   help="API processes of code that has `tracer serve --processes` (default 2: both cores)")
    p.add_argument("--smoke", action="store_true", help="tiny and quick: 3,000 hops, 5 clients, 0.3 s each, no profile")
    p.add_argument("--out", type=Path, default=None, help="result file (default bench/results/api_latency.json)")
    args = p.parse_args()
    if args.before is None:
        args.before = "none" if args.smoke else BEFORE
    if args.profile_pages is None:
        # A smoke run shows the bench works and writes the figures the README's table is made of; the
        # profile is none of them, and its three servers under cProfile cost more CPU than the rest.
        args.profile_pages = 0 if args.smoke else 300
    if args.smoke:
        args.hops, args.clients, args.seconds, args.pages = 3000, 5, 0.3, 8
    if not args.database_url:
        p.error("--database-url (or DATABASE_URL) is required: the benchmark writes a million rows")
    report = asyncio.run(run(args))
    print_table(report)
    write_result("api_latency", report, args.smoke, args.out, database_url=args.database_url)
    failed = sum(r["errors"] for r in report["results"].values())
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
