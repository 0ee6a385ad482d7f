"""Path searches (`/paths`) in a child process, under a time budget, stopped when the client leaves.

A k-shortest-paths search costs seeds × k graph walks and runs in Python: in a thread it could be
neither interrupted nor bounded, and a few requests would hold the server's CPU for minutes. Each
search runs in a process forked from a forkserver that has the graph module loaded (a few
milliseconds); the handler waits for its answer and kills the process when the budget is spent
(PathSearchTimeout) or the client has disconnected (PathSearchAbandoned).
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any

from tracer.domain.views import StoredHop
from tracer.engine import graph as tgraph

_POLL = 0.02
_context: Any = None


class PathSearchTimeout(Exception):
    """The search outlived its budget and was stopped."""


class PathSearchAbandoned(Exception):
    """The client left; the search was stopped."""


def _mp() -> Any:
    global _context
    if _context is None:
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["tracer.engine.graph"])
        _context = ctx
    return _context


def _run(out: Connection, hops: list[StoredHop], seeds: list[str], target: str, limit: int,
         chain: str) -> None:
    try:
        found = tgraph.paths_to(tgraph.build(hops, chain), seeds, target, limit=limit, chain=chain)
        out.send(("ok", found))
    except Exception as exc:  # reported to the parent, which raises it as its own bug
        out.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        out.close()


async def search(hops: Sequence[StoredHop], seeds: list[str], target: str, limit: int, chain: str, *,
                 budget: float, gone: Callable[[], bool]) -> list[list[tgraph.PathStep]]:
    """paths_to(build(hops)) in a child process; `gone()` says whether the client has left."""
    ctx = _mp()
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_run, args=(send, list(hops), seeds, target, limit, chain),
                       daemon=True, name="tracer-paths")
    deadline = time.monotonic() + budget
    proc.start()
    send.close()  # the child holds its end: EOF here when it dies without answering
    try:
        while not recv.poll():
            if time.monotonic() > deadline:
                raise PathSearchTimeout(f"path search stopped after {budget:g} s")
            if gone():
                raise PathSearchAbandoned("the client disconnected")
            await asyncio.sleep(_POLL)
        try:
            kind, value = await asyncio.to_thread(recv.recv)
        except EOFError:
            raise RuntimeError(f"path search process died (exit code {proc.exitcode})") from None
        if kind != "ok":
            raise RuntimeError(f"path search failed: {value}")
        result: list[list[tgraph.PathStep]] = value
        return result
    finally:
        if proc.is_alive():
            proc.kill()
        await asyncio.to_thread(proc.join, 5)
        recv.close()
