"""Labels: claims about addresses (who holds them, what they are) with their validity over time, and
the category vocabulary every importer maps its upstream words onto.

The engine decides exits from categories, screening asks for "sanctioned" without knowing which list
said so; tracer.labels.vocab maps upstream words and spellings onto these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class Category(StrEnum):
    EXCHANGE = "exchange"  # hot/cold wallets of a custodial exchange; evidence.wallet says which
    DEPOSIT_ADDRESS = "deposit_address"  # one customer's address at an exchange (found by behaviour)
    OTC = "otc"
    PAYMENT_PROCESSOR = "payment_processor"
    MIXER = "mixer"
    DEX = "dex"
    BRIDGE = "bridge"
    SWAP_SERVICE = "swap_service"  # instant swappers (FixedFloat, ChangeNOW, eXch, SideShift...)
    SANCTIONED = "sanctioned"
    HACKER = "hacker"
    SCAM = "scam"
    RANSOMWARE = "ransomware"
    DEFI = "defi"
    OTHER = "other"


CATEGORIES: frozenset[str] = frozenset(c.value for c in Category)

# Where money meets someone who knows the customer: the end of a trace.
OFFRAMP_CATEGORIES: frozenset[str] = frozenset(
    {Category.EXCHANGE, Category.DEPOSIT_ADDRESS, Category.OTC, Category.PAYMENT_PROCESSOR}
)
# Services that receive from many customers and sweep deposit addresses into shared wallets:
# the wallets a deposit address sweeps to.
SWEEP_TARGET_CATEGORIES: frozenset[str] = frozenset(
    {Category.EXCHANGE, Category.OTC, Category.PAYMENT_PROCESSOR, Category.SWAP_SERVICE}
)
# Categories that make an address a risk when money comes from or goes to it.
RISK_CATEGORIES: frozenset[str] = frozenset(
    {Category.SANCTIONED, Category.HACKER, Category.SCAM, Category.RANSOMWARE, Category.MIXER}
)


def utc(value: datetime) -> datetime:
    """Naive datetimes in this codebase mean UTC (list dates are calendar days in UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


@dataclass(frozen=True)
class Label:
    """One claim about an address. `category` is a vocabulary word (Category)."""

    chain: str
    address: str
    entity: str
    category: str
    source: str
    confidence: float = 1.0
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    program: str | None = None
    evidence: dict[str, Any] | None = field(default=None, compare=True)
    created_by: str | None = None

    def __post_init__(self) -> None:
        # A Category member is a str already; store the plain value so labels compare, print and
        # serialise the same whether built from the enum or read back from the database.
        object.__setattr__(self, "category", str(self.category))
        # Fail at construction, not in the middle of a bulk statement.
        if self.category not in CATEGORIES:
            raise ValueError(
                f"label category {self.category!r} is not in the vocabulary; "
                "map it with tracer.labels.vocab.normalize_category"
            )
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"label confidence {self.confidence} outside [0, 1]")
        if not self.entity or not self.source or not self.address or not self.chain:
            raise ValueError("label chain, address, entity and source must be non-empty")
        if self.valid_from is not None and self.valid_to is not None and self.valid_to < self.valid_from:
            raise ValueError(f"label valid_to {self.valid_to} before valid_from {self.valid_from}")

    @property
    def identity(self) -> tuple[str, str, str, str, str]:
        """What the label claims, independent of when: the key its intervals share."""
        return (self.chain, self.address, self.source, self.entity, self.category)

    def valid_at(self, at: datetime) -> bool:
        at = utc(at)
        return (self.valid_from is None or utc(self.valid_from) <= at) and (
            self.valid_to is None or at < utc(self.valid_to)
        )


@dataclass(frozen=True)
class StoredLabel:
    """A label row with its id and the list (scope) that reconciles it."""

    id: int
    label: Label
    scope: str | None


@dataclass(frozen=True)
class LabelEvent:
    """One change in a label row's history: added, changed, delisted, relisted."""

    label_id: int
    event: str
    at: datetime | None
    import_id: int | None
    details: dict[str, Any] | None
    created_at: datetime


@dataclass(frozen=True)
class ImportRecord:
    """One import of a label file (a list, a tagpack, the default set)."""

    id: int
    source: str
    scope: str | None
    format: str
    file_name: str | None
    file_sha256: str
    list_date: datetime | None
    stats: dict[str, Any]
    started_at: datetime
    finished_at: datetime | None
