"""bench/alert_latency.py --smoke runs end to end: real worker, monitor and delivery processes, a
devchain that grows, signed webhooks counted at a receiver, where the time went, and a result file."""

from __future__ import annotations

import asyncio
import json
import math
import os
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.asyncio(loop_scope="session")

ROOT = Path(__file__).resolve().parents[2]


async def test_alert_latency_smoke(pg_server_url: str, tmp_path: Path) -> None:
    out = tmp_path / "alert_latency.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "bench" / "alert_latency.py"), "--smoke", "--server-url", pg_server_url,
        "--out", str(out), cwd=ROOT, env=dict(os.environ), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    stdout, _ = await asyncio.wait_for(proc.communicate(), 300)
    text = stdout.decode()
    assert proc.returncode == 0, text
    assert "hooks/s" in text and "fan_out" in text
    report = json.loads(out.read_text())
    assert set(report["codes"]) == {"after"}
    assert [(r["scenario"], r["code"]) for r in report["runs"]] == [("50x1", "after"), ("20x2", "after")]
    for run in report["runs"]:
        assert run["deliveries"] == run["subscriptions"] * run["rounds"]
        assert run["bad_signatures"] == 0 and run["duplicate_deliveries"] == 0
        # The monitor of this code stepped on heads its devchain pushed (the default, no flag).
        assert run["monitor_heads"] == "pushed" and run["heads_pushed"] >= run["rounds"], run
        assert 0 < run["latency_ms"]["p50"] <= run["latency_ms"]["p99"]
        done = [run["stages_done_ms"][k] for k in ("monitor", "worker_wakeup", "worker_step", "outbox_read",
                                                   "fan_out", "delivery_wakeup", "first_webhook", "last_webhook")]
        assert not any(math.isnan(x) for x in done), done  # every stage was seen
        assert done == sorted(done), done  # and they follow one another
        assert run["postgres_cpu_us_per_webhook"] > 0  # the bench's database's backends were read
