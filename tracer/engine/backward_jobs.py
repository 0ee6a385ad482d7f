"""Backward traces in the workers: where the money the seeds received came from.

A backward trace runs on the forward trace's machinery (Postgres jobs claimed with a lease, one
transaction per batch, stateless workers), in two phases:

1. The walk. The start job queues the seeds and the trace's one `colour` job. An address job
   reads the wallet's transfers in the window (through the same Postgres cache as forward
   traces) and judges every wallet that paid it: a labelled wallet (an exchange's hot wallet, a
   service, a sanctioned or stolen-funds wallet: the label says what the money is) or the zero
   address (a mint) is a source and the walk stops there (role exit); a wallet at the depth limit,
   or past the walk's budget of wallets, is a source of unknown kind (role stopped); any other is
   queued to be walked one level further. A batch commits its verdicts and the new jobs at once.
2. The colouring. The colour job is runnable from the start but waits (postponed, no attempt
   counted) until no other job of the trace is left. It then reads the walked wallets' transfers
   from Postgres, their balances when the window opened, and gives every transfer the part of it
   that reached the seeds (tracer/engine/backward_reach.py: the haircut model run backward);
   hops, the sources' paths, what walked wallets already held and the trace's totals (what the
   seeds received) are written in one transaction with the job's completion. On Bitcoin a
   transaction's transfers are its inputs -> outputs pro rata, so this is the UTXO rule run in
   reverse, and what coinbases paid walked wallets (new coins: nobody sent them) joins the
   colouring, recorded on the miner's verdict as `coinbase` with its path. A worker killed
   anywhere leaves either nothing or all of it; the next one redoes the step from Postgres.

Hops run the way money moved (source -> ... -> seed) with the part that reached the seeds as
their amount: a source's hops are `exit` (labelled, minted) or `stopped` (depth, budget), the
rest `followed`. So the graph, paths and exports of a forward trace read a backward one as is.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg

from tracer.chains.protocols import CoinbaseSource
from tracer.domain.labels import RISK_CATEGORIES, Category, Label
from tracer.domain.records import HopRow, Job, StoredTransfer
from tracer.domain.transfers import Transfer
from tracer.domain.verdicts import HopStatus, Reason, label_reason
from tracer.engine import backward_links, backward_reach, balances, classify
from tracer.engine.backward_links import BackLinks
from tracer.engine.policy import Policy
from tracer.store import alerts as alert_store
from tracer.store import backward as back_store
from tracer.store import balances as balance_store
from tracer.store import labels as label_store
from tracer.store import mixers as mixer_store
from tracer.store import traces as store
from tracer.store import transfers as transfer_store

log = logging.getLogger("tracer.worker")

ZERO = "0x" + "0" * 40
WALKED = Reason.SOURCE_OF_FUNDS  # the reason on walked wallets and on the hops between them
MINT = Reason.MINT
MAX_DEPTH = Reason.MAX_DEPTH
BUDGET = Reason.WALK_BUDGET
MAX_WALKED = 2_000  # wallets one backward trace walks at most (each one's senders fan out)
_WAIT = 0.5  # seconds the colour job waits before looking again whether the walk is over
_PATHS = 200  # sources (largest first) whose path to the seeds is written as their evidence


class BackwardTrace(Protocol):
    """What a batch needs of the trace (the worker's view of it)."""

    @property
    def id(self) -> int: ...
    @property
    def chain(self) -> str: ...
    @property
    def seeds(self) -> frozenset[str]: ...
    @property
    def policy(self) -> Policy: ...
    @property
    def from_block(self) -> int: ...
    @property
    def to_block(self) -> int: ...


@dataclass(frozen=True)
class BackwardTools:
    """What the worker lends a backward batch: its pool and name, the chain node, and its
    Postgres-cached transfer reads (the same cache forward traces fill)."""

    pool: asyncpg.Pool
    worker: str
    chain: Any
    ensure_transfers: Callable[[Any, Mapping[str, int]], Awaitable[list[StoredTransfer]]]
    describe: Callable[[Any, Sequence[StoredTransfer]], Awaitable[dict[int, StoredTransfer]]]
    # The mixer linker in reverse: the deposits linked to pool payouts walked wallets received.
    link_back: Callable[[Any, Sequence[StoredTransfer]], Awaitable[BackLinks]]


async def run_backward(tools: BackwardTools, trace: BackwardTrace, jobs: Sequence[Job]) -> None:
    start = [j for j in jobs if j.kind == "start"]
    walk = [j for j in jobs if j.kind == "address"]
    colour = [j for j in jobs if j.kind == back_store.COLOUR]
    if start:
        await _start(tools, trace, start[0])
    if walk:
        await _walk(tools, trace, walk)
    if colour:
        await _colour(tools, trace, colour[0])


async def _start(tools: BackwardTools, trace: BackwardTrace, job: Job) -> None:
    async with tools.pool.acquire() as conn, conn.transaction():
        if not await store.still_ours(conn, tools.worker, [job]):
            return
        await store.start_trace(conn, trace.id, {}, sorted(trace.seeds))
        await back_store.start(conn, trace.id)
        await store.insert_events(conn, [(trace.id, "trace_started", {"direction": back_store.BACKWARD})])
        await store.complete_jobs(conn, tools.worker, [job])
    log.info("event=trace_started trace=%d direction=backward seeds=%d", trace.id, len(trace.seeds))


def _source_label(labels: Sequence[Label]) -> Label:
    """The label a source is reported under: a flagged one first (the reason anyone asks)."""
    return sorted(labels, key=lambda lb: (lb.category not in RISK_CATEGORIES, -lb.confidence))[0]


async def _walk(tools: BackwardTools, trace: BackwardTrace, jobs: Sequence[Job]) -> None:
    """Read the wallets' inflows and judge who paid them."""
    addresses = sorted(j.address for j in jobs)
    stored = await tools.ensure_transfers(trace, {a: trace.from_block for a in addresses})
    depth_of = {j.address: j.depth for j in jobs}
    inside = [st for st in stored if trace.from_block <= st.transfer.block_number <= trace.to_block]
    # What a swap paid a wallet came from the wallet itself (what it paid in): the pair is no source.
    swapped = backward_links.bought_senders(
        [st.transfer for st in inside], backward_links.swap_legs([st.transfer for st in inside],
                                                                 set(depth_of) - trace.seeds))
    paid_by: dict[str, int] = {}  # sender -> the depth it is reached at (the smallest)
    for st in inside:
        t = st.transfer
        if t.to_address in depth_of and t.from_address != t.to_address and t.from_address not in trace.seeds \
                and t.from_address not in swapped.get(t.to_address, ()):
            d = depth_of[t.to_address] + 1
            paid_by[t.from_address] = min(paid_by.get(t.from_address, d), d)
    async with tools.pool.acquire() as conn:
        labels = await label_store.lookup(conn, trace.chain, sorted(paid_by))
    # A mixer pool's withdrawals go back to the deposits the linker ties to them; the pool is a
    # source only of what no link explains.
    pools = {s for s in paid_by if (classify.through_category(labels.get(s, ()), trace.policy)
                                    or ("", ""))[0] == Category.MIXER}
    payouts = [st for st in inside if st.transfer.from_address in pools and st.transfer.to_address in depth_of]
    back = await tools.link_back(trace, payouts) if payouts else BackLinks()
    linked = {lk.withdrawal.id for lk in back.links}
    for pool in pools - {st.transfer.from_address for st in payouts if st.id not in linked}:
        del paid_by[pool]
    for lk in back.links:
        depositor = lk.deposit.transfer.from_address
        if depositor not in trace.seeds:
            d = depth_of[lk.withdrawal.transfer.to_address] + 2  # behind the pool
            paid_by[depositor] = min(paid_by.get(depositor, d), d)
    senders = sorted(paid_by)
    if back.links:
        async with tools.pool.acquire() as conn:
            labels.update(await label_store.lookup(conn, trace.chain, [s for s in senders if s not in labels]))
    max_depth = trace.policy.max_depth
    async with tools.pool.acquire() as conn, conn.transaction():
        await mixer_store.lock_trace(conn, trace.id)  # one commit of a trace at a time, as forward
        ours = await store.still_ours(conn, tools.worker, jobs)
        if not ours:
            return
        known = await store.node_verdicts(conn, trace.id, senders, trace.chain)
        room = MAX_WALKED - await back_store.walk_size(conn, trace.id)
        verdicts: list[tuple[str, int, str, str, str | None, str | None, dict[str, Any] | None]] = [
            (a, depth_of[a], HopStatus.FOLLOWED, WALKED, None, None, None) for a in addresses if a in ours]
        queue: list[tuple[str, int]] = []
        # Largest share first would need the amounts; the walk goes level by level and in address
        # order inside a level, so the budget cuts the same wallets whichever worker runs.
        for s in sorted(senders, key=lambda a: (paid_by[a], a)):
            d = paid_by[s]
            old = known.get(s)
            if old is not None and not (old.liftable and d < old.depth and d < max_depth):
                continue
            if s == ZERO:
                verdicts.append((s, d, HopStatus.EXIT, MINT, "mint (zero address)", None, None))
            elif s in labels:
                lb = _source_label(labels[s])
                verdicts.append((s, d, HopStatus.EXIT, label_reason(lb.source), lb.entity, lb.category, None))
            elif d >= max_depth:
                verdicts.append((s, d, HopStatus.STOPPED, MAX_DEPTH, None, None, None))
            elif room <= 0 and old is None:
                verdicts.append((s, d, HopStatus.STOPPED, BUDGET, None, None, None))
            else:
                queue.append((s, d))
                room -= 1
        await store.set_verdicts(conn, trace.id, verdicts, trace.chain)
        await back_store.add_senders(conn, trace.id, trace.chain, queue)
        if back.deposits:
            await mixer_store.write_outcomes(conn, trace.id, back.deposits, back.rows)
        await store.complete_jobs(conn, tools.worker, [j for j in jobs if j.address in ours])


async def _colour(tools: BackwardTools, trace: BackwardTrace, job: Job) -> None:
    """Once the walk is over: the part of every walked transfer that reached the seeds."""
    async with tools.pool.acquire() as conn:
        if await back_store.walk_pending(conn, trace.id):
            await back_store.postpone(conn, tools.worker, job, _WAIT)
            return
        wallets = await back_store.walk(conn, trace.id)
    role = {r["address"]: r for r in wallets}
    walked = {r["address"] for r in wallets if r["role"] == HopStatus.FOLLOWED} | set(trace.seeds)
    async with tools.pool.acquire() as conn:
        stored = await store.load_transfers(conn, trace.chain, sorted(walked), trace.from_block, trace.to_block)
        feeds = await back_store.mixer_feeds(conn, trace.id)
        # A source's linked deposit is in no walked wallet's transfers: read it by id.
        have = {st.id for st in stored}
        stored += await transfer_store.stored_by_id(conn, sorted({d for d, _, _ in feeds} - have))
    transfers = [st.transfer for st in stored]
    through = backward_links.with_mixers(backward_links.swap_legs(transfers, walked - trace.seeds), stored, feeds,
                                         backward_reach.SCALE)
    deposit_ids = {d for d, _, _ in feeds}
    confidence: dict[int, float] = defaultdict(float)  # a linked deposit's; a withdrawal's: its links' sum
    for d, w, c in feeds:
        confidence[d] = c
        confidence[w] += c
    prior, method = await _prior(tools, trace, walked, transfers)
    # New coins (a coinbase's outputs) have no sender: they come after the stored transfers, in
    # the colouring only, and what of them reached the seeds is their miner's evidence.
    mined = await tools.chain.coinbase_rewards(sorted(walked), trace.from_block, trace.to_block) \
        if isinstance(tools.chain, CoinbaseSource) else []
    found = backward_reach.reach([*transfers, *mined], walked, trace.seeds, prior, through)

    hops: list[tuple[int, StoredTransfer, int]] = [(i, stored[i], part) for i, part in found.reached.items()
                                                   if i < len(stored)]
    described = await tools.describe(trace, [st for _, st, _ in hops])
    rows: list[HopRow] = []
    passed: set[int] = set()  # transfer ids of hops through a service: their senders are no sources
    for i, st, part in hops:
        st = described.get(st.id, st)
        t = st.transfer
        sender = role.get(t.from_address)
        status, reason = HopStatus.STOPPED, MAX_DEPTH  # a sender the walk never judged (cannot happen: say so safely)
        if i in through.bought or i in through.paid:
            status, reason = HopStatus.FOLLOWED, backward_links.SWAP
            passed.add(st.id)
        elif st.id in confidence and st.id not in deposit_ids:
            status, reason = HopStatus.FOLLOWED, backward_links.MIXER_LINK
            passed.add(st.id)
        elif st.id in confidence and t.from_address in walked:
            status, reason = HopStatus.FOLLOWED, backward_links.MIXER_DEPOSIT
        elif t.from_address in walked:
            status, reason = HopStatus.FOLLOWED, WALKED
        elif sender is not None:
            status, reason = sender["role"], sender["reason"]
        depth = sender["depth"] if sender is not None else role[t.to_address]["depth"] + 1 \
            if t.to_address in role else 1
        rows.append(HopRow(transfer_id=st.id, from_addr=t.from_address, to_addr=t.to_address, asset=t.asset,
                           block_number=t.block_number, depth=depth, amount=part,
                           share=part / t.amount if t.amount else 0.0, kind=str(t.kind), status=status, reason=reason,
                           parents=[], confidence=min(1.0, confidence.get(st.id, 1.0)), chain=trace.chain))

    sent: dict[str, int] = defaultdict(int)
    for h in rows:
        if h.from_addr not in walked and h.transfer_id not in passed:
            sent[h.from_addr] += h.amount
    sources = sorted(sent, key=lambda a: (-sent[a], a))[:_PATHS]
    rewards: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))  # miner -> asset -> reached
    for i, part in found.reached.items():
        if i >= len(stored):
            t = mined[i - len(stored)]
            rewards[t.to_address][t.asset] += part
    paths = backward_reach.source_paths([*transfers, *mined], found.reached, [*sources, *sorted(rewards)],
                                        trace.seeds)
    walked_evidence: dict[str, dict[str, Any]] = defaultdict(dict)  # what a walked wallet held, or mined
    for (wallet, asset), part in found.held.items():
        walked_evidence[wallet].setdefault("held", {})[asset] = str(part)
    for wallet, amounts in rewards.items():
        walked_evidence[wallet]["coinbase"] = {a: str(v) for a, v in amounts.items()}
        walked_evidence[wallet]["coinbase_path"] = paths.pop(wallet, [wallet])
    evidence: list[tuple[str, int, str, str, str | None, str | None, dict[str, Any] | None]] = []
    for a, path in paths.items():
        r = role.get(a)
        if r is not None:
            evidence.append((a, r["depth"], r["role"], r["reason"], r["entity"], r["category"],
                             {**back_store.evidence_of(r), "path": path}))
    for a, extra in walked_evidence.items():
        r = role.get(a)
        if r is not None:
            evidence.append((a, r["depth"], r["role"], r["reason"], r["entity"], r["category"],
                             {**back_store.evidence_of(r), **extra}))

    async with tools.pool.acquire() as conn, conn.transaction():
        await mixer_store.lock_trace(conn, trace.id)
        if not await store.still_ours(conn, tools.worker, [job]):
            return
        changed = await store.upsert_hops(conn, trace.id, rows)
        await store.add_hop_count(conn, trace.id, sum(1 for r in changed if r.inserted))
        await store.set_verdicts(conn, trace.id, evidence, trace.chain)
        await back_store.set_totals(conn, trace.id, found.received)
        if method is not None:
            await balance_store.note_balance_method(conn, trace.id, *method)
        await alert_store.insert_hop_events(conn, trace.id, changed)
        await store.insert_events(conn, [
            (trace.id, "exit_reached", {"address": a, "entity": role[a]["entity"], "category": role[a]["category"],
                                        "reason": role[a]["reason"], "direction": back_store.BACKWARD})
            for a in sorted(sent) if a in role and role[a]["role"] == HopStatus.EXIT])
        await store.complete_jobs(conn, tools.worker, [job])
    log.info("event=backward_coloured trace=%d walked=%d transfers=%d hops=%d sources=%d", trace.id, len(walked),
             len(transfers), len(rows), len(sent))


async def _prior(tools: BackwardTools, trace: BackwardTrace, walked: set[str], transfers: Sequence[Transfer]
                 ) -> tuple[dict[tuple[str, str], int], tuple[str, str] | None]:
    """What each walked wallet (the seeds aside) held of each asset it moved when the window
    opened, from the node's state or derived from its history (balances.prior_balances), and how."""
    assets: dict[str, set[str]] = defaultdict(set)
    history: dict[str, list[Transfer]] = defaultdict(list)
    for t in transfers:
        for a in {t.from_address, t.to_address} & walked:
            if a not in trace.seeds:
                assets[a].add(t.asset)
                history[a].append(t)
    needs = {a: (trace.from_block, kinds) for a, kinds in assets.items()}
    if not needs or trace.from_block <= 0:
        return {}, None
    found = await balances.prior_balances(tools.chain, needs, history, trace.to_block)
    out = {(a, asset): v for a, per in found.balances.items() for asset, v in per.items()}
    return out, (found.method, found.reason)

