"""UTXO chains: the payer's change and CoinJoins (tracer.engine.utxo holds the heuristics).
utxo_plan reads the whole transactions of a batch's flagged outflows; coinjoin_hops (pure) turns
a wallet's entries into CoinJoins into hops and evidence, reported like a mixer deposit."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace

from tracer.chains.protocols import UtxoSource
from tracer.domain.records import HopRow, Job, StoredTransfer
from tracer.domain.verdicts import FOLLOW, HopStatus, Judged, Reason
from tracer.engine import classify, utxo
from tracer.engine.step.plan import (
    FlaggedOut,
    Labels,
    StepPlan,
    TraceInfo,
)

log = logging.getLogger("tracer.worker")


async def utxo_plan(
    source: UtxoSource, trace: TraceInfo, outs: Sequence[FlaggedOut], timelines: Mapping[str, Sequence[StoredTransfer]],
) -> utxo.Plan:
    """The transactions of the batch's flagged outflows (one request set), read by the change
    and CoinJoin heuristics. Addresses seen before a transaction come from the wallet's own
    history only: what the trace reached meanwhile depends on worker timing."""
    flows = [utxo.Outflow(f.owner, f.st.id, f.st.transfer.tx_hash, f.st.transfer.to_address, f.taint.amount,
                          f.taint.total)
             for f in outs if f.taint.swap is None and f.st.transfer.to_address not in trace.seeds]
    if not flows:
        return utxo.Plan()
    txs = await source.transactions(sorted({f.txid for f in flows}))
    history = {a: [(st.transfer.block_number,
                    st.transfer.to_address if st.transfer.from_address == a else st.transfer.from_address)
                   for st in timelines.get(a, ())] for a in {f.owner for f in flows}}
    return utxo.plan(flows, txs, history, frozenset(), trace.policy.min_link_confidence)


def coinjoin_hops(
    trace: TraceInfo,
    plan: StepPlan,
    entries: utxo.Plan,
    outs: Sequence[FlaggedOut],
    by_addr: Mapping[str, Job],
    labels: Labels,
    known: Mapping[str, Judged],
) -> None:
    """A wallet's flagged money entering a CoinJoin, reported like a mixer deposit: the
    wallet's verdict names the CoinJoin, its pattern and anonymity set; each equal output gets
    a stopped hop ("entered CoinJoin") with its likely share; links at least
    policy.min_link_confidence sure (the wallet's own change) are followed, carrying the
    output's flagged share times the confidence. Hop shares are of the whole output: the
    transfer a hop is written on is only the traced input's part of it."""
    policy = trace.policy
    written = {f.st.id: f for f in outs}
    for entry in entries.entries:
        owner = entry.depositor
        depth = by_addr[owner].depth + 1
        info = entry.info
        head = {"coinjoin": entry.txid, "pattern": info.pattern, "anonymity_set": info.anonymity_set,
                "denomination": str(info.denomination), "flagged_entered": str(entry.flagged),
                "summary": entry.evidence(keep=0)["summary"]}
        for link in entry.outputs:
            tid = entries.transfer_of.get((owner, entry.txid, link.address or ""))
            if tid is None or tid not in written or link.address is None:
                continue  # the wallet's part of this output carried no flagged money
            o, st = written[tid].taint, written[tid].st
            t = st.transfer
            status: str = HopStatus.STOPPED  # a label's or an earlier verdict's may replace them
            reason: str = Reason.ENTERED_COINJOIN
            quiet = True
            if link.followed:
                status, reason, quiet = HopStatus.FOLLOWED, Reason.COINJOIN_LINK, False
                if link.carried < trace.threshold(o.asset):
                    status, reason, quiet = HopStatus.STOPPED, Reason.BELOW_THRESHOLD, True
                else:
                    label_verdict = classify.by_label(labels.get(link.address, ()), policy)
                    target = known.get(link.address)
                    if label_verdict is not None:
                        status, reason = label_verdict.role, label_verdict.reason
                        plan.verdicts.setdefault(link.address, label_verdict)
                    elif target is not None and (copied := target.copied) is not None:
                        status, reason = copied
            evidence = {**head, "vout": link.vout, "kind": link.kind, "output_value": str(link.value),
                        "reasons": list(link.reasons)}
            plan.add(owner, HopRow(transfer_id=st.id, from_addr=owner, to_addr=link.address, asset=o.asset,
                                   block_number=t.block_number, depth=depth, amount=link.carried,
                                   share=link.carried / link.value if link.value else 0.0, kind=str(t.kind),
                                   status=status, reason=reason, parents=o.parents, confidence=link.confidence,
                                   evidence=evidence), quiet=quiet)
        v = plan.verdicts.get(owner, FOLLOW)
        ev = dict(v.evidence or {})
        ev["coinjoins"] = [*ev.get("coinjoins", []), entry.evidence()]
        plan.verdicts[owner] = replace(v, evidence=ev)


def log_entries(trace: TraceInfo, entries: utxo.Plan) -> None:
    for entry in entries.entries:
        log.info("event=coinjoin_entry trace=%d tx=%s pattern=%s anonymity_set=%d flagged=%d linked=%s",
                 trace.id, entry.txid, entry.info.pattern, entry.info.anonymity_set, entry.flagged, entry.linked)
