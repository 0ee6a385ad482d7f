"""Plain label CSV: `chain,address,entity,category,source` and optional columns.

Optional columns: confidence, valid_from, valid_to, program, evidence (a JSON object), scope,
created_by. The shipped default set uses the same format with every column, so one reader serves
both a user's own list and the default set. Lines starting with '#' are comments.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tracer.addresses import InvalidAddress
from tracer.domain.labels import Label
from tracer.labels.parsed import LabelImportError, ParsedList, parse_date
from tracer.labels.vocab import normalize_address, normalize_category, normalize_chain

REQUIRED = ("chain", "address", "entity", "category", "source")
COLUMNS = (*REQUIRED, "confidence", "valid_from", "valid_to", "program", "evidence", "scope")


def _rows(text: str) -> csv.DictReader[str]:
    lines = [line for line in text.splitlines(keepends=True) if not line.lstrip().startswith("#")]
    return csv.DictReader(io.StringIO("".join(lines)))


def read_label_csv(
    path: Path, *, default_source: str | None = None
) -> tuple[list[tuple[Label, str | None]], list[tuple[str, str]]]:
    """Labels with their scope column, and the rows refused for a malformed address."""
    reader = _rows(path.read_text(encoding="utf-8"))
    missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
    if missing and not (missing == ["source"] and default_source):
        raise LabelImportError(f"{path}: missing columns {missing} (need {','.join(REQUIRED)})")
    out: list[tuple[Label, str | None]] = []
    invalid: list[tuple[str, str]] = []
    for n, row in enumerate(reader, start=2):
        try:
            out.append(row_to_label(row, default_source))
        except InvalidAddress as exc:
            invalid.append((row.get("address") or "", exc.reason))
        except (ValueError, LabelImportError) as exc:
            raise LabelImportError(f"{path}:{n}: {exc}") from exc
    return out, invalid


def parse_label_csv(path: Path, *, default_source: str | None = None) -> ParsedList:
    """A user's label CSV: added or refreshed, never reconciled (it is not a complete list)."""
    rows, invalid = read_label_csv(path, default_source=default_source)
    return ParsedList(
        format="csv", source=default_source or path.stem, scope=None, list_date=None,
        labels=[label for label, _ in rows], invalid=invalid,
    )


def row_to_label(row: dict[str, Any], default_source: str | None = None) -> tuple[Label, str | None]:
    chain = normalize_chain(row.get("chain"))
    address = normalize_address(chain, str(row.get("address") or ""))
    category, extra = normalize_category(row.get("category"))
    evidence: dict[str, Any] | None = None
    raw = (row.get("evidence") or "").strip()
    if raw:
        value = json.loads(raw)
        evidence = value if isinstance(value, dict) else {"value": value}
    if extra:
        evidence = {**extra, **(evidence or {})}
    confidence = float(row["confidence"]) if (row.get("confidence") or "").strip() else 1.0
    label = Label(
        chain=chain, address=address, entity=str(row.get("entity") or "").strip(), category=category,
        source=str(row.get("source") or default_source or "").strip(), confidence=confidence,
        valid_from=parse_date(row.get("valid_from")), valid_to=parse_date(row.get("valid_to")),
        program=(row.get("program") or "").strip() or None, evidence=evidence,
        created_by=(row.get("created_by") or "").strip() or None,
    )
    return label, (row.get("scope") or "").strip() or None


def _date(value: Any) -> str:
    return "" if value is None else value.date().isoformat()


def write_label_csv(rows: Iterable[tuple[Label, str | None]], out: io.TextIOBase | Any) -> int:
    """Write labels (with their scope) in the full column set; returns rows written."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    n = 0
    for label, scope in rows:
        writer.writerow([
            label.chain, label.address, label.entity, label.category, label.source,
            f"{label.confidence:g}", _date(label.valid_from), _date(label.valid_to), label.program or "",
            json.dumps(label.evidence, sort_keys=True, separators=(",", ":")) if label.evidence else "",
            scope or "",
        ])
        n += 1
    return n
