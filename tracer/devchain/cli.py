"""`tracer devchain`: serve a generated, saved or replayed scenario over JSON-RPC until Ctrl-C.

    tracer devchain [--scenario FILE | --generate N_TRANSFERS | --replay CASE_DIR] [--seed S]
                    [--host 127.0.0.1] [--port 8545] [--latency-ms X] [--rate-limit R]
                    [--max-logs N] [--no-trace] [--save FILE [--save-only]] [--labels-out FILE]
                    [--seeds-out FILE]
    tracer devchain --bitcoin [--seed S] [--host H] [--port N] [--latency-ms X] [--rate-limit R]
                    [--labels-out FILE] [--seeds-out FILE]
    tracer devchain --tron [--seed S] [--host H] [--port N] [--latency-ms X] [--rate-limit R]
                    [--labels-out FILE] [--seeds-out FILE]
    tracer devchain --anvil [--anvil-history archive|pruned|prune-history] [--anvil-url URL]
                    [--generate N | --scenario FILE | --replay DIR] [--seed S] [--port N] [--labels-out FILE]

Prints the URL, the seeds and a one-line summary of the scenario on stdout (the URL first, so a
script can read it). With `--save-only` it writes the scenario and exits without serving.
"""

from __future__ import annotations

import argparse
import csv
import signal
import sys
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from tracer.domain.errors import UserError

if TYPE_CHECKING:
    from tracer.devchain.http import KnobServer
    from tracer.devchain.scenario import Scenario, ScenarioLabel

# asyncio, the servers and the scenario generator are imported by the functions that use them:
# building the `tracer` parser imports this module, and the servers bring aiohttp and eth_abi
# (test_cli_startup).

DEFAULT_SIZE = 5_000


def register(subparsers: Any) -> None:
    """Add the `devchain` sub-command to the main parser's subparsers."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "devchain",
        help="serve a generated laundering scenario over Ethereum JSON-RPC (for tests, demos, benches)",
        description="Serve an embedded dev chain over JSON-RPC: a generated scenario (--generate), "
        "a saved one (--scenario) or a replayed mftracer case (--replay).",
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--scenario", metavar="FILE", help="a scenario saved with --save (.json or .json.gz)")
    src.add_argument(
        "--generate",
        metavar="N_TRANSFERS",
        type=int,
        help=f"generate about this many transfers (default {DEFAULT_SIZE})",
    )
    src.add_argument("--replay", metavar="CASE_DIR", help="an mftracer case folder (CSV edges + sources/terminals)")
    p.add_argument("--seed", type=int, default=1, help="generator seed (default 1)")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8545, help="port (default 8545; 0 picks a free one)")
    p.add_argument("--latency-ms", type=float, default=0.0, help="added latency per HTTP request")
    p.add_argument("--rate-limit", type=float, default=None, help="requests per second before HTTP 429")
    p.add_argument("--max-logs", type=int, default=None, help="cap on eth_getLogs/trace_filter results (-32005)")
    p.add_argument("--no-trace", action="store_true", help="answer trace_*/debug_* with -32601 (method not found)")
    p.add_argument("--prune-history", action="store_true",
                   help="keep only the newest state, like a full node or Anvil --prune-history: balances and "
                        "calls at older blocks answer BlockOutOfRangeError (-32602)")
    p.add_argument("--charge-gas", action="store_true", help="balances pay their transactions' fees")
    p.add_argument("--save", metavar="FILE", help="also write the scenario to FILE (.gz compresses)")
    p.add_argument("--save-only", action="store_true", help="write --save FILE and exit without serving")
    p.add_argument("--labels-out", metavar="FILE",
                   help="write the scenario's labels (exchanges, mixers, bridges) as a label CSV that "
                        "`tracer labels import FILE` loads, so a trace against this chain finds its exits")
    p.add_argument("--seeds-out", metavar="FILE",
                   help="write the scenario's seeds (the thieves' wallets), one per line: "
                        "`tracer trace @FILE` traces them")
    p.add_argument("--bitcoin", action="store_true",
                   help="serve a generated Bitcoin scenario (peel chain, CoinJoin, THORChain payouts) over the "
                   "Esplora REST API instead (--seed, --latency-ms and --rate-limit apply)")
    p.add_argument("--tron", action="store_true",
                   help="serve a generated Tron history (USDT-TRC20, TRX and TRC-10 to exchange deposit addresses, "
                   "a Tether freeze) as a java-tron node: HTTP API /wallet/* and JSON-RPC at /jsonrpc; the URL "
                   "printed is the JSON-RPC (TRACER_RPC_URL_TRON)")
    p.add_argument("--anvil", action="store_true",
                   help="execute the scenario as real transactions on Anvil (Foundry's EVM node, started here; "
                   "npm ci --prefix tests/node installs it) and serve that node instead of the emulator")
    p.add_argument("--anvil-history", choices=("archive", "pruned", "prune-history"), default="archive",
                   help="with --anvil: keep every state (archive, default), Anvil's default (recent states only, as "
                   "a full node) or --prune-history")
    p.add_argument("--anvil-url", metavar="URL",
                   help="with --anvil: execute on this already running, fresh Anvil node (started with "
                   "--auto-impersonate --order fifo --disable-pool-balance-checks and the scenario's chain id) "
                   "and exit")
    p.set_defaults(func=run)


def load_or_generate(args: argparse.Namespace) -> Scenario:
    from tracer.devchain.scenario import Scenario, ScenarioParams, generate

    if args.scenario:
        return Scenario.load(args.scenario)
    if args.replay:
        from tracer.devchain.replay import load_case

        return load_case(args.replay, seed=args.seed)
    return generate(ScenarioParams.for_size(args.generate or DEFAULT_SIZE, seed=args.seed))


def run(args: argparse.Namespace) -> Any:
    """Entry point of the sub-command: an exit code, or a coroutine that serves until stopped."""
    if args.save_only and not args.save:
        print("tracer devchain: --save-only needs --save FILE", file=sys.stderr)
        return 2
    _check_numbers(args)
    for flag, what, serve_other in (("bitcoin", "scenario", serve_bitcoin), ("tron", "history", serve_tron)):
        if getattr(args, flag, False):
            if args.scenario or args.replay or args.save:
                print(f"tracer devchain: --{flag} generates its {what}; --scenario, --replay and --save do not apply",
                      file=sys.stderr)
                return 2
            return serve_other(args)
    t0 = time.monotonic()
    scenario = load_or_generate(args)
    print(f"scenario ready in {time.monotonic() - t0:.1f}s", file=sys.stderr, flush=True)
    if args.labels_out:
        write_labels(args.labels_out, scenario.chain, scenario.labels)
    if args.seeds_out:
        write_seeds(args.seeds_out, scenario.seeds)
    if args.save:
        scenario.save(args.save)
        print(f"saved {args.save}", file=sys.stderr, flush=True)
        if args.save_only:
            print(scenario.summary(), flush=True)
            return 0
    if getattr(args, "anvil", False) or getattr(args, "anvil_url", None):
        return serve_anvil(scenario, args)
    return serve(scenario, args)


def _check_numbers(args: argparse.Namespace) -> None:
    """Refuse numbers the servers would fail on (a port bind() cannot take) or quietly misuse."""
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port must be 0 to 65535 (0 picks a free one), not {args.port}")
    if args.generate is not None and args.generate < 1:
        raise UserError("--generate must be at least 1 transfer")
    if args.latency_ms < 0:
        raise UserError("--latency-ms must be 0 or more")
    if args.rate_limit is not None and args.rate_limit <= 0:
        raise UserError("--rate-limit must be more than 0 requests per second")


def write_labels(path: str, chain: str, labels: Iterable[ScenarioLabel]) -> None:
    """The scenario's labels in the plain label CSV format (tracer.labels.csvfile)."""
    rows = sorted({(lb.address, lb.entity, lb.category) for lb in labels})
    with open(path, "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["chain", "address", "entity", "category", "source"])
        for address, entity, category in rows:
            out.writerow([chain, address, entity, category, "devchain"])
    print(f"wrote {len(rows)} labels to {path} (load them with: tracer labels import {path})",
          file=sys.stderr, flush=True)


def write_seeds(path: str, seeds: Iterable[str]) -> None:
    """One seed a line: what `tracer trace @FILE` reads as its SEED arguments."""
    seeds = list(seeds)
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(f"{s}\n" for s in seeds)
    print(f"wrote {len(seeds)} seeds to {path} (trace them with: tracer trace @{path})", file=sys.stderr, flush=True)


async def serve_bitcoin(args: argparse.Namespace) -> int:
    from tracer.devchain.bitcoin.records import BitcoinScenarioParams
    from tracer.devchain.bitcoin.story import generate as generate_bitcoin
    from tracer.devchain.esplora import EsploraServer

    scenario = generate_bitcoin(BitcoinScenarioParams(seed=args.seed))
    if args.labels_out:
        write_labels(args.labels_out, "bitcoin", scenario.labels)
    if args.seeds_out:
        write_seeds(args.seeds_out, scenario.seeds)
    server = EsploraServer(scenario, latency=args.latency_ms / 1000.0, rate_limit=args.rate_limit)
    return await _serve_until_signalled(server, args, scenario.seeds, scenario.summary())


async def serve_tron(args: argparse.Namespace) -> int:
    from tracer.addresses import tron_base58
    from tracer.devchain.scenario import ScenarioLabel
    from tracer.devchain.tron import generate as generate_tron
    from tracer.devchain.tron_server import TronServer

    story = generate_tron(args.seed)
    seeds = [tron_base58(s) for s in story.seeds]
    if args.labels_out:
        write_labels(args.labels_out, "tron", [ScenarioLabel(tron_base58(lb.address), lb.entity, lb.category)
                                               for lb in story.labels])
    if args.seeds_out:
        write_seeds(args.seeds_out, seeds)
    server = TronServer(story, latency=args.latency_ms / 1000.0, rate_limit=args.rate_limit)
    await server.start(args.host, args.port)
    print(server.jsonrpc_url, flush=True)
    print("seeds: " + " ".join(seeds), flush=True)
    deposit_addresses = {o.address for o in story.truth.offramps}
    print(f"tron: {len(story.blocks)} blocks, {len(deposit_addresses)} exchange deposit addresses, "
          f"a USDT freeze at block {story.truth.freeze.block if story.truth.freeze else '-'}; HTTP API at "
          f"{server.url}", flush=True)
    try:
        await _until_signalled()
    finally:
        await server.stop()
    return 0


async def _serve_until_signalled(server: KnobServer, args: argparse.Namespace, seeds: list[str], summary: str) -> int:
    """Start `server`, print its URL, seeds and summary (the lines scripts read), serve until a signal."""
    url = await server.start(args.host, args.port)
    print(url, flush=True)
    print("seeds: " + " ".join(seeds), flush=True)
    print(summary, flush=True)
    try:
        await _until_signalled()
    finally:
        await server.stop()
    return 0


async def _until_signalled() -> None:
    import asyncio

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread (tests) or no signals
            pass
    await stop.wait()


async def serve_anvil(scenario: Scenario, args: argparse.Namespace) -> int:
    """Execute `scenario` on Anvil; print the node's URL, the seeds and the run's summary."""
    from tracer.devchain.anvil.executor import execute_scenario
    from tracer.devchain.anvil.node import AnvilNotFound, start_anvil

    if args.anvil_url:
        report = await execute_scenario(args.anvil_url, scenario)
        for line in (args.anvil_url, "seeds: " + " ".join(scenario.seeds), scenario.summary(), report.summary()):
            print(line, flush=True)
        return 0 if not report.mismatches else 1
    mode = {"archive": "archive", "pruned": "pruned", "prune-history": "prune_history"}[args.anvil_history]
    try:
        node = await start_anvil(chain_id=scenario.chain_id, mode=mode,  # type: ignore[arg-type]
                                 timestamp=scenario.genesis_time, port=args.port or None, host=args.host)
    except AnvilNotFound as exc:
        print(f"tracer devchain: {exc}", file=sys.stderr)
        return 2
    try:
        report = await execute_scenario(node.url, scenario)
        print(node.url, flush=True)
        print("seeds: " + " ".join(scenario.seeds), flush=True)
        print(scenario.summary(), flush=True)
        print(f"{report.summary()}; anvil {args.anvil_history}", flush=True)
        if report.mismatches:
            return 1
        await _until_signalled()
    finally:
        node.stop()
    return 0


async def serve(scenario: Scenario, args: argparse.Namespace) -> int:
    from tracer.devchain.server import DevChainServer

    server = DevChainServer(
        scenario,
        latency=args.latency_ms / 1000.0,
        rate_limit=args.rate_limit,
        max_logs=args.max_logs,
        traces=not args.no_trace,
        keep_states=1 if args.prune_history else None,
        charge_gas=args.charge_gas,
    )
    return await _serve_until_signalled(server, args, scenario.seeds, scenario.summary())
