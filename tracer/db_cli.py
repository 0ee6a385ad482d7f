"""``tracer db`` commands: migrate the schema, print the database URL in use, stop the embedded server,
print the SQL that distributes the schema on Citus.

A command, so it lives with the CLI rather than in tracer.store: `migrate` also loads the default
label set (tracer.labels), which the store must not import.

``register(subparsers)`` adds the ``db`` command to the main parser. Each verb stores its handler in
``args.func``; a handler takes the parsed namespace and returns the process exit code. Handlers are
synchronous (they run their own event loop), so the main CLI can call them directly.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tracer.store.urls import add_database_url, resolve_database_url

# asyncio, the store and the labels are imported by the handlers: building the `tracer` parser imports this
# module, and keeps to what argparse needs (test_cli_startup).


def _add_common(parser: argparse.ArgumentParser) -> None:
    add_database_url(parser)
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="tracer data directory holding the embedded server in DIR/pg "
        "(default: $TRACER_DATA_DIR or ~/.local/share/tracer)",
    )


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``db`` with sub-verbs ``migrate``, ``url``, ``stop`` and ``citus-plan`` to ``subparsers``."""
    db = subparsers.add_parser(
        "db",
        help="database: migrate, url, stop, citus-plan",
        description="Manage tracer's PostgreSQL database (external via --database-url/$DATABASE_URL, "
        "or the embedded server).",
    )
    verbs = db.add_subparsers(dest="db_command", metavar="{migrate,url,stop,citus-plan}")
    verbs.required = True

    for verb, about, func in (
        ("migrate", "apply pending schema migrations and print their versions", cmd_migrate),
        ("url", "print the database URL in use (starts the embedded server if needed)", cmd_url),
        ("stop", "stop the embedded server (its data is kept)", cmd_stop),
    ):
        p = verbs.add_parser(verb, help=about)
        _add_common(p)
        p.set_defaults(func=func)

    p = verbs.add_parser("citus-plan", help="print the SQL that makes a migrated database a Citus cluster "
                         "(create_reference_table / create_distributed_table, in order)")
    p.set_defaults(func=cmd_citus_plan)


async def _migrate(args: argparse.Namespace) -> int:
    from tracer.labels.defaults import load_default_labels
    from tracer.store.db import Database
    from tracer.store.migrate import applied_migrations, load_migrations, migrate

    names = {m.version: m.name for m in load_migrations()}
    db = await Database.connect(args.database_url, data_dir=args.data_dir, migrate=False, max_size=2)
    try:
        applied = await migrate(db.pool)
        for version in applied:
            print(f"applied {version:03d}_{names[version]}")
        if not applied:
            current = await applied_migrations(db.pool)
            print(f"up to date (version {current[-1] if current else 0:03d})")
        # The curated default labels (exchanges, mixers, bridges, OFAC) come with the schema:
        # a fresh database should already know where traces stop.
        loaded = await load_default_labels(db.pool)
        print(f"default labels: {'already loaded' if loaded.skipped else f'{loaded.inserted} added'}")
    finally:
        await db.close()
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    """``tracer db migrate``: one line ``applied NNN_name`` per migration applied now."""
    import asyncio

    from tracer.store.migrate import MigrationError

    try:
        return asyncio.run(_migrate(args))
    except MigrationError as exc:
        print(f"tracer db migrate: {exc}", file=sys.stderr)
        return 1


def cmd_url(args: argparse.Namespace) -> int:
    """``tracer db url``: the URL in use; the embedded server keeps running after we exit."""
    import asyncio

    from tracer.store.embedded import start_embedded

    url = resolve_database_url(args.database_url)
    if url is None:
        url = asyncio.run(start_embedded(args.data_dir))
    print(url)
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    """``tracer db stop``: stop the embedded server of the data directory, if it runs."""
    from tracer.store.embedded import embedded_pgdata, stop_embedded

    if resolve_database_url(args.database_url) is not None and args.data_dir is None:
        # Stopping an external server is not ours to do; say so rather than silently doing nothing.
        source = "--database-url" if args.database_url else "DATABASE_URL"
        print(f"tracer db stop: {source} is set; only the embedded server can be stopped", file=sys.stderr)
        return 2
    pgdata = embedded_pgdata(args.data_dir)
    print(f"stopped {pgdata}" if stop_embedded(args.data_dir) else f"not running {pgdata}")
    return 0


def cmd_citus_plan(args: argparse.Namespace) -> int:
    """``tracer db citus-plan``: the SQL an operator runs on a Citus coordinator after migrating
    (tracer.store.distribution; it needs no database)."""
    from tracer.store.distribution import citus_plan

    sys.stdout.write(citus_plan())
    return 0


__all__ = ["cmd_citus_plan", "cmd_migrate", "cmd_stop", "cmd_url", "register"]
