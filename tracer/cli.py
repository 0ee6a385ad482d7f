"""The `tracer` command: parses arguments, then calls the library."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

from tracer import __version__, logs
from tracer.config import DEFAULT_BATCH_SIZE
from tracer.domain.errors import UserError
from tracer.store.urls import add_database_url
from tracer.textsafe import terminal_safe

# asyncio (~40 ms with ssl) is imported once the arguments are parsed: `tracer --help` and a mistyped
# flag end in the parser (test_cli_startup).


def _rpc_flag(p: argparse.ArgumentParser) -> None:
    # None: the handler reads TRACER_RPC_URL when it runs (tracer.config.rpc_urls), not the parser when built.
    p.add_argument("--rpc", default=None, help="JSON-RPC URL of the chain node (env TRACER_RPC_URL)")
    p.add_argument("--chain", default="ethereum", help="chain name (default ethereum)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tracer", description="Follow flagged crypto to where it cashes out.")
    parser.add_argument("--version", action="version", version=f"tracer {__version__}")
    parser.add_argument("--log-level", default=os.environ.get("TRACER_LOG_LEVEL"))
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="trace a generated laundering case on an embedded chain and Postgres")
    p.add_argument("--size", type=int, default=20000, help="transfers in the generated chain")
    p.add_argument("--seed", type=int, default=7, help="scenario seed")
    p.add_argument("--workers", type=int, default=4, help="workers tracing in parallel")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    add_database_url(p)
    p.set_defaults(func=_demo)

    # `@FILE` reads arguments from FILE, one a line (seeds written by `tracer devchain --seeds-out`).
    p = sub.add_parser("trace", help="run one trace with embedded workers and print the report",
                       fromfile_prefix_chars="@")
    p.add_argument("seeds", nargs="*", metavar="SEED", help="flagged address(es) to start from")
    p.add_argument("--from-list", choices=["ofac"], help="start from every address a sanctions list names")
    p.add_argument("--program", help="with --from-list: one programme family, e.g. DPRK (matches DPRK3, DPRK4)")
    _rpc_flag(p)
    add_database_url(p)
    p.add_argument("--max-depth", type=int, help="hops from the seeds before stopping")
    p.add_argument("--from-block", type=int, help="first block of the window")
    p.add_argument("--to-block", type=int, help="last block of the window (default: head)")
    p.add_argument("--policy", help="policy as a JSON object (fields of the API's policy)")
    p.add_argument("--workers", type=int, default=4,
                   help="embedded workers (0: leave the jobs to `tracer worker` processes and wait)")
    p.add_argument("--label", help="a name for the trace")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_trace)

    p = sub.add_parser("worker", help="process trace jobs from Postgres until stopped")
    _rpc_flag(p)
    add_database_url(p)
    p.add_argument("--concurrency", type=int, default=2, help="concurrent job batches in this process")
    p.add_argument("--lanes", type=int, default=8,
                   help="batches of different traces each of those may run at once when many traces are runnable, "
                        "e.g. watching traces a new block woke (default 8)")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                   help=f"frontier addresses per batch (default {DEFAULT_BATCH_SIZE})")
    p.add_argument("--lease-seconds", type=float, default=30.0,
                   help="how long a claimed job stays ours without a heartbeat (a dead worker's jobs return after it)")
    p.set_defaults(func=_worker)

    # Each module's register() adds flags only: its handlers import what they run, so building the
    # parser (any command, --help too) loads no web3, eth_abi or aiohttp (test_cli_startup).
    for module in ("tracer.devchain.cli", "tracer.db_cli", "tracer.labels.cli", "tracer.api.cli",
                   "tracer.alerts.cli", "tracer.engine.cli", "tracer.cases_cli"):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        mod.register(sub)
    return parser


def _run(coro: Coroutine[Any, Any, Any], *, fast_loop: bool) -> Any:
    """Run a command's coroutine; on uvloop where the command asks for it (the webhook deliverer:
    its CPU per webhook is mostly the event loop's) and the platform has it (not Windows)."""
    if fast_loop:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.run(coro)
    import asyncio

    return asyncio.run(coro)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UnicodeDecodeError as exc:  # argparse reads `trace @FILE` and only expects OSError of it
        print(f"tracer: error: an @FILE of arguments is not text ({exc.reason} at byte {exc.start})", file=sys.stderr)
        return 2
    import asyncio

    func = args.func
    try:
        logs.setup(args.log_level)
        result = func(args)
        if asyncio.iscoroutine(result):
            result = _run(result, fast_loop=getattr(args, "fast_loop", False))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a clear line instead of a traceback for expected failures
        from tracer.errors import describe

        message = describe(exc)
        if message is None:
            raise
        print(f"tracer: error: {message}", file=sys.stderr)
        return 2
    return int(result or 0)


async def _connect_chain(url: str | None, chain: str, pool: Any) -> Any:
    from tracer.nodes import connect_checked
    from tracer.reorg import guard_depth, guarded

    if not url:
        raise UserError("no node configured: pass --rpc URL or set TRACER_RPC_URL")
    guard_depth()  # a bad TRACER_REORG_GUARD_DEPTH is refused before the node's client is opened
    # Refuses a node whose chain id differs from the one the database records for the name; the
    # guard fails the trace with its reason if the chain reorganises under what it read.
    return guarded(await connect_checked(pool, chain, url), pool, chain)


def _policy(text: str | None) -> dict[str, Any]:
    """--policy's JSON object (fields of the API's policy; tracer.engine.policy checks them)."""
    if not text:
        return {}
    try:
        policy = json.loads(text)
    except ValueError as exc:
        raise UserError(f"--policy is not JSON: {exc}") from None
    if not isinstance(policy, dict):
        raise UserError(f"--policy must be a JSON object of policy fields, e.g. '{{\"max_depth\": 5}}', not {text!r}")
    return policy


async def _trace(args: argparse.Namespace) -> int:
    # Flags are checked before the engine (and web3 with it) is imported: a mistyped one is told in
    # a fraction of a second.
    policy = _policy(args.policy)
    # The flags given override the same fields of --policy.
    policy.update({k: v for k in ("max_depth", "from_block", "to_block") if (v := getattr(args, k)) is not None})
    if not args.seeds and not args.from_list:
        raise UserError("give SEED addresses or --from-list ofac [--program DPRK]")
    if args.workers < 0:
        raise UserError("--workers must be 0 (leave the jobs to `tracer worker` processes) or more")
    from tracer.engine.policy import Policy

    Policy.from_json(policy)
    from tracer.addresses import show_tron
    from tracer.engine import report as treport
    from tracer.engine.dollars import render_dollars, trace_dollars
    from tracer.engine.service import check_chain, create_trace, parse_seeds, seeds_from_list
    from tracer.runner import run_with_workers
    from tracer.store.db import Database

    # What create_trace will refuse is refused before the database and the node are touched: a
    # refused trace leaves nothing behind, not even its chain name pinned to the node's chain id.
    check_chain(args.chain)
    if args.seeds:
        parse_seeds(list(args.seeds), args.chain)
    db = await Database.connect(args.database_url)
    try:
        from tracer.config import rpc_urls

        # --rpc / TRACER_RPC_URL, else the chain's own TRACER_RPC_URL_<CHAIN> (e.g. _BITCOIN).
        client = await _connect_chain(args.rpc or rpc_urls(None, args.chain).get(args.chain), args.chain, db.pool)
    except BaseException:
        await db.close()
        raise
    try:
        seeds = list(args.seeds)
        if args.from_list:
            seeds += await seeds_from_list(db.pool, args.chain, args.from_list, args.program)
            print(f"{len(seeds)} seeds from {args.from_list}" + (f" programme {args.program}" if args.program else ""),
                  file=sys.stderr)
        trace_id = await create_trace(db.pool, client, chain=args.chain, seeds=seeds, policy=policy,
                                      label=args.label, created_by="cli")
        await run_with_workers(db.pool, {args.chain: client}, trace_id, workers=args.workers)
        rep = await treport.build(db.pool, trace_id)
        # Dollars at the time of each hop, from the node's price feeds (or imported price files).
        dollars = await trace_dollars(db.pool, trace_id, {args.chain: client})
        # Entity names come from label files: no terminal escape sequences reach the screen.
        # Tron's stored hex is shown as T... (tracer.addresses.show_tron), in JSON and text alike.
        print(show_tron(json.dumps({**rep.to_json(), "dollars": dollars.to_json()}, indent=2) if args.json
                        else terminal_safe(treport.render(rep) + "\n\n" + render_dollars(rep, dollars))))
        return 0 if rep.status == "done" else 1
    finally:
        await client.close()
        await db.close()


async def _worker(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise UserError("--batch-size must be at least 1")
    if args.lease_seconds <= 0:
        raise UserError("--lease-seconds must be more than 0")
    import asyncio

    from tracer.config import rpc_urls
    from tracer.nodes import connect_all
    from tracer.reorg import guard_depth, guarded
    from tracer.store.db import Database, keep_session
    from tracer.workers.trace import Worker, WorkerSettings

    urls = rpc_urls(args.rpc, args.chain)
    if not urls:
        raise UserError("no node configured: pass --rpc URL or set TRACER_RPC_URL")
    guard_depth()  # a bad TRACER_REORG_GUARD_DEPTH is refused before the nodes' clients are opened
    # A connection for each batch that may run at once (they hold one while committing), within reason.
    # A batch takes a connection from the pool ~25 times: without the reset query on each release
    # that is half its round trips (workers leave no session state: see keep_session).
    db = await Database.connect(args.database_url,
                                max_size=max(10, min(40, max(1, args.concurrency) * max(1, args.lanes) + 4)),
                                reset=keep_session)
    try:
        # Refuses a node whose chain id differs from the one the database records for its name.
        chains = {name: guarded(client, db.pool, name) for name, client in (await connect_all(db.pool, urls)).items()}
    except BaseException:
        await db.close()
        raise
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    settings = WorkerSettings(batch_size=args.batch_size, lease_seconds=args.lease_seconds, lanes=args.lanes)
    workers = [Worker(db.pool, chains, settings=settings) for _ in range(max(1, args.concurrency))]
    print(f"tracer worker: {len(workers)} loop(s), chains {', '.join(sorted(chains))}", file=sys.stderr, flush=True)
    try:
        await asyncio.gather(*(w.run(stop) for w in workers))
    finally:
        for c in chains.values():
            await c.close()
        await db.close()
    return 0


async def _demo(args: argparse.Namespace) -> int:
    if args.workers < 1:
        # The demo's chain is served by this process alone: no `tracer worker` could take its jobs.
        raise UserError("--workers must be at least 1")
    from tracer.demo import run_demo

    return await run_demo(size=args.size, seed=args.seed, workers=args.workers, as_json=args.json,
                          database_url=args.database_url)


if __name__ == "__main__":
    raise SystemExit(main())
