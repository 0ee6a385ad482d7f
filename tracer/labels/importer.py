"""Import a label file: detect its format, parse it, and apply it with provenance and history.

Applying a complete list (scope set: the OFAC formats) reconciles it against what the database
already holds for that list:

- listed now and open in the database: unchanged (descriptive fields refreshed, old values kept
  in a 'changed' event);
- listed now, never seen: added; valid_from is the list's own listing date if it has one, else
  the list's date when the scope already had rows (it appeared since the last list), else NULL
  (first import: listed since before we know);
- listed now, seen before but closed: relisted as a new interval;
- open in the database, absent from this list: delisted, valid_to = the list's date;
- the list itself says it was delisted (a history file): closed at that date.

Nothing is deleted, nothing is overwritten without an event holding the old value, a list older
than the newest one already imported for its scope is refused, and re-importing the same bytes
is a no-op. Partial sources (tagpacks, CSV) are upserted and never delist anything.
"""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from tracer.addresses import show_tron
from tracer.domain.labels import Label, StoredLabel
from tracer.labels.csvfile import REQUIRED as CSV_REQUIRED
from tracer.labels.csvfile import parse_label_csv
from tracer.labels.formats import FORMATS
from tracer.labels.ofac import (
    FLAT_COLUMNS,
    parse_asset_list,
    parse_ofac_flat,
    parse_ofac_json,
    parse_sdn_advanced,
    parse_sdn_xml,
)
from tracer.labels.parsed import LabelImportError, ParsedList, sha256_file
from tracer.labels.tagpacks import parse_tagpack_csv, parse_tagpack_yaml
from tracer.nesting import too_deep
from tracer.store import label_imports
from tracer.store import labels as store
from tracer.store.sql import Conn

_MAX_NESTING = 200  # label files nest a few levels; an OFAC JSON entry is four
#: Evidence kept with one label, as JSON. An OFAC entry's evidence is a few hundred bytes and a
#: tagpack's context a few KiB; a bigger one is a file built to bloat every read of the address.
MAX_EVIDENCE_BYTES = 64 << 10


@dataclass
class ImportResult:
    file: str
    format: str
    source: str
    scope: str | None
    list_date: datetime | None
    import_id: int | None = None
    duplicate_of: int | None = None  # an earlier import of the same bytes: nothing was done
    stats: dict[str, Any] = field(default_factory=dict)


def detect_format(path: Path) -> str:
    """Guess a file's format from its name and first bytes."""
    name = path.name.lower()
    with path.open("rb") as fh:
        head = fh.read(8192).decode("utf-8", errors="replace")
    if name.startswith("sanctioned_addresses_") and name.endswith((".txt", ".json")):
        return "ofac-asset-list"
    if name.endswith(".xml") or head.lstrip().startswith("<"):
        if "<sdnList" in head:
            return "sdn-xml"
        if "<Sanctions" in head:
            return "sdn-advanced"
        raise LabelImportError(f"{path}: XML but neither <sdnList> nor <Sanctions>")
    if name.endswith((".yaml", ".yml")):
        return "tagpack"
    if name.endswith(".json"):
        if '"addresses"' in head:
            return "ofac-json"
        raise LabelImportError(f"{path}: JSON without an 'addresses' object")
    first = next((line for line in head.splitlines() if line.strip() and not line.startswith("#")), "")
    columns = {c.strip() for c in first.split(",")}
    if FLAT_COLUMNS <= columns:
        return "ofac-flat"
    if {"tagpack", "address", "currency", "label"} <= columns:
        return "tagpack"
    if set(CSV_REQUIRED) <= columns:
        return "csv"
    raise LabelImportError(f"{path}: cannot tell the format; pass --format")


def parse_file(path: Path, fmt: str = "auto", list_date: datetime | None = None) -> ParsedList:
    """Parse without touching the database. `list_date` overrides the file's own date."""
    if fmt == "auto":
        fmt = detect_format(path)
    if too_deep(path.read_bytes(), _MAX_NESTING):  # before a parser recurses into it (see tracer.nesting)
        raise LabelImportError(f"{path.name}: malformed {fmt} file: nested deeper than {_MAX_NESTING} levels")
    try:
        parsed = _parse(path, fmt, list_date)
    except LabelImportError:
        raise
    except (ET.ParseError, yaml.YAMLError, csv.Error, UnicodeDecodeError, json.JSONDecodeError) as exc:
        # A damaged file: say so with the parser's position, never a traceback.
        raise LabelImportError(f"{path.name}: malformed {fmt} file: {exc}") from None
    except (KeyError, TypeError, AttributeError, IndexError, ValueError, RecursionError) as exc:
        # Well-formed syntax in the wrong shape (a list where the format has an object, a number
        # where it has text): still the file's fault, not ours.
        raise LabelImportError(
            f"{path.name}: malformed {fmt} file: unexpected structure ({type(exc).__name__}: {str(exc)[:200]})"
        ) from None
    _refuse_nul(parsed, path.name)
    _refuse_bloat(parsed, path.name)
    if list_date is not None:
        parsed.list_date = list_date
    return parsed


def _refuse_nul(parsed: ParsedList, name: str) -> None:
    """Postgres text cannot hold NUL: a file carrying one (raw, or JSON's \\u0000) is refused here
    rather than failing half-way through the database writes."""
    def bad(text: str | None) -> bool:
        return text is not None and "\x00" in text

    for lb in [*parsed.labels, *parsed.case_lost]:
        if any(bad(v) for v in (lb.chain, lb.address, lb.entity, lb.category, lb.source, lb.program)) or (
                lb.evidence is not None and "\\u0000" in json.dumps(lb.evidence)):
            raise LabelImportError(f"{name}: malformed {parsed.format} file: a NUL character in the entry "
                                   f"for {lb.address.replace(chr(0), '')!r}")
    for address, reason in parsed.invalid:
        if bad(address) or bad(reason):
            raise LabelImportError(f"{name}: malformed {parsed.format} file: a NUL character in an address")
    if any(bad(n) for n in parsed.notes):
        raise LabelImportError(f"{name}: malformed {parsed.format} file: a NUL character")


def _refuse_bloat(parsed: ParsedList, name: str) -> None:
    for lb in [*parsed.labels, *parsed.case_lost]:
        if lb.evidence is not None:
            size = len(json.dumps(lb.evidence, ensure_ascii=False).encode("utf-8"))
            if size > MAX_EVIDENCE_BYTES:
                raise LabelImportError(f"{name}: the evidence of the entry for {lb.address!r} is {size} bytes of JSON; "
                                       f"at most {MAX_EVIDENCE_BYTES} are kept per label")


def _parse(path: Path, fmt: str, list_date: datetime | None) -> ParsedList:
    if fmt == "sdn-xml":
        parsed = parse_sdn_xml(path)
    elif fmt == "sdn-advanced":
        parsed = parse_sdn_advanced(path)
    elif fmt == "ofac-json":
        parsed = parse_ofac_json(path)
    elif fmt == "ofac-flat":
        parsed = parse_ofac_flat(path)
    elif fmt == "ofac-asset-list":
        parsed = parse_asset_list(path, list_date)
    elif fmt == "tagpack":
        parsed = parse_tagpack_csv(path) if path.suffix.lower() == ".csv" else parse_tagpack_yaml(path)
    elif fmt == "csv":
        parsed = parse_label_csv(path)
    else:
        raise LabelImportError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
    return parsed


async def import_file(
    conn: Conn,
    path: Path,
    fmt: str = "auto",
    *,
    list_date: datetime | None = None,
    created_by: str | None = None,
) -> ImportResult:
    """Parse and apply one file in one transaction."""
    parsed = parse_file(path, fmt, list_date)
    return await apply_parsed(
        conn, parsed, file_name=path.name, file_sha256=sha256_file(path), created_by=created_by
    )


async def apply_parsed(
    conn: Conn,
    parsed: ParsedList,
    *,
    file_name: str | None,
    file_sha256: str,
    created_by: str | None = None,
) -> ImportResult:
    result = ImportResult(
        file=file_name or "", format=parsed.format, source=parsed.source, scope=parsed.scope,
        list_date=parsed.list_date,
    )
    if created_by:
        parsed.labels = [replace(lb, created_by=lb.created_by or created_by) for lb in parsed.labels]
    async with conn.transaction():
        if parsed.scope is not None:
            await label_imports.lock_scope(conn, parsed.scope)
        previous = await label_imports.find_import(conn, file_sha256, parsed.scope)
        if previous is not None:
            result.duplicate_of = previous.id
            result.stats = {"duplicate_of": previous.id}
            return result
        if parsed.scope is not None:
            if parsed.list_date is None:
                raise LabelImportError(
                    f"{file_name}: a {parsed.format} list needs its date to reconcile; "
                    "pass --list-date YYYY-MM-DD"
                )
            latest = await label_imports.latest_list_date(conn, parsed.scope)
            if latest is not None and parsed.list_date < latest:
                raise LabelImportError(
                    f"{file_name}: list dated {parsed.list_date.date()} is older than the "
                    f"{latest.date()} list already imported for {parsed.scope}; importing it would "
                    "delist everything added since"
                )
        import_id = await label_imports.begin_import(
            conn, source=parsed.source, scope=parsed.scope, format=parsed.format, file_name=file_name,
            file_sha256=file_sha256, list_date=parsed.list_date, created_by=created_by,
        )
        result.import_id = import_id
        stats: dict[str, Any] = {
            "parsed": len(parsed.labels), "invalid": len(parsed.invalid), "case_lost": len(parsed.case_lost),
        }
        if parsed.invalid:
            stats["invalid_examples"] = [f"{a}: {r}" for a, r in parsed.invalid[:10]]
        if parsed.scope is None:
            stats["upserted"] = await store.upsert_labels(conn, parsed.labels, import_id=import_id)
        else:
            stats.update(await _reconcile(conn, parsed, import_id))
        await label_imports.finish_import(conn, import_id, stats)
        result.stats = stats
    return result


def _changed(old: Label, new: Label) -> bool:
    if new.program is not None and new.program != old.program:
        return True
    if new.confidence != old.confidence:
        return True
    if old.valid_from is None and new.valid_from is not None:
        return True
    if new.evidence:
        have = old.evidence or {}
        # Compare as JSON: the database hands back lists where we built tuples, etc.
        return any(_json(have.get(k)) != _json(v) for k, v in new.evidence.items())
    return False


def _union_assets(old: Label, new: Label) -> Label:
    """Formats disagree on how many features they keep per address (the flat CSV keeps one, the
    JSON all): the features an address was listed under only grow, so a list naming fewer is not
    a change worth an event."""
    before = (old.evidence or {}).get("assets")
    after = (new.evidence or {}).get("assets")
    if not isinstance(before, list) or not isinstance(after, list):
        return new
    return replace(new, evidence={**(new.evidence or {}), "assets": sorted({*before, *after})})


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


async def _reconcile(conn: Conn, parsed: ParsedList, import_id: int) -> dict[str, int]:
    assert parsed.scope is not None and parsed.list_date is not None
    when = parsed.list_date
    existing = await label_imports.labels_in_scope(conn, parsed.scope)
    by_identity: dict[tuple[str, ...], list[StoredLabel]] = defaultdict(list)
    by_lower: dict[tuple[str, ...], list[StoredLabel]] = defaultdict(list)
    for row in existing:
        by_identity[row.label.identity].append(row)
        lb = row.label
        # Tron is stored as hex: its lowercased T... spelling is compared with the shown form.
        by_lower[(lb.chain, show_tron(lb.address).lower(), lb.source, lb.entity, lb.category)].append(row)
    had_rows = bool(existing)

    seen: set[int] = set()
    added: list[Label] = []
    relisted: list[Label] = []
    revisions: list[tuple[int, Label]] = []
    closures: list[tuple[int, datetime]] = []
    unchanged = 0
    known_history = 0

    for new in parsed.labels:
        rows = by_identity.get(new.identity, [])
        open_row = next((r for r in rows if r.label.valid_to is None), None)
        if new.valid_to is None:
            if open_row is not None:
                seen.add(open_row.id)
                new = _union_assets(open_row.label, new)
                if _changed(open_row.label, new):
                    revisions.append((open_row.id, new))
                else:
                    unchanged += 1
            elif rows:
                last_to = max(r.label.valid_to for r in rows if r.label.valid_to is not None)
                if new.valid_from is not None and new.valid_from >= last_to:
                    start = new.valid_from
                else:
                    start = max(when, last_to)
                relisted.append(replace(new, valid_from=start))
            else:
                first: datetime | None = new.valid_from
                if first is None and had_rows:
                    first = when  # appeared since the previous list
                added.append(replace(new, valid_from=first))
        else:
            # The list's own history says this claim ended at new.valid_to.
            if open_row is not None:
                seen.add(open_row.id)
                closures.append((open_row.id, new.valid_to))
            elif any(_overlaps(r.label, new) for r in rows):
                known_history += 1
            else:
                added.append(new)

    # Addresses the upstream lowercased: they confirm an existing row (matched case-insensitively)
    # so a list in that form does not delist them, but cannot create one with a guessed case.
    case_lost_unmatched = 0
    for new in parsed.case_lost:
        key = (new.chain, new.address.lower(), new.source, new.entity, new.category)
        rows = [r for r in by_lower.get(key, []) if r.label.valid_to is None]
        if not rows:
            case_lost_unmatched += 1
            continue
        seen.update(r.id for r in rows)
        if new.valid_to is not None:
            closures.extend((r.id, new.valid_to) for r in rows)

    for row in existing:
        if row.label.valid_to is None and row.id not in seen:
            closures.append((row.id, when))

    stats = {
        "added": await label_imports.insert_intervals(conn, added, scope=parsed.scope, import_id=import_id),
        "relisted": await label_imports.insert_intervals(
            conn, relisted, scope=parsed.scope, import_id=import_id, event="relisted"
        ),
        "delisted": await label_imports.close_intervals(conn, closures, import_id=import_id),
        "changed": await label_imports.revise_intervals(conn, revisions, import_id=import_id),
        "unchanged": unchanged,
        "known_history": known_history,
        "case_lost_unmatched": case_lost_unmatched,
    }
    return stats


_MIN = datetime.min.replace(tzinfo=UTC)
_MAX = datetime.max.replace(tzinfo=UTC)


def _overlaps(a: Label, b: Label) -> bool:
    return max(a.valid_from or _MIN, b.valid_from or _MIN) < min(a.valid_to or _MAX, b.valid_to or _MAX)
