"""Each bench script's --smoke run works end to end, so the benches keep working.

Only that the scripts run and write well-formed results is checked: the figures themselves are
never part of the suite's pass/fail. They run on the test session's Postgres server (each script
creates and drops its own throwaway databases there).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(script: str, out: Path, server: str, *extra: str, timeout: float = 300) -> dict[str, Any]:
    cmd = [sys.executable, str(ROOT / "bench" / script), "--smoke", "--out", str(out), "--database-url", server,
           *extra]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    report: dict[str, Any] = json.loads(out.read_text())
    assert report["smoke"] is True
    return report


@pytest.fixture(scope="module")
def memory(tmp_path_factory: pytest.TempPathFactory, pg_server_url: str) -> tuple[dict[str, Any], Path]:
    """One memory smoke: its halves are trace_speed's smoke (the workers' peaks come from its
    result) and api_latency's (a real `tracer serve` loaded by clients), run at once. Both results
    are kept (in the folder returned) for test_trace_speed_smoke and test_api_latency_smoke instead
    of running the same smokes again."""
    tmp = tmp_path_factory.mktemp("memory")
    report = _run("memory.py", tmp / "memory.json", pg_server_url, "--trace-speed-out", str(tmp / "trace_speed.json"),
                  "--api-latency-json", str(tmp / "api_latency.json"))
    return report, tmp


def test_trace_speed_smoke(memory: tuple[dict[str, Any], Path]) -> None:
    """bench/trace_speed.py --smoke runs end to end: real worker fleets of 1 and 2 trace a devchain
    and the result file has each run's figures."""
    _, tmp = memory
    report = json.loads((tmp / "trace_speed.json").read_text())
    assert report["smoke"] is True
    assert [r["workers"] for r in report["runs"]] == [1, 2]
    for r in report["runs"]:
        assert r["hops"] > 0 and r["wall_seconds"] > 0
        assert r["jsonrpc_calls"] > 0 and r["lower_bound"]["calls"] > 0 and r["lower_bound"]["seconds"] > 0
        assert r["worker_peak_rss_mb"]


def test_ingest_smoke(tmp_path: Path, pg_server_url: str) -> None:
    report = _run("ingest.py", tmp_path / "ingest.json", pg_server_url)
    paths = {r["path"] for r in report["results"]}
    assert {"transfers: COPY", "hops: COPY"} <= paths
    assert any(p.startswith("hops: upsert_hops") for p in paths)
    assert all(r["rows_per_second"] > 0 and r["ratio_to_copy"] > 0 for r in report["results"])


def test_accuracy_smoke(tmp_path: Path, pg_server_url: str) -> None:
    # With no case folder, --smoke writes a made-up case: the suite never needs the real ones.
    report = _run("accuracy.py", tmp_path / "accuracy.json", pg_server_url)
    (case,) = report["cases"]
    assert case["status"] == "done"
    for key in ("terminal_recall", "value_recall", "false_exits", "hops_per_edge"):
        assert case[key] is not None


def test_accuracy_anvil_smoke(tmp_path: Path, pg_server_url: str) -> None:
    from tests.anvil_support import require_anvil

    require_anvil()
    report = _run("accuracy.py", tmp_path / "accuracy_anvil.json", pg_server_url, "--node", "anvil")
    (dev,), (anvil,) = report["cases"], report["anvil_cases"]
    assert (dev["node"], anvil["node"]) == ("devchain", "anvil") and anvil["status"] == "done"
    assert anvil["anvil_transactions"] > 0 and report["machine"]["anvil"].startswith("anvil Version")
    for key in ("terminal_recall_same_offramp", "value_recall_same_offramp"):
        assert dev[key] is not None and anvil[key] is not None


def test_api_latency_smoke(memory: tuple[dict[str, Any], Path]) -> None:
    """bench/api_latency.py --smoke runs end to end: synthesises a trace with COPY, starts a real
    `tracer serve`, loads it with concurrent clients and writes its result file."""
    _, tmp = memory
    out = tmp / "api_latency.json"
    text = out.with_suffix(".log").read_text()
    assert "req/s" in text and "p99 ms" in text
    report = json.loads(out.read_text())
    assert report["smoke"] is True and report["hops_in_trace"] == 3000
    for name in ("exits", "exits_uncached", "exits_running", "hops_page"):
        r = report["results"][name]
        assert r["requests"] > 0 and r["errors"] == 0 and 0 < r["p50_ms"] <= r["p99_ms"]


def test_memory_smoke(memory: tuple[dict[str, Any], Path]) -> None:
    report, _ = memory
    assert report["worker"]["peak_rss_mb"] > 0
    assert [r["workers"] for r in report["worker"]["runs"]] == [1, 2]
    assert report["api"]["peak_rss_mb"] > 0


def test_faults_smoke(tmp_path: Path, pg_server_url: str) -> None:
    # The script exits non-zero when a hop is lost or wrong, an event announced twice, a server
    # error answered junk, or a refused label file left rows behind: the run passing is the bar of
    # issue #9 (tests/acceptance/test_bench_faults.py shows it failing on a planted defect).
    report = _run("faults.py", tmp_path / "faults.json", pg_server_url, timeout=600)
    rows = {r["kind"]: r for r in report["faults"]}
    assert {"timeout (hang)", "http 500", "connection reset", "malformed json", "batch out of order",
            "partial batch", "429 with Retry-After", "429 without Retry-After", "wrong chain id", "reorg mid-trace",
            "worker SIGKILL", "all at once"} <= set(rows)
    assert all(r["injected"] > 0 for r in rows.values()), {k: r["injected"] for k, r in rows.items()}
    assert rows["wrong chain id"]["refused"] == 2
    assert rows["reorg mid-trace"]["failed_with_reason"] + rows["reorg mid-trace"]["completed"] >= 2
    totals = report["totals"]
    assert totals["hops_lost"] == totals["events_duplicated"] == totals["wrong_hops"] == 0
    assert totals["reference_hops"] > 10
    assert totals["server_errors"] == 0 and totals["half_written"] == 0
    assert {f["category"] for f in report["fuzz"]} >= {"openapi", "addresses", "chains", "policies", "bodies",
                                                        "cursors", "label files"}


def test_balances_smoke(tmp_path: Path, pg_server_url: str) -> None:
    report = _run("balances.py", tmp_path / "balances.json", pg_server_url)
    assert report["hops_identical"] is True
    methods = [r["balance_method"] for r in report["runs"].values()]
    assert methods == ["node_state", "derived_from_history"]
    assert all(r["status"] == "done" and r["hops"] > 0 for r in report["runs"].values())


def test_provider_replay_smoke(tmp_path: Path, pg_server_url: str) -> None:
    # This code only: the side-by-side run needs a git worktree of the previous commit.
    report = _run("provider_replay.py", tmp_path / "provider.json", pg_server_url, "--before", "none")
    assert [c["case"] for c in report["cases"]] == ["smoke", "generated"]
    for c in report["cases"]:
        after = c["after"]
        assert after["status"] == "done" and after["hops"] > 0
        assert after["calls"] == sum(after["calls_by_method"].values()) > 0
        assert after["floor_seconds"] > 0 and after["wall_over_floor"] > 0
        # Paced to the cap: the provider refuses (almost) nothing.
        assert after["calls_refused_429"] <= after["calls"] // 10
