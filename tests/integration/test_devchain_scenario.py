"""The scenario generator, its ground truth, persistence, case replay and the devchain CLI.

The tests that need nothing outside the process are in tests/unit/test_devchain_scenario.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tracer.devchain.scenario import (
    Scenario,
    ScenarioParams,
    generate,
)


@pytest.mark.skipif(os.environ.get("TRACER_SLOW") != "1", reason="set TRACER_SLOW=1 for the million-transfer run")
def test_million_transfers_generate_save_and_load(tmp_path: Path) -> None:
    t0 = time.perf_counter()
    sc = generate(ScenarioParams.for_size(1_000_000, seed=1))
    t1 = time.perf_counter()
    assert 900_000 <= sc.transfer_count() <= 1_300_000
    sc.save(tmp_path / "big.json.gz")
    t2 = time.perf_counter()
    loaded = Scenario.load(tmp_path / "big.json.gz")
    t3 = time.perf_counter()
    assert loaded.tx_count == sc.tx_count
    print(f"generate {t1 - t0:.1f}s save {t2 - t1:.1f}s load {t3 - t2:.1f}s")
    assert t3 - t2 < 30


# -- replay ------------------------------------------------------------------------------------


# -- CLI -----------------------------------------------------------------------------------------


def test_cli_serves_until_interrupted(tmp_path: Path) -> None:
    code = (
        "import argparse, sys\n"
        "from tracer.devchain import cli\n"
        "p = argparse.ArgumentParser(); cli.register(p.add_subparsers(dest='c'))\n"
        "a = p.parse_args(sys.argv[1:])\n"
        "import asyncio; r = a.func(a); sys.exit(asyncio.run(r) if asyncio.iscoroutine(r) else r)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "devchain", "--generate", "100", "--port", "0", "--no-trace"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        seeds = proc.stdout.readline()
        summary = proc.stdout.readline()
        assert url.startswith("http://127.0.0.1:"), url + proc.stderr.read() if proc.stderr else url
        assert seeds.startswith("seeds: 0x") and "transfers" in summary
        import json
        import urllib.request

        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "trace_filter", "params": [{}]}).encode()
        req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert json.loads(resp.read())["error"]["code"] == -32601
        proc.send_signal(2)  # Ctrl-C
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
