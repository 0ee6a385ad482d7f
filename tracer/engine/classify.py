"""What an address is to a trace: an off-ramp, a service to stop at or pass through, or a wallet
to follow.

Pure decisions over data the worker has already fetched; no I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tracer.domain.labels import Category, Label
from tracer.domain.transfers import Transfer
from tracer.domain.verdicts import HopStatus, Reason, Verdict, entered, label_reason
from tracer.engine.deposits import BEHAVIOUR_SOURCE, DepositParams, detect_deposit
from tracer.engine.policy import Policy


def by_label(labels: Sequence[Label], policy: Policy) -> Verdict | None:
    """An exit or a stop decided by a label alone (the strongest label wins).

    Services money passes through (`policy.through_categories`): a bridge is a cross-chain exit
    (the worker adds the destination it decodes); a mixer or a DEX is where the trace stops unless
    the worker follows the money through it (a linked mixer withdrawal, a same-transaction swap).
    """
    for label in labels:
        if label.category in policy.stop_categories:
            if label.source == BEHAVIOUR_SOURCE:
                # Recognised earlier (by this or another trace) from its sweeps: say so.
                return Verdict(HopStatus.EXIT, Reason.DEPOSIT_ADDRESS, label.entity, label.category, label.evidence)
            return Verdict(HopStatus.EXIT, label_reason(label.source), label.entity, label.category)
    for label in labels:
        if label.category in policy.through_categories:
            if label.category == Category.BRIDGE:
                return Verdict(HopStatus.EXIT, Reason.BRIDGE, label.entity, label.category)
            return Verdict(HopStatus.STOPPED, entered(label.category), label.entity, label.category)
    return None


def through_category(labels: Sequence[Label], policy: Policy) -> tuple[str, str] | None:
    """(category, entity) when the address is a service money passes through (and no stop label
    outranks it): mixer, bridge, dex, swap_service."""
    if any(label.category in policy.stop_categories for label in labels):
        return None
    for label in labels:
        if label.category in policy.through_categories:
            return label.category, label.entity
    return None


def hub(address: str, transfers: Sequence[Transfer], policy: Policy) -> Verdict | None:
    """An unlabelled service: far more counterparties than any laundering wallet has.

    Degree alone misleads (laundering wallets in real cases pay 100-220 addresses), so the test
    leans on distinct senders: a launderer's wallet is fed by few, a service by many.
    """
    senders: set[str] = set()
    peers: set[str] = set()
    for t in transfers:
        if t.to_address == address:
            senders.add(t.from_address)
            peers.add(t.from_address)
        elif t.from_address == address:
            peers.add(t.to_address)
    if (len(senders) >= policy.hub_in_degree or len(peers) >= policy.hub_degree) and not forwarder(
            address, transfers):
        return Verdict(HopStatus.STOPPED, Reason.HUB, None, "unlabelled_service",
                       {"senders": len(senders), "counterparties": len(peers)})
    return None


def deposit_address(
    address: str,
    transfers: Sequence[Transfer],
    labels: Mapping[str, Sequence[Label]],
    policy: Policy,
) -> Verdict | None:
    """An exchange deposit address, recognised by sweeping what it receives to one exchange
    (tracer.engine.deposits holds the heuristic)."""
    found = detect_deposit(address, transfers, labels, DepositParams(sweep_blocks=policy.sweep_blocks))
    if found is None:
        return None
    evidence = found.evidence()
    evidence["source"] = BEHAVIOUR_SOURCE
    evidence["confidence"] = found.confidence
    return Verdict(HopStatus.EXIT, Reason.DEPOSIT_ADDRESS, found.entity, Category.DEPOSIT_ADDRESS, evidence)


def forwarder(address: str, transfers: Sequence[Transfer]) -> bool:
    """A contract that passes on what it receives inside the same transaction (batch payouts,
    disperse contracts, routers): it holds nothing between transactions, so the haircut model
    follows each transaction exactly and its many counterparties make it busy, not a hub."""
    by_tx: dict[tuple[str, str], list[int]] = {}
    for t in transfers:
        io = by_tx.setdefault((t.tx_hash, t.asset), [0, 0])
        if t.to_address == address and t.from_address != address:
            io[0] += t.amount
        elif t.from_address == address and t.to_address != address:
            io[1] += t.amount
    receiving = [io for io in by_tx.values() if io[0] > 0]
    if not receiving:
        return False
    passed = sum(1 for i, o in receiving if o * 100 >= i * 99)
    return passed * 100 >= len(receiving) * 95
