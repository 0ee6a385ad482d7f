"""Bridges in reverse for backward traces (issue 20): a payout a walked wallet received from a
bridge goes back to the deposit on the other chain that the payout's own event names, and the walk
goes on there from the depositor.

Only payouts that name their deposit are followed back: THORChain's TransferOut memo
`OUT:<inbound hash>`, an Across fill's origin chain and deposit id, a Wormhole redeem's emitter
chain, emitter and sequence (bridges.payout_memo spells them). The deposit side is found among the
other chains' bridge deposit events in the trace's time window there and matched by the forward
rule (bridges.memo_names / bridges.deposit_ref): both are certain (confidence 1), as forward. A
payout matched forward by timing alone names nothing and stays what it was (its payer is walked or
is a source).

The window on the origin chain covers the same times as the trace's window on the payout's chain
(the blocks at its first and last block's times), so every worker reads the same blocks.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from tracer.chains.protocols import WindowSource
from tracer.domain.records import ChainWindow, StoredTransfer
from tracer.domain.transfers import TransferQuery
from tracer.engine import bridges
from tracer.engine.backward_links import BridgeCrossing
from tracer.engine.service import block_at_time
from tracer.engine.step.follow_bridges import recorded_window
from tracer.engine.step.gather import StepContext
from tracer.engine.step.plan import TraceInfo
from tracer.store import traces as store

log = logging.getLogger("tracer.worker")

# The payout events that name their deposit (bridges.PAYOUT_TOPICS leaves out the Across fills,
# which the forward scan of service events already reads as Across's).
_NAMING = (bridges.THORCHAIN_TRANSFER_OUT, *bridges.ACROSS_FILLS, bridges.WORMHOLE_REDEEMED)


async def link_back(ctx: StepContext, trace: TraceInfo, inflows: Sequence[StoredTransfer]) -> list[BridgeCrossing]:
    """The deposits named by the bridge payouts among `inflows` (transfers into walked wallets)."""
    client = ctx.chains.get(trace.chain)
    others = [c for c in sorted(ctx.chains) if c != trace.chain and isinstance(ctx.chains[c], WindowSource)]
    if client is None or not inflows or not others or not isinstance(client, WindowSource):
        return []
    lo = min(st.transfer.block_number for st in inflows)
    hi = max(st.transfer.block_number for st in inflows)
    logs = await client.logs(None, [list(_NAMING)], lo, hi)
    txs = {lg.tx_hash for lg in logs}
    refs: dict[int, str] = {}  # payout transfer id -> what it says of its deposit
    for st in inflows:
        t = st.transfer
        if t.tx_hash not in txs:
            continue
        for lg in logs:
            if lg.tx_hash == t.tx_hash and (said := bridges.payout_memo(lg, t.to_address)) is not None:
                refs[st.id] = said[1]
                break
    if not refs:
        return []
    times = await client.block_times([trace.from_block, trace.to_block])
    # The deposits are looked for from the window's start here, or a day before the earliest
    # payout if that is earlier (the far chain's history may begin after the deposit).
    paid = min(st.transfer.block_time for st in inflows if st.id in refs)
    since = min(times.get(trace.from_block, paid), paid - bridges.PAYOUT_WINDOW) if paid >= 0 else \
        times.get(trace.from_block, 0)
    by_id = {st.id: st for st in inflows}
    out: list[BridgeCrossing] = []
    for chain in others:
        far = ctx.chains[chain]
        assert isinstance(far, WindowSource)
        window = await _span(ctx, trace, chain, far, since, times[trace.to_block])
        deposits = await ctx.chains[chain].logs(None, [list(bridges.BRIDGE_TOPICS)], window.from_block,
                                                window.to_block)
        named: dict[int, tuple[bridges.BridgeExit, str, int]] = {}
        for lg in deposits:
            ex = bridges.decode(lg)
            if ex is None:
                continue
            ref = bridges.deposit_ref(ex, chain)
            for pid, names in refs.items():
                if pid not in named and (bridges.memo_names(names, ex.tx_hash) or (ref is not None and names == ref)):
                    named[pid] = (ex, lg.address, lg.block_number)
        if not named:
            continue
        async with ctx.pool.acquire() as conn:
            window = await store.open_chain_window(conn, trace.id, chain, window.from_block, window.to_block)
        found = await _deposit_transfers(ctx, chain, far, {ex.tx_hash: (ex, addr, block)
                                                           for ex, addr, block in named.values()})
        for pid, (ex, _, _) in sorted(named.items()):
            dep = found.get(ex.tx_hash)
            if dep is None:
                continue
            method = bridges.MATCH_MEMO if ex.protocol == "THORChain" else bridges.MATCH_ID
            confidence = bridges.CONFIDENCE[method]
            d = dep.transfer
            evidence = {"bridge": True, "protocol": ex.protocol, "match": method, "confidence": confidence,
                        "payout_memo": refs[pid], "deposit": {"chain": chain, "tx_hash": d.tx_hash,
                                                              "position": d.position, "from": d.from_address,
                                                              "transfer_id": dep.id}}
            out.append(BridgeCrossing(by_id[pid], dep, chain, confidence, evidence))
        refs = {pid: r for pid, r in refs.items() if pid not in named}
        if not refs:
            break
    log.info("event=bridge_backward trace=%d chain=%s payouts=%d linked=%d", trace.id, trace.chain,
             len(out) + len(refs), len(out))
    return out


async def _span(ctx: StepContext, trace: TraceInfo, chain: str, client: WindowSource, since: int,
                until: int) -> ChainWindow:
    """The trace's window on `chain`: the one recorded, else the blocks of the same times (opened
    by the caller only when a deposit is found there)."""
    window, head, start = await recorded_window(ctx, trace.id, chain, client, max(0, since))
    if window is not None:  # its end is fixed by the first crossing; an earlier payout moves its start back
        return ChainWindow(chain, min(start, window.from_block), window.to_block)
    end = await block_at_time(client, until, head, after=False)
    return ChainWindow(chain, min(start, end), max(start, end))


async def _deposit_transfers(ctx: StepContext, chain: str, client: Any,
                             wanted: dict[str, tuple[bridges.BridgeExit, str, int]]) -> dict[str, StoredTransfer]:
    """tx hash -> the deposit's transfer (the largest the depositor paid the bridge in it), read
    from the node for the deposit event's block and stored like any transfer."""
    blocks: dict[int, set[str]] = defaultdict(set)
    receivers: set[str] = set()
    for tx, (ex, addr, block) in wanted.items():
        # Wormhole's money goes to the token bridge (the service), not the core that logs.
        receivers.update(a for a in (ex.service, addr) if a)
        blocks[block].add(tx)
    found: dict[str, StoredTransfer] = {}
    for block, txs in sorted(blocks.items()):
        fetched = await client.transfers(TransferQuery(sorted(receivers), block, block, outgoing=False, incoming=True))
        async with ctx.pool.acquire() as conn, conn.transaction():
            await store.store_transfers(conn, fetched)
        async with ctx.pool.acquire() as conn:
            stored = await store.load_transfers(conn, chain, sorted(receivers), block, block)
        for st in stored:
            t = st.transfer
            if t.tx_hash in txs and t.to_address in receivers and t.from_address not in receivers:
                old = found.get(t.tx_hash)
                if old is None or t.amount > old.transfer.amount:
                    found[t.tx_hash] = st
    return found
