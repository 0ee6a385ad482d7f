"""The trace worker: claims frontier jobs from Postgres and runs one trace step per batch.

Workers are stateless. Everything they know comes from Postgres (jobs, hops, cached transfers)
and the chain node; everything a step decides is written back in one transaction per batch
(tracer.engine.step), so a worker can be killed at any point and another takes over when its
lease lapses. Any number of workers on any number of machines share the queue: jobs are claimed
with FOR UPDATE SKIP LOCKED and held by a lease the worker's heartbeat extends.

A batch holds jobs of one trace on one chain; a job that keeps failing is retried with backoff
and fails its trace after MAX_ATTEMPTS. An idle worker waits for a notification that a job became
runnable (tracer.workers.wakeup), polling every `idle_sleep` seconds as the fallback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import asyncpg

from tracer.chains.errors import ChainError
from tracer.chains.protocols import ChainSource
from tracer.config import DEFAULT_BATCH_SIZE
from tracer.domain.records import Job
from tracer.engine.step import run as step
from tracer.engine.step.gather import StepContext, read_trace
from tracer.engine.step.plan import TraceInfo
from tracer.store import traces as store
from tracer.workers.wakeup import Waiter, Wakeup, hub

log = logging.getLogger("tracer.worker")

MAX_ATTEMPTS = 6
WAKE_SETTLE = 0.05  # seconds a notified worker yields to the committing one

T = TypeVar("T")


@dataclass
class WorkerSettings:
    """How a worker loop claims and holds its work; one record serves a whole crew (`tracer worker
    --concurrency`, the API's embedded workers), as DeliverySettings does for delivery workers."""

    batch_size: int = DEFAULT_BATCH_SIZE  # jobs (frontier addresses) claimed at once
    lease_seconds: float = 30.0  # a claim lapses after this unless the heartbeat extends it
    idle_sleep: float = 0.2  # the poll interval of an idle worker (job notifications end it sooner)
    lanes: int = 1  # batches of different traces run at once (see Worker._lanes)

    def __post_init__(self) -> None:
        self.lanes = max(1, self.lanes)


@dataclass
class WorkerStats:
    batches: int = 0
    jobs: int = 0
    hops_written: int = 0
    errors: int = 0
    notified: int = 0  # idle waits a job notification ended (the rest ended by the poll interval)
    peak_lanes: int = 0  # most batches run at once (lanes)
    started: float = field(default_factory=time.monotonic)


class Worker:
    def __init__(
        self,
        pool: asyncpg.Pool,
        chains: Mapping[str, ChainSource],
        *,
        name: str | None = None,
        settings: WorkerSettings | None = None,
    ) -> None:
        self.pool = pool
        self.chains = chains
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{random.randrange(1 << 30):x}"
        self.settings = settings or WorkerSettings()
        self.stats = WorkerStats()
        self._step = StepContext(pool, chains, self.name)
        self.waiter = Waiter(chains)  # its wake event, set by job notifications (wakeup.py)
        self.idle = asyncio.Event()  # set while the worker waits for work
        self._hub: Wakeup | None = None

    async def run(self, stop: asyncio.Event | None = None, *, until_idle: bool = False) -> None:
        """Work until `stop` is set (or, with until_idle, until no job is runnable)."""
        stop = stop or asyncio.Event()
        self._hub = wakeup = hub(self.pool)
        wakeup.register(self.waiter)
        try:
            await self._loop(stop, until_idle)
        finally:
            await wakeup.unregister(self.waiter)

    async def _loop(self, stop: asyncio.Event, until_idle: bool) -> None:
        if self.settings.lanes > 1:
            await self._lanes(stop, until_idle)
            return
        while not stop.is_set():
            # Cleared before the claim: a job made runnable while we claim still ends the next wait.
            self.waiter.event.clear()
            done = await self._guarded(self.run_once()) or 0
            if done == 0:
                if until_idle and not await self._any_runnable():
                    return
                await self._idle(stop)

    async def _lanes(self, stop: asyncio.Event, until_idle: bool) -> None:
        """Up to `lanes` batches at once, each of a different trace: a step mostly waits on the
        database and the node, so when a block wakes many watching traces their steps overlap
        instead of queueing one behind the other, while one big trace still goes one batch at a
        time per loop (its batches stay whole, and so does the memory they take). A lane that
        claims nothing ends; while any runs, the loop claims again as soon as one ends or a job
        notification comes."""
        running: dict[asyncio.Task[int | None], int] = {}  # batch -> its trace
        try:
            while not stop.is_set():
                self.waiter.event.clear()
                claimed = 0
                if len(running) < self.settings.lanes:
                    jobs = await self._guarded(self._claim(list(running.values())))
                    if jobs:
                        claimed = len(jobs)
                        running[asyncio.create_task(self._guarded(self._run_batch(jobs)))] = jobs[0].trace_id
                        self.stats.peak_lanes = max(self.stats.peak_lanes, len(running))
                if claimed and len(running) < self.settings.lanes:
                    continue  # more may be runnable: claim again at once
                if running:
                    waits = {asyncio.ensure_future(self.waiter.event.wait()), asyncio.ensure_future(stop.wait())}
                    await asyncio.wait(set(running) | waits, timeout=self.settings.idle_sleep,
                                       return_when=asyncio.FIRST_COMPLETED)
                    for w in waits:
                        w.cancel()
                    for t in [t for t in running if t.done()]:
                        del running[t]
                        t.result()  # a bug in a batch stops this worker, as it does without lanes
                    continue
                if until_idle and not await self._any_runnable():
                    return
                await self._idle(stop)
        finally:
            if running:
                await asyncio.gather(*running, return_exceptions=True)

    async def _guarded(self, work: Awaitable[T]) -> T | None:
        """`work`, or None when the database is unavailable (nothing committed; leases will lapse)."""
        try:
            return await work
        except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
                asyncpg.CannotConnectNowError, asyncpg.AdminShutdownError, asyncpg.CrashShutdownError) as exc:
            # Postgres restarting (shutting down, starting up) or unreachable.
            log.warning("event=db_unavailable worker=%s error=%r", self.name, exc)
        except asyncpg.InternalClientError as exc:
            # A connection torn down mid-operation (a server restart) can leave asyncpg in a
            # state it reports this way; like the errors above it is the database, not the work.
            log.warning("event=db_unavailable worker=%s error=%r", self.name, exc)
        await asyncio.sleep(1.0)
        return None

    async def _idle(self, stop: asyncio.Event) -> None:
        """Until a job notification, `stop`, or the poll interval, whichever comes first."""
        waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self.waiter.event.wait())]
        self.idle.set()
        self.waiter.waiting = True
        try:
            await asyncio.wait(waits, timeout=self.settings.idle_sleep, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.idle.clear()
            self.waiter.waiting = False
            for w in waits:
                w.cancel()
        if self.waiter.event.is_set() and not stop.is_set():
            self.stats.notified += 1
            # The worker whose commit made the jobs runnable claims again at once; a woken one
            # lets it go first and takes what is left, so batches stay whole (one batch of 256
            # jobs, not a few of whatever each worker grabbed first: each batch costs its own
            # node calls) while a backlog still spreads over every worker. When every worker of
            # this process was waiting, the jobs came from elsewhere (the monitor waking watching
            # traces after a block, the API, another process): claim them at once.
            if self._hub is not None and self._hub.others_busy(self.waiter):
                await asyncio.sleep(WAKE_SETTLE)

    async def _any_runnable(self) -> bool:
        async with self.pool.acquire() as conn:
            return await store.any_runnable(conn, list(self.chains))

    async def run_once(self) -> int:
        jobs = await self._claim()
        return await self._run_batch(jobs) if jobs else 0

    async def _claim(self, other_than: Sequence[int] = ()) -> list[Job]:
        async with self.pool.acquire() as conn:
            return await store.claim_jobs(conn, self.name, self.settings.batch_size, self.settings.lease_seconds,
                                          list(self.chains), other_than)

    async def _run_batch(self, jobs: list[Job]) -> int:
        trace = await read_trace(self.pool, jobs[0].trace_id, jobs[0].chain or None)
        heartbeat = asyncio.create_task(self._heartbeat(jobs))
        try:
            if trace is None:
                return 0
            start = [j for j in jobs if j.kind == "start"]
            if trace.direction == "backward":
                await step.backward(self._step, trace, jobs)
            elif start:
                await step.start(self._step, trace, start[0])
                rest = [j for j in jobs if j.kind != "start"]
                if rest:
                    async with self.pool.acquire() as conn:
                        await store.release_jobs(conn, self.name, rest, 0)
            else:
                self.stats.hops_written += await step.process(self._step, trace, jobs)
            self.stats.batches += 1
            self.stats.jobs += len(jobs)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a node fault or a bug: give the jobs back, fail after retries
            self.stats.errors += 1
            await self._failed(trace, jobs, exc)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        async with self.pool.acquire() as conn:
            await store.try_finish_trace(conn, jobs[0].trace_id)
        return len(jobs)

    async def _heartbeat(self, jobs: Sequence[Job]) -> None:
        while True:
            await asyncio.sleep(self.settings.lease_seconds / 3)
            with contextlib.suppress(Exception):
                async with self.pool.acquire() as conn:
                    await store.extend_leases(conn, self.name, jobs, self.settings.lease_seconds)

    async def _failed(self, trace: TraceInfo | None, jobs: Sequence[Job], exc: BaseException) -> None:
        attempts = max(j.attempts for j in jobs)
        log.warning("event=job_failed worker=%s trace=%s jobs=%d attempt=%d error=%r",
                    self.name, jobs[0].trace_id, len(jobs), attempts, exc)
        async with self.pool.acquire() as conn:
            if attempts >= MAX_ATTEMPTS:
                # A node's failure is told in a sentence that names the node and what it did ("node at
                # http://host:port answered trace_filter with a string, not a list of traces"); a bug
                # keeps its exception's name.
                reason = str(exc) if isinstance(exc, ChainError) and str(exc) else f"{type(exc).__name__}: {exc}"
                await store.fail_trace(conn, jobs[0].trace_id, reason)
            else:
                await store.release_jobs(conn, self.name, jobs, min(30.0, 0.5 * 2**attempts))
