"""Faulty nodes and hop snapshots: the machinery of `bench/faults.py`, which the reliability tests
use too (through tests/reliability_support.py; bench imports nothing from tests/).

- `FaultyDevChain`: the devchain with its `FaultPlan` plus 429 answers *without* Retry-After
  (the devchain's own rate limit always sends one).
- `every_fault(seed)`: a plan mixing every per-request and per-batch fault the devchain has.
- `hop_rows`: what a trace recorded, comparable across traces and databases; `compare_hops`: hop
  by hop (transfer, from, to, amount, asset, status) against a reference.
- `duplicate_events`: hop and exit announcements the events outbox holds twice (the place a
  duplicate can happen: hops themselves are keyed by (trace, transfer)).
- `reference_hops` / `run_faulty`: one trace on a healthy node, one on a faulty one, embedded
  workers. `forget_transfers` only drops the coverage records: workers then still read the
  transfers cached in Postgres, so a run meant to ask the faulty node everything traces on a
  `FreshDatabases` clone instead (nothing cached, the scenario's labels loaded).
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import signal
import subprocess
import sys
from collections import Counter, deque
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from aiohttp import web

from tracer.chains.evm import EvmChain
from tracer.chains.retry import RetryPolicy, TransportOptions
from tracer.devchain.chain import Chain
from tracer.devchain.scenario import KIND_NATIVE, Scenario, ScenarioTx
from tracer.devchain.server import DevChainServer, FaultPlan
from tracer.domain.labels import Label
from tracer.engine.service import create_trace
from tracer.runner import run_with_workers
from tracer.store import labels as label_store
from tracer.store.db import Database
from tracer.store.urls import quote_ident, with_database

Hop = tuple[str, int, str, str, int, str, str]


class FreshDatabases:
    """Databases cloned from a template holding only the schema and the scenario's labels: every
    trace starts with no transfer cached, so its workers read everything from its own node."""

    def __init__(self, server: str, template: str) -> None:
        self.server = server
        self.template = template

    @classmethod
    async def create(cls, server: str, scenario: Scenario) -> FreshDatabases:
        from tracer.demo import load_scenario_labels

        name = f"tracer_bench_faults_template_{secrets.token_hex(4)}"
        await _admin(server, f"CREATE DATABASE {quote_ident(name)}")
        try:
            db = await Database.connect(with_database(server, name), min_size=1, max_size=2)  # migrates
            try:
                await load_scenario_labels(db.pool, scenario)
            finally:
                await db.close()  # a template must have no session open when it is cloned
        except BaseException:
            await _admin(server, f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")
            raise
        return cls(server, name)

    @asynccontextmanager
    async def fresh(self, max_size: int = 8) -> AsyncIterator[Database]:
        name = f"tracer_bench_faults_run_{secrets.token_hex(4)}"
        await _admin(self.server, f"CREATE DATABASE {quote_ident(name)} TEMPLATE {quote_ident(self.template)}")
        try:
            db = await Database.connect(with_database(self.server, name), min_size=1, max_size=max_size)
            try:
                yield db
            finally:
                await db.close()
        finally:
            await _admin(self.server, f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")

    async def drop(self) -> None:
        await _admin(self.server, f"DROP DATABASE IF EXISTS {quote_ident(self.template)} WITH (FORCE)")


async def _admin(server: str, sql: str) -> None:
    conn = await asyncpg.connect(server)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


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
        if forced == "http_429_retry_after":
            # What the rate limit answers, forced: a run slowed by a busy machine (or by running
            # next to others) may never outpace the limit, and must still meet the fault once.
            self.script.popleft()
            self.request_counts["http"] += 1
            self.request_counts["http_429"] += 1
            return web.Response(status=429, text=self.TOO_MANY_TEXT, headers={"Retry-After": "1"})
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
          "http_429_bare", "ok", "http_429_retry_after", "ok")


# A short timeout (hangs cost ~1 s) and quick backoff, as a test can afford.
FAULTY_TRANSPORT = TransportOptions(timeout=0.8, policy=RetryPolicy(retries=8, backoff=0.05))


def faulty_client(url: str, scenario: Scenario) -> EvmChain:
    """A client with a short timeout (hangs cost ~1 s) and quick backoff, as a test can afford."""
    return EvmChain(url, chain=scenario.chain, expected_chain_id=scenario.chain_id, transport=FAULTY_TRANSPORT)


async def hop_rows(pool: asyncpg.Pool, trace_id: int) -> list[Hop]:
    """Every hop of the trace as (tx hash, position, from, to, amount, asset, status), sorted."""
    rows = await pool.fetch(
        """SELECT t.tx_hash, t.position, h.from_addr, h.to_addr, h.amount, t.asset, h.status
           FROM hops h JOIN transfers t ON t.id = h.transfer_id WHERE h.trace_id = $1""", trace_id)
    return sorted((r["tx_hash"], r["position"], r["from_addr"], r["to_addr"], int(r["amount"]), r["asset"],
                   r["status"]) for r in rows)


@dataclass
class HopDiff:
    """A trace's hops against the reference, transfer by transfer."""

    lost: list[Hop] = field(default_factory=list)  # reference hops the trace does not have
    extra: list[Hop] = field(default_factory=list)  # hops of transfers the reference never reached
    altered: list[tuple[Hop, Hop]] = field(default_factory=list)  # (reference, got): same transfer, other facts

    @property
    def wrong(self) -> int:
        return len(self.extra) + len(self.altered)


def compare_hops(reference: Sequence[Hop], hops: Sequence[Hop]) -> HopDiff:
    """Hop by hop: a hop is the same when its transfer (tx hash, position) is, and so are its
    sender, recipient, flagged amount, asset and status."""
    ref = {(h[0], h[1]): h for h in reference}
    got = {(h[0], h[1]): h for h in hops}
    diff = HopDiff()
    for key, h in sorted(ref.items()):
        g = got.get(key)
        if g is None:
            diff.lost.append(h)
        elif g != h:
            diff.altered.append((h, g))
    diff.extra = [h for key, h in sorted(got.items()) if key not in ref]
    return diff


async def duplicate_events(pool: asyncpg.Pool, trace_id: int) -> int:
    """Hop announcements the trace's events outbox made twice: a transfer announced as added more
    than once, or a hop "updated" to what an earlier announcement already said. Subscribers take
    each as news. (Hops themselves cannot be duplicated: they are keyed by (trace, transfer).)"""
    return int(await pool.fetchval(
        """SELECT (SELECT coalesce(sum(n - 1), 0) FROM (
                     SELECT count(*) AS n FROM events WHERE trace_id = $1 AND type = 'hop_added'
                     GROUP BY payload ->> 'transfer_id') a)
                + (SELECT count(*) FROM events e WHERE e.trace_id = $1 AND e.type = 'hop_updated'
                     AND EXISTS (SELECT 1 FROM events p WHERE p.trace_id = $1 AND p.id < e.id
                                 AND p.type IN ('hop_added', 'hop_updated') AND p.payload = e.payload))""",
        trace_id))


async def repeated_exit_events(pool: asyncpg.Pool, trace_id: int) -> int:
    """`exit_reached` events beyond the first for one exit. The worker announces an exit in every
    batch whose hops reach it, so a deposit address paid in five batches is announced five times,
    healthy node or not: counted apart from the duplicates faults could cause."""
    return int(await pool.fetchval(
        """SELECT coalesce(sum(n - 1), 0) FROM (
             SELECT count(*) AS n FROM events WHERE trace_id = $1 AND type = 'exit_reached'
             GROUP BY payload ->> 'address', payload ->> 'chain') x""", trace_id))


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
    trace_id: int = 0


async def run_trace(pool: asyncpg.Pool, client: EvmChain, scenario: Scenario, *, workers: int = 2,
                    timeout: float = 120.0, policy: dict[str, Any] | None = None) -> tuple[int, str]:
    trace_id = await create_trace(pool, client, chain=scenario.chain, seeds=scenario.seeds, policy=policy or {})
    status = await run_with_workers(pool, {scenario.chain: client}, trace_id, workers=workers, progress=False,
                                    timeout=timeout)
    return trace_id, status


async def reference_hops(db: Database, scenario: Scenario, devchain_factory: Any) -> list[Hop]:
    """The scenario traced against a healthy devchain (labels loaded): what every faulty run must match."""
    from tracer.demo import load_scenario_labels

    await load_scenario_labels(db.pool, scenario)
    healthy = await devchain_factory(scenario)
    client = EvmChain(healthy.url, chain=scenario.chain, expected_chain_id=scenario.chain_id)
    await client.connect()
    try:
        trace_id, status = await run_trace(db.pool, client, scenario)
    finally:
        await client.close()
    assert status == "done"
    return await hop_rows(db.pool, trace_id)


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
                    server.injected(), error, trace_id)


# ------------------------------------------------------------------------------ SIGKILLed workers


def worker_process(db_url: str, rpc: str, *, lease: float = 1.0, batch_size: int = 4) -> subprocess.Popen[bytes]:
    """A real `tracer worker` OS process (so SIGKILL is a real crash)."""
    cmd = [sys.executable, "-m", "tracer.cli", "worker", "--database-url", db_url, "--rpc", rpc,
           "--lease-seconds", str(lease), "--batch-size", str(batch_size)]
    env = dict(os.environ, TRACER_LOG_LEVEL="ERROR")
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)


def stop_processes(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@dataclass
class KillRun:
    trace_id: int
    status: str
    kills: int
    error: str | None = None


async def kill_workers_at_random(db: Database, scenario: Scenario, rpc: str, rng: random.Random, *,
                                 workers: int = 1, max_kills: int = 2, timeout: float = 120.0) -> KillRun:
    """Trace the scenario with worker processes; SIGKILL 1..max_kills of them at moments `rng`
    picks (a hop count to wait for, then a delay, then a victim holding jobs when one does),
    leaving `workers` alive. Every process starts up front (a Python start costs seconds on a
    busy box), so the survivors take over leased jobs as soon as the leases lapse."""
    client = EvmChain(rpc, chain=scenario.chain, expected_chain_id=scenario.chain_id)
    await client.connect()
    try:
        trace_id = await create_trace(db.pool, client, chain=scenario.chain, seeds=scenario.seeds, policy={})
    finally:
        await client.close()
    n_kills = rng.randint(1, max_kills)
    procs = [worker_process(db.url, rpc) for _ in range(workers + n_kills)]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    kills = 0
    try:
        for _ in range(n_kills):
            wanted = rng.randint(0, 40)
            while loop.time() < deadline:
                row = await db.pool.fetchrow(
                    """SELECT t.status, (SELECT count(*) FROM hops h WHERE h.trace_id = t.id) AS hops,
                              EXISTS (SELECT 1 FROM jobs j WHERE j.trace_id = t.id AND j.attempts > 0) AS claimed
                       FROM traces t WHERE t.id = $1""", trace_id)
                if (row["claimed"] and row["hops"] >= wanted) or row["status"] not in ("queued", "running"):
                    break
                await asyncio.sleep(0.02)
            await asyncio.sleep(rng.uniform(0.0, 0.4))
            if await db.pool.fetchval("SELECT status FROM traces WHERE id = $1", trace_id) not in ("queued", "running"):
                break
            holders = await db.pool.fetch(
                "SELECT DISTINCT worker FROM jobs WHERE trace_id = $1 AND state = 'running'", trace_id)
            holding = [p for p in procs if p.poll() is None and any(f":{p.pid}:" in (r["worker"] or "")
                                                                   for r in holders)]
            victim = rng.choice(holding or [p for p in procs if p.poll() is None])
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            kills += 1
        while loop.time() < deadline:
            status = await db.pool.fetchval("SELECT status FROM traces WHERE id = $1", trace_id)
            if status not in ("queued", "running"):
                break
            await asyncio.sleep(0.1)
    finally:
        stop_processes(procs)
    row = await db.pool.fetchrow("SELECT status, error FROM traces WHERE id = $1", trace_id)
    return KillRun(trace_id, row["status"], kills, row["error"])


# ------------------------------------------------------------------------------ reorg mid-trace

ETH = 10**18
REORG_SEED = "0x" + "5e" * 20  # the thief
REORG_A, REORG_B, REORG_C = "0x" + "a1" * 20, "0x" + "b2" * 20, "0x" + "c3" * 20
REORG_EXCHANGE = "0x" + "ec" * 20  # a labelled exchange wallet
_REORG_TAIL = 4  # empty blocks after the payments, so the window ends past them


def _pay(sender: str, to: str, eth: int) -> ScenarioTx:
    return ScenarioTx(KIND_NATIVE, sender, to, eth * ETH)


def reorg_chains() -> tuple[Chain, Chain]:
    """(before, after): SEED -> A -> B -> exchange, and the same chain after a reorg replaced every
    block from A's payment on with A -> C -> exchange (block 1, SEED -> A, is shared)."""
    def base() -> Chain:
        c = Chain(chain_id=1337, genesis_balances={REORG_SEED: {"native": 100 * ETH}})
        c.append_block([_pay(REORG_SEED, REORG_A, 10)])
        return c

    before = base()
    before.append_block([_pay(REORG_A, REORG_B, 10)])
    before.append_block([_pay(REORG_B, REORG_EXCHANGE, 10)])
    for _ in range(_REORG_TAIL):
        before.append_block([])
    after = base()
    after.append_block([_pay(REORG_A, REORG_B, 10)])  # replaced below, so both went through one reorg
    after.reorg(1, [[_pay(REORG_A, REORG_C, 10)], [_pay(REORG_C, REORG_EXCHANGE, 10)]]
                + [[] for _ in range(_REORG_TAIL)])
    return before, after


class ReorgingDevChain(DevChainServer):
    """Serves `reorg_chains()[0]` and reorganises it into `[1]` the moment a request first asks for
    `trigger`'s own transfers (a `trace_filter` naming it: by then the hop into it is recorded), before
    answering that request. Other reads that name it earlier (the receipts and logs a batch reads to
    recognise services among its recipients) do not count."""

    def __init__(self, trigger: str = REORG_B, **options: Any) -> None:
        super().__init__(reorg_chains()[0], **options)
        self.trigger = trigger[2:]
        self.reorged = False

    def handle_body(self, body: bytes) -> Any:
        lowered = body.lower()
        if not self.reorged and b"trace_filter" in lowered and self.trigger.encode() in lowered:
            self.reorged = True
            self.chain.reorg(self.chain.head - 1, [[_pay(REORG_A, REORG_C, 10)], [_pay(REORG_C, REORG_EXCHANGE, 10)]]
                             + [[] for _ in range(_REORG_TAIL)])
            self.fault_counts["reorg"] += 1
        return super().handle_body(body)


async def label_reorg_exchange(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await label_store.upsert_labels(conn, [Label("ethereum", REORG_EXCHANGE, "Binance", "exchange",
                                                                 "test")])


async def trace_reorg_seed(pool: asyncpg.Pool, client: Any, *, timeout: float = 60.0) -> tuple[int, str]:
    trace_id = await create_trace(pool, client, chain="ethereum", seeds=[REORG_SEED], policy={})
    status = await run_with_workers(pool, {"ethereum": client}, trace_id, workers=1, progress=False, timeout=timeout)
    return trace_id, status
