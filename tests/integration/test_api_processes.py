"""`tracer serve --processes 2`: two real API processes listen on the one port (SO_REUSEPORT), both
answer, and stopping the first stops the copy it started."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.fixtures_db import temporary_database

pytestmark = pytest.mark.asyncio(loop_scope="session")

ROOT = Path(__file__).resolve().parents[2]


def _listening_inodes(port: int) -> set[str]:
    """Inodes of the sockets listening on 127.0.0.1:`port` (state 0A in /proc/net/tcp)."""
    out = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        if f[1] == f"0100007F:{port:04X}" and f[3] == "0A":
            out.add(f[9])
    return out


def _socket_inodes(pid: int) -> set[str]:
    found = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            m = re.match(r"socket:\[(\d+)\]", os.readlink(fd))
        except OSError:
            continue
        if m:
            found.add(m.group(1))
    return found


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


async def test_two_processes_serve_one_port(pg_server_url: str, migrated_template: str) -> None:
    async with temporary_database(pg_server_url, template=migrated_template) as url:
        env = dict(os.environ, TRACER_LOG_LEVEL="WARNING")
        env.pop("TRACER_RPC_URL", None)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tracer.cli", "serve", "--port", "0", "--processes", "2", "--database-url", url,
            cwd=ROOT, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        assert proc.stderr is not None
        try:
            text = ""
            while "listening on" not in text or "serving port" not in text:
                line = await asyncio.wait_for(proc.stderr.readline(), 60)
                assert line, text
                text += line.decode()
            base = re.search(r"listening on (http://\S+)", text)
            copy = re.search(r"process (\d+) serving port (\d+)", text)
            assert base and copy and base.group(1).endswith(f":{copy.group(2)}")
            child, port = int(copy.group(1)), int(copy.group(2))
            listening = _listening_inodes(port)
            # Each process holds its own listening socket on the port.
            assert len(listening) == 2
            assert _socket_inodes(proc.pid) & listening and _socket_inodes(child) & listening
            assert not (_socket_inodes(proc.pid) & _socket_inodes(child) & listening)
            for _ in range(10):  # a new connection each time: the kernel picks the process
                async with aiohttp.ClientSession() as s, s.get(base.group(1) + "/v1/health") as r:
                    assert r.status in (200, 503)
        finally:
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 30) == 0
        for _ in range(100):  # the copy is stopped by the first process
            if _gone(child):
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"copy {child} still running")
