"""bench/rpc_efficiency.py --smoke runs end to end: every mode checked against the scenario."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_rpc_efficiency_smoke(tmp_path: Path) -> None:
    out = tmp_path / "rpc.json"
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "rpc_efficiency.py"), "--smoke", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "JSON-RPC requests per 1,000 transfers found" in run.stdout
    report = json.loads(out.read_text())
    modes = {m["mode"]: m for m in report["modes"]}
    assert set(modes) == {"trace_filter", "block-scan+debug", "block-scan"}
    # With traces both paths find the same transfers; without, internal calls are missing.
    assert modes["trace_filter"]["transfers_found"] == modes["block-scan+debug"]["transfers_found"] > 0
    assert modes["block-scan"]["transfers_found"] <= modes["trace_filter"]["transfers_found"]
    for m in modes.values():
        assert m["http_posts"] <= m["jsonrpc_requests"]
        assert m["requests_per_1000_transfers"] > 0
