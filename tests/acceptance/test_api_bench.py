"""bench/api_latency.py --smoke runs end to end: synthesises a trace with COPY, starts a real
`tracer serve`, loads it with concurrent clients and writes its result file."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.asyncio(loop_scope="session")

ROOT = Path(__file__).resolve().parents[2]


async def test_api_latency_smoke(database_url: str, tmp_path: Path) -> None:
    out = tmp_path / "api_latency.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "bench" / "api_latency.py"), "--smoke", "--database-url", database_url,
        "--out", str(out), cwd=ROOT, env=dict(os.environ), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    stdout, _ = await asyncio.wait_for(proc.communicate(), 120)
    text = stdout.decode()
    assert proc.returncode == 0, text
    assert "req/s" in text and "p99 ms" in text
    report = json.loads(out.read_text())
    assert report["hops_in_trace"] == 3000
    for name in ("exits", "exits_uncached", "exits_running", "hops_page"):
        r = report["results"][name]
        assert r["requests"] > 0 and r["errors"] == 0 and 0 < r["p50_ms"] <= r["p99_ms"]
