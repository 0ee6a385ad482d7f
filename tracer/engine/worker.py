"""The trace worker: claims frontier jobs from Postgres, follows the money one batch at a time.

Workers are stateless. Everything they know comes from Postgres (jobs, hops, cached transfers)
and the chain node; everything they decide is written back in one transaction per batch, so a
worker can be killed at any point and another takes over when its lease lapses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

import asyncpg

from tracer.chains.records import NATIVE, Transfer
from tracer.engine import classify
from tracer.engine.classify import FOLLOW, Verdict
from tracer.engine.policy import Policy
from tracer.engine.taint import Movement, propagate
from tracer.store import labels as label_store
from tracer.store import traces as store
from tracer.store.traces import HopRow, Job, StoredTransfer

log = logging.getLogger("tracer.worker")

MAX_ATTEMPTS = 6


class ChainSource(Protocol):
    """What the worker needs from a chain client (tracer.chains.evm.EvmChain provides it)."""

    async def transfers(
        self, addresses: Sequence[str], from_block: int, to_block: int, *, outgoing: bool = True,
        incoming: bool = False,
    ) -> list[Transfer]: ...

    async def native_balances(self, queries: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]: ...

    async def token_balances(
        self, queries: Sequence[tuple[str, str, int]]
    ) -> dict[tuple[str, str, int], int]: ...

    async def token_meta(self, tokens: Sequence[str]) -> dict[str, tuple[int | None, str | None]]: ...


@dataclass
class WorkerStats:
    batches: int = 0
    jobs: int = 0
    hops_written: int = 0
    errors: int = 0
    started: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class _TraceInfo:
    id: int
    chain: str
    seeds: frozenset[str]
    policy: Policy
    from_block: int
    to_block: int
    totals: dict[str, int]


class Worker:
    def __init__(
        self,
        pool: asyncpg.Pool,
        chains: Mapping[str, ChainSource],
        *,
        name: str | None = None,
        batch_size: int = 32,
        lease_seconds: float = 30.0,
        idle_sleep: float = 0.2,
    ) -> None:
        self.pool = pool
        self.chains = chains
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{random.randrange(1 << 30):x}"
        self.batch_size = batch_size
        self.lease_seconds = lease_seconds
        self.idle_sleep = idle_sleep
        self.stats = WorkerStats()

    async def run(self, stop: asyncio.Event | None = None, *, until_idle: bool = False) -> None:
        """Work until `stop` is set (or, with until_idle, until no job is runnable)."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            try:
                done = await self.run_once()
            except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError) as exc:
                # Postgres restarting or unreachable: nothing was committed, leases will lapse.
                log.warning("event=db_unavailable worker=%s error=%r", self.name, exc)
                done = 0
                await asyncio.sleep(1.0)
            if done == 0:
                if until_idle and not await self._any_runnable():
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.idle_sleep)

    async def _any_runnable(self) -> bool:
        return bool(await self.pool.fetchval(
            """SELECT EXISTS (SELECT 1 FROM jobs j JOIN traces t ON t.id = j.trace_id
               WHERE j.state <> 'done' AND t.status IN ('queued', 'running'))"""
        ))

    async def run_once(self) -> int:
        async with self.pool.acquire() as conn:
            jobs = await store.claim_jobs(conn, self.name, self.batch_size, self.lease_seconds)
        if not jobs:
            return 0
        trace = await self._trace(jobs[0].trace_id)
        heartbeat = asyncio.create_task(self._heartbeat(jobs))
        try:
            if trace is None:
                return 0
            start = [j for j in jobs if j.kind == "start"]
            if start:
                await self._start(trace, start[0])
                rest = [j for j in jobs if j.kind != "start"]
                if rest:
                    async with self.pool.acquire() as conn:
                        await store.release_jobs(conn, self.name, rest, 0)
            else:
                await self._process(trace, jobs)
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
            await asyncio.sleep(self.lease_seconds / 3)
            with contextlib.suppress(Exception):
                async with self.pool.acquire() as conn:
                    await store.extend_leases(conn, self.name, jobs, self.lease_seconds)

    async def _failed(self, trace: _TraceInfo | None, jobs: Sequence[Job], exc: BaseException) -> None:
        attempts = max(j.attempts for j in jobs)
        log.warning("event=job_failed worker=%s trace=%s jobs=%d attempt=%d error=%r",
                    self.name, jobs[0].trace_id, len(jobs), attempts, exc)
        async with self.pool.acquire() as conn:
            if attempts >= MAX_ATTEMPTS:
                await store.fail_trace(conn, jobs[0].trace_id, f"{type(exc).__name__}: {exc}")
            else:
                await store.release_jobs(conn, self.name, jobs, min(30.0, 0.5 * 2**attempts))

    async def _trace(self, trace_id: int) -> _TraceInfo | None:
        async with self.pool.acquire() as conn:
            row = await store.get_trace(conn, trace_id)
        if row is None:
            return None
        return _TraceInfo(
            id=row["id"], chain=row["chain"], seeds=frozenset(row["seeds"]),
            policy=Policy.from_json(row["policy"]), from_block=row["from_block"], to_block=row["to_block"],
            totals={k: int(v) for k, v in (row["totals"] or {}).items()},
        )

    def _chain(self, trace: _TraceInfo) -> ChainSource:
        try:
            return self.chains[trace.chain]
        except KeyError:
            raise RuntimeError(f"no RPC configured for chain {trace.chain!r}") from None

    # ------------------------------------------------------------ start: the seeds' totals

    async def _start(self, trace: _TraceInfo, job: Job) -> None:
        seeds = sorted(trace.seeds)
        stored = await self._ensure_transfers(trace, {s: trace.from_block for s in seeds})
        totals: dict[str, int] = defaultdict(int)
        for st in stored:
            t = st.transfer
            if t.from_address in trace.seeds and t.to_address not in trace.seeds:
                totals[t.asset] += t.amount
        async with self.pool.acquire() as conn, conn.transaction():
            if not await store.still_ours(conn, self.name, [job]):
                return
            await store.start_trace(conn, trace.id, dict(totals), seeds)
            await store.insert_events(conn, [(trace.id, "trace_started",
                                              {"totals": {k: str(v) for k, v in totals.items()}})])
            await store.complete_jobs(conn, self.name, [job])
        log.info("event=trace_started trace=%d seeds=%d assets=%d", trace.id, len(seeds), len(totals))

    # ------------------------------------------------------------ chain data, cached in Postgres

    async def _ensure_transfers(self, trace: _TraceInfo, from_blocks: Mapping[str, int]) -> list[StoredTransfer]:
        """Transfers of the addresses from their first flagged block to the trace's end, asking
        the node only for what Postgres does not hold yet (one request set for all of them)."""
        addresses = sorted(from_blocks)
        lo = min(from_blocks.values())
        async with self.pool.acquire() as conn:
            known = await store.coverage(conn, trace.chain, addresses)
        missing = [a for a in addresses
                   if not (a in known and known[a][0] <= from_blocks[a] and known[a][1] >= trace.to_block)]
        if missing:
            fetch_from = min(from_blocks[a] for a in missing)
            chain = self._chain(trace)
            fetched = await chain.transfers(missing, fetch_from, trace.to_block, outgoing=True, incoming=True)
            tokens = sorted({t.asset for t in fetched if t.asset != NATIVE})
            if tokens:
                # Reports show "1,250 USDT", not raw units of an anonymous contract.
                meta = await chain.token_meta(tokens)
                fetched = [replace(t, decimals=meta[t.asset][0], symbol=meta[t.asset][1])
                           if t.asset in meta and t.symbol is None else t for t in fetched]
            async with self.pool.acquire() as conn, conn.transaction():
                await store.store_transfers(conn, fetched)
                await store.set_coverage(conn, trace.chain, missing, fetch_from, trace.to_block)
        async with self.pool.acquire() as conn:
            return await store.load_transfers(conn, trace.chain, addresses, lo, trace.to_block)

    async def _prior_balances(
        self, trace: _TraceInfo, needs: Mapping[str, tuple[int, set[str]]]
    ) -> dict[str, dict[str, int]]:
        """Each address's balance per asset just before its first flagged inflow, so clean money
        already in the wallet dilutes the flagged share (haircut)."""
        native_q = [(a, fb - 1) for a, (fb, assets) in needs.items() if fb > 0 and NATIVE in assets]
        token_q = [(a, asset, fb - 1) for a, (fb, assets) in needs.items() if fb > 0
                   for asset in sorted(assets) if asset != NATIVE]
        chain = self._chain(trace)
        native = await chain.native_balances(native_q) if native_q else {}
        tokens = await chain.token_balances(token_q) if token_q else {}
        out: dict[str, dict[str, int]] = defaultdict(dict)
        for (a, _block), value in native.items():
            out[a][NATIVE] = value
        for (a, asset, _block), value in tokens.items():
            out[a][asset] = value
        return out

    # ------------------------------------------------------------ one batch of frontier addresses

    async def _process(self, trace: _TraceInfo, jobs: Sequence[Job]) -> None:
        policy = trace.policy
        addresses = [j.address for j in jobs]
        by_addr = {j.address: j for j in jobs}
        async with self.pool.acquire() as conn:
            inflows = await store.inflow_hops(conn, trace.id, addresses)
        flagged_in: dict[str, dict[int, int]] = defaultdict(dict)
        first_block: dict[str, int] = {}
        assets_in: dict[str, set[str]] = defaultdict(set)
        for r in inflows:
            flagged_in[r["to_addr"]][r["transfer_id"]] = int(r["amount"])
            assets_in[r["to_addr"]].add(r["asset"])
            b = r["block_number"]
            first_block[r["to_addr"]] = min(first_block.get(r["to_addr"], b), b)
        for j in jobs:
            if j.is_seed:
                first_block[j.address] = trace.from_block
        async with self.pool.acquire() as conn:
            own_labels = await label_store.lookup(conn, trace.chain, addresses)
        verdicts: dict[str, Verdict] = {}
        for a in addresses:
            # A labelled service is judged by its label alone: fetching an exchange's history
            # would cost thousands of transfers and tell us nothing.
            lv = None if by_addr[a].is_seed else classify.by_label(own_labels.get(a, ()), policy)
            if lv is not None:
                verdicts[a] = lv
        active = [a for a in addresses if a in first_block and a not in verdicts]
        stored = await self._ensure_transfers(trace, {a: first_block[a] for a in active}) if active else []
        timelines: dict[str, list[StoredTransfer]] = defaultdict(list)
        active_set = set(active)
        for st in stored:
            t = st.transfer
            for a in {t.from_address, t.to_address} & active_set:
                if st.transfer.block_number >= first_block[a]:
                    timelines[a].append(st)

        # Labels of the addresses themselves and of everyone they sent to (for sweeps and exits).
        recipients = {st.transfer.to_address for a in active for st in timelines[a]
                      if st.transfer.from_address == a}
        async with self.pool.acquire() as conn:
            labels = await label_store.lookup(conn, trace.chain, sorted(recipients))
            known = await store.node_verdicts(conn, trace.id, sorted(recipients))

        for a in active:
            job = by_addr[a]
            transfers = [st.transfer for st in timelines[a]]
            if job.is_seed:
                verdicts[a] = Verdict("followed", "seed")
                continue
            verdict = (classify.deposit_address(a, transfers, labels, policy)
                       or classify.hub(a, transfers, policy))
            if verdict is None and job.depth >= policy.max_depth:
                verdict = Verdict("stopped", "max_depth")
            verdicts[a] = verdict or FOLLOW

        followed = [a for a in active if verdicts[a].role == "followed"]
        needs = {a: (first_block[a], assets_in[a]) for a in followed
                 if not by_addr[a].is_seed and policy.taint_model == "haircut"}
        prior = await self._prior_balances(trace, needs) if needs else {}

        hops: list[HopRow] = []
        for a in followed:
            job = by_addr[a]
            by_id = {st.id: st.transfer for st in timelines[a]}
            moves = [
                Movement(st.id, st.transfer.order, st.transfer.asset, st.transfer.amount,
                         st.transfer.to_address == a,
                         st.transfer.from_address if st.transfer.to_address == a else st.transfer.to_address)
                for st in timelines[a]
                if st.transfer.from_address != st.transfer.to_address
            ]
            outs = propagate(moves, flagged_in.get(a, {}), prior.get(a, {}),
                             model=policy.taint_model, fully_flagged=job.is_seed)
            for o in outs:
                t = by_id[o.transfer_id]
                if t.to_address in trace.seeds:
                    continue  # money moving between flagged wallets is already counted
                threshold = max(1, policy.threshold(o.asset, trace.totals.get(o.asset, 0)))
                status, reason = "followed", "flagged funds"
                if o.amount < threshold:
                    status, reason = "stopped", "below_threshold"
                else:
                    target = known.get(t.to_address)
                    label_verdict = classify.by_label(labels.get(t.to_address, ()), policy)
                    if label_verdict is not None:
                        status, reason = label_verdict.role, label_verdict.reason
                        verdicts.setdefault(t.to_address, label_verdict)
                    elif target is not None and target["role"] in ("exit", "stopped"):
                        status, reason = target["role"], target["reason"]
                hops.append(HopRow(
                    transfer_id=o.transfer_id, from_addr=a, to_addr=t.to_address, asset=o.asset,
                    block_number=t.block_number, depth=job.depth + 1, amount=o.amount,
                    share=o.amount / o.total if o.total else 0.0, kind=str(t.kind), status=status,
                    reason=reason, parents=o.parents,
                ))

        await self._commit(trace, jobs, active, verdicts, hops, by_addr)

    async def _commit(
        self,
        trace: _TraceInfo,
        jobs: Sequence[Job],
        active: Sequence[str],
        verdicts: Mapping[str, Verdict],
        hops: Sequence[HopRow],
        by_addr: Mapping[str, Job],
    ) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            ours = await store.still_ours(conn, self.name, jobs)
            if not ours:
                return
            # A job whose lease lapsed while we worked belongs to someone else now: drop its part.
            hops = [h for h in hops if h.from_addr in ours]
            changed = await store.upsert_hops(conn, trace.id, hops)
            depth_of = {h.to_addr: h.depth for h in hops}
            # Only recipients still to be judged need another look; exits and stops are final.
            wake = sorted({r["to_addr"] for r in changed if r["status"] == "followed"})
            await store.enqueue(conn, trace.id, [(a, depth_of[a]) for a in wake])
            rows = []
            for a, v in verdicts.items():
                if a in by_addr and a not in ours:
                    continue
                depth = by_addr[a].depth if a in by_addr else depth_of.get(a, 0)
                rows.append((a, depth, v.role, v.reason, v.entity, v.category, v.evidence))
            await store.set_verdicts(conn, trace.id, rows)
            for role in ("exit", "stopped"):
                for reason in sorted({v.reason for a, v in verdicts.items() if v.role == role and a in ours}):
                    addrs = [a for a, v in verdicts.items() if v.role == role and v.reason == reason and a in ours]
                    await store.mark_hops_into(conn, trace.id, addrs, role, reason)
            events: list[tuple[int | None, str, dict[str, Any]]] = []
            new_hops = [r for r in changed if r["inserted"]]
            if new_hops:
                events.append((trace.id, "hops_added", {
                    "count": len(new_hops), "transfer_ids": [r["transfer_id"] for r in new_hops[:1000]]}))
            for a, v in verdicts.items():
                if v.role == "exit" and (a not in by_addr or a in ours):
                    events.append((trace.id, "exit_reached", {
                        "address": a, "entity": v.entity, "category": v.category, "reason": v.reason}))
            await store.insert_events(conn, events)
            deposit_labels = [(a, v) for a, v in verdicts.items()
                              if v.reason == "deposit_address" and a in ours]
            if deposit_labels:
                await label_store.upsert_labels(conn, [
                    label_store.Label(
                        chain=trace.chain, address=a, entity=v.entity or "unknown exchange",
                        category="deposit_address", source="behaviour",
                        confidence=float((v.evidence or {}).get("confidence", 0.8)),
                        valid_from=None, valid_to=None, program=None, evidence=v.evidence,
                        created_by=f"trace:{trace.id}",
                    ) for a, v in deposit_labels])
            await store.complete_jobs(conn, self.name, [j for j in jobs if j.address in ours])
        self.stats.hops_written += len(changed)
        log.debug("event=batch trace=%d jobs=%d hops=%d changed=%d at=%s", trace.id, len(jobs), len(hops),
                  len(changed), datetime.now(UTC).isoformat())
