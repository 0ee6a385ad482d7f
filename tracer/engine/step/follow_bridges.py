"""Bridges: a deposit into a bridge is a cross-chain exit whose evidence names the destination
the protocol published; where that chain is configured the trace continues there, the payout
(matched by memo, else by timing, with the confidence that says which) becoming a hop on the
destination chain and its recipient a job of that chain. The router's evidence accumulates
every destination over batches (merge_destinations, under the commit lock)."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from tracer.addresses import InvalidAddress, normalize_address
from tracer.chains.protocols import ChainSource, WindowSource
from tracer.domain.destinations import BridgedPart, Destination, Onward, Payout, merge_destination_lists
from tracer.domain.labels import Category
from tracer.domain.records import ChainWindow, HopRow, StoredTransfer
from tracer.domain.transfers import NATIVE, TransferQuery
from tracer.domain.verdicts import HopStatus, Judged, Reason, Verdict
from tracer.engine import bridges, classify
from tracer.engine.recognised import ServiceLogs, recognised_evidence
from tracer.engine.service import block_at_time
from tracer.engine.step.gather import StepContext
from tracer.engine.step.plan import (
    MAX_DESTINATIONS,
    Continuation,
    Labels,
    StepPlan,
    TraceInfo,
)
from tracer.store import labels as label_store
from tracer.store import traces as store

log = logging.getLogger("tracer.worker")


async def bridge_exits(
    ctx: StepContext, trace: TraceInfo, plan: StepPlan, service_logs: ServiceLogs, labels: Labels,
    known: Mapping[str, Judged],
) -> None:
    """A bridge deposit is a cross-chain exit; the router's evidence lists every destination
    this trace sent money to (merged with what earlier batches found). Where the destination
    chain is configured the payout there continues the trace (`continue_on`)."""
    by_router: dict[str, list[Destination]] = defaultdict(list)
    recognised: dict[str, list[bridges.BridgeExit]] = defaultdict(list)
    for b in plan.bridged:
        router, st, hop_index = b.router, b.st, b.hop_index
        t = st.transfer
        owner, deposit_hop = plan.hops[hop_index]
        entity = next((lb.entity for lb in labels.get(router, ()) if lb.category == Category.BRIDGE), None)
        exits = service_logs.bridge_for(t, labelled=entity is not None)
        if entity is not None and "maya" in entity.lower():
            exits = [bridges.as_maya(ex) for ex in exits]
        recognised[router].extend(exits)
        exits = exits or [bridges.from_label(entity or "bridge", t.tx_hash, t.from_address)]
        crossed = False
        for ex in exits:
            entry = Destination(
                protocol=ex.protocol, tx_hash=ex.tx_hash, chain=ex.dest_chain, address=ex.dest_address,
                sender=t.from_address, asset=t.asset, amount=t.amount, block_number=t.block_number,
                bridged_amount=ex.amount, memo=ex.memo, note=ex.note, deposit_id=ex.deposit_id,
                onward=await continue_on(ctx, trace, plan, owner, st, deposit_hop, ex))
            crossed = crossed or entry.followed
            by_router[router].append(entry)
        if crossed:
            # Followed on the far chain: a crossing, counted once at the exits it reaches there.
            plan.hops[hop_index] = (owner, replace(deposit_hop, status=HopStatus.FOLLOWED, reason=Reason.CROSSING))
            plan.quiet.add(deposit_hop.transfer_id)
    for router, entries in by_router.items():
        old = known.get(router)
        evidence = dict(old.evidence) if old is not None and isinstance(old.evidence, dict) else {}
        merged = merge_destination_lists(destinations_of(evidence), entries)
        name = next((lb.entity for lb in labels.get(router, ()) if lb.category == Category.BRIDGE), None)
        protocols = sorted({d.protocol for d in merged})
        extra: dict[str, Any] = {}
        if recognised.get(router) or evidence.get("recognised_by") == "event":
            # Its own deposit event says what it is and where the money went, label or not.
            extra = recognised_evidence(recognised.get(router, []))
            extra["events"] = sorted({*extra["events"], *evidence.get("events", [])})
            name = name or " / ".join(protocols) + " (recognised by event)"
        plan.verdicts[router] = Verdict(HopStatus.EXIT, Reason.BRIDGE, name, Category.BRIDGE, {
            "cross_chain": True, "protocols": protocols, **extra,
            "destinations": [d.to_json() for d in merged[-MAX_DESTINATIONS:]]})


async def continue_on(
    ctx: StepContext, trace: TraceInfo, plan: StepPlan, owner: str, st: StoredTransfer, deposit_hop: HopRow,
    ex: bridges.BridgeExit,
) -> Onward:
    """Whether the money can be followed on the destination chain (`possible`: the chain is
    configured and the address valid there) and whether it was (`followed`, with the payout
    the destination's incoming transfers gave, matched by memo or by timing)."""
    if ex.dest_chain is None or ex.dest_address is None:
        return Onward(possible=False, note="destination not published by the protocol")
    dest = ex.dest_chain
    if dest == trace.chain:
        return Onward(possible=False, note="same chain: the bridge pays out from its own contracts")
    client = ctx.chains.get(dest)
    if client is None:
        return Onward(possible=False, chain=dest, address=ex.dest_address, note=f"no RPC configured for {dest}")
    try:
        address = normalize_address(dest, ex.dest_address)
    except InvalidAddress as exc:
        return Onward(possible=False, chain=dest, address=ex.dest_address,
                      note=f"not a {dest} address: {exc.reason}")
    if not isinstance(client, WindowSource):
        return Onward(possible=False, chain=dest, address=address,
                      note=f"the {dest} client cannot find blocks by time")
    out = Onward(possible=True, followed=False, chain=dest, address=address)
    if deposit_hop.status != HopStatus.EXIT or deposit_hop.amount <= 0:
        return replace(out, note="the flagged part of the deposit is below the threshold: not followed")
    deposit = st.transfer
    window, start = await _window(ctx, trace, dest, client, deposit.block_time)
    # The payout is matched on the address as stored there (a Tron memo's T... is hex inside).
    match = await _find_payout(ctx, dest, client, address, replace(ex, dest_address=address), deposit.block_time,
                                    start, window, trace.chain)
    if match is None:
        return replace(out, note=(f"no payout to {address} on {dest} within {bridges.PAYOUT_WINDOW // 3600} h "
                                  f"of the deposit (blocks {window.from_block}..{window.to_block})"))
    payout, pm = match
    p = payout.transfer
    amount = bridges.carried(deposit_hop.amount, deposit.amount, p.amount, pm.confidence)
    proof = BridgedPart(trace.chain, deposit.from_address, deposit.tx_hash, deposit.position, st.id, ex.protocol,
                        pm.method, pm.confidence, pm.candidates, amount, ex.memo)
    out = replace(out, payout=Payout(p.tx_hash, p.block_number, p.asset, p.amount, amount, pm.method,
                                     pm.confidence, pm.candidates))
    if pm.confidence < trace.policy.min_link_confidence:
        return replace(out, note=(f"payout found ({pm.method}) but its confidence {pm.confidence} is below "
                                  f"policy.min_link_confidence: not followed"))
    plan.continuations.append(Continuation(owner, dest, payout, deposit_hop.depth + 1, proof))
    return replace(out, followed=True,
                   note=f"followed on {dest}: payout {p.tx_hash} ({pm.method}, confidence {pm.confidence})")


async def recorded_window(
    ctx: StepContext, trace_id: int, chain: str, client: WindowSource, since: int
) -> tuple[ChainWindow | None, int, int]:
    """The trace's window recorded on `chain` (None: none yet), the head it ends at (the node's
    without one) and the first block at or after `since` up to that head, remembered per step
    context: forward continuations and backward crossings ask for the same times."""
    async with ctx.pool.acquire() as conn:
        window = await store.chain_window(conn, trace_id, chain)
    head = window.to_block if window is not None else await client.head()
    key = (chain, since, head)
    if key not in ctx.block_at:
        if len(ctx.block_at) > 10_000:
            ctx.block_at.clear()
        ctx.block_at[key] = await block_at_time(client, since, head, after=True)
    return window, head, ctx.block_at[key]


async def _window(
    ctx: StepContext, trace: TraceInfo, chain: str, client: WindowSource, since: int
) -> tuple[ChainWindow, int]:
    """The trace's window on `chain`, opened (or moved back to `since`) for a continuation,
    and the first block at or after `since` there. The window's end is fixed by the first
    continuation into the chain, so every worker reads the same blocks."""
    window, head, start = await recorded_window(ctx, trace.id, chain, client, since)
    if window is not None and (chain == trace.home or window.from_block <= start):
        # Back on the trace's own chain its window is the trace's; elsewhere it already covers this.
        return window, start
    async with ctx.pool.acquire() as conn:
        return await store.open_chain_window(conn, trace.id, chain, min(start, head), head), start


async def _find_payout(
    ctx: StepContext, chain: str, client: ChainSource, address: str, ex: bridges.BridgeExit, since: int, start: int,
    window: ChainWindow, source: str,
) -> tuple[StoredTransfer, bridges.PayoutMatch] | None:
    """The destination's transfers from the deposit's time (block `start`) to the window's end,
    asked of the node (memos are not kept in Postgres) and cached like any address's; the
    matched payout. On EVM chains what names the deposit is in the payout's event, not in the
    transfer (THORChain's TransferOut memo, the Across fill's deposit id, the Wormhole redeem's
    sequence): one getLogs for this deposit's (`source` is the deposit's chain)."""
    if start > window.to_block:
        return None
    fetched = await client.transfers(TransferQuery([address], start, window.to_block, outgoing=True, incoming=True))
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
    async with ctx.pool.acquire() as conn, conn.transaction():
        await store.store_transfers(conn, fetched)
        await store.set_coverage(conn, chain, [address], start, window.to_block)
    if match is None:
        return None
    t = match.transfer
    async with ctx.pool.acquire() as conn:
        stored = await store.load_transfers(conn, chain, [address], t.block_number, t.block_number)
    found = next((s for s in stored if s.transfer.key == t.key), None)
    return (found, match) if found is not None else None

# ------------------------------------------------------------ mixers: link deposits to withdrawals


async def payout_hops(
    conn: store.Conn, trace: TraceInfo, continuations: Sequence[Continuation]
) -> tuple[list[HopRow], dict[tuple[str, str], Verdict]]:
    """Hops bridge vault -> destination on the destination chains. Every deposit paid out by
    one payout adds what it carries (from this and earlier batches: the hop's evidence keeps
    each deposit's part, so re-running a deposit replaces its part), capped by the payout."""
    ids = sorted({c.payout.id for c in continuations})
    earlier = await store.hop_evidence(conn, trace.id, ids)
    by_payout: dict[int, list[Continuation]] = defaultdict(list)
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
        stored = earlier.get(pid, {}).get("deposits", [])
        parts = {p.key: p for p in (BridgedPart.from_json(d) for d in stored if isinstance(d, Mapping))}
        parts.update({c.deposit.key: c.deposit for c in cs})
        deposits = [parts[k] for k in sorted(parts)]
        amount = min(t.amount, sum(d.carried for d in deposits))
        confidence = max(float(d.confidence) for d in deposits)
        status: str = HopStatus.FOLLOWED  # a label's verdict may replace them
        reason: str = Reason.BRIDGE
        verdict = classify.by_label(labels[chain].get(t.to_address, ()), trace.policy)
        if verdict is not None:
            status, reason = verdict.role, verdict.reason
            remote[(chain, t.to_address)] = verdict
        out.append(HopRow(transfer_id=pid, from_addr=t.from_address, to_addr=t.to_address, asset=t.asset,
                          block_number=t.block_number, depth=min(c.depth for c in cs), amount=amount,
                          share=amount / t.amount if t.amount else 0.0, kind=str(t.kind), status=status,
                          reason=reason, parents=sorted({d.transfer_id for d in deposits})[:8], confidence=confidence,
                          chain=chain, evidence={"bridge": True, "deposits": [d.to_json() for d in deposits]}))
        log.info("event=bridge_continued trace=%d from=%s to=%s payout=%s amount=%d confidence=%.2f", trace.id,
                 trace.chain, chain, t.tx_hash, amount, confidence)
    return out, remote


async def merge_destinations(
    conn: store.Conn, trace: TraceInfo, verdicts: dict[str, Verdict]
) -> dict[str, Verdict]:
    """Bridge evidence accumulates over batches: merge this batch's destinations with those
    committed since we read them (under the commit lock, so none is lost)."""
    routers = sorted(a for a, v in verdicts.items() if v.reason == Reason.BRIDGE and v.evidence)
    if not routers:
        return verdicts
    current = await store.node_verdicts(conn, trace.id, routers, trace.chain)
    out = dict(verdicts)
    for a in routers:
        v = verdicts[a]
        judged = current.get(a)
        old = judged.evidence if judged is not None and isinstance(judged.evidence, dict) else {}
        merged = merge_destination_lists(destinations_of(old), destinations_of(v.evidence))
        evidence = dict(v.evidence or {})
        evidence["destinations"] = [d.to_json() for d in merged[-MAX_DESTINATIONS:]]
        evidence["protocols"] = sorted({d.protocol for d in merged})
        out[a] = replace(v, evidence=evidence)
    return out


def destinations_of(evidence: Mapping[str, Any] | None) -> list[Destination]:
    """The destinations a bridge verdict's evidence lists (stored JSON, perhaps of an older batch)."""
    found = (evidence or {}).get("destinations") or []
    return [Destination.from_json(d) for d in found if isinstance(d, Mapping)]


def all_crossed(v: Verdict) -> bool:
    """A bridge verdict whose every deposit was followed on the far chain."""
    destinations = destinations_of(v.evidence) if v.reason == Reason.BRIDGE else []
    return bool(destinations) and all(d.followed for d in destinations)
