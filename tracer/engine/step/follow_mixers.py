"""Mixers: a batch's flagged deposits into pools linked to the pools' later withdrawals by
scored heuristics (tracer.engine.mixers, mixer_scope, mixer_rivals). Links at least
policy.min_link_confidence sure are followed, the deposit hop becomes followed and the link hop
(pool -> recipient) is summed at commit time from every link into that withdrawal. What a link
weighs is chain data read over the trace's whole window, so links do not depend on which
deposits shared a batch."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import replace

from tracer.chains.protocols import GasPriceSource
from tracer.domain.labels import Category
from tracer.domain.mixer_links import DepositRow, DepositStatus, LinkStatus
from tracer.domain.records import HopRow, StoredTransfer
from tracer.domain.verdicts import HopStatus, Judged, Reason
from tracer.engine import classify, mixer_events, mixer_facts, mixer_scope, mixers
from tracer.engine.deposits import BEHAVIOUR_SOURCE
from tracer.engine.mixer_rivals import read_rivals
from tracer.engine.step.gather import StepContext, describe, ensure_transfers
from tracer.engine.step.plan import (
    Labels,
    MixerWrite,
    StepPlan,
    TraceInfo,
)
from tracer.store import labels as label_store
from tracer.store import mixers as mixer_store
from tracer.store import traces as store

log = logging.getLogger("tracer.worker")

_MAX_GAS_LOOKUPS = 5_000  # transactions per batch whose gas price is fetched for the linker

Payouts = dict[tuple[str, str], StoredTransfer]  # (withdrawal tx, recipient) -> the pool's payment


async def pool_events(ctx: StepContext, trace: TraceInfo, pools: Sequence[str]) -> None:
    """Make sure Postgres holds every Deposit/Withdrawal of the pools up to the trace's end
    block: one getLogs (all pools at once) for what is missing."""
    async with ctx.pool.acquire() as conn:
        covered = await mixer_store.coverage(conn, trace.chain, pools)
    missing = [p for p in pools if covered.get(p, -1) < trace.to_block]
    if not missing:
        return
    start = min(covered.get(p, -1) + 1 for p in missing)
    logs = await ctx.chain(trace).logs(missing, [list(mixer_events.POOL_TOPICS)], start, trace.to_block)
    rows = []
    for lg in logs:
        e = mixer_events.decode_pool_log(lg)
        if e is not None:
            rows.append(mixer_store.EventRow(e.pool, e.kind, e.block_number, e.log_index, e.block_time, e.tx_hash,
                                             e.note, e.leaf_index, e.recipient or None, e.relayer or None, e.fee,
                                             None))
    async with ctx.pool.acquire() as conn:
        await mixer_store.store_events(conn, trace.chain, rows, {p: trace.to_block for p in missing})


async def gas_prices(ctx: StepContext, trace: TraceInfo, hashes: Sequence[str]) -> dict[str, int]:
    """Gas prices of transactions, from the chain client if it offers them (GasPriceSource),
    else through web3's typed API that tracer.chains.evm.EvmChain exposes (batched); {} when
    neither works, which only leaves the gas-price heuristic out."""
    if not hashes:
        return {}
    chain = ctx.chain(trace)
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


async def link(
    ctx: StepContext,
    trace: TraceInfo,
    plan: StepPlan,
    labels: Labels,
) -> None:
    """Score the batch's flagged mixer deposits (plan.deposits) against their pools' withdrawals
    (score: the reads, then the pure linker) and decide which links are followed (decide_links,
    pure); the link hops themselves are summed at commit time."""
    flagged = [mixer_facts.FlaggedDeposit(
        d.st.id, d.pool, d.o.asset, d.st.transfer.amount, d.o.amount, d.owner, d.st.transfer.tx_hash,
        d.st.transfer.block_number, d.st.transfer.block_time, d.st.transfer.decimals, d.st.transfer.symbol,
    ) for d in plan.deposits]
    outcomes, payouts = await score(ctx, trace, flagged)
    recipients = sorted({lk.withdrawal.recipient for o in outcomes for lk in o.links})
    async with ctx.pool.acquire() as conn:
        recipient_labels = await label_store.lookup(conn, trace.chain, recipients)
        recipient_known = await store.node_verdicts(conn, trace.id, recipients, trace.chain)
    plan.mixer = decide_links(trace, plan, outcomes, payouts, recipient_labels, recipient_known)
    linked = {d.transfer_id for d in plan.mixer.deposits if d.status == DepositStatus.LINKED}
    for outcome in outcomes:
        d = outcome.deposit
        log.info("event=mixer_deposit trace=%d pool=%s tx=%s anonymity_set=%d candidates=%d linked=%s "
                 "confidence=%.3f", trace.id, d.pool, d.tx_hash, outcome.anonymity_set, outcome.candidates,
                 d.transfer_id in linked, outcome.links[0].confidence if outcome.links else 0.0)


def decide_links(
    trace: TraceInfo, plan: StepPlan, outcomes: Sequence[mixer_facts.DepositOutcome], payouts: Payouts,
    labels: Labels, known: Mapping[str, Judged],
) -> MixerWrite:
    """Which links are followed, as data: each deposit's best link at least
    policy.min_link_confidence sure whose pool -> recipient payment was read (and whose recipient
    is no seed) is followed, its deposit hop in `plan` becomes followed ("mixer deposit", the
    link's confidence) and a recipient a label (`labels`) or an earlier verdict (`known`) judges
    gives the link hop its status. Every scored link and deposit is returned for mixer_links and
    mixer_deposits. No await and no I/O (tests build the outcomes by hand)."""
    policy = trace.policy
    by_id = {d.st.id: d for d in plan.deposits}
    write = MixerWrite()
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
                lk.carried(withdrawn) if withdrawn is not None else 0,
                LinkStatus.FOLLOWED if is_followed else LinkStatus.CANDIDATE,
                [r.to_json() for r in lk.reasons]))
        write.deposits.append(DepositRow(
            d.transfer_id, d.pool, d.asset, d.denomination, d.depositor, d.flagged, outcome.anonymity_set,
            outcome.candidates, DepositStatus.LINKED if followed else DepositStatus.UNLINKED))
        if followed and best is not None:
            # The deposit hop is followed (through the pool) but never wakes the pool itself.
            old = plan.hops[dep.hop_index][1]
            plan.hops[dep.hop_index] = (dep.owner, replace(old, status=HopStatus.FOLLOWED, reason=Reason.MIXER_DEPOSIT,
                                                            confidence=best.confidence))
            recipient = best.withdrawal.recipient
            verdict = classify.by_label(labels.get(recipient, ()), policy)
            target = known.get(recipient)
            if verdict is not None:
                write.recipient_status[recipient] = (verdict.role, verdict.reason)
                plan.verdicts.setdefault(recipient, verdict)
            elif target is not None and (copied := target.copied) is not None:
                write.recipient_status[recipient] = copied
    return write


async def score(ctx: StepContext, trace: TraceInfo, flagged: Sequence[mixer_facts.FlaggedDeposit]
                ) -> tuple[list[mixer_facts.DepositOutcome], Payouts]:
    """Link deposits into pools to the pools' withdrawals from chain data read over the trace's
    whole window (a forward trace's flagged deposits; a backward trace's candidate deposits of a
    withdrawal, engine/step/back_mixers.py), and the pool -> recipient transfers of the candidates:
    gather_links reads, the linker (mixer_scope, pure) scores."""
    facts, payouts = await gather_links(ctx, trace, flagged)
    return mixer_scope.link_each_depositor(flagged, facts, mixer_facts.LinkParams()), payouts


async def gather_links(ctx: StepContext, trace: TraceInfo, flagged: Sequence[mixer_facts.FlaggedDeposit]
                       ) -> tuple[mixer_facts.LinkFacts, Payouts]:
    """Every read the linker needs for these deposits: the pools' events, the depositors' and the
    candidate recipients' transfers, their rivals' notes, gas prices and which shared wallets are
    labelled services."""
    policy = trace.policy
    # Each depositor's transfers over the trace's whole window, not from its first flagged
    # inflow (which moves earlier as the trace finds more): its counterparties, and its deposits
    # into the pools, its notes, which compete for withdrawals and make the multi-denomination
    # heuristic's bag, in its flagged deposits' pools and in every labelled mixer it paid, flagged
    # or not yet. Chain data alone: a link's withdrawal and confidence do not change as the
    # trace finds more, only what it carries grows with its deposit's flagged amount.
    depositors = {d.depositor for d in flagged}
    own = await ensure_transfers(ctx, trace, {a: trace.from_block for a in depositors})
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
    async with ctx.pool.acquire() as conn:
        paid_labels = await label_store.lookup(conn, trace.chain, sorted({a for a, _ in paid_into}))
    mixers_paid = {a for a, found in paid_labels.items()
                   if (classify.through_category(found, policy) or ("", ""))[0] == Category.MIXER}
    pools = sorted({d.pool for d in flagged} | mixers_paid)
    await pool_events(ctx, trace, pools)
    # The pools' events over the trace's whole window, not from the batch's first deposit:
    # what a link weighs must not depend on which deposits shared the batch (mixer_scope.py).
    async with ctx.pool.acquire() as conn:
        rows = await mixer_store.events(conn, trace.chain, pools, trace.from_block, trace.to_block)
        before = await mixer_store.counts_before(conn, trace.chain, pools, trace.from_block)
    events: dict[str, list[mixer_events.PoolEvent]] = defaultdict(list)
    for r in rows:
        events[r.pool].append(mixer_events.PoolEvent(
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
    params = mixer_facts.LinkParams()
    candidates = mixers.candidate_withdrawals(flagged, mixer_facts.LinkFacts(events, deposits_by=deposits_by), params)
    notes = [e.tx_hash for es in deposits_by.values() for e in es]

    # Gas prices: of the deposits and their candidates; of the pools' other transactions only
    # when a deposit and a candidate share one (how rare it is decides what the match is worth).
    gas: dict[str, int] = {e.tx_hash: e.gas_price for evs in events.values() for e in evs
                           if e.gas_price is not None}
    fetched: dict[str, int] = {}

    async def fill(hashes: list[str]) -> None:
        lookup = [h for h in dict.fromkeys(hashes) if h not in gas][: _MAX_GAS_LOOKUPS - len(fetched)]
        got = await gas_prices(ctx, trace, lookup)
        gas.update(got)
        fetched.update(got)

    if any(candidates.values()):
        await fill([d.tx_hash for d in flagged] + notes + [w.tx_hash for ws in candidates.values() for w in ws])
        # A note and a candidate share a price: how rare it is decides what the match is worth.
        if {gas[h] for h in [d.tx_hash for d in flagged] + notes if h in gas} & {
                gas[w.tx_hash] for ws in candidates.values() for w in ws if w.tx_hash in gas}:
            await fill([e.tx_hash for evs in events.values() for e in evs])
    if fetched:
        async with ctx.pool.acquire() as conn:
            await mixer_store.set_gas_prices(conn, trace.chain, fetched)

    # Transfers of every candidate recipient (cached like any address's): their counterparties,
    # and the pool -> recipient transfer a followed link becomes a hop of. Over the whole trace
    # window, not from this batch's earliest deposit: the shared-peers evidence must not depend
    # on which deposits happened to share a batch (workers' timing).
    start = {w.recipient: trace.from_block for ws in candidates.values() for w in ws}
    stored = await ensure_transfers(ctx, trace, start) if start else []
    # Recipients' and depositors' wallets apart: an address can be both.
    recipient_peers: dict[str, set[str]] = defaultdict(set)
    # A recipient's own deposits into the pools (chain data): notes that rival ours.
    pool_deposits = {(e.pool, e.tx_hash): e for evs in events.values() for e in evs if e.kind == "deposit"}
    recipient_notes: dict[str, list[mixer_events.PoolEvent]] = defaultdict(list)
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
    await describe(ctx, trace, list(payouts.values()))
    # Shared wallets that are labelled services say nothing about who withdrew.
    recipients = sorted({w.recipient for ws in candidates.values() for w in ws})
    theirs = set().union(*(recipient_peers.get(r, set()) for r in recipients))
    maybe_shared = set().union(*(own & theirs for own in peers.values()))
    async with ctx.pool.acquire() as conn:
        service_labels = await label_store.lookup(conn, trace.chain, sorted(maybe_shared))
    # Labels traces learn from behaviour (exchange deposit addresses) are left out: when one is
    # learned depends on the workers' order, and a deposit address is one customer's, not a
    # service's crowd.
    services = {a for a, found in service_labels.items() if any(lb.source != BEHAVIOUR_SOURCE for lb in found)}
    # Other wallets' notes that may rival the depositors' (mixer_rivals.py), and their gas prices.
    # Nothing batch-dependent is left out here but the pools (labelled, hence services, anyway):
    # mixer_scope picks each depositor's share of what is read.
    shared = sorted(maybe_shared - services - set(pools))
    rival_peers, rival_notes = await read_rivals(
        lambda starts: ensure_transfers(ctx, trace, starts), trace.from_block, shared, pool_deposits)
    for a, ps in rival_peers.items():
        peers.setdefault(a, set()).update(ps)
    # Which of the rivals' shared wallets are services: looked up like the depositors' own.
    rival_shared = sorted(set().union(*(ps & theirs for ps in rival_peers.values())) - maybe_shared)
    if rival_shared:
        async with ctx.pool.acquire() as conn:
            found = await label_store.lookup(conn, trace.chain, rival_shared)
        services |= {a for a, lbs in found.items() if any(lb.source != BEHAVIOUR_SOURCE for lb in lbs)}
    known = set(fetched)
    rival_txs = [e.tx_hash for es in rival_notes.values() for e in es]
    await fill(rival_txs)
    if {gas[h] for h in rival_txs if h in gas} & {
            gas[w.tx_hash] for ws in candidates.values() for w in ws if w.tx_hash in gas}:
        await fill([e.tx_hash for evs in events.values() for e in evs])  # as for the notes above
    if set(fetched) - known:
        async with ctx.pool.acquire() as conn:
            await mixer_store.set_gas_prices(conn, trace.chain, {h: fetched[h] for h in set(fetched) - known})
    facts = mixer_facts.LinkFacts(
        events=events, before=before, denominations=denominations, gas_prices=gas,
        peers=peers, services=services, deposits_by=deposits_by, recipient_peers=recipient_peers,
        recipient_notes=recipient_notes, rival_notes=rival_notes,
    )
    return facts, payouts


async def link_hops(
    conn: store.Conn, trace: TraceInfo, withdrawal_ids: Sequence[int], mixer: MixerWrite
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
            out.append(HopRow(transfer_id=wid, from_addr=t.from_address, to_addr=t.to_address, asset=t.asset,
                              block_number=t.block_number, depth=depth + 1, amount=0, share=0.0, kind=str(t.kind),
                              status=HopStatus.STOPPED, reason=Reason.MIXER_LINK_DROPPED, parents=parents,
                              confidence=0.0, chain=trace.chain))
            continue
        status, reason = mixer.recipient_status.get(t.to_address, (HopStatus.FOLLOWED, Reason.MIXER_LINK))
        out.append(HopRow(transfer_id=wid, from_addr=t.from_address, to_addr=t.to_address, asset=t.asset,
                          block_number=t.block_number, depth=depth + 1, amount=amount,
                          share=amount / t.amount if t.amount else 0.0, kind=str(t.kind), status=status,
                          reason=reason, parents=parents[:8], confidence=confidence, chain=trace.chain))
    return out
