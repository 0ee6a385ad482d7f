"""`tracer monitor` as a process and its WebSocket setting (issue 22): by default it subscribes to new
heads at the RPC URL as ws://; `--ws off` polls only; a node that refuses the upgrade is logged once
on stderr (`event=heads_unavailable ... falling back to polling`); a --ws that is no ws(s) URL stops
it at start, naming the node without its secrets."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from tests.alerts_support import wait_until
from tests.fixtures_chain import DevChainFactory, proxy, serving
from tracer.devchain.chain import Chain
from tracer.store.db import Database

pytestmark = pytest.mark.asyncio(loop_scope="session")

ROOT = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACER_RPC_URL", "TRACER_WS_URL", "DATABASE_URL"))}
    env.update(TRACER_LOG_LEVEL="WARNING")
    return env


class Running:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.err = ""

    async def line_with(self, text: str, timeout: float = 60) -> str:
        """Read stderr until a line containing `text`; that line."""
        assert self.proc.stderr is not None
        async with asyncio.timeout(timeout):
            while True:
                raw = await self.proc.stderr.readline()
                assert raw, f"exited early ({await self.proc.wait()}): {self.err}"
                line = raw.decode()
                self.err += line
                if text in line:
                    return line


@asynccontextmanager
async def monitor(*args: str) -> AsyncIterator[Running]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tracer.cli", "monitor", *args, cwd=ROOT, env=_env(),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    running = Running(proc)
    try:
        yield running
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            _, rest = await asyncio.wait_for(proc.communicate(), 30)
            running.err += rest.decode()
    assert proc.returncode == 0, running.err
    assert "Traceback" not in running.err, running.err


async def test_the_monitor_subscribes_by_default_and_not_with_ws_off(
        db: Database, devchain_factory: DevChainFactory) -> None:
    node = await devchain_factory(Chain(chain_id=1337))
    port = node.url.rsplit(":", 1)[1]
    async with monitor("--database-url", db.url, "--rpc", node.url, "--poll", "5") as m:
        start = await m.line_with("tracer monitor:")
        assert f"new heads pushed: ethereum from ws://127.0.0.1:{port}" in start, start
        await wait_until(lambda: node.server.request_counts["eth_subscribe"] == 1, timeout=30, what="the subscription")
        node.chain.append_block([])
        await wait_until(lambda: node.server.heads_pushed >= 1, timeout=10, what="a head pushed")
    subscribed = node.server.request_counts["eth_subscribe"]
    async with monitor("--database-url", db.url, "--rpc", node.url, "--ws", "off") as m:
        start = await m.line_with("tracer monitor:")
        assert "new heads pushed: none" in start, start
        await asyncio.sleep(1.0)  # a subscription would come within the first step
        assert node.server.request_counts["eth_subscribe"] == subscribed


async def test_a_refused_upgrade_is_logged_once_and_a_bad_ws_url_stops_the_monitor(
        db: Database, devchain_factory: DevChainFactory) -> None:
    node = await devchain_factory(Chain(chain_id=1337))
    async with serving(proxy(node, lambda req: None)) as url, monitor(
            "--database-url", db.url, "--rpc", url, "--poll", "0.5") as m:
        line = await m.line_with("event=heads_unavailable")
        assert "falling back to polling" in line and "HTTP 405" in line, line
        await asyncio.sleep(3.0)  # retries meanwhile (backoff 1, 2 s) say nothing more
    assert m.err.count("event=heads_") == 1, m.err

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tracer.cli", "monitor", "--database-url", db.url, "--rpc", node.url,
        "--ws", "https://user:s3cret@eth.example.com/v3/KEY", cwd=ROOT, env=_env(),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    text = err.decode()
    assert proc.returncode == 1 and "ws:// or wss://" in text and "Traceback" not in text, text
    assert "s3cret" not in text and "KEY" not in text, text
