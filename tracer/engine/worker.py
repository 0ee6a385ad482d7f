"""The trace worker: claims frontier jobs from Postgres, follows the money one batch at a time.

Workers are stateless. Everything they know comes from Postgres (jobs, hops, cached transfers)
and the chain node; everything they decide is written back in one transaction per batch, so a
worker can be killed at any point and another takes over when its lease lapses.

Money that changes form is followed too (mixers.py, swaps.py, bridges.py): a same-transaction
swap carries the traced share into the asset bought; a mixer deposit is linked to the pool's
later withdrawals by scored heuristics, and links at least `policy.min_link_confidence` sure are
followed with the taint scaled by their confidence; a bridge deposit is a cross-chain exit with
the destination its protocol published, and when that chain is configured the trace continues
there: the payout becomes a hop on the destination chain (matched by memo, else by timing, with
the confidence that says which) and its recipient a job of that chain. A batch holds jobs of one
trace on one chain; `_TraceInfo` is the trace as seen from that chain (its block window, and the
seeds and totals only on the trace's own chain). All of it stays batched: one getLogs per block cluster
for the deposit and bridge events of a batch, one for the histories of all pools involved.
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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

import asyncpg

from tracer.addresses import InvalidAddress, normalize_address
from tracer.chains.records import NATIVE, Transfer
from tracer.chains.utxo_records import UtxoTx
from tracer.config import DEFAULT_BATCH_SIZE
from tracer.engine import balances, bridges, classify, event_usd, freezes, mixer_scope, mixers, swaps, utxo
from tracer.engine import depth as depth_rule
from tracer.engine.backward_jobs import BackwardTools, run_backward
from tracer.engine.classify import FOLLOW, Verdict
from tracer.engine.mixer_rivals import read_rivals
from tracer.engine.policy import Policy
from tracer.engine.recognised import SERVICE_TOPICS, SWAP_TOPICS, ServiceLogs, dex_evidence, recognised_evidence
from tracer.engine.service import block_at_time
from tracer.engine.taint import CLEAN_MONEY_MODELS, Movement, TaintedOut, propagate
from tracer.store import alerts as alert_store
from tracer.store import balances as balance_store
from tracer.store import described as described_store
from tracer.store import labels as label_store
from tracer.store import mixers as mixer_store
from tracer.store import traces as store
from tracer.store.traces import HopRow, Job, StoredTransfer

log = logging.getLogger("tracer.worker")

MAX_ATTEMPTS = 6


class ChainSource(Protocol):
    """What the worker needs from a chain client (tracer.chains.evm.EvmChain provides it)."""

    async def transfers(
        self, addresses: Sequence[str], from_block: int, to_block: int, *, outgoing: bool = True,
        incoming: bool = False, times: bool = True,
    ) -> list[Transfer]: ...

    async def native_balances(self, queries: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]: ...

    async def token_balances(
        self, queries: Sequence[tuple[str, str, int]]
    ) -> dict[tuple[str, str, int], int]: ...

    async def token_meta(self, tokens: Sequence[str]) -> dict[str, tuple[int | None, str | None]]: ...

    async def logs(
        self,
        address: str | Sequence[str] | None,
        topics: Sequence[str | Sequence[str] | None],
        from_block: int,
        to_block: int,
    ) -> Sequence[mixers.LogLike]: ...


@runtime_checkable
class WindowSource(Protocol):
    """What a chain needs on top of ChainSource to be continued into from a bridge: its head and
    block times (the block at the deposit's time is where the payout search starts)."""

    async def head(self) -> int: ...

    async def block_times(self, numbers: Sequence[int]) -> dict[int, int]: ...


@runtime_checkable
class GasPriceSource(Protocol):
    """Optional: gas prices of transactions (the unusual-gas-price de-mixing heuristic needs them)."""

    async def gas_prices(self, tx_hashes: Sequence[str]) -> dict[str, int]: ...


@runtime_checkable
class UtxoSource(Protocol):
    """A UTXO chain (tracer.chains.bitcoin.EsploraChain): whole transactions, which the change and
    CoinJoin heuristics (tracer.engine.utxo) read where the flattened transfers cannot tell."""

    async def transactions(self, txids: Iterable[str]) -> dict[str, UtxoTx]: ...


# Taint and confidence are decided here; these strings are what hops and verdicts say about it.
REASON_SWAP = "swap"
REASON_MIXER_DEPOSIT = "mixer deposit"  # linked: the money went on through a withdrawal
REASON_MIXER_LINK = "mixer link"  # the withdrawal hop a link created
REASON_BRIDGE = "bridge"  # the payout hop on the destination chain a bridge deposit continued into
REASON_CROSSING = "crossing"  # a bridge deposit the trace continued on the far chain: not an exit
REASON_CHANGE = "change"  # UTXO: the payer's change output (a peel chain goes on through it)
REASON_COINJOIN_LINK = "coinjoin link"  # UTXO: a CoinJoin output a scored link follows
ENTERED_COINJOIN = "entered CoinJoin"  # UTXO: a CoinJoin output no link is sure enough to follow
MAX_HOPS = "max_hops"  # the verdict on addresses left unexpanded once the trace holds policy.max_hops hops
_CLUSTER_BLOCKS = 100  # deposits this close share one getLogs for their events
_MAX_GAS_LOOKUPS = 5_000  # transactions per batch whose gas price is fetched for the linker
_MAX_DESTINATIONS = 500  # bridge destinations kept in one router's evidence


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
    home: str = ""  # the trace's own chain (`chain` is the batch's)
    hops: int = 0  # hops the trace held when the batch began (policy.max_hops)
    direction: str = "forward"  # backward: engine/backward_jobs.py runs its batches


class Worker:
    def __init__(
        self,
        pool: asyncpg.Pool,
        chains: Mapping[str, ChainSource],
        *,
        name: str | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
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
        # (chain, time, head) -> first block at or after the time: a deposit's payout search
        # starts there, and its depositor may be processed again (a binary search of node calls).
        self._block_at: dict[tuple[str, int, int], int] = {}

    async def run(self, stop: asyncio.Event | None = None, *, until_idle: bool = False) -> None:
        """Work until `stop` is set (or, with until_idle, until no job is runnable)."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            try:
                done = await self.run_once()
            except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
                    asyncpg.CannotConnectNowError, asyncpg.AdminShutdownError, asyncpg.CrashShutdownError) as exc:
                # Postgres restarting (shutting down, starting up) or unreachable: nothing was
                # committed, leases will lapse.
                log.warning("event=db_unavailable worker=%s error=%r", self.name, exc)
                done = 0
                await asyncio.sleep(1.0)
            except asyncpg.InternalClientError as exc:
                # A connection torn down mid-operation (a server restart) can leave asyncpg in a
                # state it reports this way; like the errors above it is the database, not the work.
                log.warning("event=db_unavailable worker=%s error=%r", self.name, exc)
                done = 0
                await asyncio.sleep(1.0)
            if done == 0:
                if until_idle and not await self._any_runnable():
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.idle_sleep)

    async def _any_runnable(self) -> bool:
        async with self.pool.acquire() as conn:
            return await store.any_runnable(conn, list(self.chains))

    async def run_once(self) -> int:
        async with self.pool.acquire() as conn:
            jobs = await store.claim_jobs(conn, self.name, self.batch_size, self.lease_seconds, list(self.chains))
        if not jobs:
            return 0
        trace = await self._trace(jobs[0].trace_id, jobs[0].chain or None)
        heartbeat = asyncio.create_task(self._heartbeat(jobs))
        try:
            if trace is None:
                return 0
            start = [j for j in jobs if j.kind == "start"]
            if trace.direction == "backward":
                await run_backward(BackwardTools(
                    self.pool, self.name, self._chain(trace), self._ensure_transfers, self._describe), trace, jobs)
            elif start:
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

    async def _trace(self, trace_id: int, chain: str | None = None) -> _TraceInfo | None:
        """The trace as a batch on `chain` sees it (default: the trace's own chain)."""
        async with self.pool.acquire() as conn:
            row = await store.get_trace(conn, trace_id)
            if row is None:
                return None
            home = row["chain"]
            if chain is None or chain == home:
                return _TraceInfo(
                    id=row["id"], chain=home, seeds=frozenset(row["seeds"]),
                    policy=Policy.from_json(row["policy"]), from_block=row["from_block"], to_block=row["to_block"],
                    totals={k: int(v) for k, v in (row["totals"] or {}).items()}, home=home,
                    hops=row["hop_count"], direction=row["direction"],
                )
            window = await store.chain_window(conn, trace_id, chain)
        if window is None:
            raise RuntimeError(f"trace {trace_id} has jobs on {chain!r} but no window there")
        # Seeds are addresses of the trace's own chain; its totals are in that chain's units, so
        # on a continued chain only policy.min_amount sets the threshold.
        return _TraceInfo(
            id=row["id"], chain=chain, seeds=frozenset(), policy=Policy.from_json(row["policy"]),
            from_block=window.from_block, to_block=window.to_block, totals={}, home=home, hops=row["hop_count"],
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
        # The trace's totals are shown with their tokens' names from the start.
        await self._describe(trace, [st for st in stored if st.transfer.from_address in trace.seeds
                                     and st.transfer.to_address not in trace.seeds])
        async with self.pool.acquire() as conn, conn.transaction():
            if not await store.still_ours(conn, self.name, [job]):
                return
            await store.start_trace(conn, trace.id, dict(totals), seeds)
            method, why = balances.planned(self.chains.get(trace.chain), trace.policy.taint_model)
            await balance_store.note_balance_method(conn, trace.id, method, why)
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
            # Block times and token names are read later, for the transfers that become hops
            # (_describe): a wallet's noise spans thousands of blocks and tokens nobody reports.
            lazy = isinstance(chain, WindowSource)
            fetched = await chain.transfers(missing, fetch_from, trace.to_block, outgoing=True, incoming=True,
                                            times=not lazy)
            tokens = sorted({t.asset for t in fetched if t.asset != NATIVE})
            if tokens and not lazy:
                # Reports show "1,250 USDT", not raw units of an anonymous contract.
                meta = await chain.token_meta(tokens)
                fetched = [replace(t, decimals=meta[t.asset][0], symbol=meta[t.asset][1])
                           if t.asset in meta and t.symbol is None else t for t in fetched]
            async with self.pool.acquire() as conn, conn.transaction():
                await store.store_transfers(conn, fetched)
                await store.set_coverage(conn, trace.chain, missing, fetch_from, trace.to_block)
        async with self.pool.acquire() as conn:
            return await store.load_transfers(conn, trace.chain, addresses, lo, trace.to_block)

    async def _describe(self, trace: _TraceInfo, transfers: Sequence[StoredTransfer]) -> dict[int, StoredTransfer]:
        """Block times and token names of these transfers (fetched without them: only transfers that
        become hops need them), read for them alone and stored for the next trace that meets
        them; the transfers that changed, by id."""
        chain = self._chain(trace)
        timing = isinstance(chain, WindowSource)
        untimed = sorted({st.transfer.block_number for st in transfers if st.transfer.block_time < 0})
        unnamed = sorted({st.transfer.asset for st in transfers
                          if st.transfer.asset != NATIVE and st.transfer.symbol is None})
        if not (untimed and timing) and not unnamed:
            return {}
        times = await chain.block_times(untimed) if untimed and isinstance(chain, WindowSource) else {}
        meta: dict[str, tuple[int | None, str | None]] = {}
        if unnamed:
            async with self.pool.acquire() as conn:
                meta = await described_store.token_meta(conn, trace.chain, unnamed)
            asked = [a for a in unnamed if a not in meta]
            if asked:
                fresh = await chain.token_meta(asked)
                meta.update(fresh)
                async with self.pool.acquire() as conn:
                    await described_store.save_token_meta(conn, trace.chain, fresh)
        changed: dict[int, StoredTransfer] = {}
        for st in transfers:
            t = st.transfer
            when = times.get(t.block_number, t.block_time) if t.block_time < 0 else t.block_time
            decimals, symbol = meta.get(t.asset, (t.decimals, t.symbol)) if t.symbol is None else (t.decimals, t.symbol)
            if (when, decimals, symbol) != (t.block_time, t.decimals, t.symbol):
                changed[st.id] = StoredTransfer(st.id, replace(t, block_time=when, decimals=decimals, symbol=symbol))
        if changed:
            async with self.pool.acquire() as conn:
                await described_store.describe_transfers(conn, [st.transfer_row() for st in changed.values()])
        return changed

    async def _prior_balances(
        self, trace: _TraceInfo, needs: Mapping[str, tuple[int, set[str]]],
        timelines: Mapping[str, Sequence[StoredTransfer]],
    ) -> dict[str, dict[str, int]]:
        """Each address's balance per asset just before its first flagged inflow, so clean money
        already in the wallet dilutes the flagged share (haircut): from the node's state, or
        derived from the history when the node keeps none (tracer.engine.balances)."""
        history = {a: [st.transfer for st in timelines.get(a, ())] for a in needs}
        found = await balances.prior_balances(self._chain(trace), needs, history, trace.to_block)
        if found.method != balances.NODE_STATE:
            where = "" if trace.chain == trace.home else f"on {trace.chain}: "
            async with self.pool.acquire() as conn:
                await balance_store.note_balance_method(conn, trace.id, found.method, where + found.reason,
                                                        replace=bool(found.conservative))
        return found.balances

    # ------------------------------------------------------------ one batch of frontier addresses

    async def _process(self, trace: _TraceInfo, jobs: Sequence[Job]) -> None:
        policy = trace.policy
        addresses = [j.address for j in jobs]
        by_addr = {j.address: j for j in jobs}
        if await self._hop_limit(trace, jobs):
            return
        async with self.pool.acquire() as conn:
            inflows = await store.inflow_hops(conn, trace.id, addresses, trace.chain)
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
            known = await store.node_verdicts(conn, trace.id, sorted(recipients), trace.chain)

        # An address the token's issuer froze is a stop (Tron's USDT; nothing on other chains).
        frozen = await freezes.frozen_verdicts(
            self._chain(trace), {a: [st.transfer for st in timelines[a]] for a in active if not by_addr[a].is_seed},
            trace.to_block)
        for a in active:
            job = by_addr[a]
            transfers = [st.transfer for st in timelines[a]]
            if job.is_seed:
                verdicts[a] = Verdict("followed", "seed")
                continue
            verdict = (frozen.get(a) or classify.deposit_address(a, transfers, labels, policy)
                       or classify.hub(a, transfers, policy))
            if verdict is None and job.depth >= policy.max_depth:
                verdict = Verdict("stopped", depth_rule.MAX_DEPTH)  # lifted if a shorter path comes (depth.py)
            verdicts[a] = verdict or FOLLOW

        followed = [a for a in active if verdicts[a].role == "followed"]
        moves_of = {a: _moves(a, timelines[a]) for a in followed}
        utxo_source = self._utxo_source(trace)
        if utxo_source is not None:
            # One output paid by several inputs arrives as one transfer per input: the wallet
            # received it whole (a CoinJoin link can carry more than the traced input's part).
            for a in followed:
                moves_of[a], flagged_in[a] = utxo.merge_inflows(moves_of[a], flagged_in.get(a, {}))
        # Clean holdings of an asset a wallet bought in a swap dilute the swapped-in taint too.
        # flagged_first and full_poison ignore clean money; haircut dilutes with it, fifo spends it first.
        needs = {a: (first_block[a], assets_in[a] | swaps.bought_assets(moves_of[a])) for a in followed
                 if not by_addr[a].is_seed and policy.taint_model in CLEAN_MONEY_MODELS}
        prior = await self._prior_balances(trace, needs, timelines) if needs else {}

        outs: list[tuple[str, TaintedOut, StoredTransfer]] = []
        for a in followed:
            by_id = {st.id: st for st in timelines[a]}
            taint = propagate(moves_of[a], flagged_in.get(a, {}), prior.get(a, {}),
                              model=policy.taint_model, fully_flagged=by_addr[a].is_seed)
            outs.extend((a, o, by_id[o.transfer_id]) for o in taint)

        described = await self._describe(trace, [st for _, _, st in outs])
        outs = [(a, o, described.get(st.id, st)) for a, o, st in outs]
        batch = _Batch(verdicts=verdicts)
        utxo_plan = await self._utxo_plan(trace, utxo_source, outs, timelines) if utxo_source is not None else None
        service_logs = await self._service_logs(trace, outs, labels, known)
        deposits: list[_PendingDeposit] = []
        bridged: list[tuple[str, StoredTransfer, int]] = []  # (router, deposit transfer, hop index)
        for a, o, st in outs:
            job = by_addr[a]
            t = st.transfer
            depth = job.depth + 1
            if o.swap == "in":
                # The asset a swap bought: an inflow of this wallet, its taint already counted in
                # this pass (so the hop wakes nobody).
                if a not in trace.seeds:
                    batch.add(a, HopRow(st.id, t.from_address, a, o.asset, t.block_number, depth, o.amount,
                                        o.amount / o.total if o.total else 0.0, str(t.kind), "followed", REASON_SWAP,
                                        o.parents), quiet=True)
                continue
            if t.to_address in trace.seeds:
                continue  # money moving between flagged wallets is already counted
            if utxo_plan is not None and st.id in utxo_plan.inside:
                continue  # into a CoinJoin: written as the wallet's entry (_coinjoins)
            threshold = max(1, policy.threshold(o.asset, trace.totals.get(o.asset, 0)))
            share = o.amount / o.total if o.total else 0.0
            status, reason = "followed", "flagged funds"
            quiet = False
            through = classify.through_category(labels.get(t.to_address, ()), policy)
            pool = service_logs.pool_for(t)
            unlabelled = through is None and t.to_address not in labels
            if o.amount < threshold:
                status, reason = "stopped", "below_threshold"
                quiet = o.swap == "out"
            elif o.swap == "out":
                status, reason, quiet = "followed", REASON_SWAP, True
            elif pool is not None and (pool == t.to_address or (through is not None and through[0] == classify.MIXER)):
                # Into a mixer pool: stopped here unless the linker follows it (decided below).
                status, reason, quiet = "stopped", classify.ENTERED_MIXER, True
                deposits.append(_PendingDeposit(a, st, pool, o, depth, len(batch.hops)))
                entity = through[1] if through else "unlabelled mixer pool (Tornado-compatible events)"
                batch.services[t.to_address] = Verdict("stopped", classify.ENTERED_MIXER, entity, classify.MIXER)
            elif through is not None and through[0] == classify.BRIDGE:
                status, reason = "exit", classify.BRIDGE
                bridged.append((t.to_address, st, len(batch.hops)))
            elif unlabelled and classify.BRIDGE in policy.through_categories and service_logs.bridge_for(
                    t, labelled=False):
                # No label, but the contract paid emitted a bridge deposit in this transaction.
                status, reason = "exit", classify.BRIDGE
                bridged.append((t.to_address, st, len(batch.hops)))
            elif unlabelled and "dex" in policy.through_categories and service_logs.swapped_in(t):
                status, reason, quiet = "stopped", "entered dex", True
                batch.services.setdefault(t.to_address, Verdict(
                    "stopped", "entered dex", "DEX pool (Uniswap-style Swap event)", "dex",
                    dex_evidence(t, service_logs.swap_recipient(t))))
            else:
                target = known.get(t.to_address)
                label_verdict = classify.by_label(labels.get(t.to_address, ()), policy)
                if label_verdict is not None:
                    status, reason = label_verdict.role, label_verdict.reason
                    if through is not None:
                        # A mixer contract without a deposit event (governance, a router we could not
                        # resolve) or a DEX paid without a swap: the hop says so, the address stays open.
                        batch.services.setdefault(t.to_address, label_verdict)
                    else:
                        verdicts.setdefault(t.to_address, label_verdict)
                elif target is not None and depth_rule.final(target):
                    status, reason = target["role"], target["reason"]
            evidence = None
            if utxo_plan is not None and st.id in utxo_plan.change and status == "followed" and reason == FOLLOW.reason:
                reason, evidence = REASON_CHANGE, utxo_plan.change[st.id]
            batch.add(a, HopRow(st.id, a, t.to_address, o.asset, t.block_number, depth, o.amount, share, str(t.kind),
                                status, reason, o.parents, evidence=evidence), quiet=quiet)

        if utxo_plan is not None and utxo_plan.entries:
            self._coinjoins(trace, batch, utxo_plan, outs, by_addr, labels, known)
        for owner, others in (utxo_plan.cospent.items() if utxo_plan is not None else ()):
            v = verdicts[owner]
            verdicts[owner] = replace(v, evidence={**(v.evidence or {}), "co_spent_with": others[:_MAX_DESTINATIONS]})
        if deposits:
            await self._link(trace, batch, deposits, labels)
        if bridged:
            await self._bridge_exits(trace, batch, bridged, service_logs, labels, known)
        await self._commit(trace, jobs, active, batch, by_addr)

    # ------------------------------------------------------------ UTXO chains: change and CoinJoins

    def _utxo_source(self, trace: _TraceInfo) -> UtxoSource | None:
        chain = self.chains.get(trace.chain)
        return chain if isinstance(chain, UtxoSource) else None

    async def _utxo_plan(
        self,
        trace: _TraceInfo,
        source: UtxoSource,
        outs: Sequence[tuple[str, TaintedOut, StoredTransfer]],
        timelines: Mapping[str, Sequence[StoredTransfer]],
    ) -> utxo.Plan:
        """The transactions of the batch's flagged outflows (one request set), read by the change
        and CoinJoin heuristics. Addresses seen before a transaction come from the wallet's own
        history only: what the trace reached meanwhile depends on worker timing."""
        flows = [utxo.Outflow(a, st.id, st.transfer.tx_hash, st.transfer.to_address, o.amount, o.total)
                 for a, o, st in outs if o.swap is None and st.transfer.to_address not in trace.seeds]
        if not flows:
            return utxo.Plan()
        txs = await source.transactions(sorted({f.txid for f in flows}))
        history = {a: [(st.transfer.block_number,
                        st.transfer.to_address if st.transfer.from_address == a else st.transfer.from_address)
                        for st in timelines.get(a, ())] for a in {f.owner for f in flows}}
        return utxo.plan(flows, txs, history, frozenset(), trace.policy.min_link_confidence)

    def _coinjoins(
        self,
        trace: _TraceInfo,
        batch: _Batch,
        plan: utxo.Plan,
        outs: Sequence[tuple[str, TaintedOut, StoredTransfer]],
        by_addr: Mapping[str, Job],
        labels: Mapping[str, Sequence[label_store.Label]],
        known: Mapping[str, asyncpg.Record],
    ) -> None:
        """A wallet's flagged money entering a CoinJoin, reported like a mixer deposit: the
        wallet's verdict names the CoinJoin, its pattern and anonymity set; each equal output gets
        a stopped hop ("entered CoinJoin") with its likely share; links at least
        policy.min_link_confidence sure (the wallet's own change) are followed, carrying the
        output's flagged share times the confidence. Hop shares are of the whole output: the
        transfer a hop is written on is only the traced input's part of it."""
        policy = trace.policy
        written = {st.id: (o, st) for _a, o, st in outs}
        for entry in plan.entries:
            owner = entry.depositor
            depth = by_addr[owner].depth + 1
            info = entry.info
            head = {"coinjoin": entry.txid, "pattern": info.pattern, "anonymity_set": info.anonymity_set,
                    "denomination": str(info.denomination), "flagged_entered": str(entry.flagged),
                    "summary": entry.evidence(keep=0)["summary"]}
            for link in entry.outputs:
                tid = plan.transfer_of.get((owner, entry.txid, link.address or ""))
                if tid is None or tid not in written or link.address is None:
                    continue  # the wallet's part of this output carried no flagged money
                o, st = written[tid]
                t = st.transfer
                status, reason, quiet = "stopped", ENTERED_COINJOIN, True
                if link.followed:
                    status, reason, quiet = "followed", REASON_COINJOIN_LINK, False
                    if link.carried < max(1, policy.threshold(o.asset, trace.totals.get(o.asset, 0))):
                        status, reason, quiet = "stopped", "below_threshold", True
                    else:
                        label_verdict = classify.by_label(labels.get(link.address, ()), policy)
                        target = known.get(link.address)
                        if label_verdict is not None:
                            status, reason = label_verdict.role, label_verdict.reason
                            batch.verdicts.setdefault(link.address, label_verdict)
                        elif target is not None and depth_rule.final(target):
                            status, reason = target["role"], target["reason"]
                evidence = {**head, "vout": link.vout, "kind": link.kind, "output_value": str(link.value),
                            "reasons": list(link.reasons)}
                batch.add(owner, HopRow(st.id, owner, link.address, o.asset, t.block_number, depth, link.carried,
                                        link.carried / link.value if link.value else 0.0, str(t.kind), status, reason,
                                        o.parents, confidence=link.confidence, evidence=evidence), quiet=quiet)
            v = batch.verdicts.get(owner, FOLLOW)
            ev = dict(v.evidence or {})
            ev["coinjoins"] = [*ev.get("coinjoins", []), entry.evidence()]
            batch.verdicts[owner] = replace(v, evidence=ev)
            log.info("event=coinjoin_entry trace=%d tx=%s pattern=%s anonymity_set=%d flagged=%d linked=%s",
                     trace.id, entry.txid, info.pattern, info.anonymity_set, entry.flagged, entry.linked)

    # ------------------------------------------------------------ services: deposit and bridge events

    async def _service_logs(
        self,
        trace: _TraceInfo,
        outs: Sequence[tuple[str, TaintedOut, StoredTransfer]],
        labels: Mapping[str, Sequence[label_store.Label]],
        known: Mapping[str, asyncpg.Record],
    ) -> ServiceLogs:
        """Deposit, bridge and swap events of the transactions that paid flagged money into a
        mixer or a bridge (labelled or known from an earlier batch) or into any unlabelled
        recipient (which may be a service recognised by its events, tracer.engine.recognised):
        one getLogs per cluster of nearby blocks for the protocols' topics, one for the DEX swaps
        of the unlabelled recipients, matched by transaction."""
        policy = trace.policy
        blocks: set[int] = set()
        unlabelled: dict[int, set[str]] = defaultdict(set)
        for _a, o, st in outs:
            t = st.transfer
            if o.swap is not None or t.to_address in trace.seeds:
                continue
            through = classify.through_category(labels.get(t.to_address, ()), policy)
            known_pool = (known.get(t.to_address) or {}).get("category") == classify.MIXER
            if through is not None and through[0] in (classify.MIXER, classify.BRIDGE):
                blocks.add(t.block_number)
            elif known_pool or (through is None and t.to_address not in labels and (
                    o.amount >= max(1, policy.threshold(o.asset, trace.totals.get(o.asset, 0)))
                    or (classify.MIXER in policy.through_categories and mixers.looks_like_denomination(
                        t.amount, 18 if t.asset == NATIVE else t.decimals)))):
                blocks.add(t.block_number)
                if t.to_address not in labels:
                    unlabelled[t.block_number].add(t.to_address)
        found = ServiceLogs()
        if not blocks:
            return found
        chain = self._chain(trace)
        clusters = _clusters(sorted(blocks))
        asks = [chain.logs(None, [list(SERVICE_TOPICS)], lo, hi) for lo, hi in clusters]
        if "dex" in policy.through_categories:
            for lo, hi in clusters:
                pools = sorted({a for b in range(lo, hi + 1) for a in unlabelled.get(b, ())})
                if pools:
                    asks.append(chain.logs(pools, [list(SWAP_TOPICS)], lo, hi))
        for logs in await asyncio.gather(*asks):
            for lg in logs:
                found.add(lg)
        return found

    async def _bridge_exits(
        self,
        trace: _TraceInfo,
        batch: _Batch,
        bridged: Sequence[tuple[str, StoredTransfer, int]],
        service_logs: ServiceLogs,
        labels: Mapping[str, Sequence[label_store.Label]],
        known: Mapping[str, asyncpg.Record],
    ) -> None:
        """A bridge deposit is a cross-chain exit; the router's evidence lists every destination
        this trace sent money to (merged with what earlier batches found). Where the destination
        chain is configured the payout there continues the trace (`_continue`)."""
        by_router: dict[str, list[dict[str, Any]]] = defaultdict(list)
        recognised: dict[str, list[bridges.BridgeExit]] = defaultdict(list)
        for router, st, hop_index in bridged:
            t = st.transfer
            owner, deposit_hop = batch.hops[hop_index]
            entity = next((lb.entity for lb in labels.get(router, ()) if lb.category == classify.BRIDGE), None)
            exits = service_logs.bridge_for(t, labelled=entity is not None)
            if entity is not None and "maya" in entity.lower():
                exits = [bridges.as_maya(ex) for ex in exits]
            recognised[router].extend(exits)
            exits = exits or [bridges.from_label(entity or "bridge", t.tx_hash, t.from_address)]
            crossed = False
            for ex in exits:
                entry = ex.to_json()
                entry.update({"from": t.from_address, "asset": t.asset, "amount": str(t.amount),
                              "block_number": t.block_number})
                entry["continue"] = await self._continue(trace, batch, owner, st, deposit_hop, ex)
                crossed = crossed or bool(entry["continue"].get("followed"))
                by_router[router].append(entry)
            if crossed:
                # Followed on the far chain: a crossing, counted once at the exits it reaches there.
                batch.hops[hop_index] = (owner, replace(deposit_hop, status="followed", reason=REASON_CROSSING))
                batch.quiet.add(deposit_hop.transfer_id)
        for router, entries in by_router.items():
            old = known.get(router)
            evidence = dict(old["evidence"]) if old is not None and isinstance(old["evidence"], dict) else {}
            merged = _merge_destinations_lists(evidence.get("destinations", []), entries)
            name = next((lb.entity for lb in labels.get(router, ()) if lb.category == classify.BRIDGE), None)
            protocols = sorted({str(d.get("protocol")) for d in merged})
            extra: dict[str, Any] = {}
            if recognised.get(router) or evidence.get("recognised_by") == "event":
                # Its own deposit event says what it is and where the money went, label or not.
                extra = recognised_evidence(recognised.get(router, []))
                extra["events"] = sorted({*extra["events"], *evidence.get("events", [])})
                name = name or " / ".join(protocols) + " (recognised by event)"
            batch.verdicts[router] = Verdict("exit", classify.BRIDGE, name, classify.BRIDGE, {
                "cross_chain": True, "protocols": protocols, **extra, "destinations": merged[-_MAX_DESTINATIONS:]})

    async def _continue(
        self, trace: _TraceInfo, batch: _Batch, owner: str, st: StoredTransfer, deposit_hop: HopRow,
        ex: bridges.BridgeExit,
    ) -> dict[str, Any]:
        """Whether the money can be followed on the destination chain (`possible`: the chain is
        configured and the address valid there) and whether it was (`followed`, with the payout
        the destination's incoming transfers gave, matched by memo or by timing)."""
        if ex.dest_chain is None or ex.dest_address is None:
            return {"possible": False, "note": "destination not published by the protocol"}
        dest = ex.dest_chain
        if dest == trace.chain:
            return {"possible": False, "note": "same chain: the bridge pays out from its own contracts"}
        client = self.chains.get(dest)
        if client is None:
            return {"possible": False, "chain": dest, "address": ex.dest_address,
                    "note": f"no RPC configured for {dest}"}
        try:
            address = normalize_address(dest, ex.dest_address)
        except InvalidAddress as exc:
            return {"possible": False, "chain": dest, "address": ex.dest_address,
                    "note": f"not a {dest} address: {exc.reason}"}
        if not isinstance(client, WindowSource):
            return {"possible": False, "chain": dest, "address": address,
                    "note": f"the {dest} client cannot find blocks by time"}
        out: dict[str, Any] = {"possible": True, "followed": False, "chain": dest, "address": address}
        if deposit_hop.status != "exit" or deposit_hop.amount <= 0:
            out["note"] = "the flagged part of the deposit is below the threshold: not followed"
            return out
        deposit = st.transfer
        window, start = await self._window(trace, dest, client, deposit.block_time)
        # The payout is matched on the address as stored there (a Tron memo's T... is hex inside).
        match = await self._find_payout(dest, client, address, replace(ex, dest_address=address), deposit.block_time,
                                        start, window, trace.chain)
        if match is None:
            out["note"] = (f"no payout to {address} on {dest} within {bridges.PAYOUT_WINDOW // 3600} h of the "
                           f"deposit (blocks {window.from_block}..{window.to_block})")
            return out
        payout, pm = match
        p = payout.transfer
        amount = bridges.carried(deposit_hop.amount, deposit.amount, p.amount, pm.confidence)
        proof = {"chain": trace.chain, "from": deposit.from_address, "tx_hash": deposit.tx_hash,
                 "position": deposit.position, "transfer_id": st.id, "protocol": ex.protocol, "match": pm.method,
                 "confidence": pm.confidence, "candidates": pm.candidates, "carried": str(amount)}
        if ex.memo is not None:
            proof["memo"] = ex.memo
        out["payout"] = {"tx_hash": p.tx_hash, "block_number": p.block_number, "asset": p.asset,
                         "amount": str(p.amount), "carried": str(amount), "match": pm.method,
                         "confidence": pm.confidence, "candidates": pm.candidates}
        if pm.confidence < trace.policy.min_link_confidence:
            out["note"] = (f"payout found ({pm.method}) but its confidence {pm.confidence} is below "
                           f"policy.min_link_confidence: not followed")
            return out
        out["followed"] = True
        out["note"] = f"followed on {dest}: payout {p.tx_hash} ({pm.method}, confidence {pm.confidence})"
        batch.continuations.append(_Continuation(owner, dest, payout, deposit_hop.depth + 1, proof))
        return out

    async def _window(
        self, trace: _TraceInfo, chain: str, client: WindowSource, since: int
    ) -> tuple[store.ChainWindow, int]:
        """The trace's window on `chain`, opened (or moved back to `since`) for a continuation,
        and the first block at or after `since` there. The window's end is fixed by the first
        continuation into the chain, so every worker reads the same blocks."""
        async with self.pool.acquire() as conn:
            window = await store.chain_window(conn, trace.id, chain)
        head = window.to_block if window is not None else await client.head()
        key = (chain, since, head)
        if key not in self._block_at:
            if len(self._block_at) > 10_000:
                self._block_at.clear()
            self._block_at[key] = await block_at_time(client, since, head, after=True)
        start = self._block_at[key]
        if window is not None and (chain == trace.home or window.from_block <= start):
            # Back on the trace's own chain its window is the trace's; elsewhere it already covers this.
            return window, start
        async with self.pool.acquire() as conn:
            return await store.open_chain_window(conn, trace.id, chain, min(start, head), head), start

    async def _find_payout(
        self, chain: str, client: ChainSource, address: str, ex: bridges.BridgeExit, since: int, start: int,
        window: store.ChainWindow, source: str,
    ) -> tuple[StoredTransfer, bridges.PayoutMatch] | None:
        """The destination's transfers from the deposit's time (block `start`) to the window's end,
        asked of the node (memos are not kept in Postgres) and cached like any address's; the
        matched payout. On EVM chains what names the deposit is in the payout's event, not in the
        transfer (THORChain's TransferOut memo, the Across fill's deposit id, the Wormhole redeem's
        sequence): one getLogs for this deposit's (`source` is the deposit's chain)."""
        if start > window.to_block:
            return None
        fetched = await client.transfers([address], start, window.to_block, outgoing=True, incoming=True)
        topics = bridges.payout_filter(ex, source, address)
        if topics is not None and any(t.to_address == address and t.memo is None for t in fetched):
            outs = await client.logs(None, topics, start, window.to_block)
            memos = {out[0]: out[1] for lg in outs if (out := bridges.payout_memo(lg, address)) is not None}
            if memos:
                fetched = [replace(t, memo=memos[t.tx_hash]) if t.to_address == address and t.memo is None
                           and t.tx_hash in memos else t for t in fetched]
        tokens = sorted({t.asset for t in fetched if t.asset != NATIVE})
        if tokens:
            meta = await client.token_meta(tokens)
            fetched = [replace(t, decimals=meta[t.asset][0], symbol=meta[t.asset][1])
                       if t.asset in meta and t.symbol is None else t for t in fetched]
        match = bridges.match_payout(fetched, ex, since, ref=bridges.deposit_ref(ex, source))
        async with self.pool.acquire() as conn, conn.transaction():
            await store.store_transfers(conn, fetched)
            await store.set_coverage(conn, chain, [address], start, window.to_block)
        if match is None:
            return None
        t = match.transfer
        async with self.pool.acquire() as conn:
            stored = await store.load_transfers(conn, chain, [address], t.block_number, t.block_number)
        found = next((s for s in stored if s.transfer.key == t.key), None)
        return (found, match) if found is not None else None

    # ------------------------------------------------------------ mixers: link deposits to withdrawals

    async def _pool_events(self, trace: _TraceInfo, pools: Sequence[str]) -> None:
        """Make sure Postgres holds every Deposit/Withdrawal of the pools up to the trace's end
        block: one getLogs (all pools at once) for what is missing."""
        async with self.pool.acquire() as conn:
            covered = await mixer_store.coverage(conn, trace.chain, pools)
        missing = [p for p in pools if covered.get(p, -1) < trace.to_block]
        if not missing:
            return
        start = min(covered.get(p, -1) + 1 for p in missing)
        logs = await self._chain(trace).logs(missing, [list(mixers.POOL_TOPICS)], start, trace.to_block)
        rows = []
        for lg in logs:
            e = mixers.decode_pool_log(lg)
            if e is not None:
                rows.append(mixer_store.EventRow(e.pool, e.kind, e.block_number, e.log_index, e.block_time, e.tx_hash,
                                                 e.note, e.leaf_index, e.recipient or None, e.relayer or None, e.fee,
                                                 None))
        async with self.pool.acquire() as conn:
            await mixer_store.store_events(conn, trace.chain, rows, {p: trace.to_block for p in missing})

    async def _gas_prices(self, trace: _TraceInfo, hashes: Sequence[str]) -> dict[str, int]:
        """Gas prices of transactions, from the chain client if it offers them (GasPriceSource),
        else through web3's typed API that tracer.chains.evm.EvmChain exposes (batched); {} when
        neither works, which only leaves the gas-price heuristic out."""
        if not hashes:
            return {}
        chain = self._chain(trace)
        if isinstance(chain, GasPriceSource):
            return await chain.gas_prices(hashes)
        w3 = getattr(chain, "w3", None)
        if w3 is None:
            return {}
        out: dict[str, int] = {}
        for i in range(0, len(hashes), 100):
            chunk = hashes[i : i + 100]
            try:
                async with w3.batch_requests() as batch:
                    for h in chunk:
                        batch.add(w3.eth.get_transaction(h))
                    answers = await batch.async_execute()
            except Exception as exc:  # a node without the tx or a flaky batch: the heuristic sits out
                log.warning("event=gas_prices_unavailable trace=%d error=%r", trace.id, exc)
                continue
            for h, tx in zip(chunk, answers, strict=False):
                price = tx.get("gasPrice") if hasattr(tx, "get") else None
                if isinstance(price, int):
                    out[h] = price
        return out

    async def _link(
        self,
        trace: _TraceInfo,
        batch: _Batch,
        pending: Sequence[_PendingDeposit],
        labels: Mapping[str, Sequence[label_store.Label]],
    ) -> None:
        """Score the batch's flagged mixer deposits against their pools' withdrawals and decide
        which links are followed; the link hops themselves are summed at commit time."""
        policy = trace.policy
        flagged = [mixers.FlaggedDeposit(
            d.st.id, d.pool, d.o.asset, d.st.transfer.amount, d.o.amount, d.owner, d.st.transfer.tx_hash,
            d.st.transfer.block_number, d.st.transfer.block_time, d.st.transfer.decimals, d.st.transfer.symbol,
        ) for d in pending]
        # Each depositor's transfers over the trace's whole window, not from its first flagged
        # inflow (which moves earlier as the trace finds more): its counterparties, and its deposits
        # into the pools, its notes, which compete for withdrawals and make the multi-denomination
        # heuristic's bag, in its flagged deposits' pools and in every labelled mixer it paid, flagged
        # or not yet. Chain data alone: a link's withdrawal and confidence do not change as the
        # trace finds more, only what it carries grows with its deposit's flagged amount.
        depositors = {d.depositor for d in flagged}
        own = await self._ensure_transfers(trace, {a: trace.from_block for a in depositors})
        depositor_txs: dict[str, set[str]] = defaultdict(set)
        peers: dict[str, set[str]] = defaultdict(set)
        paid_into: dict[tuple[str, str], int] = {}  # (address, tx) -> what a depositor paid it there
        for st in own:
            t = st.transfer
            if t.from_address in depositors:
                peers[t.from_address].add(t.to_address)
                depositor_txs[t.from_address].add(t.tx_hash)
                paid_into[(t.to_address, t.tx_hash)] = t.amount
            if t.to_address in depositors:
                peers[t.to_address].add(t.from_address)
        async with self.pool.acquire() as conn:
            paid_labels = await label_store.lookup(conn, trace.chain, sorted({a for a, _ in paid_into}))
        mixers_paid = {a for a, found in paid_labels.items()
                       if (classify.through_category(found, policy) or ("", ""))[0] == classify.MIXER}
        pools = sorted({d.pool for d in pending} | mixers_paid)
        await self._pool_events(trace, pools)
        # The pools' events over the trace's whole window, not from the batch's first deposit:
        # what a link weighs must not depend on which deposits shared the batch (mixer_scope.py).
        async with self.pool.acquire() as conn:
            rows = await mixer_store.events(conn, trace.chain, pools, trace.from_block, trace.to_block)
            before = await mixer_store.counts_before(conn, trace.chain, pools, trace.from_block)
        events: dict[str, list[mixers.PoolEvent]] = defaultdict(list)
        for r in rows:
            events[r.pool].append(mixers.PoolEvent(
                r.pool, "deposit" if r.kind == "deposit" else "withdrawal", r.block_number, r.log_index, r.block_time,
                r.tx_hash, r.note, r.leaf_index, r.recipient or "", r.relayer or "", r.fee, r.gas_price))
        denominations = {e.pool: paid_into[(e.pool, e.tx_hash)] for evs in events.values() for e in evs
                         if e.kind == "deposit" and (e.pool, e.tx_hash) in paid_into}
        denominations.update({d.pool: d.denomination for d in flagged})
        # A wallet's notes: its deposits into its flagged deposits' pools, and into labelled mixers
        # it paid itself; never into a pool only because another wallet of the batch used it.
        own_pools: dict[str, set[str]] = defaultdict(set)
        for d in flagged:
            own_pools[d.depositor].add(d.pool)
        all_deposits = [e for evs in events.values() for e in evs if e.kind == "deposit"]
        deposits_by = {who: [e for e in all_deposits if e.tx_hash in txs and (
            e.pool in own_pools[who] or (e.pool in mixers_paid and (e.pool, e.tx_hash) in paid_into))]
                       for who, txs in depositor_txs.items()}
        params = mixers.LinkParams()
        candidates = mixers.candidate_withdrawals(flagged, mixers.LinkFacts(events, deposits_by=deposits_by), params)
        notes = [e.tx_hash for es in deposits_by.values() for e in es]

        # Gas prices: of the deposits and their candidates; of the pools' other transactions only
        # when a deposit and a candidate share one (how rare it is decides what the match is worth).
        gas: dict[str, int] = {e.tx_hash: e.gas_price for evs in events.values() for e in evs
                               if e.gas_price is not None}
        fetched: dict[str, int] = {}

        async def fill(hashes: list[str]) -> None:
            lookup = [h for h in dict.fromkeys(hashes) if h not in gas][: _MAX_GAS_LOOKUPS - len(fetched)]
            got = await self._gas_prices(trace, lookup)
            gas.update(got)
            fetched.update(got)

        if any(candidates.values()):
            await fill([d.tx_hash for d in flagged] + notes + [w.tx_hash for ws in candidates.values() for w in ws])
            # A note and a candidate share a price: how rare it is decides what the match is worth.
            if {gas[h] for h in [d.tx_hash for d in flagged] + notes if h in gas} & {
                    gas[w.tx_hash] for ws in candidates.values() for w in ws if w.tx_hash in gas}:
                await fill([e.tx_hash for evs in events.values() for e in evs])
        if fetched:
            async with self.pool.acquire() as conn:
                await mixer_store.set_gas_prices(conn, trace.chain, fetched)

        # Transfers of every candidate recipient (cached like any address's): their counterparties,
        # and the pool -> recipient transfer a followed link becomes a hop of. Over the whole trace
        # window, not from this batch's earliest deposit: the shared-peers evidence must not depend
        # on which deposits happened to share a batch (workers' timing).
        start = {w.recipient: trace.from_block for ws in candidates.values() for w in ws}
        stored = await self._ensure_transfers(trace, start) if start else []
        # Recipients' and depositors' wallets apart: an address can be both.
        recipient_peers: dict[str, set[str]] = defaultdict(set)
        # A recipient's own deposits into the pools (chain data): notes that rival ours.
        pool_deposits = {(e.pool, e.tx_hash): e for evs in events.values() for e in evs if e.kind == "deposit"}
        recipient_notes: dict[str, list[mixers.PoolEvent]] = defaultdict(list)
        payouts: dict[tuple[str, str], StoredTransfer] = {}
        for st in stored:
            t = st.transfer
            if t.to_address in start:
                recipient_peers[t.to_address].add(t.from_address)
                key = (t.tx_hash, t.to_address)
                if t.from_address != t.to_address and (key not in payouts or t.amount > payouts[key].transfer.amount):
                    payouts[key] = st
            if t.from_address in start:
                recipient_peers[t.from_address].add(t.to_address)
                note = pool_deposits.get((t.to_address, t.tx_hash))
                if note is not None:
                    recipient_notes[t.from_address].append(note)
        # A followed link becomes a hop of its pool -> recipient transfer: fetched without time and
        # token name like any transfer, it gets them here (a few per batch).
        await self._describe(trace, list(payouts.values()))
        # Shared wallets that are labelled services say nothing about who withdrew.
        recipients = sorted({w.recipient for ws in candidates.values() for w in ws})
        theirs = set().union(*(recipient_peers.get(r, set()) for r in recipients))
        maybe_shared = set().union(*(own & theirs for own in peers.values()))
        async with self.pool.acquire() as conn:
            service_labels = await label_store.lookup(conn, trace.chain, sorted(maybe_shared))
            recipient_labels = await label_store.lookup(conn, trace.chain, recipients)
            recipient_known = await store.node_verdicts(conn, trace.id, recipients, trace.chain)
        # Labels traces learn from behaviour (exchange deposit addresses) are left out: when one is
        # learned depends on the workers' order, and a deposit address is one customer's, not a
        # service's crowd.
        services = {a for a, found in service_labels.items() if any(lb.source != "behaviour" for lb in found)}
        # Other wallets' notes that may rival the depositors' (mixer_rivals.py), and their gas prices.
        # Nothing batch-dependent is left out here but the pools (labelled, hence services, anyway):
        # mixer_scope picks each depositor's share of what is read.
        shared = sorted(maybe_shared - services - set(pools))
        rival_peers, rival_notes = await read_rivals(
            lambda starts: self._ensure_transfers(trace, starts), trace.from_block, shared, pool_deposits)
        for a, ps in rival_peers.items():
            peers.setdefault(a, set()).update(ps)
        # Which of the rivals' shared wallets are services: looked up like the depositors' own.
        rival_shared = sorted(set().union(*(ps & theirs for ps in rival_peers.values())) - maybe_shared)
        if rival_shared:
            async with self.pool.acquire() as conn:
                found = await label_store.lookup(conn, trace.chain, rival_shared)
            services |= {a for a, lbs in found.items() if any(lb.source != "behaviour" for lb in lbs)}
        known = set(fetched)
        rival_txs = [e.tx_hash for es in rival_notes.values() for e in es]
        await fill(rival_txs)
        if {gas[h] for h in rival_txs if h in gas} & {
                gas[w.tx_hash] for ws in candidates.values() for w in ws if w.tx_hash in gas}:
            await fill([e.tx_hash for evs in events.values() for e in evs])  # as for the notes above
        if set(fetched) - known:
            async with self.pool.acquire() as conn:
                await mixer_store.set_gas_prices(conn, trace.chain, {h: fetched[h] for h in set(fetched) - known})
        facts = mixers.LinkFacts(
            events=events, before=before, denominations=denominations, gas_prices=gas,
            peers=peers, services=services, deposits_by=deposits_by, recipient_peers=recipient_peers,
            recipient_notes=recipient_notes, rival_notes=rival_notes,
        )
        outcomes = mixer_scope.link_each_depositor(flagged, facts, params)

        by_id = {d.st.id: d for d in pending}
        write = _MixerWrite()
        for outcome in outcomes:
            d = outcome.deposit
            dep = by_id[d.transfer_id]
            best = outcome.best(policy.min_link_confidence)
            best_st = payouts.get((best.withdrawal.tx_hash, best.withdrawal.recipient)) if best is not None else None
            followed = best is not None and best_st is not None and best.withdrawal.recipient not in trace.seeds
            for lk in outcome.links:
                w = lk.withdrawal
                paid = payouts.get((w.tx_hash, w.recipient))
                withdrawn = paid.transfer.amount if paid is not None else None
                is_followed = followed and lk is best
                write.links.append(mixer_store.LinkRow(
                    d.transfer_id, w.tx_hash, w.log_index, paid.id if paid is not None else None, w.block_number,
                    w.block_time, w.recipient, w.relayer or None, w.fee, withdrawn, lk.confidence,
                    lk.carried(withdrawn) if withdrawn is not None else 0, "followed" if is_followed else "candidate",
                    [r.to_json() for r in lk.reasons]))
            write.deposits.append(mixer_store.DepositRow(
                d.transfer_id, d.pool, d.asset, d.denomination, d.depositor, d.flagged, outcome.anonymity_set,
                outcome.candidates, "linked" if followed else "unlinked"))
            if followed and best is not None and best_st is not None:
                # The deposit hop is followed (through the pool) but never wakes the pool itself.
                old = batch.hops[dep.hop_index][1]
                batch.hops[dep.hop_index] = (dep.owner, replace(old, status="followed", reason=REASON_MIXER_DEPOSIT,
                                                                confidence=best.confidence))
                recipient = best.withdrawal.recipient
                verdict = classify.by_label(recipient_labels.get(recipient, ()), policy)
                target = recipient_known.get(recipient)
                if verdict is not None:
                    write.recipient_status[recipient] = (verdict.role, verdict.reason)
                    batch.verdicts.setdefault(recipient, verdict)
                elif target is not None and depth_rule.final(target):
                    write.recipient_status[recipient] = (target["role"], target["reason"])
            log.info("event=mixer_deposit trace=%d pool=%s tx=%s anonymity_set=%d candidates=%d linked=%s "
                     "confidence=%.3f", trace.id, d.pool, d.tx_hash, outcome.anonymity_set, outcome.candidates,
                     followed, outcome.links[0].confidence if outcome.links else 0.0)
        batch.mixer = write

    # ------------------------------------------------------------ commit

    async def _commit(
        self,
        trace: _TraceInfo,
        jobs: Sequence[Job],
        active: Sequence[str],
        batch: _Batch,
        by_addr: Mapping[str, Job],
    ) -> None:
        verdicts = batch.verdicts
        # Prices the hop events will carry (subscriptions' min_usd), read before the trace's lock.
        priced = await event_usd.prefetch(self.pool, self.chains, sorted({h.transfer_id for _, h in batch.hops}))
        async with self.pool.acquire() as conn, conn.transaction():
            # One commit of a trace at a time (the chain work happened before, unlocked): commits
            # touch each other's job and hop rows in no common order, which deadlocked, and a hop
            # written while another worker marked its recipient an exit kept "followed" forever.
            await mixer_store.lock_trace(conn, trace.id)
            ours = await store.still_ours(conn, self.name, jobs)
            if not ours:
                return
            # A job whose lease lapsed while we worked belongs to someone else now: drop its part.
            hops = [h if h.chain is not None else replace(h, chain=trace.chain) for owner, h in batch.hops
                    if owner in ours]
            changed = list(await store.upsert_hops(conn, trace.id, hops))
            mixer = batch.mixer
            if mixer is not None:
                kept = {h.transfer_id for h in hops}
                deposits = [d for d in mixer.deposits if d.transfer_id in kept]
                links = [lk for lk in mixer.links if lk.deposit_transfer_id in kept]
                if deposits:
                    touched = await mixer_store.write_outcomes(conn, trace.id, deposits, links)
                    link_hops = await self._link_hops(conn, trace, touched, mixer)
                    changed.extend(await store.upsert_hops(conn, trace.id, link_hops))
                    hops.extend(link_hops)
            # Bridge payouts on other chains: their hops, and verdicts on labelled recipients there.
            remote: dict[tuple[str, str], Verdict] = {}
            continuations = [c for c in batch.continuations if c.owner in ours]
            if continuations:
                payout_hops, remote = await self._payout_hops(conn, trace, continuations)
                changed.extend(await store.upsert_hops(conn, trace.id, payout_hops))
                hops.extend(payout_hops)
            # Recipients another worker judged since we read their verdicts: the hops say so too.
            followed: dict[str, list[str]] = defaultdict(list)
            for r in changed:
                if r["status"] == "followed":
                    followed[r["chain"]].append(r["to_addr"])
            for chain, recipients in sorted(followed.items()):
                decided = (set(verdicts) | set(batch.services) if chain == trace.chain
                           else {a for c, a in remote if c == chain})
                await self._mark_judged(conn, trace, chain, recipients, decided)
            depth_of = {(h.chain, h.to_addr): h.depth for h in hops}
            # Only recipients still to be judged need another look; exits and stops are final, and
            # hops into a service or back from a swap wake nobody.
            wake: dict[str, set[str]] = defaultdict(set)
            for r in changed:
                if r["status"] == "followed" and r["transfer_id"] not in batch.quiet:
                    wake[r["chain"]].add(r["to_addr"])
            for chain, woken in sorted(wake.items()):
                await store.enqueue(conn, trace.id, [(a, depth_of[(chain, a)]) for a in sorted(woken)], chain)
            verdicts = await self._merge_destinations(conn, trace, verdicts)
            rows = []
            for a, v in sorted([*verdicts.items(), *((a, v) for a, v in batch.services.items() if a not in verdicts)],
                               key=lambda av: av[0]):
                if a in by_addr and a not in ours:
                    continue
                depth = by_addr[a].depth if a in by_addr else depth_of.get((trace.chain, a), 0)
                rows.append((a, depth, v.role, v.reason, v.entity, v.category, v.evidence))
            await store.set_verdicts(conn, trace.id, rows, trace.chain)
            # Followed now, perhaps stopped at max_depth before: the hops that stop marked reopen.
            reopened = await store.reopen_hops_into(
                conn, trace.id, sorted(a for a, v in verdicts.items() if v.role == "followed" and a in ours),
                depth_rule.MAX_DEPTH, trace.chain)
            changed.extend(reopened)
            # Services keep per-hop statuses (a linked deposit is followed, an unlinked one stopped):
            # only verdicts on the address itself rewrite the hops into it.
            for role in ("exit", "stopped"):
                # A bridge keeps per-hop statuses: a deposit continued on the far chain is a crossing.
                for reason in sorted({v.reason for a, v in verdicts.items() if v.role == role and a in ours
                                      and v.reason != classify.BRIDGE}):
                    addrs = [a for a, v in verdicts.items() if v.role == role and v.reason == reason and a in ours]
                    await store.mark_hops_into(conn, trace.id, addrs, role, reason, trace.chain)
            for (chain, a), v in sorted(remote.items()):
                await store.set_verdicts(conn, trace.id, [(a, depth_of.get((chain, a), 0), v.role, v.reason, v.entity,
                                                          v.category, v.evidence)], chain)
                await store.mark_hops_into(conn, trace.id, [a], v.role, v.reason, chain)
            events: list[tuple[int | None, str, dict[str, Any]]] = []
            # One event per new or changed hop, with its amounts and addresses (alert filters need them).
            written = await alert_store.insert_hop_events(conn, trace.id, changed)
            if priced:
                await event_usd.price_events(conn, trace.chain, written)
            for a, v in verdicts.items():
                # A bridge whose every deposit crossed is no exit: the exits it leads to will say so.
                if v.role == "exit" and (a not in by_addr or a in ours) and not _all_crossed(v):
                    events.append((trace.id, "exit_reached", {
                        "address": a, "entity": v.entity, "category": v.category, "reason": v.reason}))
            for (chain, a), v in sorted(remote.items()):
                if v.role == "exit":
                    events.append((trace.id, "exit_reached", {
                        "address": a, "entity": v.entity, "category": v.category, "reason": v.reason,
                        "chain": chain}))
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
            await store.add_hop_count(conn, trace.id, sum(1 for r in changed if r["inserted"]))
            await store.complete_jobs(conn, self.name, [j for j in jobs if j.address in ours])
        self.stats.hops_written += len(changed)
        log.debug("event=batch trace=%d chain=%s jobs=%d hops=%d changed=%d at=%s", trace.id, trace.chain, len(jobs),
                  len(hops), len(changed), datetime.now(UTC).isoformat())

    async def _payout_hops(
        self, conn: store.Conn, trace: _TraceInfo, continuations: Sequence[_Continuation]
    ) -> tuple[list[HopRow], dict[tuple[str, str], Verdict]]:
        """Hops bridge vault -> destination on the destination chains. Every deposit paid out by
        one payout adds what it carries (from this and earlier batches: the hop's evidence keeps
        each deposit's part, so re-running a deposit replaces its part), capped by the payout."""
        ids = sorted({c.payout.id for c in continuations})
        earlier = await store.hop_evidence(conn, trace.id, ids)
        by_payout: dict[int, list[_Continuation]] = defaultdict(list)
        for c in continuations:
            by_payout[c.payout.id].append(c)
        recipients: dict[str, set[str]] = defaultdict(set)
        for c in continuations:
            recipients[c.chain].add(c.payout.transfer.to_address)
        labels = {chain: await label_store.lookup(conn, chain, sorted(addrs)) for chain, addrs in recipients.items()}
        out: list[HopRow] = []
        remote: dict[tuple[str, str], Verdict] = {}
        for pid in ids:
            cs = by_payout[pid]
            chain, t = cs[0].chain, cs[0].payout.transfer

            def key(d: Mapping[str, Any]) -> tuple[str, str, str]:
                return (str(d.get("chain")), str(d.get("tx_hash")), str(d.get("position")))

            parts = {key(d): d for d in earlier.get(pid, {}).get("deposits", [])}
            parts.update({key(c.deposit): c.deposit for c in cs})
            deposits = [parts[k] for k in sorted(parts)]
            amount = min(t.amount, sum(int(d["carried"]) for d in deposits))
            confidence = max(float(d["confidence"]) for d in deposits)
            status, reason = "followed", REASON_BRIDGE
            verdict = classify.by_label(labels[chain].get(t.to_address, ()), trace.policy)
            if verdict is not None:
                status, reason = verdict.role, verdict.reason
                remote[(chain, t.to_address)] = verdict
            out.append(HopRow(pid, t.from_address, t.to_address, t.asset, t.block_number, min(c.depth for c in cs),
                              amount, amount / t.amount if t.amount else 0.0, str(t.kind), status, reason,
                              sorted({int(d["transfer_id"]) for d in deposits})[:8], confidence, chain,
                              {"bridge": True, "deposits": deposits}))
            log.info("event=bridge_continued trace=%d from=%s to=%s payout=%s amount=%d confidence=%.2f", trace.id,
                     trace.chain, chain, t.tx_hash, amount, confidence)
        return out, remote

    async def _hop_limit(self, trace: _TraceInfo, jobs: Sequence[Job]) -> bool:
        """Once the trace holds policy.max_hops hops, addresses still on the frontier are not
        expanded: they are stopped with reason max_hops, and the trace records that it hit the
        limit (its trace_finished event says so)."""
        if trace.hops < trace.policy.max_hops:
            return False
        async with self.pool.acquire() as conn, conn.transaction():
            await mixer_store.lock_trace(conn, trace.id)
            ours = await store.still_ours(conn, self.name, jobs)
            stop = [j for j in jobs if j.address in ours]
            if not stop:
                return True
            evidence = {"max_hops": trace.policy.max_hops, "hops": trace.hops}
            await store.set_verdicts(conn, trace.id, [(j.address, j.depth, "stopped", MAX_HOPS, None, None, evidence)
                                                      for j in stop], trace.chain)
            await store.mark_hops_into(conn, trace.id, [j.address for j in stop], "stopped", MAX_HOPS, trace.chain)
            await store.note_hop_limit(conn, trace.id)
            await store.complete_jobs(conn, self.name, stop)
        log.info("event=hop_limit trace=%d chain=%s stopped=%d hops=%d", trace.id, trace.chain, len(stop), trace.hops)
        return True

    async def _merge_destinations(
        self, conn: store.Conn, trace: _TraceInfo, verdicts: dict[str, Verdict]
    ) -> dict[str, Verdict]:
        """Bridge evidence accumulates over batches: merge this batch's destinations with those
        committed since we read them (under the commit lock, so none is lost)."""
        routers = sorted(a for a, v in verdicts.items() if v.reason == classify.BRIDGE and v.evidence)
        if not routers:
            return verdicts
        current = await store.node_verdicts(conn, trace.id, routers, trace.chain)
        out = dict(verdicts)
        for a in routers:
            v = verdicts[a]
            row = current.get(a)
            old = row["evidence"] if row is not None and isinstance(row["evidence"], dict) else {}
            merged = _merge_destinations_lists(old.get("destinations", []), (v.evidence or {}).get("destinations", []))
            evidence = dict(v.evidence or {})
            evidence["destinations"] = merged[-_MAX_DESTINATIONS:]
            evidence["protocols"] = sorted({str(d.get("protocol")) for d in merged})
            out[a] = replace(v, evidence=evidence)
        return out

    async def _mark_judged(
        self, conn: store.Conn, trace: _TraceInfo, chain: str, recipients: Sequence[str], decided_here: set[str]
    ) -> None:
        """Mark followed hops into recipients that already carry a final verdict (an exit, a hub)
        in this trace. Services money passes through keep per-hop statuses and are left alone."""
        wanted = sorted(set(recipients) - decided_here)
        if not wanted:
            return
        through = set(trace.policy.through_categories)
        final: dict[tuple[str, str], list[str]] = defaultdict(list)
        for a, row in (await store.node_verdicts(conn, trace.id, wanted, chain)).items():
            if depth_rule.final(row) and row["category"] not in through:
                final[(row["role"], row["reason"])].append(a)
        for (role, reason), addrs in sorted(final.items()):
            await store.mark_hops_into(conn, trace.id, addrs, role, reason, chain)

    async def _link_hops(
        self, conn: store.Conn, trace: _TraceInfo, withdrawal_ids: Sequence[int], mixer: _MixerWrite
    ) -> list[HopRow]:
        """Hops pool -> recipient for withdrawals with followed links: every link into one
        withdrawal adds its carried amount (from this and earlier batches), capped by what the
        recipient got."""
        if not withdrawal_ids:
            return []
        sums = await mixer_store.followed_into(conn, trace.id, withdrawal_ids)
        transfers = await mixer_store.transfers_by_id(conn, withdrawal_ids)
        out = []
        for wid in withdrawal_ids:
            t = transfers.get(wid)
            if t is None:
                continue
            carried, confidence, parents, depth = sums.get(wid, (0, 0.0, [], 0))
            amount = min(carried, t.amount)
            if amount <= 0:
                # Every link into it was dropped (new facts on a re-run): the hop carries nothing.
                out.append(HopRow(wid, t.from_address, t.to_address, t.asset, t.block_number, depth + 1, 0, 0.0,
                                  str(t.kind), "stopped", "mixer link dropped", parents, 0.0, trace.chain))
                continue
            status, reason = mixer.recipient_status.get(t.to_address, ("followed", REASON_MIXER_LINK))
            out.append(HopRow(wid, t.from_address, t.to_address, t.asset, t.block_number, depth + 1, amount,
                              amount / t.amount if t.amount else 0.0, str(t.kind), status, reason, parents[:8],
                              confidence, trace.chain))
        return out


# ---------------------------------------------------------------- helpers and batch state


def _merge_destinations_lists(
    old: Sequence[dict[str, Any]], new: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """One entry per (deposit tx, destination), first-seen order. A deposit processed again after
    more flagged money reached it carries more across the bridge; taint only grows, so the entry
    carrying more (followed before not followed) is the current one, whichever batch wrote it."""
    def rank(d: dict[str, Any]) -> tuple[bool, int]:
        follow = d.get("continue")
        follow = follow if isinstance(follow, dict) else {}
        payout = follow.get("payout")
        payout = payout if isinstance(payout, dict) else {}
        try:
            carried = int(payout.get("carried", 0))
        except (TypeError, ValueError):
            carried = 0
        return (bool(follow.get("followed")), carried)

    out: dict[tuple[Any, Any], dict[str, Any]] = {}
    for d in [*old, *new]:
        key = (d.get("tx_hash"), d.get("address"))
        if key not in out or rank(d) >= rank(out[key]):
            out[key] = d
    return list(out.values())


def _all_crossed(v: Verdict) -> bool:
    """A bridge verdict whose every deposit was followed on the far chain."""
    destinations = (v.evidence or {}).get("destinations") or [] if v.reason == classify.BRIDGE else []
    return bool(destinations) and all(isinstance(d.get("continue"), dict) and d["continue"].get("followed")
                                      for d in destinations)


def _moves(address: str, timeline: Sequence[StoredTransfer]) -> list[Movement]:
    return [
        Movement(st.id, st.transfer.order, st.transfer.asset, st.transfer.amount, st.transfer.to_address == address,
                 st.transfer.from_address if st.transfer.to_address == address else st.transfer.to_address,
                 st.transfer.tx_hash)
        for st in timeline
        if st.transfer.from_address != st.transfer.to_address
    ]


def _clusters(blocks: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted blocks as (first, last) ranges, a new range wherever the gap exceeds _CLUSTER_BLOCKS:
    a few narrow getLogs instead of one over every block in between."""
    out: list[tuple[int, int]] = []
    for b in blocks:
        if out and b - out[-1][1] <= _CLUSTER_BLOCKS:
            out[-1] = (out[-1][0], b)
        else:
            out.append((b, b))
    return out


@dataclass(frozen=True)
class _PendingDeposit:
    owner: str  # the depositing wallet (the job that made the hop)
    st: StoredTransfer
    pool: str
    o: TaintedOut
    depth: int
    hop_index: int


@dataclass
class _MixerWrite:
    deposits: list[mixer_store.DepositRow] = field(default_factory=list)
    links: list[mixer_store.LinkRow] = field(default_factory=list)
    recipient_status: dict[str, tuple[str, str]] = field(default_factory=dict)  # labelled/known recipients


@dataclass(frozen=True)
class _Continuation:
    """A bridge payout on another chain that continues the trace (written at commit time, where
    the contributions of every deposit paid out by it are summed)."""

    owner: str  # the depositing wallet's job
    chain: str
    payout: StoredTransfer
    depth: int
    deposit: dict[str, Any]  # the deposit side of the evidence, with what it carries ("carried")


@dataclass
class _Batch:
    """What one batch decided, written by `_commit` in one transaction."""

    verdicts: dict[str, Verdict]  # on addresses; exits and stops are also marked into their hops
    services: dict[str, Verdict] = field(default_factory=dict)  # pools, DEXes: recorded, hops keep their own
    hops: list[tuple[str, HopRow]] = field(default_factory=list)  # (owning job's address, hop)
    quiet: set[int] = field(default_factory=set)  # transfer ids of hops that must not wake their recipient
    mixer: _MixerWrite | None = None
    continuations: list[_Continuation] = field(default_factory=list)

    def add(self, owner: str, hop: HopRow, *, quiet: bool = False) -> None:
        self.hops.append((owner, hop))
        if quiet:
            self.quiet.add(hop.transfer_id)
