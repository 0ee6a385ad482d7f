"""Property-based contract test: schemathesis drives a live `tracer serve` process from the OpenAPI
document it serves, with generated valid and invalid requests, and fails on any server error or
any response whose status, content type, headers or body the document does not allow.

The database holds a real finished trace (id 1, the id the document's examples use), computed by
real workers from a devchain scenario, so the generated reads reach real hops, exits and paths.
The server runs with one embedded worker and the devchain as its node, so generated POSTs start
traces that really run. DELETE is fuzzed last, in its own short run, so the trace survives the
main run.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tracer.chains.evm import EvmChain
from tracer.demo import load_scenario_labels
from tracer.devchain.scenario import Scenario, ScenarioParams, generate
from tracer.engine.service import create_trace
from tracer.runner import run_with_workers
from tracer.store import keys as key_store
from tracer.store.db import Database

pytestmark = pytest.mark.asyncio(loop_scope="session")

ROOT = Path(__file__).resolve().parents[2]
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
CHECKS = ",".join(["not_a_server_error", "status_code_conformance", "content_type_conformance",
                   "response_headers_conformance", "response_schema_conformance"])
SEED = os.environ.get("TRACER_SCHEMATHESIS_SEED", "20261125")


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return generate(ScenarioParams.for_size(800, seed=5))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def live(db: Database, scenario: Scenario, devchain_factory: Any) -> AsyncIterator[tuple[str, str]]:
    chain = await devchain_factory(scenario)
    client = EvmChain(chain.url, chain=scenario.chain, expected_chain_id=scenario.chain_id)
    await client.connect()
    try:
        await load_scenario_labels(db.pool, scenario)
        trace_id = await create_trace(db.pool, client, chain=scenario.chain, seeds=scenario.seeds, policy={},
                                      label="schemathesis")
        assert trace_id == 1, "the OpenAPI examples name trace 1"
        assert await run_with_workers(db.pool, {scenario.chain: client}, trace_id, workers=2,
                                      progress=False) == "done"
    finally:
        await client.close()
    assert await db.pool.fetchval("SELECT count(*) FROM hops WHERE trace_id = 1 AND status = 'exit'") > 0
    async with db.pool.acquire() as conn:
        _, key = await key_store.create_key(conn, "schemathesis", ["admin"])
    env = dict(os.environ, TRACER_LOG_LEVEL="ERROR")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tracer.cli", "serve", "--port", "0", "--database-url", db.url, "--rpc", chain.url,
        "--workers", "1", cwd=ROOT, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    assert proc.stderr is not None
    seen = ""
    try:
        while "listening on" not in seen:
            line = await asyncio.wait_for(proc.stderr.readline(), 60)
            assert line, f"server exited: {seen}"
            seen += line.decode()
        match = re.search(r"listening on (http://\S+)", seen)
        assert match is not None
        # Keep draining stderr so the server never blocks on a full pipe; keep it for the report.
        errors: list[str] = []

        async def drain() -> None:
            assert proc.stderr is not None
            async for raw in proc.stderr:
                errors.append(raw.decode())

        drainer = asyncio.create_task(drain())
        yield match.group(1), key
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
        if "drainer" in locals():
            drainer.cancel()
    assert proc.returncode == 0, "".join(errors)[-4000:]


async def _schemathesis(base: str, key: str, workdir: Path, *extra: str, timeout: float = 400) -> tuple[int, str]:
    # Run in a scratch folder: schemathesis keeps a cache directory in its working directory. Its
    # example database in memory: on disk it would be thrown away with the folder, after costing
    # a write per interesting example.
    proc = await asyncio.create_subprocess_exec(
        str(SCHEMATHESIS), "run", f"{base}/v1/openapi.json", "--checks", CHECKS, "--header", f"X-API-Key: {key}",
        "--seed", SEED, "--no-color", "--request-timeout", "20", "--workers", "2", "--generation-database", ":memory:",
        *extra,
        cwd=workdir, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env=dict(os.environ, SCHEMATHESIS_HOOKS=""))
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


async def test_schemathesis_finds_no_server_error_and_no_schema_violation(live: tuple[str, str],
                                                                          tmp_path: Path) -> None:
    base, key = live
    # The coverage phase is left out: its generator intermittently crashes inside CPython's AST
    # compiler ("AST constructor recursion depth mismatch"), a schemathesis/hypothesis fault that
    # says nothing about our API; the example, fuzzing and stateful phases still cover every route.
    # 12 examples per operation (was 25): every operation still runs in every phase, at half the time
    # (1,084 -> 562 generated cases); a fixed seed, so a failure replays.
    rc, out = await _schemathesis(base, key, tmp_path, "--max-examples", "12", "--exclude-method", "DELETE",
                                  "--phases", "examples,fuzzing,stateful")
    assert rc == 0, out[-12000:]
    assert re.search(r"\b[1-9][0-9] Tested\b|Tested: [1-9][0-9]\b", out), out[-3000:]  # every operation ran
    selected, tested = re.search(r"Selected: (\d+)/", out), re.search(r"Tested: (\d+)", out)
    assert selected and tested and selected.group(1) == tested.group(1), out[-3000:]
    rc, out = await _schemathesis(base, key, tmp_path, "--max-examples", "10", "--include-method", "DELETE",
                                  "--phases", "examples,fuzzing")
    assert rc == 0, out[-12000:]
