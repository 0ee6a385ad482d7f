"""``tracer labels``: import label files, load the default set, show an address's labels.

    tracer labels import FILE... [--format auto|sdn-xml|sdn-advanced|ofac-json|ofac-flat|
                                  ofac-asset-list|tagpack|csv] [--list-date YYYY-MM-DD]
    tracer labels load-default
    tracer labels show ADDRESS [--chain CHAIN] [--at DATE] [--json]

Every verb takes ``--database-url`` (default ``$DATABASE_URL``, else the embedded server). Handlers
are synchronous and return the exit code, like the other ``register(subparsers)`` modules.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracer.labels.formats import FORMATS
from tracer.store.urls import add_database_url
from tracer.textsafe import terminal_safe

if TYPE_CHECKING:
    from tracer.store.db import Database

# asyncio, the importers, the store and the address rules are imported by the functions that use them:
# building the `tracer` parser imports this module, and keeps to what argparse needs (test_cli_startup).


def _date(text: str) -> datetime:
    from tracer.labels.parsed import LabelImportError, parse_date

    try:
        value = parse_date(text)
    except LabelImportError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    if value is None:
        raise argparse.ArgumentTypeError("empty date")
    return value


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``labels`` with verbs ``import``, ``load-default`` and ``show``."""
    labels = subparsers.add_parser(
        "labels", help="labels: import lists, load the default set, show an address",
        description="Sanctions lists and address labels, with provenance and validity over time.",
    )
    verbs = labels.add_subparsers(dest="labels_command", metavar="{import,load-default,show}")
    verbs.required = True

    p = verbs.add_parser("import", help="import label files (OFAC SDN XML/JSON/CSV, tagpacks, CSV)")
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")
    p.add_argument("--format", default="auto", choices=FORMATS, help="file format (default: detect)")
    p.add_argument("--list-date", type=_date, default=None, metavar="YYYY-MM-DD",
                   help="the list's publication date, for files that do not carry one (or to override it)")
    p.add_argument("--created-by", default=None, help="who imports (kept on new labels)")
    add_database_url(p)
    p.set_defaults(func=cmd_import)

    p = verbs.add_parser("load-default", help="load the shipped default label set (idempotent)")
    add_database_url(p)
    p.set_defaults(func=cmd_load_default)

    p = verbs.add_parser("show", help="labels of one address, with validity and history")
    p.add_argument("address")
    p.add_argument("--chain", default=None, help="chain (default: guessed from the address form)")
    p.add_argument("--at", type=_date, default=None, metavar="DATE", help="only labels valid at this date")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_database_url(p)
    p.set_defaults(func=cmd_show)


async def _connect(url: str | None) -> Database:
    from tracer.store.db import Database

    return await Database.connect(url, migrate=True, min_size=1, max_size=2)


async def _import(args: argparse.Namespace) -> int:
    from tracer.labels.importer import import_file
    from tracer.labels.parsed import LabelImportError

    db = await _connect(args.database_url)
    status = 0
    try:
        for path in args.files:
            try:
                async with db.pool.acquire() as conn:
                    r = await import_file(conn, path, args.format, list_date=args.list_date,
                                          created_by=args.created_by)
            except (LabelImportError, OSError, ValueError) as exc:
                print(f"{path}: error: {exc}", file=sys.stderr)
                status = 1
                continue
            if r.duplicate_of is not None:
                print(f"{path}: already imported (import {r.duplicate_of}); nothing to do")
                continue
            when = r.list_date.date().isoformat() if r.list_date else "-"
            counts = " ".join(f"{k}={v}" for k, v in r.stats.items() if isinstance(v, int))
            print(f"{path}: import {r.import_id} format={r.format} source={r.source} "
                  f"scope={r.scope or '-'} list_date={when} {counts}")
    finally:
        await db.close()
    return status


def cmd_import(args: argparse.Namespace) -> int:
    import asyncio

    return asyncio.run(_import(args))


async def _load_default(args: argparse.Namespace) -> int:
    from tracer.labels.defaults import load_default_labels

    db = await _connect(args.database_url)
    try:
        r = await load_default_labels(db.pool)
    finally:
        await db.close()
    if r.skipped:
        print(f"default labels already loaded (import {r.import_id}, {r.rows} rows)")
    else:
        print(f"default labels loaded: {r.inserted} new of {r.rows} rows (import {r.import_id})")
    return 0


def cmd_load_default(args: argparse.Namespace) -> int:
    import asyncio

    return asyncio.run(_load_default(args))


def guess_chain(address: str) -> str:
    text = address.strip()
    if text[:2].lower() == "0x":
        return "ethereum"
    if text.lower().startswith("bc1") or text[:1] in {"1", "3"}:
        return "bitcoin"
    if text.startswith("T") and len(text) == 34:
        return "tron"
    return "ethereum"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


async def _show(args: argparse.Namespace) -> int:
    from tracer.addresses import checksum
    from tracer.labels.vocab import normalize_address, normalize_chain
    from tracer.store import labels as store

    chain = normalize_chain(args.chain) if args.chain else guess_chain(args.address)
    # InvalidAddress, before the database is opened: tracer.errors.describe says what is wrong with it.
    address = normalize_address(chain, args.address)
    db = await _connect(args.database_url)
    try:
        async with db.pool.acquire() as conn:
            rows = await store.history(conn, chain, address)
    finally:
        await db.close()
    if args.at is not None:
        rows = [(s, ev) for s, ev in rows if s.label.valid_at(args.at)]
    out: list[dict[str, Any]] = []
    for stored, events in rows:
        lb = stored.label
        out.append({
            "entity": lb.entity, "category": lb.category, "source": lb.source, "confidence": lb.confidence,
            "valid_from": _iso(lb.valid_from), "valid_to": _iso(lb.valid_to), "program": lb.program,
            "scope": stored.scope, "evidence": lb.evidence,
            "events": [{"event": e.event, "at": _iso(e.at), "import_id": e.import_id} for e in events],
        })
    if args.json:
        print(json.dumps({"chain": chain, "address": checksum(address), "labels": out}, indent=2, default=str))
        return 0
    when = f" at {args.at.date().isoformat()}" if args.at is not None else ""
    if not out:
        print(f"{chain} {checksum(address)}: no labels{when}")
        return 0
    print(f"{chain} {checksum(address)}{when}:")
    for item in out:
        span = f"{(item['valid_from'] or '…')[:10]} → {(item['valid_to'] or 'now')[:10]}"
        program = f" [{item['program']}]" if item["program"] else ""
        print(terminal_safe(f"  {item['category']:17} {item['entity']}{program}  source={item['source']} "
                            f"confidence={item['confidence']:g}  valid {span}"))
        for e in item["events"]:
            print(f"      {e['event']:9} {(e['at'] or '')[:10]}  (import {e['import_id'] or '-'})")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    import asyncio

    return asyncio.run(_show(args))
