"""`tracer devchain --labels-out` writes the scenario's labels in the format `tracer labels import` reads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tracer.devchain.scenario import ScenarioParams, generate
from tracer.labels.csvfile import parse_label_csv

ROOT = Path(__file__).resolve().parents[2]


def test_labels_out_round_trips_through_the_label_csv_reader(tmp_path: Path) -> None:
    out = tmp_path / "labels.csv"
    saved = tmp_path / "scenario.json.gz"
    proc = subprocess.run(
        [sys.executable, "-m", "tracer.cli", "devchain", "--generate", "600", "--seed", "3", "--save", str(saved),
         "--save-only", "--labels-out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "tracer labels import" in proc.stderr
    parsed = parse_label_csv(out)
    assert parsed.invalid == []
    expected = {(lb.address, lb.entity, lb.category) for lb in generate(ScenarioParams.for_size(600, seed=3)).labels}
    got = {(lb.address, lb.entity, lb.category) for lb in parsed.labels}
    assert {(a, e) for a, e, _ in got} == {(a, e) for a, e, _ in expected}
    assert {lb.chain for lb in parsed.labels} == {"ethereum"}
    assert any(c == "exchange" for _, _, c in got)
