"""`tracer trace --chain tron T...` as a user runs it: `tracer devchain --tron` in its own process
(java-tron's HTTP API and JSON-RPC over the generated laundering history), its labels imported with
`tracer labels import`, the trace read through TRACER_RPC_URL_TRON into a real Postgres."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tracer.addresses import tron_base58
from tracer.devchain.tron import generate
from tracer.store.db import Database

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _tracer(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tracer.cli", *args], capture_output=True, text=True,
                          timeout=240, env={**os.environ, **(env or {})})


async def test_tracer_trace_chain_tron_reaches_the_deposit_addresses(db: Database, tmp_path: Path) -> None:
    labels, seeds = tmp_path / "tron-labels.csv", tmp_path / "tron-seeds.txt"
    node = await asyncio.to_thread(
        subprocess.Popen, [sys.executable, "-m", "tracer.cli", "devchain", "--tron", "--port", "0",
                           "--labels-out", str(labels), "--seeds-out", str(seeds)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert node.stdout is not None
        url = await asyncio.to_thread(node.stdout.readline)
        assert url.strip().endswith("/jsonrpc"), (url, node.poll())
        imported = await asyncio.to_thread(_tracer, "labels", "import", str(labels), "--database-url", db.url)
        assert imported.returncode == 0, imported.stderr
        seed = seeds.read_text().split()[0]
        assert seed.startswith("T")
        r = await asyncio.to_thread(_tracer, "trace", "--chain", "tron", seed, "--database-url", db.url, "--json",
                                    env={"TRACER_RPC_URL_TRON": url.strip()})
        assert r.returncode == 0, r.stderr
        report = json.loads(r.stdout)
        assert report["status"] == "done"
        story = generate(1)  # `tracer devchain` seeds its generator with 1 by default
        got = {(e["address"], e["asset"]): int(e["amount_raw"] if "amount_raw" in e else e["amount"])
               for e in report["exits"]}
        for o in story.truth.offramps:
            shown = o.asset if o.asset == "native" or o.asset.startswith("trc10:") else tron_base58(o.asset)
            assert got.get((tron_base58(o.address), shown)) == o.amount, (o, sorted(got))
    finally:
        node.terminate()
        node.wait(timeout=10)
