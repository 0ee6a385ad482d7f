"""Memory: peak RSS of a trace worker (during the tracing-speed bench) and of the API server
(during the API latency bench).

Both benches run real processes; this script runs them as they are and reads each process's
kernel high-water mark (VmHWM in /proc/<pid>/status, Linux), which no sampling interval can miss:

- workers: bench/trace_speed.py records the peak of every `tracer worker` process it starts; this
  script runs it (or, with --reuse-trace-speed, reads the figures of its last full run);
- API: bench/api_latency.py starts a `tracer serve` process and loads it with concurrent clients;
  this script runs it on a throwaway database and watches that child process.

    python bench/memory.py                              # runs both benches at full size (long)
    python bench/memory.py --reuse-trace-speed          # API now, workers from trace_speed.json
    python bench/memory.py --trace-speed-json F.json    # API now, workers from that trace_speed result
    python bench/memory.py --smoke                      # both benches' smoke sizes, at once (the suite runs it)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from common import (
    RESULTS,
    ROOT,
    add_common_args,
    children_of,
    cmdline,
    drop_database,
    machine,
    migrated_database,
    new_db_name,
    peak_rss_mb,
    rss_mb,
    server_url,
    table,
    write_result,
)

NAME = "memory"


def run_watched(cmd: list[str], role_marker: str, log: Path, every: float = 0.2) -> dict[str, Any]:
    """Run `cmd` to completion, tracking the peak RSS of its direct children whose command line
    contains `role_marker` (and its own, for context)."""
    peaks: dict[int, float] = {}
    timeline: list[tuple[float, float]] = []
    started = time.monotonic()
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        own = 0.0
        while proc.poll() is None:
            for pid in children_of(proc.pid):
                if role_marker in cmdline(pid):
                    peak = peak_rss_mb(pid)
                    if peak is not None:
                        peaks[pid] = max(peaks.get(pid, 0.0), peak)
                    now = rss_mb(pid)
                    if now is not None:
                        timeline.append((round(time.monotonic() - started, 1), round(now, 1)))
            own = max(own, peak_rss_mb(proc.pid) or 0.0)
            time.sleep(every)
    if proc.returncode != 0:
        raise SystemExit(f"{shlex.join(cmd)} failed ({proc.returncode}):\n{log.read_text(errors='replace')[-4000:]}")
    # A timeline point every few seconds is plenty for the JSON.
    step = max(1, len(timeline) // 200)
    return {"peak_rss_mb": round(max(peaks.values()), 1) if peaks else None, "processes": len(peaks),
            "driver_peak_rss_mb": round(own, 1), "rss_timeline_mb": timeline[::step],
            "seconds": round(time.monotonic() - started, 1)}


def api_memory(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    pg = server_url(args.database_url)
    name = new_db_name("mem_api")
    asyncio.run(migrated_database(pg, name))
    # --api-latency-json keeps api_latency's result and output (the suite checks them too, instead
    # of running the same smoke again).
    out = args.api_latency_json or tmp / "api_latency.json"
    log = out.with_suffix(".log") if args.api_latency_json else tmp / "api.log"
    try:
        from tracer.store.urls import with_database

        cmd = [sys.executable, str(ROOT / "bench" / "api_latency.py"), "--database-url", with_database(pg, name),
               "--out", str(out), *shlex.split(args.api_args)]
        if args.smoke:
            cmd.append("--smoke")
        print(f"API: {shlex.join(cmd[1:])}", flush=True)
        watched = run_watched(cmd, "tracer.cli serve", log)
    finally:
        asyncio.run(drop_database(pg, name))
    report = json.loads(out.read_text())
    results = report.get("results", {})
    watched["during"] = (f"api_latency: {report.get('hops_in_trace', 0):,} hops, {report.get('clients')} clients, "
                         f"{sum(r.get('requests', 0) for r in results.values()):,} requests")
    watched["api_latency"] = {k: report.get(k) for k in ("hops_in_trace", "clients", "seconds_per_endpoint", "results")}
    return watched


def worker_memory(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    if args.reuse_trace_speed or args.trace_speed_json:
        path = args.trace_speed_json or RESULTS / ("trace_speed.smoke.json" if args.smoke else "trace_speed.json")
        if not path.exists():
            raise SystemExit(f"--reuse-trace-speed: {path} does not exist; run bench/trace_speed.py first")
        report = json.loads(path.read_text())
        source = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
    else:
        # --trace-speed-out keeps trace_speed's result and output (the suite checks them too,
        # instead of running the same smoke again).
        out = args.trace_speed_out or tmp / "trace_speed.json"
        cmd = [sys.executable, str(ROOT / "bench" / "trace_speed.py"), "--out", str(out),
               *shlex.split(args.trace_args)]
        if args.smoke:
            cmd.append("--smoke")
        if args.database_url:
            cmd += ["--database-url", args.database_url]
        print(f"workers: {shlex.join(cmd[1:])}", flush=True)
        # trace_speed reads its own workers' high-water marks (they are its children).
        log = out.with_suffix(".log") if args.trace_speed_out else tmp / "trace_speed.log"
        with log.open("wb") as fh:
            if subprocess.run(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT).returncode != 0:
                raise SystemExit(f"trace_speed failed:\n{log.read_text(errors='replace')[-4000:]}")
        report = json.loads(out.read_text())
        source = "this run"
    runs = []
    for r in report["runs"]:
        peaks = r.get("worker_peak_rss_mb") or []
        runs.append({"workers": r["workers"], "hops": r["hops"], "wall_seconds": r["wall_seconds"],
                     "peak_rss_mb": max(peaks) if peaks else None, "per_worker_mb": peaks})
    sc = report["scenario"]
    return {"source": source, "scenario_transfers": sc["transfers"], "runs": runs,
            "peak_rss_mb": max((r["peak_rss_mb"] or 0) for r in runs) if runs else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reuse-trace-speed", action="store_true",
                        help="take the workers' figures from bench/results/trace_speed.json instead of re-running")
    parser.add_argument("--trace-speed-json", type=Path, default=None,
                        help="take the workers' figures from this trace_speed result file instead of re-running")
    parser.add_argument("--trace-speed-out", type=Path, default=None,
                        help="keep the result file of the trace_speed run here (and its output next to it, as .log)")
    parser.add_argument("--api-latency-json", type=Path, default=None,
                        help="keep api_latency's result file here (and its output next to it, as .log)")
    parser.add_argument("--trace-args", default="", help="extra arguments for bench/trace_speed.py")
    parser.add_argument("--api-args", default="", help="extra arguments for bench/api_latency.py")
    add_common_args(parser)
    args = parser.parse_args(argv)
    if args.trace_speed_out and (args.reuse_trace_speed or args.trace_speed_json):
        parser.error("--trace-speed-out keeps the result of a trace_speed run: not with figures taken from a file")
    with tempfile.TemporaryDirectory(prefix="tracer-bench-memory-") as tmp_name:
        tmp = Path(tmp_name)
        if args.smoke:
            # A smoke run's figures mean nothing (it shows that both benches run end to end under
            # the watch): both at once, so their process start-ups and waits overlap.
            with ThreadPoolExecutor(2) as pool:
                worker_run, api_run = pool.submit(worker_memory, args, tmp), pool.submit(api_memory, args, tmp)
                workers, api = worker_run.result(), api_run.result()
        else:
            # One heavy bench at a time: they share the machine's cores and Postgres.
            workers = worker_memory(args, tmp)
            api = api_memory(args, tmp)
    report = {"benchmark": NAME, "smoke": bool(args.smoke), "worker": workers, "api": api, "machine": machine()}
    rows: list[list[Any]] = [
        ["tracer worker", f"trace_speed, {r['workers']} worker(s), {r['hops']:,} hops ({workers['source']})",
         r["peak_rss_mb"]] for r in workers["runs"]]
    rows.append(["tracer serve (API)", api["during"], api["peak_rss_mb"]])
    print()
    print(table("Peak RSS (VmHWM) per process", ["process", "during", "peak RSS MB"], rows))
    write_result(NAME, report, args.smoke, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
