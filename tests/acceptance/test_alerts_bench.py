"""bench/alert_latency.py --smoke runs end to end: real worker, monitor and delivery processes, a
devchain that grows, signed webhooks counted at a receiver, and a result file."""

from __future__ import annotations

import asyncio
import json
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
    stdout, _ = await asyncio.wait_for(proc.communicate(), 180)
    text = stdout.decode()
    assert proc.returncode == 0, text
    assert "p50 ms" in text and "every webhook" in text
    report = json.loads(out.read_text())
    assert report["deliveries"] == report["subscriptions"] * report["rounds"] == 150
    assert report["bad_signatures"] == 0 and report["duplicate_deliveries"] == 0
    assert 0 < report["latency_ms"]["p50"] <= report["latency_ms"]["p99"]
