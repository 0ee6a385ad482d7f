"""What an address is to a trace: an off-ramp, a service to stop at, or a wallet to follow.

Pure decisions over data the worker has already fetched; no I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from tracer.chains.records import Transfer
from tracer.engine.policy import Policy

EXCHANGE_CATEGORIES = frozenset({"exchange", "hot_wallet", "deposit_address"})


class LabelLike(Protocol):
    @property
    def entity(self) -> str: ...
    @property
    def category(self) -> str: ...
    @property
    def source(self) -> str: ...


@dataclass(frozen=True)
class Verdict:
    role: str  # followed | exit | stopped
    reason: str
    entity: str | None = None
    category: str | None = None
    evidence: dict[str, Any] | None = field(default=None)

    @property
    def hop_status(self) -> str:
        return self.role


FOLLOW = Verdict("followed", "flagged funds")


def by_label(labels: Sequence[LabelLike], policy: Policy) -> Verdict | None:
    """An exit or a stop decided by a label alone (the strongest label wins)."""
    for label in labels:
        if label.category in policy.stop_categories:
            return Verdict("exit", f"label:{label.source}", label.entity, label.category)
    for label in labels:
        if label.category in policy.through_categories:
            # Mixers, swaps and bridges are followed by their own linkers; until one claims the
            # money, the trace records that it entered the service.
            return Verdict("stopped", f"entered {label.category}", label.entity, label.category)
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
    if len(senders) >= policy.hub_in_degree or len(peers) >= policy.hub_degree:
        return Verdict("stopped", "hub", None, "unlabelled_service",
                       {"senders": len(senders), "counterparties": len(peers)})
    return None


def deposit_address(
    address: str,
    transfers: Sequence[Transfer],
    exchange_labels: Mapping[str, Sequence[LabelLike]],
    policy: Policy,
) -> Verdict | None:
    """An exchange deposit address, recognised by sweeping what it receives to one exchange.

    Most deposit addresses are used once: one deposit, one sweep. What matters is that
    (nearly) everything that leaves goes to one exchange's wallets soon after arriving.
    """
    ordered = sorted(transfers, key=lambda t: t.order)
    received: dict[str, int] = {}
    last_in: dict[str, int] = {}
    sent: dict[str, int] = {}
    swept: dict[str, int] = {}
    sweeps: list[str] = []
    entities: dict[str, int] = {}
    for t in ordered:
        if t.to_address == address and t.from_address != address:
            received[t.asset] = received.get(t.asset, 0) + t.amount
            last_in[t.asset] = t.block_number
        elif t.from_address == address and t.to_address != address:
            sent[t.asset] = sent.get(t.asset, 0) + t.amount
            labels = [lb for lb in exchange_labels.get(t.to_address, ()) if lb.category in EXCHANGE_CATEGORIES]
            arrived = last_in.get(t.asset)
            if labels and arrived is not None and t.block_number - arrived <= policy.sweep_blocks:
                swept[t.asset] = swept.get(t.asset, 0) + t.amount
                sweeps.append(t.tx_hash)
                entities[labels[0].entity] = entities.get(labels[0].entity, 0) + 1
    if not sweeps or len(entities) != 1:
        return None
    total_sent = sum(sent.values())
    total_swept = sum(swept.values())
    total_received = sum(received.values())
    # Everything that left went to the exchange, and it left most of what came in.
    if total_swept * 100 < total_sent * 95 or total_swept * 100 < total_received * 50:
        return None
    entity = next(iter(entities))
    return Verdict("exit", "deposit_address", entity, "deposit_address",
                   {"source": "behaviour", "sweeps": sweeps[:20], "swept_share": round(total_swept / total_sent, 4)})
