"""Shared machinery of the reliability tests and `bench/faults.py`: faulty nodes, hop snapshots.

- `FaultyDevChain`: the devchain with its `FaultPlan` plus 429 answers *without* Retry-After
  (the devchain's own rate limit always sends one).
- `every_fault(seed)`: a plan mixing every per-request and per-batch fault the devchain has.
- `hop_rows` / `duplicate_hops`: what a trace recorded, comparable across traces of one database.
- `run_reference` / `run_faulty`: one trace on a healthy node, one on a faulty one, embedded
  workers, the transfers cache forgotten in between so the faulty node is really asked.
"""

from __future__ import annotations

import random
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from aiohttp import web

from tracer.chains.evm import EvmChain
from tracer.devchain.scenario import Scenario
from tracer.devchain.server import DevChainServer, FaultPlan
from tracer.engine.service import create_trace
from tracer.runner import run_with_workers

Hop = tuple[str, int, str, str, int, str, str]


class FaultyDevChain(DevChainServer):
    """A devchain that also answers some requests with a bare 429 (no Retry-After header)."""

    def __init__(self, scenario: Scenario, *, bare_429: float = 0.0, seed: int = 0,
                 script: Sequence[str] = (), **options: Any) -> None:
        super().__init__(scenario, **options)
        self.bare_429 = bare_429
        self._bare_rng = random.Random(seed ^ 0x429)
        #: Faults forced on the next requests, in order, before the seeded draws take over (so a
        #: short run still meets every kind); "ok" lets one request through.
        self.script: deque[str] = deque(script)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        forced = self.script[0] if self.script else None
        if forced == "http_429_bare" or (forced is None and self.bare_429
                                         and self._bare_rng.random() < self.bare_429):
            if forced:
                self.script.popleft()
            self.fault_counts["http_429_bare"] += 1
            return web.Response(status=429, text="too many requests")
        return await super()._handle(request)

    def _draw_fault(self) -> str | None:
        if self.script:
            kind = self.script.popleft()
            if kind == "ok":
                return None
            self.fault_counts[kind] += 1
            return kind
        return super()._draw_fault()

    def injected(self) -> Counter[str]:
        """Faults injected so far, per kind (429 with Retry-After from the devchain's rate limit)."""
        out = Counter(self.fault_counts)
        if self.request_counts.get("http_429"):
            out["http_429_retry_after"] = self.request_counts["http_429"]
        return out


def every_fault(seed: int, *, hang_seconds: float = 1.2) -> FaultPlan:
    """Every request-level fault at a rate a retrying client must survive (about 1 in 4 fails)."""
    return FaultPlan(
        seed=seed, hang=0.05, hang_seconds=hang_seconds, http_500=0.04, http_502=0.03, http_503=0.03,
        reset=0.05, malformed=0.07, shuffle_batch=0.3, partial_batch=0.2,
    )


#: One of each request-level fault, between healthy requests, forced at the start of a run.
SCRIPT = ("hang", "ok", "http_500", "ok", "http_502", "ok", "http_503", "ok", "reset", "ok", "malformed", "ok",
          "http_429_bare", "ok")


def faulty_client(url: str, scenario: Scenario) -> EvmChain:
    """A client with a short timeout (hangs cost ~1 s) and quick backoff, as a test can afford."""
    return EvmChain(url, chain=scenario.chain, expected_chain_id=scenario.chain_id, timeout=0.8,
                    retries=8, backoff=0.05)


async def hop_rows(pool: asyncpg.Pool, trace_id: int) -> list[Hop]:
    """Every hop of the trace as (tx hash, position, from, to, amount, asset, status), sorted."""
    rows = await pool.fetch(
        """SELECT t.tx_hash, t.position, h.from_addr, h.to_addr, h.amount, t.asset, h.status
           FROM hops h JOIN transfers t ON t.id = h.transfer_id WHERE h.trace_id = $1""", trace_id)
    return sorted((r["tx_hash"], r["position"], r["from_addr"], r["to_addr"], int(r["amount"]), r["asset"],
                   r["status"]) for r in rows)


async def duplicate_hops(pool: asyncpg.Pool, trace_id: int) -> int:
    return int(await pool.fetchval(
        """SELECT count(*) FROM (SELECT transfer_id FROM hops WHERE trace_id = $1
           GROUP BY transfer_id HAVING count(*) > 1) d""", trace_id))


async def forget_transfers(pool: asyncpg.Pool) -> None:
    """Make workers ask the node again: drop the record of which addresses are cached."""
    await pool.execute("DELETE FROM address_coverage")


@dataclass
class FaultRun:
    status: str
    hops: list[Hop]
    duplicates: int
    injected: Counter[str] = field(default_factory=Counter)
    error: str | None = None


async def run_trace(pool: asyncpg.Pool, client: EvmChain, scenario: Scenario, *, workers: int = 2,
                    timeout: float = 120.0) -> tuple[int, str]:
    trace_id = await create_trace(pool, client, chain=scenario.chain, seeds=scenario.seeds, policy={})
    status = await run_with_workers(pool, {scenario.chain: client}, trace_id, workers=workers, progress=False,
                                    timeout=timeout)
    return trace_id, status


async def run_faulty(pool: asyncpg.Pool, scenario: Scenario, server: FaultyDevChain, *, workers: int = 2,
                     timeout: float = 120.0) -> FaultRun:
    """Trace the scenario's seeds on `server` (already started) with embedded workers."""
    await forget_transfers(pool)
    client = faulty_client(server.url, scenario)
    try:
        await client.connect()
        trace_id, status = await run_trace(pool, client, scenario, workers=workers, timeout=timeout)
    finally:
        await client.close()
    error = await pool.fetchval("SELECT error FROM traces WHERE id = $1", trace_id)
    return FaultRun(status, await hop_rows(pool, trace_id), await duplicate_hops(pool, trace_id),
                    server.injected(), error)
