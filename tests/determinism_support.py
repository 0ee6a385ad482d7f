"""Run one trace with N workers of a given batch size (embedded, real Postgres, real devchain) and
read its hops back, for the determinism tests."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import asyncpg

from tracer.engine.service import create_trace, wait_for
from tracer.workers.trace import Worker, WorkerSettings

Hop = tuple[str, str, str, str, int, str, str]  # tx hash, position, from, to, amount, asset, status


async def trace_with(pool: asyncpg.Pool, client: Any, chain: str, seeds: list[str], policy: dict[str, Any], *,
                     workers: int, batch_size: int, timeout: float = 120.0) -> int:
    trace_id = await create_trace(pool, client, chain=chain, seeds=seeds, policy=policy)
    stop = asyncio.Event()
    settings = WorkerSettings(batch_size=batch_size, idle_sleep=0.02)
    crew = [Worker(pool, {chain: client}, name=f"det-{workers}-{i}", settings=settings) for i in range(workers)]
    tasks = [asyncio.create_task(w.run(stop)) for w in crew]
    try:
        status = await wait_for(pool, trace_id, timeout=timeout, poll=0.05)
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.gather(*tasks, return_exceptions=True)
    assert status == "done", (trace_id, status)
    return trace_id


async def hops_of(pool: asyncpg.Pool, trace_id: int) -> list[tuple[Any, ...]]:
    """Every hop: (transfer, from, to, asset, amount, status, reason, depth), by transfer id."""
    rows = await pool.fetch(
        """SELECT h.transfer_id, h.from_addr, h.to_addr, h.asset, h.amount, h.status, h.reason, h.depth
           FROM hops h WHERE h.trace_id = $1 ORDER BY h.transfer_id""", trace_id)
    return [(r["transfer_id"], r["from_addr"], r["to_addr"], r["asset"], int(r["amount"]), r["status"], r["reason"],
             r["depth"]) for r in rows]


async def roles_of(pool: asyncpg.Pool, trace_id: int) -> list[tuple[Any, ...]]:
    rows = await pool.fetch(
        """SELECT address, role, reason, depth FROM jobs WHERE trace_id = $1 AND kind = 'address'
           ORDER BY address""", trace_id)
    return [(r["address"], r["role"], r["reason"], r["depth"]) for r in rows]
