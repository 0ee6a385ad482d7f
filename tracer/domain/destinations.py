"""Where a bridge deposit went, as a router's verdict keeps it: one Destination per (deposit tx,
destination address) in the evidence's "destinations", each with what the trace did on the far
chain (Onward, the entry's "continue"). On the far chain the payout hop's evidence lists the
deposits it pays out, each a BridgedPart.

The evidence is stored JSON merged with what earlier batches wrote, so from_json reads any row
written before (keys missing or added since) and to_json writes back exactly the keys and values
it read: keys this record does not model ride along in `extra`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Payout:
    """The payout on the destination chain a deposit was matched to."""

    tx_hash: str
    block_number: int
    asset: str
    amount: int  # raw units of the payout
    carried: int  # the flagged part of the deposit it carries on
    match: str  # how it was matched: a memo, a deposit id, timing
    confidence: float
    candidates: int

    def to_json(self) -> dict[str, Any]:
        return {"tx_hash": self.tx_hash, "block_number": self.block_number, "asset": self.asset,
                "amount": str(self.amount), "carried": str(self.carried), "match": self.match,
                "confidence": self.confidence, "candidates": self.candidates}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Payout:
        # Numbers as stored (a confidence of 1 stays 1, not 1.0): the row is written back.
        return cls(str(d.get("tx_hash")), d.get("block_number") or 0, str(d.get("asset")), _int(d.get("amount")),
                   _int(d.get("carried")), str(d.get("match")), d.get("confidence") or 0.0, d.get("candidates") or 0)


@dataclass(frozen=True, slots=True)
class Onward:
    """Whether the money could be followed on the destination chain (`possible`: the chain is
    configured and the address valid there) and whether it was (`followed`, with the payout)."""

    possible: bool
    note: str | None = None
    followed: bool | None = None  # None: not asked (the destination cannot be followed)
    chain: str | None = None
    address: str | None = None
    payout: Payout | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {**self.extra, "possible": self.possible, **_given({
            "followed": self.followed, "chain": self.chain, "address": self.address,
            "payout": self.payout.to_json() if self.payout is not None else None, "note": self.note})}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Onward:
        payout = d.get("payout")
        followed = d.get("followed")
        return cls(
            possible=bool(d.get("possible")), note=_opt_str(d.get("note")),
            followed=None if followed is None else bool(followed), chain=_opt_str(d.get("chain")),
            address=_opt_str(d.get("address")),
            payout=Payout.from_json(payout) if isinstance(payout, Mapping) else None,
            extra={k: v for k, v in d.items() if k not in _ONWARD_KEYS},
        )

    @property
    def carried(self) -> int:
        return self.payout.carried if self.payout is not None else 0


@dataclass(frozen=True, slots=True)
class Destination:
    """One deposit into a bridge: the destination the protocol published (chain and address,
    None when it did not say), the deposit itself and what the trace did on the far chain."""

    protocol: str
    tx_hash: str  # the deposit's transaction
    chain: str | None  # the destination chain
    address: str | None  # the destination address
    sender: str | None = None  # the deposit's sender ("from")
    asset: str | None = None  # the deposited asset
    amount: int | None = None  # the deposit's raw amount
    block_number: int | None = None
    bridged_amount: int | None = None  # what the bridge event says it took
    memo: str | None = None
    note: str | None = None
    deposit_id: int | None = None  # Across deposit id, Wormhole sequence
    onward: Onward | None = None  # "continue"
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str | None]:
        """One entry per (deposit tx, destination address)."""
        return (self.tx_hash, self.address)

    @property
    def followed(self) -> bool:
        """Followed on the destination chain (a crossing, not an exit)."""
        return self.onward is not None and bool(self.onward.followed)

    def rank(self) -> tuple[bool, int]:
        """Taint only grows: of two entries for one key the one carrying more across is current."""
        return (self.followed, self.onward.carried if self.onward is not None else 0)

    def to_json(self) -> dict[str, Any]:
        return {**self.extra, "protocol": self.protocol, "tx_hash": self.tx_hash, "chain": self.chain,
                "address": self.address, **_given({
                    "bridged_amount": _opt_str(self.bridged_amount), "memo": self.memo, "note": self.note,
                    "deposit_id": self.deposit_id, "from": self.sender, "asset": self.asset,
                    "amount": _opt_str(self.amount), "block_number": self.block_number,
                    "continue": self.onward.to_json() if self.onward is not None else None})}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Destination:
        onward = d.get("continue")
        return cls(
            protocol=str(d.get("protocol")), tx_hash=str(d.get("tx_hash")), chain=_opt_str(d.get("chain")),
            address=_opt_str(d.get("address")), sender=_opt_str(d.get("from")), asset=_opt_str(d.get("asset")),
            amount=_opt_int(d.get("amount")), block_number=_opt_int(d.get("block_number")),
            bridged_amount=_opt_int(d.get("bridged_amount")), memo=_opt_str(d.get("memo")),
            note=_opt_str(d.get("note")), deposit_id=_opt_int(d.get("deposit_id")),
            onward=Onward.from_json(onward) if isinstance(onward, Mapping) else None,
            extra={k: v for k, v in d.items() if k not in _DESTINATION_KEYS},
        )


@dataclass(frozen=True, slots=True)
class BridgedPart:
    """One deposit's part of a bridge payout hop on the destination chain (the hop evidence's
    "deposits"): which deposit, how its payout was matched and what of it the payout carries."""

    chain: str  # the deposit's chain
    sender: str  # "from"
    tx_hash: str
    position: str
    transfer_id: int  # the deposit transfer: a parent of the payout hop
    protocol: str
    match: str
    confidence: float
    candidates: int
    carried: int
    memo: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, str]:
        """A deposit processed again replaces its part."""
        return (self.chain, self.tx_hash, self.position)

    def to_json(self) -> dict[str, Any]:
        return {**self.extra, "chain": self.chain, "from": self.sender, "tx_hash": self.tx_hash,
                "position": self.position, "transfer_id": self.transfer_id, "protocol": self.protocol,
                "match": self.match, "confidence": self.confidence, "candidates": self.candidates,
                "carried": str(self.carried), **_given({"memo": self.memo})}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> BridgedPart:
        # Numbers as stored (the hop's evidence is written back with the parts of later batches).
        return cls(str(d.get("chain")), str(d.get("from")), str(d.get("tx_hash")), str(d.get("position")),
                   int(d.get("transfer_id") or 0), str(d.get("protocol")), str(d.get("match")),
                   d.get("confidence") or 0.0, d.get("candidates") or 0, _int(d.get("carried")),
                   _opt_str(d.get("memo")), {k: v for k, v in d.items() if k not in _PART_KEYS})


def merge_destination_lists(old: Sequence[Destination], new: Sequence[Destination]) -> list[Destination]:
    """One entry per (deposit tx, destination), first-seen order. A deposit processed again after
    more flagged money reached it carries more across the bridge; taint only grows, so the entry
    carrying more (followed before not followed) is the current one, whichever batch wrote it."""
    out: dict[tuple[str, str | None], Destination] = {}
    for d in [*old, *new]:
        if d.key not in out or d.rank() >= out[d.key].rank():
            out[d.key] = d
    return list(out.values())


_PART_KEYS = frozenset({"chain", "from", "tx_hash", "position", "transfer_id", "protocol", "match", "confidence",
                        "candidates", "carried", "memo"})
_ONWARD_KEYS = frozenset({"possible", "note", "followed", "chain", "address", "payout"})
_DESTINATION_KEYS = frozenset({"protocol", "tx_hash", "chain", "address", "from", "asset", "amount", "block_number",
                               "bridged_amount", "memo", "note", "deposit_id", "continue"})


def _given(values: Mapping[str, Any]) -> dict[str, Any]:
    """The keys whose value is set: one the record does not have stays out of the written JSON."""
    return {k: v for k, v in values.items() if v is not None}


def _opt_str(v: Any) -> str | None:
    return None if v is None else str(v)


def _opt_int(v: Any) -> int | None:
    return None if v is None else int(v)


def _int(v: Any) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return 0
