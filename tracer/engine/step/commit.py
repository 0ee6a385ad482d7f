"""The write of one trace step: a StepPlan in one transaction, through store functions, under
the trace's commit lock (commits of one trace touch each other's job and hop rows in no common
order). Also the writes of a step that expands nothing: the trace's start (its seeds' totals)
and the hop limit."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from tracer.domain.labels import Category, Label
from tracer.domain.records import Job
from tracer.domain.verdicts import HopStatus, Reason, Verdict
from tracer.engine import event_usd
from tracer.engine.deposits import BEHAVIOUR_SOURCE
from tracer.engine.step.follow_bridges import all_crossed, merge_destinations, payout_hops
from tracer.engine.step.follow_mixers import link_hops
from tracer.engine.step.gather import StepContext
from tracer.engine.step.plan import StepPlan, TraceInfo
from tracer.store import labels as label_store
from tracer.store import mixers as mixer_store
from tracer.store import outbox
from tracer.store import traces as store

log = logging.getLogger("tracer.worker")


async def commit(ctx: StepContext, trace: TraceInfo, jobs: Sequence[Job], plan: StepPlan) -> int:
    """Write one batch's plan in one transaction under the trace's commit lock: its hops (and the
    mixer link and bridge payout hops they lead to), verdicts, the jobs it wakes, events and
    learned deposit-address labels; the batch's jobs completed. Only the part of jobs still
    leased to this worker is written. Returns how many hops changed."""
    by_addr = {j.address: j for j in jobs}
    verdicts = plan.verdicts
    # Prices the hop events will carry (subscriptions' min_usd), read before the trace's lock.
    priced = await event_usd.prefetch(ctx.pool, ctx.chains, sorted({h.transfer_id for _, h in plan.hops}))
    async with ctx.pool.acquire() as conn, conn.transaction():
        # One commit of a trace at a time (the chain work happened before, unlocked): commits
        # touch each other's job and hop rows in no common order, which deadlocked, and a hop
        # written while another worker marked its recipient an exit kept "followed" forever.
        await mixer_store.lock_trace(conn, trace.id)
        ours = await store.still_ours(conn, ctx.name, jobs)
        if not ours:
            return 0
        # A job whose lease lapsed while we worked belongs to someone else now: drop its part.
        hops = [h if h.chain is not None else replace(h, chain=trace.chain) for owner, h in plan.hops
                if owner in ours]
        changed = list(await store.upsert_hops(conn, trace.id, hops))
        mixer = plan.mixer
        if mixer is not None:
            kept = {h.transfer_id for h in hops}
            deposits = [d for d in mixer.deposits if d.transfer_id in kept]
            links = [lk for lk in mixer.links if lk.deposit_transfer_id in kept]
            if deposits:
                touched = await mixer_store.write_outcomes(conn, trace.id, deposits, links)
                linked = await link_hops(conn, trace, touched, mixer)
                changed.extend(await store.upsert_hops(conn, trace.id, linked))
                hops.extend(linked)
        # Bridge payouts on other chains: their hops, and verdicts on labelled recipients there.
        remote: dict[tuple[str, str], Verdict] = {}
        continuations = [c for c in plan.continuations if c.owner in ours]
        if continuations:
            paid, remote = await payout_hops(conn, trace, continuations)
            changed.extend(await store.upsert_hops(conn, trace.id, paid))
            hops.extend(paid)
        # Recipients another worker judged since we read their verdicts: the hops say so too.
        followed: dict[str, list[str]] = defaultdict(list)
        for r in changed:
            if r.status == HopStatus.FOLLOWED:
                followed[r.chain].append(r.to_addr)
        for chain, recipients in sorted(followed.items()):
            decided = (set(verdicts) | set(plan.services) if chain == trace.chain
                       else {a for c, a in remote if c == chain})
            await _mark_judged(conn, trace, chain, recipients, decided)
        depth_of = {(h.chain, h.to_addr): h.depth for h in hops}
        # Only recipients still to be judged need another look; exits and stops are final, and
        # hops into a service or back from a swap wake nobody.
        wake: dict[str, set[str]] = defaultdict(set)
        for r in changed:
            if r.status == HopStatus.FOLLOWED and r.transfer_id not in plan.quiet:
                wake[r.chain].add(r.to_addr)
        for chain, woken in sorted(wake.items()):
            await store.enqueue(conn, trace.id, [(a, depth_of[(chain, a)]) for a in sorted(woken)], chain)
        # A recipient judged already (exit, stop) is not woken, but a shorter path to it still
        # sets its depth: the fewest hops from a seed, whichever path a worker found first.
        shortest: dict[str, dict[str, int]] = defaultdict(dict)
        for r in changed:
            if r.status != HopStatus.FOLLOWED:
                known = shortest[r.chain].get(r.to_addr)
                shortest[r.chain][r.to_addr] = r.depth if known is None else min(known, r.depth)
        for chain, depths in sorted(shortest.items()):
            await store.lower_depths(conn, trace.id, sorted(depths.items()), chain)
        verdicts = await merge_destinations(conn, trace, verdicts)
        rows = []
        for a, v in sorted([*verdicts.items(), *((a, v) for a, v in plan.services.items() if a not in verdicts)],
                           key=lambda av: av[0]):
            if a in by_addr and a not in ours:
                continue
            depth = by_addr[a].depth if a in by_addr else depth_of.get((trace.chain, a), 0)
            rows.append((a, depth, v.role, v.reason, v.entity, v.category, v.evidence))
        await store.set_verdicts(conn, trace.id, rows, trace.chain)
        # Followed now, perhaps stopped at max_depth before: the hops that stop marked reopen.
        reopened = await store.reopen_hops_into(
            conn, trace.id, sorted(a for a, v in verdicts.items() if v.role == HopStatus.FOLLOWED and a in ours),
            Reason.MAX_DEPTH, trace.chain)
        changed.extend(reopened)
        # Services keep per-hop statuses (a linked deposit is followed, an unlinked one stopped):
        # only verdicts on the address itself rewrite the hops into it.
        for role in (HopStatus.EXIT, HopStatus.STOPPED):
            # A bridge keeps per-hop statuses: a deposit continued on the far chain is a crossing.
            for reason in sorted({v.reason for a, v in verdicts.items() if v.role == role and a in ours
                                  and v.reason != Reason.BRIDGE}):
                addrs = [a for a, v in verdicts.items() if v.role == role and v.reason == reason and a in ours]
                await store.mark_hops_into(conn, trace.id, addrs, role, reason, trace.chain)
        for (chain, a), v in sorted(remote.items()):
            await store.set_verdicts(conn, trace.id, [(a, depth_of.get((chain, a), 0), v.role, v.reason, v.entity,
                                                      v.category, v.evidence)], chain)
            await store.mark_hops_into(conn, trace.id, [a], v.role, v.reason, chain)
        events: list[tuple[int | None, str, dict[str, Any]]] = []
        # One event per new or changed hop, with its amounts and addresses (alert filters need them).
        written = await outbox.insert_hop_events(conn, trace.id, changed)
        if priced:
            await event_usd.price_events(conn, trace.chain, written)
        for a, v in verdicts.items():
            # A bridge whose every deposit crossed is no exit: the exits it leads to will say so.
            if v.role == HopStatus.EXIT and (a not in by_addr or a in ours) and not all_crossed(v):
                events.append((trace.id, "exit_reached", {
                    "address": a, "entity": v.entity, "category": v.category, "reason": v.reason}))
        for (chain, a), v in sorted(remote.items()):
            if v.role == HopStatus.EXIT:
                events.append((trace.id, "exit_reached", {
                    "address": a, "entity": v.entity, "category": v.category, "reason": v.reason,
                    "chain": chain}))
        await store.insert_events(conn, events)
        deposit_labels = [(a, v) for a, v in verdicts.items()
                          if v.reason == Reason.DEPOSIT_ADDRESS and a in ours]
        if deposit_labels:
            await label_store.upsert_labels(conn, [
                Label(
                    chain=trace.chain, address=a, entity=v.entity or "unknown exchange",
                    category=Category.DEPOSIT_ADDRESS, source=BEHAVIOUR_SOURCE,
                    confidence=float((v.evidence or {}).get("confidence", 0.8)),
                    valid_from=None, valid_to=None, program=None, evidence=v.evidence,
                    created_by=f"trace:{trace.id}",
                ) for a, v in deposit_labels])
        await store.add_hop_count(conn, trace.id, sum(1 for r in changed if r.inserted))
        await store.complete_jobs(conn, ctx.name, [j for j in jobs if j.address in ours])
    log.debug("event=batch trace=%d chain=%s jobs=%d hops=%d changed=%d at=%s", trace.id, trace.chain, len(jobs),
              len(hops), len(changed), datetime.now(UTC).isoformat())
    return len(changed)


async def hop_limit(ctx: StepContext, trace: TraceInfo, jobs: Sequence[Job]) -> bool:
    """Once the trace holds policy.max_hops hops, addresses still on the frontier are not
    expanded: they are stopped with reason max_hops, and the trace records that it hit the
    limit (its trace_finished event says so)."""
    if trace.hops < trace.policy.max_hops:
        return False
    async with ctx.pool.acquire() as conn, conn.transaction():
        await mixer_store.lock_trace(conn, trace.id)
        ours = await store.still_ours(conn, ctx.name, jobs)
        stop = [j for j in jobs if j.address in ours]
        if not stop:
            return True
        evidence = {"max_hops": trace.policy.max_hops, "hops": trace.hops}
        stopped = HopStatus.STOPPED, Reason.MAX_HOPS
        await store.set_verdicts(conn, trace.id, [(j.address, j.depth, *stopped, None, None, evidence) for j in stop],
                                 trace.chain)
        await store.mark_hops_into(conn, trace.id, [j.address for j in stop], *stopped, trace.chain)
        await store.note_hop_limit(conn, trace.id)
        await store.complete_jobs(conn, ctx.name, stop)
    log.info("event=hop_limit trace=%d chain=%s stopped=%d hops=%d", trace.id, trace.chain, len(stop), trace.hops)
    return True


async def _mark_judged(
    conn: store.Conn, trace: TraceInfo, chain: str, recipients: Sequence[str], decided_here: set[str]
) -> None:
    """Mark followed hops into recipients that already carry a final verdict (an exit, a hub)
    in this trace. Services money passes through keep per-hop statuses and are left alone."""
    wanted = sorted(set(recipients) - decided_here)
    if not wanted:
        return
    through = set(trace.policy.through_categories)
    final: dict[tuple[str, str], list[str]] = defaultdict(list)
    for a, judged in (await store.node_verdicts(conn, trace.id, wanted, chain)).items():
        copied = judged.copied
        if copied is not None and judged.category not in through:
            final[copied].append(a)
    for (role, reason), addrs in sorted(final.items()):
        await store.mark_hops_into(conn, trace.id, addrs, role, reason, chain)
