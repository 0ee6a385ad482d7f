"""The decisions of one trace step, as pure functions: typed inputs in, verdicts and a StepPlan
out, no await and no I/O (tests build their inputs by hand).

by_own_label, by_history, movements, balance_needs and flagged_outflows run between gather's
reads (what they decide says what to read next); decide turns the batch's flagged outflows
into hops, verdicts on the recipients, and the mixer and bridge deposits that follow_mixers
and follow_bridges look at further."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from tracer.domain.labels import Category
from tracer.domain.records import HopRow, Job, StoredTransfer
from tracer.domain.transfers import Movement
from tracer.domain.verdicts import FOLLOW, HopStatus, Reason, Verdict
from tracer.engine import classify, swaps, utxo
from tracer.engine.policy import Policy
from tracer.engine.recognised import dex_evidence
from tracer.engine.step.follow_utxo import coinjoin_hops
from tracer.engine.step.plan import (
    MAX_DESTINATIONS,
    BridgedDeposit,
    FlaggedOut,
    Labels,
    PendingDeposit,
    StepFacts,
    StepPlan,
    TraceInfo,
)
from tracer.engine.taint import CLEAN_MONEY_MODELS, propagate


def by_own_label(jobs: Sequence[Job], own_labels: Labels, policy: Policy) -> dict[str, Verdict]:
    """The batch's addresses a label judges: a labelled service is judged by its label alone
    (fetching an exchange's history would cost thousands of transfers and tell us nothing)."""
    verdicts: dict[str, Verdict] = {}
    by_addr = {j.address: j for j in jobs}
    for a in [j.address for j in jobs]:
        lv = None if by_addr[a].is_seed else classify.by_label(own_labels.get(a, ()), policy)
        if lv is not None:
            verdicts[a] = lv
    return verdicts


def by_history(
    active: Sequence[str], by_addr: Mapping[str, Job], timelines: Mapping[str, Sequence[StoredTransfer]],
    labels: Labels, frozen: Mapping[str, Verdict], policy: Policy,
) -> dict[str, Verdict]:
    """The verdict on each address whose history was read: a seed is followed; else frozen by
    its token's issuer, an exchange deposit address (it sweeps to one), a hub, or too deep to
    expand (max_depth, lifted if a shorter path comes: depth.py); else followed."""
    verdicts: dict[str, Verdict] = {}
    for a in active:
        job = by_addr[a]
        transfers = [st.transfer for st in timelines.get(a, ())]
        if job.is_seed:
            verdicts[a] = Verdict(HopStatus.FOLLOWED, Reason.SEED)
            continue
        verdict = (frozen.get(a) or classify.deposit_address(a, transfers, labels, policy)
                   or classify.hub(a, transfers, policy))
        if verdict is None and job.depth >= policy.max_depth:
            verdict = Verdict(HopStatus.STOPPED, Reason.MAX_DEPTH)
        verdicts[a] = verdict or FOLLOW
    return verdicts


def moves(address: str, timeline: Sequence[StoredTransfer]) -> list[Movement]:
    return [
        Movement(st.id, st.transfer.order, st.transfer.asset, st.transfer.amount, st.transfer.to_address == address,
                 st.transfer.from_address if st.transfer.to_address == address else st.transfer.to_address,
                 st.transfer.tx_hash)
        for st in timeline
        if st.transfer.from_address != st.transfer.to_address
    ]


def movements(
    followed: Sequence[str], timelines: Mapping[str, Sequence[StoredTransfer]],
    flagged_in: Mapping[str, Mapping[int, int]], *, merge_utxo: bool,
) -> tuple[dict[str, list[Movement]], dict[str, dict[int, int]]]:
    """Each followed wallet's movements and flagged inflows (by transfer id). On a UTXO chain one
    output paid by several inputs arrives as one transfer per input: the wallet received it
    whole (a CoinJoin link can carry more than the traced input's part)."""
    moves_of = {a: moves(a, timelines.get(a, ())) for a in followed}
    flagged = {a: dict(v) for a, v in flagged_in.items()}
    if merge_utxo:
        for a in followed:
            moves_of[a], flagged[a] = utxo.merge_inflows(moves_of[a], flagged.get(a, {}))
    return moves_of, flagged


def balance_needs(
    trace: TraceInfo, followed: Sequence[str], by_addr: Mapping[str, Job], first_block: Mapping[str, int],
    assets_in: Mapping[str, set[str]], moves_of: Mapping[str, Sequence[Movement]],
) -> dict[str, tuple[int, set[str]]]:
    """Whose prior balances to read, of which assets, before which block. Clean holdings of an
    asset a wallet bought in a swap dilute the swapped-in taint too. flagged_first and
    full_poison ignore clean money; haircut dilutes with it, fifo spends it first.

    Only assets the wallet sends on: clean money changes what an outflow carries and nothing
    else (taint.propagate), so a wallet that holds an asset, or only received more of it,
    passes on the same taint whatever it held before (its balance is not read: one call less
    per holder, most of a trace's leaves)."""
    if trace.policy.taint_model not in CLEAN_MONEY_MODELS:
        return {}
    needs: dict[str, tuple[int, set[str]]] = {}
    for a in followed:
        if by_addr[a].is_seed:
            continue
        spent = {m.asset for m in moves_of[a] if not m.incoming}
        assets = (set(assets_in.get(a, set())) | swaps.bought_assets(moves_of[a])) & spent
        if assets:
            needs[a] = (first_block[a], assets)
    return needs


def flagged_outflows(
    trace: TraceInfo, followed: Sequence[str], by_addr: Mapping[str, Job],
    timelines: Mapping[str, Sequence[StoredTransfer]], moves_of: Mapping[str, Sequence[Movement]],
    flagged_in: Mapping[str, Mapping[int, int]], prior: Mapping[str, Mapping[str, int]],
) -> list[FlaggedOut]:
    """The followed wallets' flagged outflows under the policy's taint model."""
    outs: list[FlaggedOut] = []
    for a in followed:
        by_id = {st.id: st for st in timelines.get(a, ())}
        taint = propagate(moves_of[a], flagged_in.get(a, {}), prior.get(a, {}),
                          model=trace.policy.taint_model, fully_flagged=by_addr[a].is_seed)
        outs.extend(FlaggedOut(a, o, by_id[o.transfer_id]) for o in taint)
    return outs


def decide(facts: StepFacts) -> StepPlan:
    """Hops of the batch's flagged outflows with their statuses, verdicts on the recipients a
    label or an earlier batch judged, and the deposits into mixers and bridges."""
    trace, policy = facts.trace, facts.trace.policy
    by_addr = facts.by_addr
    labels, known, service_logs, utxo_plan = facts.labels, facts.known, facts.service_logs, facts.utxo_plan
    plan = StepPlan(verdicts=dict(facts.verdicts))
    verdicts = plan.verdicts
    for f in facts.outs:
        a, o, st = f.owner, f.taint, f.st
        job = by_addr[a]
        t = st.transfer
        depth = job.depth + 1
        if o.swap == "in":
            # The asset a swap bought: an inflow of this wallet, its taint already counted in
            # this pass (so the hop wakes nobody).
            if a not in trace.seeds:
                plan.add(a, HopRow(transfer_id=st.id, from_addr=t.from_address, to_addr=a, asset=o.asset,
                                   block_number=t.block_number, depth=depth, amount=o.amount,
                                   share=o.amount / o.total if o.total else 0.0, kind=str(t.kind),
                                   status=HopStatus.FOLLOWED, reason=Reason.SWAP, parents=o.parents), quiet=True)
            continue
        if t.to_address in trace.seeds:
            continue  # money moving between flagged wallets is already counted
        if utxo_plan is not None and st.id in utxo_plan.inside:
            continue  # into a CoinJoin: written as the wallet's entry (coinjoin_hops)
        threshold = trace.threshold(o.asset)
        share = o.amount / o.total if o.total else 0.0
        status: str = HopStatus.FOLLOWED  # a label's or an earlier verdict's may replace them
        reason: str = Reason.FLAGGED_FUNDS
        quiet = False
        through = classify.through_category(labels.get(t.to_address, ()), policy)
        pool = service_logs.pool_for(t)
        unlabelled = through is None and t.to_address not in labels
        if o.amount < threshold:
            status, reason = HopStatus.STOPPED, Reason.BELOW_THRESHOLD
            quiet = o.swap == "out"
        elif o.swap == "out":
            status, reason, quiet = HopStatus.FOLLOWED, Reason.SWAP, True
        elif pool is not None and (pool == t.to_address or (through is not None and through[0] == Category.MIXER)):
            # Into a mixer pool: stopped here unless the linker follows it (follow_mixers).
            status, reason, quiet = HopStatus.STOPPED, Reason.ENTERED_MIXER, True
            plan.deposits.append(PendingDeposit(a, st, pool, o, depth, len(plan.hops)))
            entity = through[1] if through else "unlabelled mixer pool (Tornado-compatible events)"
            plan.services[t.to_address] = Verdict(HopStatus.STOPPED, Reason.ENTERED_MIXER, entity, Category.MIXER)
        elif through is not None and through[0] == Category.BRIDGE:
            status, reason = HopStatus.EXIT, Reason.BRIDGE
            plan.bridged.append(BridgedDeposit(t.to_address, st, len(plan.hops)))
        elif unlabelled and Category.BRIDGE in policy.through_categories and service_logs.bridge_for(
                t, labelled=False):
            # No label, but the contract paid emitted a bridge deposit in this transaction.
            status, reason = HopStatus.EXIT, Reason.BRIDGE
            plan.bridged.append(BridgedDeposit(t.to_address, st, len(plan.hops)))
        elif unlabelled and Category.DEX in policy.through_categories and service_logs.swapped_in(t):
            status, reason, quiet = HopStatus.STOPPED, Reason.ENTERED_DEX, True
            plan.services.setdefault(t.to_address, Verdict(
                HopStatus.STOPPED, Reason.ENTERED_DEX, "DEX pool (Uniswap-style Swap event)", Category.DEX,
                dex_evidence(t, service_logs.swap_recipient(t))))
        else:
            target = known.get(t.to_address)
            label_verdict = classify.by_label(labels.get(t.to_address, ()), policy)
            if label_verdict is not None:
                status, reason = label_verdict.role, label_verdict.reason
                if through is not None:
                    # A mixer contract without a deposit event (governance, a router we could not
                    # resolve) or a DEX paid without a swap: the hop says so, the address stays open.
                    plan.services.setdefault(t.to_address, label_verdict)
                else:
                    verdicts.setdefault(t.to_address, label_verdict)
            elif target is not None and (copied := target.copied) is not None:
                status, reason = copied
        evidence = None
        if (utxo_plan is not None and st.id in utxo_plan.change
                and status == HopStatus.FOLLOWED and reason == Reason.FLAGGED_FUNDS):
            reason, evidence = Reason.CHANGE, utxo_plan.change[st.id]
        plan.add(a, HopRow(transfer_id=st.id, from_addr=a, to_addr=t.to_address, asset=o.asset,
                           block_number=t.block_number, depth=depth, amount=o.amount, share=share, kind=str(t.kind),
                           status=status, reason=reason, parents=o.parents, evidence=evidence), quiet=quiet)

    if utxo_plan is not None and utxo_plan.entries:
        coinjoin_hops(trace, plan, utxo_plan, facts.outs, by_addr, labels, known)
    for owner, others in (utxo_plan.cospent.items() if utxo_plan is not None else ()):
        v = verdicts[owner]
        verdicts[owner] = replace(v, evidence={**(v.evidence or {}), "co_spent_with": others[:MAX_DESTINATIONS]})
    return plan
