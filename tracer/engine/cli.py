"""``tracer prices`` and ``tracer report``: USD prices and a trace's report to file.

    tracer prices import FILE...          # date or block, asset, chain, usd (CSV or JSON)
    tracer prices feeds                   # the price feeds known (shipped and registered)
    tracer report ID [--html FILE] [--pdf FILE] [--rpc URL --chain NAME]

Every verb takes ``--database-url`` (default ``$DATABASE_URL``, else the embedded server).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from tracer.store.urls import add_database_url
from tracer.textsafe import terminal_safe

# The price parsers, the store and the node clients are imported by the handlers, coroutines that
# tracer.cli's main runs: building the `tracer` parser imports this module, and keeps to what
# argparse needs (test_cli_startup).


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    prices = subparsers.add_parser("prices", help="USD prices: import price files, list the feeds known")
    verbs = prices.add_subparsers(dest="prices_command", metavar="{import,feeds}")
    verbs.required = True
    p = verbs.add_parser("import", help="import USD prices (CSV or JSON: date or block, asset, chain, usd)")
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")
    add_database_url(p)
    p.set_defaults(func=_import)
    p = verbs.add_parser("feeds", help="the Chainlink-compatible feeds prices are read from")
    add_database_url(p)
    p.set_defaults(func=_feeds)

    p = subparsers.add_parser("report", help="write a trace's report (HTML, PDF) for the file")
    p.add_argument("trace_id", type=int, metavar="ID")
    p.add_argument("--html", type=Path, metavar="FILE", help="write the self-contained HTML report here")
    p.add_argument("--pdf", type=Path, metavar="FILE", help="write the report as PDF (headless Chromium)")
    # None: the handler reads TRACER_RPC_URL when it runs, not the parser when built.
    p.add_argument("--rpc", default=None,
                   help="node to read missing prices from (env TRACER_RPC_URL); else stored prices only")
    p.add_argument("--chain", default="ethereum", help="chain name of --rpc (default ethereum)")
    add_database_url(p)
    p.set_defaults(func=_report)


async def _import(args: argparse.Namespace) -> int:
    from tracer.engine.price_file import PriceFileError, parse_price_file
    from tracer.store import prices as store
    from tracer.store.db import Database

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
    from tracer.chains import feeds as known
    from tracer.store import prices as store
    from tracer.store.db import Database

    db = await Database.connect(args.database_url)
    try:
        async with db.pool.acquire() as conn:
            registered = await store.registered_feeds(conn)
    finally:
        await db.close()
    for f in [*registered, *known.KNOWN_FEEDS]:
        print(terminal_safe(f"{f.chain:<10} {f.asset:<42} {f.pair:<12} {f.feed_chain}:{f.feed}  ({f.provenance})"))
    return 0


async def _report(args: argparse.Namespace) -> int:
    from tracer.domain.records import UnknownTrace
    from tracer.store import traces as trace_store
    from tracer.store.db import Database

    rpc = args.rpc or os.environ.get("TRACER_RPC_URL")
    db = await Database.connect(args.database_url)
    chains = {}
    try:
        # Before the node: connecting records its chain id under --chain, which a report of no
        # trace should not leave behind.
        async with db.pool.acquire() as conn:
            if await trace_store.trace_status(conn, args.trace_id) is None:
                raise UnknownTrace(args.trace_id)
        from tracer.engine import report_doc

        if rpc:
            from tracer.nodes import connect_checked

            chains[args.chain] = await connect_checked(db.pool, args.chain, rpc)
        doc = await report_doc.build_document(db.pool, args.trace_id, chains)
        html = report_doc.render_html(doc)
        if args.html:
            args.html.write_text(html, encoding="utf-8")
        if args.pdf:
            args.pdf.write_bytes(await report_doc.html_to_pdf(html))
        if not args.html and not args.pdf:
            sys.stdout.write(html)
    finally:
        for c in chains.values():
            await c.close()
        await db.close()
    return 0
