"""`tracer serve --processes N`: N API processes on one port, so every core serves requests.

The first process binds the port with SO_REUSEPORT and starts N-1 copies of itself (the same
command line) that bind the same port the same way; the kernel spreads new connections over the
N listening sockets. Each copy is a whole API server with its own connection pool and in-process
caches (checked keys, encoded pages, dollars); what must be shared already is: the cursor secret
and keyed rate buckets live in Postgres. Embedded workers run in the first process only. The
copies get SIGTERM when the first process stops, and from the kernel if it dies (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Sequence

log = logging.getLogger("tracer.api")

#: Set in the copies' environment: the port the first process bound (its copies serve that port).
CHILD_PORT = "TRACER_API_CHILD_PORT"
_PR_SET_PDEATHSIG = 1


def child_port() -> int | None:
    """The port to share when this process is a copy started by `start_copies`, else None."""
    value = os.environ.get(CHILD_PORT, "")
    return int(value) if value.isdigit() else None


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the first process still stops its copies
        pass


def start_copies(count: int, port: int, argv: Sequence[str] | None = None) -> list[subprocess.Popen[bytes]]:
    """`count` copies of this `tracer serve` command serving `port` (bound with SO_REUSEPORT)."""
    args = list(argv if argv is not None else sys.argv[1:])
    env = dict(os.environ, **{CHILD_PORT: str(port)})
    return [subprocess.Popen([sys.executable, "-m", "tracer.cli", *args], env=env, preexec_fn=_die_with_parent)
            for _ in range(count)]


def stop_copies(copies: Sequence[subprocess.Popen[bytes]], timeout: float = 15.0) -> None:
    for p in copies:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in copies:
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
