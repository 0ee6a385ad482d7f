"""`tracer serve` with its node down (a real process, a real port with nothing behind it): it
starts, serves reads, reports the node down in /v1/health, refuses new traces on that chain with a
clear 503, and when a node comes up on that port it connects and traces run (embedded workers)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tracer.devchain.scenario import Scenario
from tracer.devchain.server import DevChainServer
from tracer.store.db import Database

pytestmark = pytest.mark.asyncio(loop_scope="session")
ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _get(session: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with session.get(url) as r:
        return r.status, await r.json(content_type=None)


async def test_serve_starts_without_its_node_and_recovers(db: Database, small_scenario: Scenario) -> None:
    port = _free_port()
    env = dict(os.environ, TRACER_LOG_LEVEL="WARNING")
    env.pop("TRACER_RPC_URL", None)
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tracer.cli", "serve", "--port", "0", "--database-url", db.url,
        "--rpc", f"http://127.0.0.1:{port}", "--chain", small_scenario.chain, "--workers", "1", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    assert proc.stderr is not None
    node: DevChainServer | None = None
    try:
        text = ""
        while "listening on" not in text:
            line = await asyncio.wait_for(proc.stderr.readline(), 60)
            assert line, text
            text += line.decode()
        assert "unreachable" in text and f"down: {small_scenario.chain}" in text, text
        assert time.monotonic() - started < 45
        found = re.search(r"listening on (http://\S+)", text)
        assert found is not None
        base = found.group(1)
        async with aiohttp.ClientSession() as session:
            status, health = await _get(session, base + "/v1/health")
            assert status == 503 and health["postgres"]["ok"] is True
            assert health["chains"][small_scenario.chain] == {"ok": False, "error": "NodeUnavailable"}
            status, _ = await _get(session, base + "/v1/traces")
            assert status == 200  # reads are served
            body = {"chain": small_scenario.chain, "seeds": small_scenario.seeds}
            async with session.post(base + "/v1/traces", json=body) as r:
                problem = await r.json(content_type=None)
                assert r.status == 503 and problem["field"] == "chain", problem
                assert "unreachable" in problem["detail"] and "Retry-After" in r.headers
            assert await db.pool.fetchval("SELECT count(*) FROM traces") == 0
            # The node comes up where it was expected: the server connects and traces run.
            node = DevChainServer(small_scenario)
            await node.start("127.0.0.1", port)
            deadline = time.monotonic() + 60
            while True:
                status, health = await _get(session, base + "/v1/health")
                if status == 200:
                    break
                assert time.monotonic() < deadline, health
                await asyncio.sleep(0.1)
            assert health["chains"][small_scenario.chain]["ok"] is True
            async with session.post(base + "/v1/traces", json=body) as r:
                made = await r.json(content_type=None)
                assert r.status == 201, made
            while True:
                _, trace = await _get(session, base + f"/v1/traces/{made['id']}")
                if trace["status"] not in ("queued", "running"):
                    break
                assert time.monotonic() < deadline + 60, trace
                await asyncio.sleep(0.1)
            assert trace["status"] == "done" and trace["progress"]["hops"] > 0, trace
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 30)
        if node is not None:
            await node.stop()
