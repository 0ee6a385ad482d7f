"""The `tracer` command as a user runs it: real processes, a real devchain, a real Postgres."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from tracer.devchain.scenario import Scenario, ScenarioParams, generate
from tracer.labels.defaults import load_default_labels
from tracer.store.db import Database

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _tracer(*args: str, env: dict[str, str] | None = None, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tracer.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return generate(ScenarioParams.for_size(600, seed=5))


async def test_trace_prints_a_json_report(db: Database, scenario: Scenario, devchain_factory: Any) -> None:
    from tracer.demo import load_scenario_labels

    await load_scenario_labels(db.pool, scenario)
    server = await devchain_factory(scenario)
    r = await _run(_tracer, "trace", *scenario.seeds, "--rpc", server.url, "--database-url", db.url, "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["status"] == "done"
    found = {e["address"] for e in report["exits"]}
    assert {o.address for o in scenario.truth.offramps} <= found
    assert all(isinstance(e["amount"], str) for e in report["exits"])


async def test_trace_from_the_ofac_list_by_programme(db: Database, scenario: Scenario, devchain_factory: Any) -> None:
    await load_default_labels(db.pool)
    server = await devchain_factory(scenario)
    r = await _run(_tracer, "trace", "--from-list", "ofac", "--program", "DPRK", "--rpc", server.url,
                   "--database-url", db.url, "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert len(report["seeds"]) >= 10  # North-Korean addresses on the list (Lazarus and others)
    assert "seeds from ofac programme DPRK" in r.stderr


async def test_bad_seed_is_a_clear_error(db: Database, scenario: Scenario, devchain_factory: Any) -> None:
    server = await devchain_factory(scenario)
    r = await _run(_tracer, "trace", "0x1234", "--rpc", server.url, "--database-url", db.url)
    assert r.returncode == 2
    assert "seeds[0]" in r.stderr and "42 characters" in r.stderr
    assert "Traceback" not in r.stderr


async def test_demo_runs_end_to_end(database_url: str) -> None:
    r = await _run(_tracer, "demo", "--size", "2000", env={"DATABASE_URL": database_url})
    assert r.returncode == 0, r.stderr
    assert "Ground truth check" in r.stdout and "amounts within 0.1% of it" in r.stdout
    assert "PASSED: the trace agrees with the ground truth" in r.stdout
    line = next(x for x in r.stdout.splitlines() if "exits found with the right amount and exchange" in x)
    found, total = line.split(": ")[1].split(" (")[0].split(" of ")
    assert found == total and int(total) > 0, line
    # Exits behind mixers and swaps, and on the bridges' destination chains, are in the count.
    for kind in ("off-ramp behind a mixer or swap", "bitcoin exit", "avalanche exit", "bsc exit"):
        assert kind in line, line
    assert "exits reported that the truth does not have: 0" in r.stdout
    # The bridge deposits continue on the chains their memos name (served beside the home chain),
    # to the exchanges there.
    assert "Through services:" in r.stdout and "esplora: bitcoin at" in r.stderr
    section = r.stdout.split("Cross-chain continuations (")[1].split("\n\n")[0]
    listed = int(section.split(")")[0])
    assert listed > 0 and section.count("; followed") == listed
    assert {"bitcoin", "avalanche", "bsc"} <= {w for w in section.split() if w in ("bitcoin", "avalanche", "bsc")}
    for what in ("continuations followed across the bridge", "laundering mixer notes linked to their own recipient",
                 "laundering swaps followed"):
        line = next(x for x in r.stdout.splitlines() if what in x)
        found, total = line.split(": ")[1].split(" (")[0].split(";")[0].split(" of ")
        assert found == total and int(total) > 0, line
    assert "payouts matched otherwise than the generator paid them (memo / timing): 0" in r.stdout


async def _run(fn: Any, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    import asyncio

    return await asyncio.to_thread(fn, *args, **kw)
