"""One step, end to end, for the worker: a trace's start (its seeds' totals), or a batch of its
frontier jobs through gather -> decide -> follow_mixers / follow_bridges -> commit; a backward
trace's batches go to engine/backward_jobs.py with the same cached chain reads."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace

from tracer.domain.records import Job
from tracer.engine import balances
from tracer.engine.backward_jobs import BackwardTools, run_backward
from tracer.engine.step import back_bridges, back_mixers, decide, follow_bridges, follow_mixers, follow_utxo
from tracer.engine.step import commit as committer
from tracer.engine.step.gather import StepContext, describe, ensure_transfers, gather
from tracer.engine.step.plan import TraceInfo
from tracer.store import balances as balance_store
from tracer.store import traces as store

log = logging.getLogger("tracer.worker")


async def start(ctx: StepContext, trace: TraceInfo, job: Job) -> None:
    """The trace's totals: what its seeds sent out of the flagged set, per asset."""
    seeds = sorted(trace.seeds)
    stored = await ensure_transfers(ctx, trace, {s: trace.from_block for s in seeds})
    totals: dict[str, int] = defaultdict(int)
    for st in stored:
        t = st.transfer
        if t.from_address in trace.seeds and t.to_address not in trace.seeds:
            totals[t.asset] += t.amount
    # The trace's totals are shown with their tokens' names from the start.
    await describe(ctx, trace, [st for st in stored if st.transfer.from_address in trace.seeds
                                and st.transfer.to_address not in trace.seeds])
    async with ctx.pool.acquire() as conn, conn.transaction():
        if not await store.still_ours(conn, ctx.name, [job]):
            return
        await store.start_trace(conn, trace.id, dict(totals), seeds)
        method, why = balances.planned(ctx.chains.get(trace.chain), trace.policy.taint_model)
        await balance_store.note_balance_method(conn, trace.id, method, why)
        await store.insert_events(conn, [(trace.id, "trace_started",
                                          {"totals": {k: str(v) for k, v in totals.items()}})])
        await store.complete_jobs(conn, ctx.name, [job])
    log.info("event=trace_started trace=%d seeds=%d assets=%d", trace.id, len(seeds), len(totals))


async def process(ctx: StepContext, trace: TraceInfo, jobs: Sequence[Job]) -> int:
    """One batch of frontier jobs followed one hop further; how many hops changed."""
    if await committer.hop_limit(ctx, trace, jobs):
        return 0
    facts = await gather(ctx, trace, jobs)
    plan = decide.decide(facts)
    if facts.utxo_plan is not None:
        follow_utxo.log_entries(trace, facts.utxo_plan)
    if plan.deposits:
        await follow_mixers.link(ctx, trace, plan, facts.labels)
    if plan.bridged:
        await follow_bridges.bridge_exits(ctx, trace, plan, facts.service_logs, facts.labels, facts.known)
    return await committer.commit(ctx, trace, jobs, plan)


async def backward(ctx: StepContext, trace: TraceInfo, jobs: Sequence[Job]) -> None:
    """A batch of a backward trace (its start, walk or colour jobs)."""
    tools = BackwardTools(ctx.pool, ctx.name, ctx.chain(trace),
                          lambda t, from_blocks: ensure_transfers(ctx, t, from_blocks),
                          lambda t, transfers: describe(ctx, t, transfers),
                          lambda t, payouts: back_mixers.link_back(ctx, t, payouts),
                          lambda t, inflows: back_bridges.link_back(ctx, t, inflows),
                          lambda chain: ctx.chains[chain],
                          lambda t, w: replace(t, chain=w.chain, seeds=frozenset(), totals={}, from_block=w.from_block,
                                               to_block=w.to_block))
    await run_backward(tools, trace, jobs)
