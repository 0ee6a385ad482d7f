"""The attack suite (bench/attacks.py) in its small configuration: real `tracer serve` processes,
every probe of issue #17 sent over HTTP, and every one must be refused with nothing written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_attack_suite_refuses_every_probe(tmp_path: Path, pg_server_url: str) -> None:
    out = tmp_path / "attacks.json"
    cmd = [sys.executable, str(ROOT / "bench" / "attacks.py"), "--smoke", "--out", str(out),
           "--database-url", pg_server_url]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    report = json.loads(out.read_text()) if out.exists() else {}
    failed = [p for p in report.get("probes", []) if not p["ok"]]
    assert run.returncode == 0 and not failed, (failed, run.stdout[-4000:], run.stderr[-4000:])
    areas = {p["area"] for p in report["probes"]}
    assert areas == {"open mode", "labels", "ssrf", "quotas", "exports", "ownership", "node down"}
    assert "probes refused as they must be" in run.stdout
