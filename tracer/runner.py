"""Run traces inside one process: embedded workers plus a progress line, for `trace` and `demo`."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Mapping

import asyncpg

from tracer.chains.protocols import ChainSource
from tracer.engine.service import wait_for
from tracer.store import traces as store
from tracer.workers.trace import Worker


async def run_with_workers(
    pool: asyncpg.Pool,
    chains: Mapping[str, ChainSource],
    trace_id: int,
    *,
    workers: int = 4,
    progress: bool = True,
    timeout: float = 3600.0,
) -> str:
    """Run `workers` workers in this process until the trace finishes; return its status."""
    stop = asyncio.Event()
    crew = [Worker(pool, chains, name=f"embedded-{i}") for i in range(workers)]
    tasks = [asyncio.create_task(w.run(stop)) for w in crew]
    ticker = asyncio.create_task(_progress(pool, trace_id)) if progress else None
    try:
        return await wait_for(pool, trace_id, timeout=timeout)
    finally:
        stop.set()
        if ticker:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
        await asyncio.gather(*tasks, return_exceptions=True)
        if progress and sys.stderr.isatty():
            sys.stderr.write("\n")


async def _progress(pool: asyncpg.Pool, trace_id: int) -> None:
    """A live line on a terminal; a line every few seconds in logs."""
    started = time.monotonic()
    tty = sys.stderr.isatty()
    last_line = 0.0
    while True:
        await asyncio.sleep(0.5)
        async with pool.acquire() as conn:
            p = await store.trace_progress(conn, trace_id)
        elapsed = time.monotonic() - started
        line = (f"trace #{trace_id}: {p.get('hops', 0)} hops, {p.get('addresses', 0)} addresses, "
                f"{p.get('exit_hops', 0)} exit hops, frontier {p.get('frontier', 0)}, {elapsed:.1f}s")
        if tty:
            sys.stderr.write("\r" + line.ljust(100))
            sys.stderr.flush()
        elif elapsed - last_line >= 5:
            last_line = elapsed
            print(line, file=sys.stderr, flush=True)
