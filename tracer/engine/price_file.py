"""Price files (`tracer prices import FILE`): USD prices by date or block, for assets without a
feed and nodes without old state. A file is hostile input: it is read whole, checked whole, and
stored in one transaction or not at all.

CSV with a header naming `asset`, `chain`, `usd` and `date` (YYYY-MM-DD, the UTC day) or `block`
(one of them per row), or JSON: a list of objects with the same keys. `asset` is `native` or the
token's address on that chain; `usd` a positive decimal (the price of one whole coin).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from tracer.addresses import InvalidAddress, normalize_address
from tracer.domain.transfers import NATIVE
from tracer.nesting import too_deep
from tracer.store.prices import PriceRow

MAX_BYTES = 64 << 20
MAX_ROWS = 1_000_000
_MAX_USD = Decimal(10) ** 12
_CHAIN = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_FIELDS = ("asset", "chain", "usd")


class PriceFileError(ValueError):
    """The file is refused; `problems` lists each bad row (at most 20 shown)."""

    def __init__(self, name: str, problems: list[str]) -> None:
        shown = problems[:20] + ([f"… {len(problems) - 20} more"] if len(problems) > 20 else [])
        super().__init__(f"{name}: price file refused, nothing imported: " + "; ".join(shown))
        self.problems = problems


def parse_price_file(path: Path) -> list[PriceRow]:
    name = path.name
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise PriceFileError(name, [f"{size} bytes, at most {MAX_BYTES}"])
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PriceFileError(name, [f"not UTF-8 text ({exc.reason} at byte {exc.start})"]) from None
    if "\x00" in text:
        raise PriceFileError(name, ["contains NUL bytes"])
    stripped = text.lstrip()
    records: list[tuple[str, Any]]
    if stripped.startswith(("[", "{")):
        if too_deep(raw, 8):
            raise PriceFileError(name, ["JSON nested deeper than 8 levels"])
        try:
            doc = json.loads(text, parse_float=Decimal, parse_int=Decimal)
        except ValueError as exc:
            raise PriceFileError(name, [f"malformed JSON: {exc}"]) from None
        if not isinstance(doc, list):
            raise PriceFileError(name, ["JSON must be a list of {date|block, asset, chain, usd} objects"])
        records = [(f"item {i}", item) for i, item in enumerate(doc)]
    else:
        try:
            reader = csv.DictReader(io.StringIO(text, newline=""))
            header = [h.strip().lower() for h in (reader.fieldnames or [])]
            missing = [f for f in _FIELDS if f not in header] + ([] if {"date", "block"} & set(header)
                                                                 else ["date or block"])
            if missing:
                raise PriceFileError(name, [f"CSV header lacks {', '.join(missing)}"])
            reader.fieldnames = header
            records = [(f"line {reader.line_num}", row) for row in reader]
        except csv.Error as exc:
            raise PriceFileError(name, [f"malformed CSV: {exc}"]) from None
    if len(records) > MAX_ROWS:
        raise PriceFileError(name, [f"{len(records)} rows, at most {MAX_ROWS}"])
    rows: list[PriceRow] = []
    problems: list[str] = []
    seen: dict[tuple[str, str, object], str] = {}
    for where, rec in records:
        try:
            row = _row(rec, name)
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
            continue
        key = (row.chain, row.asset, row.block_number if row.block_number is not None else row.day)
        if key in seen:
            problems.append(f"{where}: same chain, asset and {'block' if row.block_number is not None else 'date'}"
                            f" as {seen[key]}")
            continue
        seen[key] = where
        rows.append(row)
    if problems:
        raise PriceFileError(name, problems)
    if not rows:
        raise PriceFileError(name, ["no prices in the file"])
    return rows


def _text(rec: dict[str, Any], key: str) -> str | None:
    v = rec.get(key)
    if v is None or (isinstance(v, str) and not v.strip()):
        return None
    if isinstance(v, (dict, list, bool)):
        raise ValueError(f"{key} must be a string or number")
    return str(v).strip()


def _row(rec: Any, file: str) -> PriceRow:
    if not isinstance(rec, dict):
        raise ValueError("not an object")
    extra = [k for k in rec if k is None]  # csv: more cells than the header names
    if extra:
        raise ValueError("more cells than the header has columns")
    chain = (_text(rec, "chain") or "").lower()
    if not _CHAIN.match(chain):
        raise ValueError(f"chain {chain[:40]!r} is not a chain name")
    asset_text = _text(rec, "asset") or ""
    if asset_text.lower() == NATIVE:
        asset = NATIVE
    else:
        try:
            asset = normalize_address(chain, asset_text)
        except InvalidAddress:
            raise ValueError(f"asset {asset_text[:60]!r} is neither 'native' nor an address on {chain}") from None
    usd_text = _text(rec, "usd") or ""
    try:
        usd = Decimal(usd_text)
    except InvalidOperation:
        raise ValueError(f"usd {usd_text[:40]!r} is not a number") from None
    if not usd.is_finite() or usd <= 0 or usd >= _MAX_USD:
        raise ValueError(f"usd {usd_text[:40]!r} must be positive and below {_MAX_USD:,}")
    date_text, block_text = _text(rec, "date"), _text(rec, "block")
    if (date_text is None) == (block_text is None):
        raise ValueError("give exactly one of date and block")
    day: dt.date | None = None
    block: int | None = None
    time: int | None = None
    if date_text is not None:
        if not _DATE.match(date_text):
            raise ValueError(f"date {date_text[:40]!r} is not YYYY-MM-DD")
        try:
            day = dt.date.fromisoformat(date_text)
        except ValueError:
            raise ValueError(f"date {date_text!r} does not exist") from None
        if not dt.date(2009, 1, 3) <= day <= dt.date(2100, 1, 1):
            raise ValueError(f"date {date_text} is outside 2009-01-03 .. 2100-01-01")
        time = int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp())
    else:
        assert block_text is not None
        if not block_text.isdigit() or len(block_text) > 18:
            raise ValueError(f"block {block_text[:40]!r} is not a block number")
        block = int(block_text)
    return PriceRow(chain, asset, block, day, time, usd,
                    "file", file=file[:200])
