"""The README's Performance table is what `bench/render.py` makes of the committed result files.

Fails when a figure in the README differs from `bench/results/<name>.json` (edit the results by
running the bench, then `python bench/render.py`), when a committed result lacks the machine facts
it was measured under, or when a result file is committed without a row in the table.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def _render() -> ModuleType:
    bench = str(ROOT / "bench")
    if bench not in sys.path:
        sys.path.insert(0, bench)
    import render

    return render


def test_the_readme_table_is_rendered_from_the_committed_results() -> None:
    render = _render()
    readme = (ROOT / "README.md").read_text()
    assert render.START in readme and render.END in readme
    assert render.render(readme, render.load_results()) == readme, "run: python bench/render.py"
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "render.py"), "--check"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr


def test_a_figure_changed_on_either_side_is_caught() -> None:
    render = _render()
    readme = (ROOT / "README.md").read_text()
    results = render.load_results()
    # A figure edited by hand in the README.
    row = next(line for line in readme.splitlines() if line.startswith("|") and "bench/faults.py" in line)
    edited = readme.replace(row, row.replace(" 0 hops lost", " 1 hops lost"))
    assert edited != readme
    assert render.render(edited, results) != edited
    # A result file that says something else than the README.
    results["faults"]["totals"]["hops_lost"] = 3
    assert render.render(readme, results) != readme
    results = render.load_results()
    results["mixer_linker"]["found_exact"] += 1
    assert render.render(readme, results) != readme


def test_every_result_carries_its_machine_facts_and_has_a_row() -> None:
    render = _render()
    results = render.load_results()
    for name, r in results.items():
        m = r["machine"]
        assert m["cpus"] and len(m["load_average"]) == 3, name
        assert m["python"] and m["postgres"], name
        assert {"tracer", "asyncpg", "aiohttp"} <= set(m["packages"]), name
        assert len(m["code"].split("+")[0]) >= 7, name  # the commit measured
        assert r.get("smoke") in (False, None), name  # a smoke run's figures are not committed
    committed = {p.stem for p in (ROOT / "bench" / "results").glob("*.json") if not p.name.endswith(".smoke.json")}
    assert committed == {name for name, _, _ in render.ROWS}


def test_results_are_committed_not_ignored() -> None:
    run = subprocess.run(["git", "check-ignore", "-q", "bench/results/faults.json"], cwd=ROOT)
    if run.returncode == 128:  # not a git checkout (an export): nothing to check
        return
    assert run.returncode == 1, "bench/results/*.json must not be ignored"
    assert subprocess.run(["git", "check-ignore", "-q", "bench/results/faults.smoke.json"], cwd=ROOT).returncode == 0
