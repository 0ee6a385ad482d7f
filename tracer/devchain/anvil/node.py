"""Finding and running Anvil (Foundry's EVM node) for tests, benches and `tracer devchain --anvil`.

The binary comes from the npm package `@foundry-rs/anvil-linux-amd64` pinned in
`tests/node/package.json` (`npm ci --prefix tests/node`), from PATH, or from `$TRACER_ANVIL`.
Every run gets a fresh `HOME` (and cache path) in a temporary folder that is deleted when the node
stops: with `--max-persisted-states` Anvil writes each kept state under `$HOME/.foundry/anvil/tmp`
and leaves it there when killed (76 GB filled a disk once).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import aiohttp

REPO_ROOT = Path(__file__).resolve().parents[3]
NODE_DIR = REPO_ROOT / "tests" / "node"
NPM_BINARY = NODE_DIR / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"
INSTALL_HINT = "npm ci --prefix tests/node  (installs Anvil and solc-js from tests/node/package.json)"

# archive: every state kept (balances at any past block); pruned: Anvil's default (recent states
# only, as a full node); prune_history: `--prune-history` (no state kept on disk at all).
Mode = Literal["archive", "pruned", "prune_history"]
ARCHIVE_STATES = 1_000_000
_LISTENING = re.compile(r"Listening on (?P<host>\S+):(?P<port>\d+)")


class AnvilNotFound(RuntimeError):
    pass


def find_anvil() -> str:
    """Path of the anvil binary: $TRACER_ANVIL, else PATH, else the npm package under tests/node."""
    given = os.environ.get("TRACER_ANVIL")
    if given:
        if not Path(given).is_file():
            raise AnvilNotFound(f"TRACER_ANVIL={given} is not a file")
        return given
    found = shutil.which("anvil")
    if found:
        return found
    if NPM_BINARY.is_file():
        return str(NPM_BINARY)
    raise AnvilNotFound(f"anvil not found (TRACER_ANVIL unset, none on PATH, none in {NPM_BINARY}); "
                        f"install it with: {INSTALL_HINT}")


@dataclass
class AnvilNode:
    """A running Anvil process and the temporary HOME it writes to."""

    url: str
    chain_id: int
    mode: Mode
    process: subprocess.Popen[bytes]
    home: Path
    log: Path
    args: list[str] = field(default_factory=list)

    def stop(self) -> None:
        proc = self.process
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        shutil.rmtree(self.home, ignore_errors=True)


def anvil_args(*, port: int, chain_id: int, mode: Mode, timestamp: int | None, cache: Path,
               host: str = "127.0.0.1") -> list[str]:
    args = [
        "--host", host, "--port", str(port), "--chain-id", str(chain_id),
        # Any sender can send (the scenario's wallets have no keys here).
        "--auto-impersonate",
        # Gas costs nothing unless a transaction asks for a price: balances stay the scenario's.
        "--base-fee", "0", "--gas-price", "0", "--disable-min-priority-fee",
        "--no-mining",
        # A block holds a scenario block's transactions in the order they were sent, however many.
        "--order", "fifo", "--gas-limit", str(2**40),
        # A wallet may spend in a block what it receives earlier in that block: the pool would
        # check the balance before the block and refuse it.
        "--disable-pool-balance-checks",
        "--accounts", "1",
        "--cache-path", str(cache),
    ]
    if timestamp is not None:
        args += ["--timestamp", str(timestamp)]
    if mode == "archive":
        args += ["--max-persisted-states", str(ARCHIVE_STATES)]
    elif mode == "prune_history":
        args += ["--prune-history"]
    return args


async def _answers(url: str, session: aiohttp.ClientSession) -> bool:
    try:
        async with session.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []},
                                timeout=aiohttp.ClientTimeout(total=2)) as resp:
            body = await resp.json(content_type=None)
            return isinstance(body, dict) and "result" in body
    except (TimeoutError, aiohttp.ClientError, ValueError):
        return False


def _die_with_parent() -> None:
    # Linux: SIGTERM to Anvil when the process that started it dies (a killed test run must not
    # leave nodes behind, writing states to a HOME nobody deletes).
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _spawn(argv: list[str], home: Path, log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"), XDG_DATA_HOME=str(home / ".local"))
    with open(log, "wb") as fh:
        return subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL,
                                preexec_fn=_die_with_parent if sys.platform == "linux" else None)


async def start_anvil(*, chain_id: int = 1337, mode: Mode = "pruned", timestamp: int | None = None,
                      port: int | None = None, host: str = "127.0.0.1", extra_args: list[str] | None = None,
                      startup_timeout: float = 30.0) -> AnvilNode:
    """Start Anvil and wait until it answers JSON-RPC. Mining is off: blocks are mined on demand
    (`evm_mine`), so one scenario block's transactions go into one Anvil block.

    Without `port` Anvil picks a free one itself (`--port 0`) and the URL comes from its own
    "Listening on" line: probing a port chosen beforehand could reach another process's node
    (other tests start Anvil nodes at the same time)."""
    binary = find_anvil()
    home = Path(tempfile.mkdtemp(prefix="tracer-anvil-"))
    log = home / "anvil.log"
    args = anvil_args(port=port or 0, chain_id=chain_id, mode=mode, timestamp=timestamp, cache=home / "cache",
                      host=host)
    args += extra_args or []
    proc = _spawn([binary, *args], home, log)
    node = AnvilNode("", chain_id, mode, proc, home, log, args)
    deadline = time.monotonic() + startup_timeout
    async with aiohttp.ClientSession() as session:
        while True:
            if proc.poll() is not None:
                out = log.read_text(errors="replace")[-2000:]
                node.stop()
                raise RuntimeError(f"anvil exited with {proc.returncode} at start: {out}")
            if not node.url:
                found = _LISTENING.search(log.read_text(errors="replace"))
                if found:
                    reach = "127.0.0.1" if found["host"] in ("0.0.0.0", "::", "[::]") else found["host"]
                    node.url = f"http://{reach}:{found['port']}"
            if node.url and await _answers(node.url, session):
                return node
            if time.monotonic() > deadline:
                node.stop()
                raise RuntimeError(f"anvil did not answer within {startup_timeout:.0f}s (log {log})")
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def running_anvil(*, chain_id: int = 1337, mode: Mode = "pruned", timestamp: int | None = None,
                        extra_args: list[str] | None = None) -> AsyncIterator[AnvilNode]:
    """An Anvil node for the duration of the block; killed and its HOME deleted afterwards."""
    node = await start_anvil(chain_id=chain_id, mode=mode, timestamp=timestamp, extra_args=extra_args)
    try:
        yield node
    finally:
        node.stop()
