"""The README's flow against Anvil: `tracer devchain --anvil` starts the node, executes the
scenario and prints the URL and seeds; `tracer labels import` and `tracer trace --json` against
that URL find the scenario's off-ramps; Ctrl-C (SIGTERM) stops the node and deletes its files."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.anvil_support import require_anvil
from tests.fixtures_db import temporary_database
from tracer.devchain.scenario import ScenarioParams, generate

pytestmark = pytest.mark.asyncio(loop_scope="session")

SIZE, SEED = 500, 4


async def _run(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "tracer.cli", *args, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 300)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_devchain_anvil_then_trace_from_the_command_line(tmp_path: Path, pg_server_url: str,
                                                               migrated_template: str) -> None:
    require_anvil()
    labels = tmp_path / "labels.csv"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tracer.cli", "devchain", "--anvil", "--generate", str(SIZE), "--seed", str(SEED),
        "--port", "0", "--labels-out", str(labels), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    try:
        lines = [(await asyncio.wait_for(proc.stdout.readline(), 120)).decode().strip() for _ in range(4)]
        url, seeds_line, _, run_line = lines
        assert url.startswith("http://127.0.0.1:"), (lines, await proc.stderr.read())
        assert "state matches the scenario" in run_line and "anvil archive" in run_line, run_line
        scenario = generate(ScenarioParams.for_size(SIZE, seed=SEED))
        assert seeds_line.split()[1:] == scenario.seeds
        async with aiohttp.ClientSession() as s, s.post(url, json={"jsonrpc": "2.0", "id": 1,
                                                                   "method": "eth_blockNumber", "params": []}) as r:
            assert int((await r.json())["result"], 16) == scenario.head

        async with temporary_database(pg_server_url, template=migrated_template) as db_url:
            env = dict(os.environ, DATABASE_URL=db_url, TRACER_RPC_URL=url)
            code, _, err = await _run(env, "labels", "import", str(labels))
            assert code == 0, err
            code, out, err = await _run(env, "trace", *scenario.seeds, "--json")
            assert code == 0, err[-3000:]
        report = json.loads(out)
        exits = {(e["address"], e["asset"]) for e in report["exits"]}
        want = {(o.address, o.asset) for o in scenario.truth.offramps if o.kind == "deposit_address"}
        assert want and want <= exits, sorted(want - exits)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)
    assert proc.returncode == 0
    # The node went with it: nothing answers on its port any more.
    with pytest.raises(aiohttp.ClientError):
        async with aiohttp.ClientSession() as s, s.post(url, json={"jsonrpc": "2.0", "id": 1,
                                                                   "method": "eth_blockNumber", "params": []}):
            pass
