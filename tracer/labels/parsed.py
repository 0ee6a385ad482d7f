"""What a parser hands the importer: labels plus what the list is (source, scope, date).

`scope` names a complete list: importing a newer version of it may delist the rows it no longer
contains. Parsers of partial sources (tagpacks, plain CSV) leave it None, so they only add.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from tracer.domain.labels import Label


class LabelImportError(ValueError):
    """A file that cannot be imported as asked (unknown format, missing list date, stale list)."""


@dataclass
class ParsedList:
    format: str
    source: str
    scope: str | None
    list_date: datetime | None
    labels: list[Label] = field(default_factory=list)
    # Addresses an upstream lowercased although their chain is case-sensitive (base58): they can
    # still confirm an existing row case-insensitively, but never create one.
    case_lost: list[Label] = field(default_factory=list)
    invalid: list[tuple[str, str]] = field(default_factory=list)  # (address, reason)
    notes: list[str] = field(default_factory=list)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def day(value: date | datetime) -> datetime:
    """A calendar day as midnight UTC (list dates have no time of day)."""
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


def parse_date(text: str | None) -> datetime | None:
    """Dates as upstreams write them: 2025-03-21, 03/21/2025 (OFAC), 2025-03-21T04:43:26Z."""
    if text is None:
        return None
    value = str(text).strip()
    if not value:
        return None
    for fmt in ("%Y-%m-%d", "%m/%d/%Y", "%d %b %Y", "%Y/%m/%d"):
        try:
            return datetime.strptime(value, fmt).replace(tzinfo=UTC)
        except ValueError:
            pass
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise LabelImportError(f"unreadable date {value!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def next_day(value: datetime) -> datetime:
    return value + timedelta(days=1)
