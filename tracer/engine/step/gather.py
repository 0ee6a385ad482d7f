"""Every read of one trace step: the trace, the batch's inflows and labels, chain transfers
(cached in Postgres: the node is asked only for what is missing), balances, block times and token
names, and the deposit, bridge and swap events of the flagged outflows. The decisions that say
what to read next are decide's pure functions; gather only awaits."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import asyncpg

from tracer.chains.protocols import BlockLogSource, ChainSource, UtxoSource, WindowSource
from tracer.chains.records import LogAddresses, LogTopics
from tracer.domain.labels import Category
from tracer.domain.records import Job, StoredTransfer
from tracer.domain.transfers import NATIVE, TransferQuery
from tracer.domain.verdicts import HopStatus, Judged
from tracer.engine import balances, classify, freezes, mixer_events
from tracer.engine.policy import Policy
from tracer.engine.recognised import SERVICE_TOPICS, SWAP_TOPICS, ServiceLogs
from tracer.engine.step import decide
from tracer.engine.step.follow_utxo import utxo_plan
from tracer.engine.step.plan import FlaggedOut, Labels, StepFacts, TraceInfo
from tracer.store import balances as balance_store
from tracer.store import described as described_store
from tracer.store import labels as label_store
from tracer.store import traces as store

_CLUSTER_BLOCKS = 100  # deposits this close share one getLogs for their events


@dataclass
class StepContext:
    """What a step runs with: the database, the chain clients, and whose leases it holds."""

    pool: asyncpg.Pool
    chains: Mapping[str, ChainSource]
    name: str  # the worker's: commits check the batch's jobs are still leased to it
    # (chain, time, head) -> first block at or after the time: a deposit's payout search
    # starts there, and its depositor may be processed again (a binary search of node calls).
    block_at: dict[tuple[str, int, int], int] = field(default_factory=dict)

    def chain(self, trace: TraceInfo) -> ChainSource:
        try:
            return self.chains[trace.chain]
        except KeyError:
            raise RuntimeError(f"no RPC configured for chain {trace.chain!r}") from None

    def utxo_source(self, trace: TraceInfo) -> UtxoSource | None:
        chain = self.chains.get(trace.chain)
        return chain if isinstance(chain, UtxoSource) else None


async def read_trace(pool: asyncpg.Pool, trace_id: int, chain: str | None = None) -> TraceInfo | None:
    """The trace as a batch on `chain` sees it (default: the trace's own chain)."""
    async with pool.acquire() as conn:
        row = await store.get_trace(conn, trace_id)
        if row is None:
            return None
        home = row.chain
        if chain is None or chain == home:
            return TraceInfo(
                id=row.id, chain=home, seeds=frozenset(row.seeds),
                policy=Policy.from_json(row.policy), from_block=row.from_block, to_block=row.to_block,
                totals={k: int(v) for k, v in (row.totals or {}).items()}, home=home,
                hops=row.hop_count, direction=row.direction,
            )
        window = await store.chain_window(conn, trace_id, chain)
    if window is None:
        raise RuntimeError(f"trace {trace_id} has jobs on {chain!r} but no window there")
    # Seeds are addresses of the trace's own chain; its totals are in that chain's units, so
    # on a continued chain only policy.min_amount sets the threshold.
    return TraceInfo(
        id=row.id, chain=chain, seeds=frozenset(), policy=Policy.from_json(row.policy),
        from_block=window.from_block, to_block=window.to_block, totals={}, home=home, hops=row.hop_count,
        direction=row.direction,
    )


async def ensure_transfers(ctx: StepContext, trace: TraceInfo, from_blocks: Mapping[str, int]) -> list[StoredTransfer]:
    """Transfers of the addresses from their first flagged block to the trace's end, asking
    the node only for what Postgres does not hold yet (one request set for all of them)."""
    addresses = sorted(from_blocks)
    lo = min(from_blocks.values())
    async with ctx.pool.acquire() as conn:
        known = await store.coverage(conn, trace.chain, addresses)
    missing = [a for a in addresses
               if not (a in known and known[a][0] <= from_blocks[a] and known[a][1] >= trace.to_block)]
    if missing:
        fetch_from = min(from_blocks[a] for a in missing)
        chain = ctx.chain(trace)
        # Block times and token names are read later, for the transfers that become hops
        # (describe): a wallet's noise spans thousands of blocks and tokens nobody reports.
        lazy = isinstance(chain, WindowSource)
        fetched = await chain.transfers(TransferQuery(missing, fetch_from, trace.to_block, outgoing=True,
                                                      incoming=True, times=not lazy))
        tokens = sorted({t.asset for t in fetched if t.asset != NATIVE})
        if tokens and not lazy:
            # Reports show "1,250 USDT", not raw units of an anonymous contract.
            meta = await chain.token_meta(tokens)
            fetched = [replace(t, decimals=meta[t.asset][0], symbol=meta[t.asset][1])
                       if t.asset in meta and t.symbol is None else t for t in fetched]
        async with ctx.pool.acquire() as conn, conn.transaction():
            await store.store_transfers(conn, fetched)
            await store.set_coverage(conn, trace.chain, missing, fetch_from, trace.to_block)
    async with ctx.pool.acquire() as conn:
        return await store.load_transfers(conn, trace.chain, addresses, lo, trace.to_block)


async def describe(
    ctx: StepContext, trace: TraceInfo, transfers: Sequence[StoredTransfer]
) -> dict[int, StoredTransfer]:
    """Block times and token names of these transfers (fetched without them: only transfers that
    become hops need them), read for them alone and stored for the next trace that meets
    them; the transfers that changed, by id."""
    chain = ctx.chain(trace)
    timing = isinstance(chain, WindowSource)
    untimed = sorted({st.transfer.block_number for st in transfers if st.transfer.block_time < 0})
    unnamed = sorted({st.transfer.asset for st in transfers
                      if st.transfer.asset != NATIVE and st.transfer.symbol is None})
    if not (untimed and timing) and not unnamed:
        return {}
    times = await chain.block_times(untimed) if untimed and isinstance(chain, WindowSource) else {}
    meta: dict[str, tuple[int | None, str | None]] = {}
    if unnamed:
        async with ctx.pool.acquire() as conn:
            meta = await described_store.token_meta(conn, trace.chain, unnamed)
        asked = [a for a in unnamed if a not in meta]
        if asked:
            fresh = await chain.token_meta(asked)
            meta.update(fresh)
            async with ctx.pool.acquire() as conn:
                await described_store.save_token_meta(conn, trace.chain, fresh)
    changed: dict[int, StoredTransfer] = {}
    for st in transfers:
        t = st.transfer
        when = times.get(t.block_number, t.block_time) if t.block_time < 0 else t.block_time
        decimals, symbol = meta.get(t.asset, (t.decimals, t.symbol)) if t.symbol is None else (t.decimals, t.symbol)
        if (when, decimals, symbol) != (t.block_time, t.decimals, t.symbol):
            changed[st.id] = StoredTransfer(st.id, replace(t, block_time=when, decimals=decimals, symbol=symbol))
    if changed:
        async with ctx.pool.acquire() as conn:
            await described_store.describe_transfers(conn, [st.transfer_row() for st in changed.values()])
    return changed


async def prior_balances(
    ctx: StepContext, trace: TraceInfo, needs: Mapping[str, tuple[int, set[str]]],
    timelines: Mapping[str, Sequence[StoredTransfer]], warm: Sequence[tuple[str, str, int]] = (),
) -> dict[str, dict[str, int]]:
    """Each address's balance per asset just before its first flagged inflow, so clean money
    already in the wallet dilutes the flagged share (haircut): from the node's state, or
    derived from the history when the node keeps none (tracer.engine.balances). The timelines
    hold every transfer of [fb, to_block], so token balances come from to_block for the whole
    trace, and `warm` (what was paid on to unlabelled recipients, the next batch's wallets, with
    the block it arrived in) rides in the same calls."""
    history = {a: [st.transfer for st in timelines.get(a, ())] for a in needs}
    found = await balances.prior_balances(ctx.chain(trace), needs, history, trace.to_block,
                                          whole_history=True, warm=warm)
    if found.method != balances.NODE_STATE:
        where = "" if trace.chain == trace.home else f"on {trace.chain}: "
        async with ctx.pool.acquire() as conn:
            await balance_store.note_balance_method(conn, trace.id, found.method, where + found.reason,
                                                    replace=bool(found.conservative))
    return found.balances


async def gather(ctx: StepContext, trace: TraceInfo, jobs: Sequence[Job]) -> StepFacts:
    """Everything decide needs for one batch of frontier jobs, read in as few requests as the
    data allows: the addresses a label judges are not read at all, balances only of the
    followed ones, events only of the flagged outflows' transactions."""
    policy = trace.policy
    addresses = [j.address for j in jobs]
    by_addr = {j.address: j for j in jobs}
    async with ctx.pool.acquire() as conn:
        inflows = await store.inflow_hops(conn, trace.id, addresses, trace.chain)
    flagged_in: dict[str, dict[int, int]] = defaultdict(dict)
    first_block: dict[str, int] = {}
    assets_in: dict[str, set[str]] = defaultdict(set)
    for r in inflows:
        flagged_in[r.to_addr][r.transfer_id] = r.amount
        assets_in[r.to_addr].add(r.asset)
        first_block[r.to_addr] = min(first_block.get(r.to_addr, r.block_number), r.block_number)
    for j in jobs:
        if j.is_seed:
            first_block[j.address] = trace.from_block
    async with ctx.pool.acquire() as conn:
        own_labels = await label_store.lookup(conn, trace.chain, addresses)
    verdicts = decide.by_own_label(jobs, own_labels, policy)
    active = [a for a in addresses if a in first_block and a not in verdicts]
    stored = await ensure_transfers(ctx, trace, {a: first_block[a] for a in active}) if active else []
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
    async with ctx.pool.acquire() as conn:
        labels = await label_store.lookup(conn, trace.chain, sorted(recipients))
        known = await store.node_verdicts(conn, trace.id, sorted(recipients), trace.chain)

    # An address the token's issuer froze is a stop (Tron's USDT; nothing on other chains).
    frozen = await freezes.frozen_verdicts(
        ctx.chain(trace), {a: [st.transfer for st in timelines[a]] for a in active if not by_addr[a].is_seed},
        trace.to_block)
    verdicts.update(decide.by_history(active, by_addr, timelines, labels, frozen, policy))

    followed = [a for a in active if verdicts[a].role == HopStatus.FOLLOWED]
    source = ctx.utxo_source(trace)
    moves_of, flagged = decide.movements(followed, timelines, flagged_in, merge_utxo=source is not None)
    needs = decide.balance_needs(trace, followed, by_addr, first_block, assets_in, moves_of)
    first_in: dict[tuple[str, str], int] = {}
    for a in followed:
        for st in timelines[a]:
            t = st.transfer
            if t.from_address == a and t.to_address not in labels and t.to_address not in trace.seeds:
                key = (t.to_address, t.asset)
                first_in[key] = min(first_in.get(key, t.block_number), t.block_number)
    warm = sorted((r, asset, block) for (r, asset), block in first_in.items())
    prior = await prior_balances(ctx, trace, needs, timelines, warm) if needs else {}
    outs = decide.flagged_outflows(trace, followed, by_addr, timelines, moves_of, flagged, prior)

    described = await describe(ctx, trace, [f.st for f in outs])
    outs = [replace(f, st=described[f.st.id]) if f.st.id in described else f for f in outs]
    plan = await utxo_plan(source, trace, outs, timelines) if source is not None else None
    logs = await service_logs(ctx, trace, outs, labels, known)
    return StepFacts(trace=trace, jobs=jobs, verdicts=verdicts, active=active, outs=outs, labels=labels,
                     known=known, service_logs=logs, utxo_plan=plan)


async def service_logs(
    ctx: StepContext, trace: TraceInfo, outs: Sequence[FlaggedOut], labels: Labels, known: Mapping[str, Judged],
) -> ServiceLogs:
    """Deposit, bridge and swap events of the transactions that paid flagged money into a
    mixer or a bridge (labelled or known from an earlier batch) or into any unlabelled
    recipient (which may be a service recognised by its events, tracer.engine.recognised):
    the protocols' topics in those blocks and the DEX swaps of the unlabelled recipients,
    matched by transaction; an EVM chain covers the blocks in as few getLogs as it can
    (logs_in_blocks), others get one getLogs per cluster of nearby blocks."""
    policy = trace.policy
    blocks: set[int] = set()
    unlabelled: dict[int, set[str]] = defaultdict(set)
    for f in outs:
        o, t = f.taint, f.st.transfer
        if o.swap is not None or t.to_address in trace.seeds:
            continue
        through = classify.through_category(labels.get(t.to_address, ()), policy)
        judged = known.get(t.to_address)
        known_pool = judged is not None and judged.category == Category.MIXER
        if through is not None and through[0] in (Category.MIXER, Category.BRIDGE):
            blocks.add(t.block_number)
        elif known_pool or (through is None and t.to_address not in labels and (
                o.amount >= trace.threshold(o.asset)
                or (Category.MIXER in policy.through_categories and mixer_events.looks_like_denomination(
                    t.amount, 18 if t.asset == NATIVE else t.decimals)))):
            blocks.add(t.block_number)
            if t.to_address not in labels:
                unlabelled[t.block_number].add(t.to_address)
    found = ServiceLogs()
    if not blocks:
        return found
    chain = ctx.chain(trace)
    dex = Category.DEX in policy.through_categories
    if isinstance(chain, BlockLogSource):
        # The chain covers the scattered blocks in as few getLogs as its density of these logs
        # allows (both asks in one set when that is fewer); swaps count only from the pools
        # paid in their own block, as asked.
        pools = sorted({a for paid in unlabelled.values() for a in paid})
        asks: list[tuple[LogAddresses, LogTopics, Iterable[int]]] = [(None, [list(SERVICE_TOPICS)], blocks)]
        if dex and pools:
            asks.append((pools, [list(SWAP_TOPICS)], unlabelled))
        answers = await chain.logs_of_blocks(asks)
        for lg in answers[0]:
            found.add(lg)
        for lg in answers[1] if len(answers) > 1 else ():
            if lg.address in unlabelled.get(lg.block_number, ()):
                found.add(lg)
        return found
    clusters = _clusters(sorted(blocks))
    ranged = [chain.logs(None, [list(SERVICE_TOPICS)], lo, hi) for lo, hi in clusters]
    for lo, hi in clusters if dex else ():
        pools = sorted({a for b in range(lo, hi + 1) for a in unlabelled.get(b, ())})
        if pools:
            ranged.append(chain.logs(pools, [list(SWAP_TOPICS)], lo, hi))
    for logs in await asyncio.gather(*ranged):
        for lg in logs:
            found.add(lg)
    return found


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
