"""Helpers shared by the bench scripts: where results go, throwaway databases, worker processes,
peak memory of processes, and plain-text tables.

Every script prints a table and writes JSON to `bench/results/<name>.json`, or
`<name>.smoke.json` for `--smoke` runs, so a smoke run (the test suite runs one of each) never
overwrites the figures of a full run.
"""

from __future__ import annotations

import asyncio
import os
import platform
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tracer.store.db import create_pool  # noqa: E402
from tracer.store.migrate import migrate  # noqa: E402
from tracer.store.urls import quote_ident, with_database  # noqa: E402

RESULTS = ROOT / "bench" / "results"
# The machine's Postgres as the team runs it (trust auth on 127.0.0.1); a flag or env overrides.
DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DB_PREFIX = "tracer_bench_"


def server_url(explicit: str | None) -> str:
    """URL of the Postgres server the bench may create databases on (any database on it works:
    the bench only connects there to CREATE/DROP its own `tracer_bench_*` databases)."""
    return explicit or os.environ.get("TRACER_BENCH_DATABASE_URL") or DEFAULT_SERVER_URL


def add_common_args(parser: Any, *, database: bool = True) -> None:
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, a few seconds (run by the test suite)")
    parser.add_argument("--out", type=Path, default=None, help="JSON result file (default bench/results/<name>.json)")
    if database:
        parser.add_argument(
            "--database-url",
            default=None,
            help="a Postgres server to create throwaway tracer_bench_* databases on "
            f"(env TRACER_BENCH_DATABASE_URL, default {DEFAULT_SERVER_URL})",
        )


def result_path(name: str, smoke: bool, out: Path | None) -> Path:
    if out is not None:
        return out
    return RESULTS / (f"{name}.smoke.json" if smoke else f"{name}.json")


def write_result(name: str, report: dict[str, Any], smoke: bool, out: Path | None, *,
                 database_url: str | None = None) -> Path:
    """Write the report with the machine facts it was measured under (see `machine`)."""
    import json

    facts = machine(database_url or server_url(None))
    # A bench's own machine entries (load before the run, say) are kept next to the common ones.
    report["machine"] = {**report.get("machine", {}), **facts}
    path = result_path(name, smoke, out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"\nwrote {path}")
    return path


#: Packages whose versions move the figures (the driver, the HTTP stack, the node client).
PACKAGES = ("tracer", "asyncpg", "aiohttp", "web3", "networkx", "orjson", "uvloop")


def package_versions() -> dict[str, str]:
    from importlib import metadata

    out: dict[str, str] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def postgres_version(url: str) -> str | None:
    """The server version at `url`, or None when it cannot be reached (the facts stay writable)."""
    import threading

    found: list[str] = []

    async def ask() -> None:
        conn = await asyncpg.connect(url, timeout=10)
        try:
            found.append(str(await conn.fetchval("SHOW server_version")))
        finally:
            await conn.close()

    def run() -> None:
        try:
            asyncio.run(ask())
        except (OSError, asyncpg.PostgresError, TimeoutError):
            pass

    # Its own thread and loop: callers may already be inside a running loop.
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(30)
    return found[0] if found else None


def machine(database_url: str | None = None) -> dict[str, Any]:
    """What the figures were measured on (they mean little without it): cores, memory, load
    average (1, 5, 15 min: the machine is shared, and other work moves the figures), Python,
    Postgres and package versions, and the commit of the code."""
    mem_gb = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    mem_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
                    break
    except OSError:
        pass
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = []
    facts: dict[str, Any] = {
        "cpus": os.cpu_count(), "memory_gb": mem_gb, "python": platform.python_version(),
        "platform": platform.platform(), "load_average": load, "packages": package_versions(),
        "code": code_version()}
    if database_url:
        facts["postgres"] = postgres_version(database_url)
    return facts


def git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def before_tree(ref: str) -> tuple[Path, str]:
    """A detached git worktree of `ref` (kept under the temp folder for later runs) and its commit
    id: the previous code, for benches that run it side by side with this tree."""
    commit = git("rev-parse", "--verify", f"{ref}^{{commit}}")
    tree = Path(tempfile.gettempdir()) / f"tracer-bench-before-{commit[:12]}"
    if not (tree / "tracer").is_dir():
        subprocess.run(["git", "worktree", "add", "--detach", "--force", str(tree), commit], cwd=ROOT, check=True,
                       capture_output=True)
    return tree, commit


def head_commit() -> str:
    """This tree's commit, `+dirty` when tracked files differ from it."""
    commit = git("rev-parse", "HEAD")
    # Result files the benchmarks rewrite are no change of the code measured.
    changed = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench/results")
    return commit + ("+dirty" if changed else "")


def code_version() -> str:
    """The commit the figures were measured on (`+dirty` when the work tree differs from it)."""
    stamp = ROOT / ".bench-commit"  # written by exports of a commit, which have no .git
    if stamp.exists():
        return stamp.read_text().strip()
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (head + ("+dirty" if dirty else "")) if head else "unknown"


async def postgres_info(url: str) -> dict[str, Any]:
    conn = await asyncpg.connect(url)
    try:
        out: dict[str, Any] = {"version": (await conn.fetchval("SHOW server_version"))}
        for name in ("shared_buffers", "synchronous_commit", "fsync", "work_mem", "max_wal_size"):
            out[name] = await conn.fetchval(f"SHOW {name}")
        return out
    finally:
        await conn.close()


# ------------------------------------------------------------------------------------ databases


def new_db_name(bench: str) -> str:
    # A random suffix: two runs (a developer's and the test suite's) never collide on one server.
    return f"{DB_PREFIX}{bench}_{secrets.token_hex(4)}"


async def create_database(server: str, name: str, *, template: str | None = None) -> str:
    conn = await asyncpg.connect(server)
    try:
        sql = f"CREATE DATABASE {quote_ident(name)}"
        if template:
            sql += f" TEMPLATE {quote_ident(template)}"
        await conn.execute(sql)
    finally:
        await conn.close()
    return with_database(server, name)


async def drop_database(server: str, name: str) -> None:
    conn = await asyncpg.connect(server)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")
    finally:
        await conn.close()


async def migrated_database(server: str, name: str) -> str:
    """A new database with the schema applied; returns its URL."""
    url = await create_database(server, name)
    pool = await create_pool(url, min_size=1, max_size=1)
    try:
        await migrate(pool)
    finally:
        await pool.close()
    return url


@asynccontextmanager
async def throwaway_database(server: str, bench: str, *, keep: bool = False) -> AsyncIterator[str]:
    """A new migrated `tracer_bench_<bench>_*` database on `server` (yields its URL), dropped on
    exit unless `keep` (to look at what a run wrote)."""
    name = new_db_name(bench)
    url = await migrated_database(server, name)
    try:
        yield url
    finally:
        if not keep:
            await drop_database(server, name)


# ------------------------------------------------------------------------------------ processes


def peak_rss_mb(pid: int) -> float | None:
    """Peak resident set size of a live process (Linux VmHWM), in MiB; None if unreadable.

    VmHWM is the kernel's own high-water mark, so sampling now and then cannot miss a short peak:
    the last reading before the process ends is its peak over its whole life.
    """
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def children_of(pid: int) -> list[int]:
    """Direct children of a process (Linux /proc), for watching what a script spawns."""
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                out.extend(int(p) for p in fh.read().split())
    except OSError:
        pass
    return out


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


@dataclass
class WorkerFleet:
    """Real `tracer worker` OS processes (what a deployment runs), with their peak memory.

    Their stderr goes to files: a pipe nobody reads would fill up and stall a worker mid-trace.
    """

    database_url: str
    rpc_url: str
    count: int
    log_dir: Path
    extra_args: Sequence[str] = ()
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    peaks: dict[int, float] = field(default_factory=dict)

    async def start(self, timeout: float = 60.0) -> None:
        self.spawn()
        await self.wait_ready(timeout)

    def spawn(self) -> None:
        env = dict(os.environ, TRACER_LOG_LEVEL="WARNING")
        env.pop("DATABASE_URL", None)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for i in range(self.count):
            log_path = self.log_dir / f"worker-{i}.log"
            with log_path.open("wb") as log:
                self.procs.append(subprocess.Popen(
                    [sys.executable, "-m", "tracer.cli", "worker", "--database-url", self.database_url,
                     "--rpc", self.rpc_url, *self.extra_args],
                    cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log))

    async def wait_ready(self, timeout: float) -> None:
        # Ready when each says so: the trace clock must not include Python start-up and imports.
        # Waiting must not block the event loop: the devchain they connect to may be served by it.
        deadline = time.monotonic() + timeout
        for i, proc in enumerate(self.procs):
            log_path = self.log_dir / f"worker-{i}.log"
            while "tracer worker:" not in log_path.read_text(errors="replace"):
                if proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"worker {i} did not start:\n{log_path.read_text(errors='replace')}")
                await asyncio.sleep(0.05)

    def sample(self) -> None:
        for p in self.procs:
            peak = peak_rss_mb(p.pid)
            if peak is not None:
                self.peaks[p.pid] = max(self.peaks.get(p.pid, 0.0), peak)

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.procs)

    def logs(self) -> str:
        return "\n".join((self.log_dir / f"worker-{i}.log").read_text(errors="replace")[-4000:]
                         for i in range(len(self.procs)))

    def stop(self) -> None:
        self.sample()
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


async def sample_while(fleet: WorkerFleet, stop: asyncio.Event, every: float = 0.5) -> None:
    while not stop.is_set():
        fleet.sample()
        try:
            await asyncio.wait_for(stop.wait(), every)
        except TimeoutError:
            pass


# ------------------------------------------------------------------------------------ tables


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}" if abs(value) >= 0.1 else f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A plain-text table: first column left-aligned, the rest right-aligned."""
    cells = [[fmt(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths,
                                                                                             strict=True)))

    head = line(list(columns))
    return "\n".join([title, head, "-" * len(head), *(line(r) for r in cells)])


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
