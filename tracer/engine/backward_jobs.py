"""Backward traces in the workers: where the money the seeds received came from.

A backward trace runs on the forward trace's machinery (Postgres jobs claimed with a lease, one
transaction per batch, stateless workers), in two phases:

1. The walk. The start job queues the seeds and the trace's one `colour` job. An address job
   reads the wallet's transfers in the window (through the same Postgres cache as forward
   traces) and judges every wallet that paid it: a labelled wallet (an exchange's hot wallet, a
   service, a sanctioned or stolen-funds wallet: the label says what the money is) or the zero
   address (a mint) is a source and the walk stops there (role exit); a wallet at the depth limit,
   or past the walk's budget of wallets, is a source of unknown kind (role stopped); any other is
   queued to be walked one level further. A bridge payout that names its deposit on another chain
   queues the depositor as a job of that chain (engine/step/back_bridges.py): the walk goes on
   there in the same trace. A batch commits its verdicts and the new jobs at once.
2. The colouring. The colour job is runnable from the start but waits (postponed, no attempt
   counted) until no other job of the trace is left. It then reads the walked wallets' transfers
   from Postgres, their balances when the window opened, and gives every transfer the part of it
   that reached the seeds (tracer/engine/backward_reach.py: the haircut model run backward),
   chain by chain from the seeds' own, wallets keyed by (chain, address);
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
from dataclasses import dataclass, replace
from typing import Any, cast

import asyncpg

from tracer.chains.protocols import CoinbaseSource, UtxoSource
from tracer.chains.utxo_records import UtxoTx
from tracer.domain.labels import RISK_CATEGORIES, Category, Label
from tracer.domain.records import ChainWindow, HopRow, Job, StoredTransfer
from tracer.domain.transfers import Transfer
from tracer.domain.verdicts import HopStatus, Judged, Reason, label_reason
from tracer.domain.views import WalkedWallet
from tracer.engine import backward_links, backward_reach, backward_utxo, balances, classify, utxo
from tracer.engine.backward_links import BackLinks, BridgeCrossing
from tracer.engine.step.plan import TraceInfo
from tracer.store import backward as back_store
from tracer.store import balances as balance_store
from tracer.store import labels as label_store
from tracer.store import mixers as mixer_store
from tracer.store import outbox
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


@dataclass(frozen=True)
class BackwardTools:
    """What the worker lends a backward batch: its pool and name, the chain node, and its
    Postgres-cached transfer reads (the same cache forward traces fill)."""

    pool: asyncpg.Pool
    worker: str
    chain: Any
    ensure_transfers: Callable[[TraceInfo, Mapping[str, int]], Awaitable[list[StoredTransfer]]]
    describe: Callable[[TraceInfo, Sequence[StoredTransfer]], Awaitable[dict[int, StoredTransfer]]]
    # The mixer linker in reverse: the deposits linked to pool payouts walked wallets received.
    link_back: Callable[[TraceInfo, Sequence[StoredTransfer]], Awaitable[BackLinks]]
    # Bridges in reverse: the deposits on other chains named by payouts walked wallets received.
    link_bridges: Callable[[TraceInfo, Sequence[StoredTransfer]], Awaitable[Sequence[BridgeCrossing]]]
    chain_of: Callable[[str], Any]  # a chain's client
    on_chain: Callable[[TraceInfo, ChainWindow], TraceInfo]  # the trace as seen on another chain of it (its window)


async def run_backward(tools: BackwardTools, trace: TraceInfo, jobs: Sequence[Job]) -> None:
    start = [j for j in jobs if j.kind == "start"]
    walk = [j for j in jobs if j.kind == "address"]
    colour = [j for j in jobs if j.kind == back_store.COLOUR]
    if start:
        await _start(tools, trace, start[0])
    if walk:
        await _walk(tools, trace, walk)
    if colour:
        await _colour(tools, trace, colour[0])


async def _start(tools: BackwardTools, trace: TraceInfo, job: Job) -> None:
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


async def _walk(tools: BackwardTools, trace: TraceInfo, jobs: Sequence[Job]) -> None:
    """Read the wallets' inflows and judge who paid them."""
    addresses = sorted(j.address for j in jobs)
    stored = await tools.ensure_transfers(trace, {a: trace.from_block for a in addresses})
    depth_of = {j.address: j.depth for j in jobs}
    inside = [st for st in stored if trace.from_block <= st.transfer.block_number <= trace.to_block]
    # What a swap paid a wallet came from the wallet itself (what it paid in): the pair is no source.
    swapped = backward_links.bought_senders(
        [st.transfer for st in inside], backward_links.swap_legs([st.transfer for st in inside],
                                                                 set(depth_of) - trace.seeds))
    # A CoinJoin's output goes back only to the participants the forward linker ties to it.
    joins = await _coinjoins(tools.chain_of(trace.chain), [st.transfer for st in inside], set(depth_of))
    unlinked = backward_utxo.unlinked_senders([st.transfer for st in inside], set(depth_of), joins,
                                              trace.policy.min_link_confidence)
    paid_by: dict[str, int] = {}  # sender -> the depth it is reached at (the smallest)
    for st in inside:
        t = st.transfer
        if t.to_address in depth_of and t.from_address != t.to_address and t.from_address not in trace.seeds \
                and t.from_address not in swapped.get(t.to_address, ()) \
                and (t.tx_hash, t.from_address, t.to_address) not in unlinked:
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
    # A bridge payout that names its deposit goes back to the depositor on the other chain; its
    # payer here is no source of what the link explains.
    inflows = [st for st in inside
               if st.transfer.to_address in depth_of and st.transfer.from_address != st.transfer.to_address]
    crossed = await tools.link_bridges(trace, inflows) if inflows else []
    bridged = {c.payout.id for c in crossed}
    for payer in {c.payout.transfer.from_address for c in crossed} - {
            st.transfer.from_address for st in inflows if st.id not in bridged and st.transfer.from_address in paid_by}:
        paid_by.pop(payer, None)
    remote: dict[str, dict[str, int]] = defaultdict(dict)  # chain -> depositor -> depth
    for c in crossed:
        depositor = c.deposit.transfer.from_address
        d = depth_of[c.payout.transfer.to_address] + 2  # behind the bridge
        remote[c.chain][depositor] = min(remote[c.chain].get(depositor, d), d)
    senders = sorted(paid_by)
    if back.links:
        async with tools.pool.acquire() as conn:
            labels.update(await label_store.lookup(conn, trace.chain, [s for s in senders if s not in labels]))
    remote_labels: dict[str, dict[str, Sequence[Label]]] = {}
    for chain, found in remote.items():
        async with tools.pool.acquire() as conn:
            remote_labels[chain] = dict(await label_store.lookup(conn, chain, sorted(found)))
    async with tools.pool.acquire() as conn, conn.transaction():
        await mixer_store.lock_trace(conn, trace.id)  # one commit of a trace at a time, as forward
        ours = await store.still_ours(conn, tools.worker, jobs)
        if not ours:
            return
        room = MAX_WALKED - await back_store.walk_size(conn, trace.id)
        verdicts: list[Row] = [
            (a, depth_of[a], HopStatus.FOLLOWED, WALKED, None, None, None) for a in addresses if a in ours]
        known = await store.node_verdicts(conn, trace.id, senders, trace.chain)
        judged, queue, room = _judge(paid_by, labels, known, trace.policy.max_depth, room)
        await store.set_verdicts(conn, trace.id, verdicts + judged, trace.chain)
        await back_store.add_senders(conn, trace.id, trace.chain, queue)
        for chain, found in sorted(remote.items()):
            known = await store.node_verdicts(conn, trace.id, sorted(found), chain)
            judged, queue, room = _judge(found, remote_labels[chain], known, trace.policy.max_depth, room)
            await store.set_verdicts(conn, trace.id, judged, chain)
            await back_store.add_senders(conn, trace.id, chain, queue)
        await back_store.add_bridge_links(conn, trace.id, [
            (c.payout.id, c.deposit.id, c.chain, c.confidence, c.evidence) for c in crossed])
        if back.deposits:
            await mixer_store.write_outcomes(conn, trace.id, back.deposits, back.rows)
        await store.complete_jobs(conn, tools.worker, [j for j in jobs if j.address in ours])


Row = tuple[str, int, str, str, str | None, str | None, dict[str, Any] | None]


def _judge(paid_by: Mapping[str, int], labels: Mapping[str, Sequence[Label]], known: Mapping[str, Judged],
           max_depth: int, room: int) -> tuple[list[Row], list[tuple[str, int]], int]:
    """The senders' verdicts on one chain (source or walked further) and the wallets to walk."""
    verdicts: list[Row] = []
    queue: list[tuple[str, int]] = []
    # Largest share first would need the amounts; the walk goes level by level and in address
    # order inside a level, so the budget cuts the same wallets whichever worker runs.
    for s in sorted(paid_by, key=lambda a: (paid_by[a], a)):
        d = paid_by[s]
        old = known.get(s)
        if old is not None and not (old.liftable and d < old.depth and d < max_depth):
            continue
        if s == ZERO:
            verdicts.append((s, d, HopStatus.EXIT, MINT, "mint (zero address)", None, None))
        elif labels.get(s):
            lb = _source_label(labels[s])
            verdicts.append((s, d, HopStatus.EXIT, label_reason(lb.source), lb.entity, lb.category, None))
        elif d >= max_depth:
            verdicts.append((s, d, HopStatus.STOPPED, MAX_DEPTH, None, None, None))
        elif room <= 0 and old is None:
            verdicts.append((s, d, HopStatus.STOPPED, BUDGET, None, None, None))
        else:
            queue.append((s, d))
            room -= 1
    return verdicts, queue, room


@dataclass
class _Coloured:
    """One chain's part of the colouring, written with the others in one transaction."""

    chain: str
    rows: list[HopRow]
    evidence: list[Row]
    sent: dict[str, int]
    role: dict[str, WalkedWallet]
    payout_share: dict[int, int]  # bridge payout transfer id -> its share (fixed point)


async def _colour(tools: BackwardTools, trace: TraceInfo, job: Job) -> None:
    """Once the walk is over: the part of every walked transfer that reached the seeds, chain by
    chain from the seeds' own (a bridge deposit takes its payout's share, so the payout's chain is
    coloured first); wallets are keyed by (chain, address)."""
    async with tools.pool.acquire() as conn:
        if await back_store.walk_pending(conn, trace.id):
            await back_store.postpone(conn, tools.worker, job, _WAIT)
            return
        wallets = await back_store.walk(conn, trace.id)
        crossings = await back_store.bridge_links(conn, trace.id)
        windows = {w.chain: w for w in await store.chain_windows(conn, trace.id)}
    first: dict[str, int] = {}  # chain -> the smallest depth walked there: the order chains are coloured in
    for r in wallets:
        c = r.chain or trace.chain
        first[c] = min(first.get(c, r.depth), r.depth)
    first[trace.chain] = -1
    done: list[_Coloured] = []
    shares: dict[int, int] = {}  # payout transfer id -> its share, from chains already coloured
    received: dict[str, int] = {}
    method: tuple[str, str] | None = None
    for chain in sorted(first, key=lambda c: (first[c], c)):
        if chain == trace.chain:
            view = trace
        elif chain in windows:
            view = tools.on_chain(trace, windows[chain])
        else:
            continue
        into = {d: (shares[p] * int(conf * backward_reach.SCALE)) // backward_reach.SCALE
                for p, d, c, conf, _ in crossings if c == chain and p in shares}
        part, got, how = await _colour_chain(tools, view, [r for r in wallets if (r.chain or trace.chain) == chain],
                                             crossings, into)
        done.append(part)
        shares.update(part.payout_share)
        if chain == trace.chain:
            received, method = got, how

    async with tools.pool.acquire() as conn, conn.transaction():
        await mixer_store.lock_trace(conn, trace.id)
        if not await store.still_ours(conn, tools.worker, [job]):
            return
        rows = [h for part in done for h in part.rows]
        changed = await store.upsert_hops(conn, trace.id, rows)
        await store.add_hop_count(conn, trace.id, sum(1 for r in changed if r.inserted))
        for part in done:
            await store.set_verdicts(conn, trace.id, part.evidence, part.chain)
        await back_store.set_totals(conn, trace.id, received)
        if method is not None:
            await balance_store.note_balance_method(conn, trace.id, *method)
        await outbox.insert_hop_events(conn, trace.id, changed)
        await store.insert_events(conn, [
            (trace.id, "exit_reached", {"address": a, "entity": part.role[a].verdict.entity,
                                        "category": part.role[a].verdict.category,
                                        "reason": part.role[a].verdict.reason, "direction": back_store.BACKWARD,
                                        **({} if part.chain == trace.chain else {"chain": part.chain})})
            for part in done for a in sorted(part.sent)
            if a in part.role and part.role[a].verdict.role == HopStatus.EXIT])
        await store.complete_jobs(conn, tools.worker, [job])
    log.info("event=backward_coloured trace=%d chains=%d hops=%d sources=%d", trace.id, len(done),
             sum(len(p.rows) for p in done), sum(len(p.sent) for p in done))


async def _colour_chain(tools: BackwardTools, trace: TraceInfo, wallets: Sequence[WalkedWallet],
                        crossings: Sequence[tuple[int, int, str, float, dict[str, Any]]], into: Mapping[int, int]
                        ) -> tuple[_Coloured, dict[str, int], tuple[str, str] | None]:
    """The colouring of one chain: `wallets` are the walk's there, `into` the bridge deposits made
    on it whose payouts were coloured (deposit transfer id -> share, fixed point)."""
    role = {r.address: r for r in wallets}
    walked = {r.address for r in wallets if r.verdict.role == HopStatus.FOLLOWED} | set(trace.seeds)
    async with tools.pool.acquire() as conn:
        stored = await store.load_transfers(conn, trace.chain, sorted(walked), trace.from_block, trace.to_block)
        feeds = await back_store.mixer_feeds(conn, trace.id)
        # A source's linked deposit is in no walked wallet's transfers: read it by id.
        have = {st.id for st in stored}
        stored += await transfer_store.stored_by_id(conn, sorted(({d for d, _, _ in feeds} | set(into)) - have))
    stored = [st for st in stored if st.transfer.chain == trace.chain]
    transfers = [st.transfer for st in stored]
    at = {st.id: i for i, st in enumerate(stored)}
    payouts = {p: (conf, ev) for p, _, _, conf, ev in crossings if p in at}
    deposits = {d: (conf, ev) for _, d, c, conf, ev in crossings if c == trace.chain and d in at}
    through = backward_links.with_mixers(backward_links.swap_legs(transfers, walked - trace.seeds), stored, feeds,
                                         backward_reach.SCALE)
    through = replace(through, fixed={at[d]: g for d, g in into.items() if d in at},
                      watch=frozenset(at[p] for p in payouts))
    joins = await _coinjoins(tools.chain_of(trace.chain), transfers, walked)
    factors, sure = backward_utxo.weights(transfers, walked, joins, trace.policy.min_link_confidence,
                                          backward_reach.SCALE)
    through = replace(through, coinjoin=factors)
    deposit_ids = {d for d, _, _ in feeds}
    confidence: dict[int, float] = defaultdict(float)  # a linked deposit's; a withdrawal's: its links' sum
    for d, w, c in feeds:
        confidence[d] = c
        confidence[w] += c
    client = tools.chain_of(trace.chain)
    prior, method = await _prior(client, trace, walked, transfers)
    # New coins (a coinbase's outputs) have no sender: they come after the stored transfers, in
    # the colouring only, and what of them reached the seeds is their miner's evidence.
    mined = await client.coinbase_rewards(sorted(walked), trace.from_block, trace.to_block) \
        if isinstance(client, CoinbaseSource) else []
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
        evidence: dict[str, Any] | None = None
        if st.id in payouts:
            status, reason = HopStatus.FOLLOWED, Reason.BRIDGE
            confidence[st.id], evidence = payouts[st.id]
            passed.add(st.id)
        elif st.id in deposits and t.from_address in walked:
            # A depositor that is a source (labelled, cut) keeps its own verdict on the hop below.
            status, reason = HopStatus.FOLLOWED, Reason.CROSSING
            confidence[st.id] = deposits[st.id][0]
        elif i in through.bought or i in through.paid:
            status, reason = HopStatus.FOLLOWED, backward_links.SWAP
            passed.add(st.id)
        elif st.id in confidence and st.id not in deposit_ids:
            status, reason = HopStatus.FOLLOWED, backward_links.MIXER_LINK
            passed.add(st.id)
        elif i in through.coinjoin and t.from_address in walked:
            status, reason = HopStatus.FOLLOWED, Reason.COINJOIN_LINK
        elif st.id in confidence and t.from_address in walked:
            status, reason = HopStatus.FOLLOWED, backward_links.MIXER_DEPOSIT
        elif t.from_address in walked:
            status, reason = HopStatus.FOLLOWED, WALKED
        elif sender is not None:
            # Every walked wallet is judged once the walk is over: its role and reason are set.
            status, reason = cast(HopStatus, sender.verdict.role), cast(Reason, sender.verdict.reason)
        depth = sender.depth if sender is not None else role[t.to_address].depth + 1 \
            if t.to_address in role else 1
        rows.append(HopRow(transfer_id=st.id, from_addr=t.from_address, to_addr=t.to_address, asset=t.asset,
                           block_number=t.block_number, depth=depth, amount=part,
                           share=min(1.0, part / t.amount) if t.amount else 0.0, kind=str(t.kind), status=status,
                           reason=reason, parents=[],
                           confidence=min(1.0, sure.get(i, confidence.get(st.id, 1.0))), chain=trace.chain,
                           evidence=_coinjoin_evidence(joins[t.tx_hash][1], t.tx_hash) if i in sure else evidence))

    sent: dict[str, int] = defaultdict(int)
    for h in rows:
        if h.from_addr not in walked and h.transfer_id not in passed:
            sent[h.from_addr] += h.amount
    sources = sorted(sent, key=lambda a: (-sent[a], a))[:_PATHS]
    # Off the seeds' chain a path ends at the depositors whose bridge deposits carried the money on.
    ends = set(trace.seeds) or {stored[at[d]].transfer.from_address for d in deposits}
    rewards: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))  # miner -> asset -> reached
    for i, part in found.reached.items():
        if i >= len(stored):
            t = mined[i - len(stored)]
            rewards[t.to_address][t.asset] += part
    paths = backward_reach.source_paths([*transfers, *mined], found.reached, [*sources, *sorted(rewards)], ends)
    walked_evidence: dict[str, dict[str, Any]] = defaultdict(dict)  # what a walked wallet held, or mined
    for (wallet, asset), part in found.held.items():
        walked_evidence[wallet].setdefault("held", {})[asset] = str(part)
    for wallet, amounts in rewards.items():
        walked_evidence[wallet]["coinbase"] = {a: str(v) for a, v in amounts.items()}
        walked_evidence[wallet]["coinbase_path"] = paths.pop(wallet, [wallet])
    verdicts: list[Row] = []
    for a, extra in [*((a, {"path": path}) for a, path in paths.items()), *walked_evidence.items()]:
        r = role.get(a)
        if r is not None:
            v = r.verdict
            verdicts.append((a, r.depth, cast(str, v.role), cast(str, v.reason), v.entity, v.category,
                             {**back_store.evidence_of(r), **extra}))
    share = {stored[i].id: g for i, g in found.at.items() if stored[i].id in payouts}
    return _Coloured(trace.chain, rows, verdicts, dict(sent), role, share), found.received, method


def _coinjoin_evidence(info: utxo.CoinJoinInfo, txid: str) -> dict[str, Any]:
    """A participant's coins followed back out of a CoinJoin: the round, as a forward entry says it."""
    return {"coinjoin": txid, "pattern": info.pattern, "anonymity_set": info.anonymity_set,
            "denomination": str(info.denomination),
            "summary": f"linked back out of CoinJoin ({info.pattern}), anonymity set {info.anonymity_set}"}


async def _coinjoins(client: Any, transfers: Sequence[Transfer], walked: set[str]
                     ) -> dict[str, tuple[UtxoTx, utxo.CoinJoinInfo]]:
    """The CoinJoins among the transactions that paid walked wallets (UTXO chains only): those
    with several senders into one wallet are read whole and tested."""
    if not isinstance(client, UtxoSource):
        return {}
    senders: dict[tuple[str, str], set[str]] = defaultdict(set)
    for t in transfers:
        if t.to_address in walked:
            senders[(t.tx_hash, t.to_address)].add(t.from_address)
    txids = sorted({tx for (tx, _), s in senders.items() if len(s) >= 2})
    return backward_utxo.coinjoins(await client.transactions(txids)) if txids else {}


async def _prior(chain: Any, trace: TraceInfo, walked: set[str], transfers: Sequence[Transfer]
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
    found = await balances.prior_balances(chain, needs, history, trace.to_block)
    out = {(a, asset): v for a, per in found.balances.items() for asset, v in per.items()}
    return out, (found.method, found.reason)

