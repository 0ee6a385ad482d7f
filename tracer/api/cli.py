"""`tracer serve` (the API, optionally with embedded workers) and `tracer keys` (create/list/revoke)."""

from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import sys
from typing import TYPE_CHECKING, Any

from tracer.api.limit_flags import LIMITS
from tracer.domain.errors import UserError
from tracer.store.urls import add_database_url

if TYPE_CHECKING:
    from tracer.api.context import Settings

# asyncio, the API (aiohttp, and web3 through its errors) and the store are imported by the handlers:
# building the `tracer` parser imports this module, and keeps to what argparse needs (test_cli_startup).


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("serve", help="run the investigator REST API (and optionally workers)")
    p.add_argument("--host", default=os.environ.get("TRACER_API_HOST", "127.0.0.1"),
                   help="address to listen on (default 127.0.0.1; any other needs an API key to exist)")
    # None: read from TRACER_API_PORT / TRACER_API_PROCESSES when serve runs (_from_env), so a bad value
    # there is serve's error, not every command's traceback while the parser is built.
    p.add_argument("--port", type=int, default=None,
                   help="port (default 8080; 0 picks a free one and prints it)")
    add_database_url(p)
    p.add_argument("--rpc", default=None, help="JSON-RPC URL of the chain node (default: $TRACER_RPC_URL)")
    p.add_argument("--chain", default="ethereum", help="chain served by --rpc (default ethereum)")
    p.add_argument("--workers", type=int, default=0,
                   help="trace workers to run inside this process (default 0: run `tracer worker` separately)")
    p.add_argument("--db-pool-size", type=int, default=20, help="Postgres connections for this process")
    p.add_argument("--processes", type=int, default=None,
                   metavar="N", help="API processes sharing the port (SO_REUSEPORT), so several cores serve "
                   "(default $TRACER_API_PROCESSES, else 1; each has its own --db-pool-size connections)")
    p.add_argument("--read-database-url", default=os.environ.get("TRACER_READ_DATABASE_URL") or None, metavar="URL",
                   help="a streaming replica of the database for the read endpoints (default "
                        "$TRACER_READ_DATABASE_URL; unset: every read on the primary)")
    p.add_argument("--demo", action="store_true",
                   help="serve the database `tracer demo` wrote to on the embedded server (its own, remade each run)")
    p.add_argument("--allowed-hosts", default=os.environ.get("TRACER_ALLOWED_HOSTS"), metavar="HOSTS",
                   help="comma-separated Host names the API answers for (default $TRACER_ALLOWED_HOSTS; unset: the "
                        "loopback names and --host, checked in open mode only; '*' for any)")
    for flag, env, kind, text, default in LIMITS:
        p.add_argument(flag, type=kind, default=None, metavar="N", help=f"{text} (default ${env}, else "
                       f"{default or 'off'}; see docs/SECURITY.md)")
    p.set_defaults(func=_serve)

    keys = subparsers.add_parser("keys", help="API keys: create, list, revoke")
    verbs = keys.add_subparsers(dest="keys_command", metavar="{create,list,revoke}")
    verbs.required = True
    c = verbs.add_parser("create", help="create a key and print it (the only time it is shown)")
    c.add_argument("--scope", action="append", choices=("read", "trace", "admin"), required=True,
                   help="repeat for several: read (GET), trace (start/cancel traces, label), admin (everything)")
    c.add_argument("--name", default=None, help="who or what the key is for (shown in the audit log)")
    c.add_argument("--team", default=None,
                   help="keys of one team own their traces, subscriptions and private labels together")
    c.add_argument("--json", action="store_true", help="print the key and its record as JSON")
    add_database_url(c)
    c.set_defaults(func=_keys_create)
    ls = verbs.add_parser("list", help="list keys (never their secrets)")
    ls.add_argument("--json", action="store_true")
    add_database_url(ls)
    ls.set_defaults(func=_keys_list)
    r = verbs.add_parser("revoke", help="revoke a key by its id or key id")
    r.add_argument("key", help="numeric id or the key id (the part after trk_)")
    add_database_url(r)
    r.set_defaults(func=_keys_revoke)


def _from_env(value: int | None, env: str, default: int) -> int:
    """A flag's value, else the environment's `env` (a whole number), else `default`."""
    if value is not None:
        return value
    text = os.environ.get(env, "").strip()
    if not text:
        return default
    if not text.isdigit():
        raise UserError(f"{env} must be a whole number, not {text!r}")
    return int(text)


def _limits(args: argparse.Namespace, settings: Settings) -> None:
    for flag, env, kind, _, _ in LIMITS:
        name = flag[2:].replace("-", "_")
        value = getattr(args, name, None)
        if value is None and os.environ.get(env, "").strip():
            try:
                value = kind(os.environ[env])
            except ValueError:
                raise UserError(f"{env} must be a number") from None
        if value is None:
            continue
        if value < 0 or (value == 0 and name not in ("rate_limit",)):
            raise UserError(f"{flag} must be positive")
        setattr(settings, name, value if not (name == "rate_limit" and value == 0) else None)


def _settings(args: argparse.Namespace) -> Settings:
    from tracer.api.context import Settings
    from tracer.api.sameorigin import parse_hosts

    secret_text = os.environ.get("TRACER_API_SECRET")
    secret = secret_text.encode() if secret_text else None
    if secret is not None and len(secret) < 16:
        raise UserError("TRACER_API_SECRET must be at least 16 characters")
    settings = Settings(host=args.host, port=args.port, workers=max(0, args.workers), secret=secret,
                        allowed_hosts=parse_hosts(args.allowed_hosts))
    _limits(args, settings)
    cache = os.environ.get("TRACER_API_EXITS_CACHE")
    if cache is not None:
        if not cache.isdigit():
            raise UserError("TRACER_API_EXITS_CACHE must be a number of entries (0 disables)")
        settings.exits_cache_size = int(cache)
    pages = os.environ.get("TRACER_API_PAGE_CACHE_MB")
    if pages is not None:
        if not pages.isdigit():
            raise UserError("TRACER_API_PAGE_CACHE_MB must be a number of MiB (0 disables)")
        settings.page_cache_bytes = int(pages) << 20
    live = os.environ.get("TRACER_API_LIVE_USD_MAX_HOPS")
    if live is not None:
        if not live.isdigit():
            raise UserError("TRACER_API_LIVE_USD_MAX_HOPS must be a number of hops")
        settings.live_usd_max_hops = int(live)
    return settings


#: How long `tracer serve` waits for a node at start before serving without it (it keeps trying).
NODE_START_TIMEOUT = 5.0


async def _connect_chains(rpc: str | None, chain: str, pool: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(connected clients, down nodes): a node that cannot be reached does not stop the API (it
    serves reads and connects the node when it answers); one serving another chain does."""
    import asyncio

    from tracer.api.nodewatch import DownNode
    from tracer.chains.errors import WrongChain
    from tracer.config import rpc_urls
    from tracer.nodes import connect_checked
    from tracer.reorg import guard_depth, guarded

    guard_depth()  # a bad TRACER_REORG_GUARD_DEPTH is refused before the nodes' clients are opened
    clients: dict[str, Any] = {}
    down: dict[str, DownNode] = {}
    for name, url in rpc_urls(rpc, chain).items():
        async def connect(name: str = name, url: str = url) -> Any:
            # Refuses a node whose chain id differs from the one the database records for its
            # name; the guard fails traces with the reason if the chain reorganises under them.
            return guarded(await connect_checked(pool, name, url), pool, name)

        try:
            clients[name] = await asyncio.wait_for(connect(), NODE_START_TIMEOUT)
        except WrongChain:
            for client in clients.values():
                await client.close()
            raise
        except Exception as exc:  # unreachable, timing out, answering garbage: serve without it
            print(f"tracer api: warning: the node for chain {name} is unreachable ({type(exc).__name__}); serving "
                  "without it and retrying in the background", file=sys.stderr, flush=True)
            down[name] = DownNode(connect, type(exc).__name__)
    return clients, down


async def _serve(args: argparse.Namespace) -> int:
    # Before the API (aiohttp, web3) is imported: a wrong port is told at once.
    args.port = _from_env(args.port, "TRACER_API_PORT", 8080)
    args.processes = _from_env(args.processes, "TRACER_API_PROCESSES", 1)
    if not 0 <= args.port <= 65535:
        print(f"tracer: error: --port must be 0 to 65535 (0 picks a free one), not {args.port}", file=sys.stderr)
        return 2
    import asyncio

    from aiohttp import web

    from tracer.api import processes
    from tracer.api.app import OpenServerRefused, create_app, server_options
    from tracer.api.context import is_loopback
    from tracer.store import keys as key_store
    from tracer.store.db import Database, keep_session
    from tracer.store.embedded import DEMO_DATABASE, start_embedded
    from tracer.store.urls import resolve_database_url

    settings = _settings(args)
    url = args.database_url
    shared_port = processes.child_port()
    if shared_port is not None:  # a copy started by the first process: same port, no workers
        settings.port, settings.workers = shared_port, 0
    if args.processes < 1:
        print("tracer: error: --processes must be at least 1", file=sys.stderr)
        return 2
    if args.processes > 1 and args.demo:
        print("tracer: error: --demo serves one process (the demo database is remade at start)", file=sys.stderr)
        return 2
    many = args.processes > 1 or shared_port is not None
    copies: list[Any] = []
    if args.demo:
        if resolve_database_url(url) is not None:
            print("tracer: error: --demo serves the embedded server's demo database; with a database URL set, "
                  "`tracer demo` wrote to that database: serve it without --demo", file=sys.stderr)
            return 2
        url = await start_embedded(database=DEMO_DATABASE)
    # Every request takes a connection and gives it back: asyncpg's reset query on each release was a
    # round trip per request (~30-60 us of this process and ~25 of Postgres). Nothing the server runs
    # on these pools leaves session state behind (handlers, embedded workers: see keep_session, and
    # tests/unit/test_session_state.py, which names every place in tracer/ that takes any).
    db = await Database.connect(url, max_size=max(2, args.db_pool_size), reset=keep_session)
    # A replica is read-only: nothing to migrate there (the primary's migrations arrive by WAL).
    read_db = (await Database.connect(args.read_database_url, max_size=max(2, args.db_pool_size), migrate=False,
                                      reset=keep_session)
               if args.read_database_url else None)
    chains: dict[str, Any] = {}
    runner: web.AppRunner | None = None
    try:
        async with db.pool.acquire() as conn:
            open_mode = await key_store.active_key_count(conn) == 0
        if open_mode and not is_loopback(settings.host):
            # Checked before connecting to anything else, with the same words as the app's own check.
            print(f"tracer: error: no API key exists and --host {settings.host} is not loopback; refusing to "
                  "serve an open API. Create a key (tracer keys create --scope admin) or use --host 127.0.0.1.",
                  file=sys.stderr)
            return 2
        chains, down = await _connect_chains(args.rpc or os.environ.get("TRACER_RPC_URL"), args.chain, db.pool)
        if settings.workers and not chains and not down:
            print("tracer: error: --workers needs a chain node: pass --rpc or set TRACER_RPC_URL", file=sys.stderr)
            return 2
        app = create_app(db, chains, settings, down_nodes=down, read_db=read_db)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=10.0, **server_options(settings))
        try:
            await runner.setup()
        except OpenServerRefused as exc:
            print(f"tracer: error: {exc}", file=sys.stderr)
            return 2
        # Handlers before the "listening" line: whoever reads it may signal us right away.
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        site = web.TCPSite(runner, settings.host, settings.port, reuse_port=True if many else None)
        await site.start()
        _settle_heap()
        addresses = [a for a in runner.addresses if isinstance(a, tuple)]
        port = addresses[0][1] if addresses else settings.port
        if shared_port is not None:
            print(f"tracer api: process {os.getpid()} serving port {port} too", file=sys.stderr, flush=True)
            await stop.wait()
            return 0
        if args.processes > 1:
            copies = processes.start_copies(args.processes - 1, port)
        mode = ("OPEN (no API keys configured; loopback only — create one with `tracer keys create`)"
                if open_mode else "API keys required")
        print(f"tracer api: listening on http://{settings.host}:{port} — {mode}; "
              f"chains: {', '.join(sorted(chains)) or 'none (read-only)'}"
              f"{'; down: ' + ', '.join(sorted(down)) if down else ''}; embedded workers: {settings.workers}; "
              f"web view: http://{settings.host}:{port}/ui; processes: {args.processes}", file=sys.stderr,
              flush=True)
        await stop.wait()
        return 0
    finally:
        processes.stop_copies(copies)
        if runner is not None:
            await runner.cleanup()
        for client in chains.values():
            await client.close()
        await db.close()
        if read_db is not None:
            await read_db.close()


def _settle_heap() -> None:
    """What the server built while starting (modules, web3's tables, the app) lives as long as the
    process: moved out of the collector's reach, so the full collections a busy server runs now and
    then walk what requests allocate, not half a million objects that never go (each such walk held
    every request in flight for tens of milliseconds: the tail of the latency)."""
    gc.collect()
    gc.freeze()


async def _keys_create(args: argparse.Namespace) -> int:
    from tracer.store import keys as key_store
    from tracer.store.db import Database

    name = args.name or f"key-{'-'.join(sorted(set(args.scope)))}"
    async with await Database.connect(args.database_url, max_size=2) as db:
        async with db.pool.acquire() as conn, conn.transaction():
            key, text = await key_store.create_key(conn, name, args.scope, created_by="cli", team=args.team)
            await key_store.audit(conn, actor="cli", api_key_id=key.id, action="key.create", target=f"key:{key.id}",
                                  details={"name": name, "scopes": list(key.scopes), "team": args.team})
    if args.json:
        print(json.dumps({"id": key.id, "key_id": key.key_id, "name": key.name, "scopes": list(key.scopes),
                          "team": key.team, "key": text}))
    else:
        print(text)
        print(f"key #{key.id} {key.name!r} scopes={','.join(key.scopes)}: store it now, it is not shown again",
              file=sys.stderr)
    return 0


async def _keys_list(args: argparse.Namespace) -> int:
    from tracer.store import keys as key_store
    from tracer.store.db import Database

    async with await Database.connect(args.database_url, max_size=2) as db:
        async with db.pool.acquire() as conn:
            keys = await key_store.list_keys(conn)
    rows: list[dict[str, Any]] = [{"id": k.id, "key_id": k.key_id, "name": k.name, "scopes": list(k.scopes),
             "team": k.team,
             "created_at": k.created_at.isoformat(), "last_used_at": k.last_used_at and k.last_used_at.isoformat(),
             "revoked_at": k.revoked_at and k.revoked_at.isoformat()} for k in keys]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no API keys (the API runs open on 127.0.0.1 only)")
        return 0
    print(f"{'id':>4}  {'key id':<14} {'name':<24} {'scopes':<18} {'created':<20} {'last used':<20} status")
    for r in rows:
        status = "revoked" if r["revoked_at"] else "active"
        print(f"{r['id']:>4}  trk_{r['key_id']:<10} {r['name'][:24]:<24} {','.join(r['scopes']):<18} "
              f"{r['created_at'][:19]:<20} {(r['last_used_at'] or '-')[:19]:<20} {status}")
    return 0


async def _keys_revoke(args: argparse.Namespace) -> int:
    from tracer.store import keys as key_store
    from tracer.store.db import Database

    ref = args.key.removeprefix("trk_").split("_")[0]
    async with await Database.connect(args.database_url, max_size=2) as db:
        async with db.pool.acquire() as conn, conn.transaction():
            key = await key_store.revoke_key(conn, ref)
            if key is not None:
                await key_store.audit(conn, actor="cli", api_key_id=key.id, action="key.revoke",
                                      target=f"key:{key.id}", details={"name": key.name})
    if key is None:
        raise UserError(f"no key {args.key!r}")
    print(f"revoked key #{key.id} {key.name!r} (trk_{key.key_id}); API servers stop accepting it within seconds")
    return 0
