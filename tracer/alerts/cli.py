"""`tracer alerts deliver` (webhook delivery worker) and `tracer monitor` (follow new blocks).

Both run until SIGINT/SIGTERM and coordinate through Postgres only, so any number of them may
run anywhere: delivery workers lease subscriptions, monitors take a per-chain advisory lock (one
acts, the others stand by).
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import TYPE_CHECKING, Any

from tracer.domain.errors import UserError
from tracer.store.urls import add_database_url

if TYPE_CHECKING:
    import asyncio

# asyncio (~40 ms with ssl) and the workers are imported by the handlers: building the `tracer`
# parser imports this module, and keeps to what argparse needs (test_cli_startup).


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    alerts = subparsers.add_parser("alerts", help="alerting: deliver webhooks")
    verbs = alerts.add_subparsers(dest="alerts_command", metavar="{deliver}")
    verbs.required = True
    d = verbs.add_parser("deliver", help="deliver webhook events until stopped (run as many as you like)")
    add_database_url(d)
    d.add_argument("--concurrency", type=int, default=256, help="subscriptions served at once (default 256)")
    d.add_argument("--held", type=int, default=16384,
                   help="subscriptions leased ahead, waiting for a first slot: fewer, larger claims (default 16384)")
    d.add_argument("--per-host", type=int, default=64,
                   help="connections to one receiver at once, kept alive and shared by its subscriptions (default 64)")
    d.add_argument("--max-attempts", type=int, default=12, help="tries before an event goes to dead-letter")
    d.add_argument("--backoff", type=float, default=2.0, help="first retry delay in seconds (doubles, jittered)")
    d.add_argument("--backoff-max", type=float, default=3600.0, help="longest retry delay in seconds")
    d.add_argument("--timeout", type=float, default=10.0, help="seconds a receiver has to answer")
    d.add_argument("--lease-seconds", type=float, default=60.0,
                   help="how long a subscription stays ours without finishing (a dead worker's return after it)")
    d.add_argument("--poll", type=float, default=1.0, help="seconds between looks for due retries")
    d.set_defaults(func=_deliver, fast_loop=True)

    m = subparsers.add_parser("monitor", help="follow new blocks for watching traces; retract reorged hops")
    add_database_url(m)
    # None: the handler reads TRACER_RPC_URL when it runs (tracer.config.rpc_urls), not the parser when built.
    m.add_argument("--rpc", default=None, help="JSON-RPC URL of the chain node (env TRACER_RPC_URL)")
    m.add_argument("--chain", default="ethereum", help="chain served by --rpc (default ethereum)")
    m.add_argument("--ws", default=None, metavar="URL|off",
                   help="WebSocket of the --rpc node for pushed new heads (env TRACER_WS_URL; other chains: "
                        "TRACER_WS_URL_<CHAIN>); default: the RPC URL as ws:// or wss://; off: poll only")
    m.add_argument("--poll", type=float, default=1.0,
                   help="seconds between head polls, beside pushed heads (default 1)")
    m.add_argument("--keep-blocks", type=int, default=256, help="block hashes kept to locate a reorg's fork")
    m.set_defaults(func=_monitor)


def _positive(args: argparse.Namespace, *names: str, zero: bool = False) -> None:
    """UserError naming the first flag of `names` below 0 (or at 0, unless `zero` allows it): a
    negative poll or timeout would spin or fail every step, not stop the command."""
    for name in names:
        value = getattr(args, name)
        if value < 0 or (value == 0 and not zero):
            flag = "--" + name.replace("_", "-")
            raise UserError(f"{flag} must be {'0 or more' if zero else 'more than 0'}")


def _stop_on_signals() -> asyncio.Event:
    import asyncio

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def _deliver(args: argparse.Namespace) -> int:
    _positive(args, "timeout", "lease_seconds", "poll")
    _positive(args, "backoff", "backoff_max", zero=True)
    from tracer.alerts.deliver import Deliverer, DeliverySettings
    from tracer.alerts.guard import UrlPolicy
    from tracer.store.db import Database
    from tracer.store.listen import connector

    settings = DeliverySettings(concurrency=max(1, args.concurrency), held=max(1, args.held),
                                per_host=max(1, args.per_host),
                                max_attempts=max(1, args.max_attempts),
                                backoff_base=args.backoff, backoff_max=args.backoff_max,
                                request_timeout=args.timeout, lease_seconds=args.lease_seconds, poll=args.poll)
    # Deliveries are written in batches (one transaction for all slots): few connections needed.
    db = await Database.connect(args.database_url, max_size=max(4, min(20, settings.concurrency // 4 + 4)))
    try:
        policy = UrlPolicy.from_env()
        deliverer = Deliverer(db.pool, connect=connector(db.url), settings=settings, url_policy=policy)
        stop = _stop_on_signals()
        allow = ",".join(sorted(policy.allow)) or "none"
        print(f"tracer alerts deliver: {deliverer.name}, concurrency {settings.concurrency}, "
              f"allow-listed hosts: {allow}", file=sys.stderr, flush=True)
        await deliverer.run(stop)
    finally:
        await db.close()
    return 0


async def _monitor(args: argparse.Namespace) -> int:
    _positive(args, "poll", "keep_blocks")
    from tracer.alerts.monitor import Monitor, MonitorSettings
    from tracer.chains.evm.heads import HeadWatcher
    from tracer.chains.urls import heads_url, node_name
    from tracer.config import rpc_urls, ws_urls
    from tracer.store.db import Database

    urls = rpc_urls(args.rpc, args.chain)
    if not urls:
        raise UserError("no node configured: pass --rpc URL or set TRACER_RPC_URL")
    settings = ws_urls(args.ws, args.chain)
    heads: dict[str, HeadWatcher] = {}
    for chain, rpc in urls.items():
        try:
            ws = heads_url(settings.get(chain), rpc, chain)
        except ValueError as exc:
            raise SystemExit(f"tracer: error: {chain}: {exc} (--ws / TRACER_WS_URL[_<CHAIN>]; off: poll only)"
                             ) from None
        if ws is not None:
            heads[chain] = HeadWatcher(ws, chain=chain)
    from tracer.nodes import connect_all

    db = await Database.connect(args.database_url, max_size=4)
    chains: dict[str, Any] = {}
    try:
        # Refuses a node whose chain id differs from the one the database records for its name.
        chains.update(await connect_all(db.pool, urls))
        monitor = Monitor(db.pool, chains, settings=MonitorSettings(poll=args.poll, keep_blocks=args.keep_blocks),
                          heads=heads)
        stop = _stop_on_signals()
        pushed = ", ".join(f"{c} from {node_name(w.url)}" for c, w in sorted(heads.items())) or "none"
        print(f"tracer monitor: chains {', '.join(sorted(chains))}, poll {args.poll}s, new heads pushed: {pushed}",
              file=sys.stderr, flush=True)
        await monitor.run(stop)
    finally:
        for c in chains.values():
            await c.close()
        await db.close()
    return 0
