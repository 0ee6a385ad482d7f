"""``tracer prices``: USD prices.

    tracer prices import FILE...          # date or block, asset, chain, usd (CSV or JSON)
    tracer prices feeds                   # the price feeds known (shipped and registered)

Every verb takes ``--database-url`` (default ``$DATABASE_URL``, else the embedded server).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from tracer.chains import feeds as known
from tracer.engine.price_file import PriceFileError, parse_price_file
from tracer.store import prices as store
from tracer.store.db import Database
from tracer.textsafe import terminal_safe


def _db(p: argparse.ArgumentParser) -> None:
    p.add_argument("--database-url", default=os.environ.get("DATABASE_URL"), metavar="URL",
                   help="PostgreSQL URL (default: $DATABASE_URL; if unset, the embedded server)")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    prices = subparsers.add_parser("prices", help="USD prices: import price files, list the feeds known")
    verbs = prices.add_subparsers(dest="prices_command", metavar="{import,feeds}")
    verbs.required = True
    p = verbs.add_parser("import", help="import USD prices (CSV or JSON: date or block, asset, chain, usd)")
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")
    _db(p)
    p.set_defaults(func=lambda a: asyncio.run(_import(a)))
    p = verbs.add_parser("feeds", help="the Chainlink-compatible feeds prices are read from")
    _db(p)
    p.set_defaults(func=lambda a: asyncio.run(_feeds(a)))


async def _import(args: argparse.Namespace) -> int:
    parsed = []
    for f in args.files:
        try:
            parsed.append((f, parse_price_file(f)))
        except (PriceFileError, OSError) as exc:
            print(terminal_safe(f"tracer: error: {exc}"), file=sys.stderr)
            return 2
    db = await Database.connect(args.database_url)
    try:
        async with db.pool.acquire() as conn, conn.transaction():
            for f, rows in parsed:
                n = await store.save_prices(conn, rows)
                print(terminal_safe(f"{f.name}: {n} prices imported"))
    finally:
        await db.close()
    return 0


async def _feeds(args: argparse.Namespace) -> int:
    db = await Database.connect(args.database_url)
    try:
        async with db.pool.acquire() as conn:
            registered = await store.registered_feeds(conn)
    finally:
        await db.close()
    for f in [*registered, *known.KNOWN_FEEDS]:
        print(terminal_safe(f"{f.chain:<10} {f.asset:<42} {f.pair:<12} {f.feed_chain}:{f.feed}  ({f.provenance})"))
    return 0
