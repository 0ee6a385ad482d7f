"""The mixer linker run in reverse for backward traces (issue 20): a withdrawal a walked wallet got
from a pool goes back to the deposits whose forward link is that withdrawal.

A withdrawal's candidates are the pool's deposits that would weigh it forward: those with it among
their nearest withdrawals (mixer_facts.LinkParams: the window and the candidate cap). Each is scored by
the forward linker itself (follow_mixers.score, every deposit taken as wholly flagged: what a link
carries scales with that, its confidence does not), and a deposit whose best link at least
policy.min_link_confidence sure is this withdrawal is a link the backward trace follows, with that
confidence. So a backward trace goes through exactly the links a forward trace from the depositor
would follow, and splits the withdrawal between them by their confidences as forward links carry
flagged * confidence. The links are stored as a forward trace's are (mixer_deposits, mixer_links:
/v1/traces/{id}/mixer-links shows them)."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence

from tracer.domain.mixer_links import DepositRow, DepositStatus, LinkStatus
from tracer.domain.records import StoredTransfer
from tracer.engine import mixer_events, mixer_facts
from tracer.engine.backward_links import BackLink, BackLinks
from tracer.engine.mixer_pool import PoolIndex
from tracer.engine.step import follow_mixers
from tracer.engine.step.gather import StepContext, describe, ensure_transfers
from tracer.engine.step.plan import TraceInfo
from tracer.store import mixers as mixer_store

log = logging.getLogger("tracer.worker")


async def link_back(ctx: StepContext, trace: TraceInfo, payouts: Sequence[StoredTransfer]) -> BackLinks:
    """The deposits linked to these pool payouts (each payout: pool -> a walked wallet)."""
    pools = sorted({p.transfer.from_address for p in payouts})
    if not pools:
        return BackLinks([], [], [])
    await follow_mixers.pool_events(ctx, trace, pools)
    async with ctx.pool.acquire() as conn:
        rows = await mixer_store.events(conn, trace.chain, pools, trace.from_block, trace.to_block)
    events: dict[str, list[mixer_events.PoolEvent]] = defaultdict(list)
    for r in rows:
        events[r.pool].append(mixer_events.PoolEvent(
            r.pool, "deposit" if r.kind == "deposit" else "withdrawal", r.block_number, r.log_index, r.block_time,
            r.tx_hash, r.note, r.leaf_index, r.recipient or "", r.relayer or "", r.fee, r.gas_price))
    params = mixer_facts.LinkParams()
    wanted: dict[tuple[str, str], StoredTransfer] = {}  # (withdrawal tx, recipient) -> the payout
    candidates: dict[str, set[str]] = defaultdict(set)  # pool -> deposit txs that weigh one of the payouts
    for p in payouts:
        t = p.transfer
        evs = events.get(t.from_address, [])
        if not any(e.kind == "withdrawal" and e.tx_hash == t.tx_hash and e.recipient == t.to_address for e in evs):
            continue  # not a withdrawal the pool announced (a refund, a fee): no link
        wanted[(t.tx_hash, t.to_address)] = p
        index = PoolIndex(evs, (0, 0))
        for i, e in enumerate(evs):
            if e.kind == "deposit" and e.block_number <= t.block_number and any(
                    w.tx_hash == t.tx_hash for _, w in index.withdrawals_after(
                        i, e.block_time + params.window_seconds, params.max_candidates)):
                candidates[t.from_address].add(e.tx_hash)
    if not wanted:
        return BackLinks([], [], [])
    # The deposits' transfers (depositor -> pool), through the same cache as any wallet's.
    into = await ensure_transfers(ctx, trace, {pool: trace.from_block for pool in candidates})
    deposit_of: dict[tuple[str, str], StoredTransfer] = {}
    for st in into:
        t = st.transfer
        if t.tx_hash in candidates.get(t.to_address, ()) and t.from_address != t.to_address:
            old = deposit_of.get((t.to_address, t.tx_hash))
            if old is None or t.amount > old.transfer.amount:
                deposit_of[(t.to_address, t.tx_hash)] = st
    found = sorted(deposit_of.values(), key=lambda st: st.id)
    flagged = [mixer_facts.FlaggedDeposit(
        st.id, st.transfer.to_address, st.transfer.asset, st.transfer.amount, st.transfer.amount,
        st.transfer.from_address, st.transfer.tx_hash, st.transfer.block_number, st.transfer.block_time,
        st.transfer.decimals, st.transfer.symbol) for st in found]
    outcomes, seen = await follow_mixers.score(ctx, trace, flagged) if flagged else ([], {})
    by_id = {st.id: st for st in found}
    links: list[BackLink] = []
    deposits: list[DepositRow] = []
    link_rows: list[mixer_store.LinkRow] = []
    for outcome in outcomes:
        d = outcome.deposit
        best = outcome.best(trace.policy.min_link_confidence)
        payout = wanted.get((best.withdrawal.tx_hash, best.withdrawal.recipient)) if best is not None else None
        if best is None or payout is None or d.depositor in trace.seeds:
            continue  # a deposit whose money went elsewhere (or nowhere sure enough): not this withdrawal's
        links.append(BackLink(payout, by_id[d.transfer_id], best.confidence))
        deposits.append(DepositRow(
            d.transfer_id, d.pool, d.asset, d.denomination, d.depositor, d.flagged, outcome.anonymity_set,
            outcome.candidates, DepositStatus.LINKED))
        for lk in outcome.links:
            w = lk.withdrawal
            paid = seen.get((w.tx_hash, w.recipient))
            withdrawn = paid.transfer.amount if paid is not None else None
            link_rows.append(mixer_store.LinkRow(
                d.transfer_id, w.tx_hash, w.log_index, paid.id if paid is not None else None, w.block_number,
                w.block_time, w.recipient, w.relayer or None, w.fee, withdrawn, lk.confidence,
                lk.carried(withdrawn) if withdrawn is not None else 0,
                LinkStatus.FOLLOWED if lk is best else LinkStatus.CANDIDATE,
                [r.to_json() for r in lk.reasons]))
    # The deposits become hops (from a source or a walked wallet): with their time and token name.
    await describe(ctx, trace, [lk.deposit for lk in links])
    log.info("event=mixer_backward trace=%d withdrawals=%d candidates=%d linked=%d", trace.id, len(wanted),
             len(flagged), len(links))
    return BackLinks(links, deposits, link_rows)
