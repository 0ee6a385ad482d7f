"""How many JSON-RPC requests (and HTTP posts) the chain layer spends per 1,000 transfers found.

Generates a devchain scenario (about 100k transfers by default), serves it over HTTP, and fetches
the transfers of the laundering wallets hop by hop from the seeds, the way the engine walks a
trace, once per way of reading the chain:

- trace_filter      the node has trace_* (Erigon, Reth, Nethermind, Anvil)
- block-scan+debug  no trace_*, block scan + debug_traceBlockByNumber/Transaction (Geth)
- block-scan        the node has neither (internal calls are then invisible, so fewer found)

Every mode is checked against the scenario's own list of what moved (same transfers, per hop).
Prints a table and writes bench/results/rpc_efficiency.json.

    python bench/rpc_efficiency.py            # ~100k-transfer scenario
    python bench/rpc_efficiency.py --smoke    # tiny, a few seconds (run by the tests)
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from common import write_result  # noqa: E402

from tracer.chains.evm import EvmChain  # noqa: E402
from tracer.chains.retry import TransportOptions  # noqa: E402
from tracer.devchain.scenario import Scenario, ScenarioParams, generate  # noqa: E402
from tracer.devchain.server import DevChainServer  # noqa: E402
from tracer.domain.transfers import Transfer, TransferQuery  # noqa: E402

DEFAULT_OUT = ROOT / "bench" / "results" / "rpc_efficiency.json"


@dataclass
class ModeResult:
    mode: str
    path: str
    transfers: int
    hops: int
    addresses: int
    seconds: float
    counts: Counter[str]
    per_hop: list[dict[str, Any]] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return sum(v for k, v in self.counts.items() if k != "http")

    @property
    def http(self) -> int:
        return self.counts["http"]

    def per_1000(self, n: int) -> float:
        return 1000.0 * n / self.transfers if self.transfers else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "path": self.path,
            "transfers_found": self.transfers,
            "hops": self.hops,
            "addresses_fetched": self.addresses,
            "seconds": round(self.seconds, 3),
            "jsonrpc_requests": self.requests,
            "http_posts": self.http,
            "requests_per_1000_transfers": round(self.per_1000(self.requests), 2),
            "http_posts_per_1000_transfers": round(self.per_1000(self.http), 2),
            "requests_by_method": dict(sorted((k, v) for k, v in self.counts.items() if k != "http")),
            "per_hop": self.per_hop,
        }


def laundering_set(sc: Scenario) -> set[str]:
    """Seeds, the laundering's intermediate wallets, and the payout contracts they call (whose
    outflows are internal calls: the part of the walk that needs traces)."""
    batch = {a for a, role in sc.contracts.items() if role == "batch"}
    return {a.lower() for a in (*sc.seeds, *sc.truth.launderers, *batch)}


def expected_moves(sc: Scenario, senders: set[str], internal: bool) -> Counter[tuple[str, str, str, int]]:
    """What the scenario says moved out of `senders` (the ground truth to check each mode against)."""
    moves: Counter[tuple[str, str, str, int]] = Counter()
    for _, tx in sc.iter_txs():
        for frm, to, asset, amount in tx.transfers():
            is_internal = frm != tx.sender  # a payout made by the contract the sender called
            if frm in senders and amount and (internal or not is_internal):
                moves[(frm, to, asset, amount)] += 1
    return moves


async def walk(
    client: EvmChain, sc: Scenario, follow: set[str], max_hops: int
) -> tuple[list[Transfer], set[str], list[dict[str, Any]]]:
    """Hop by hop from the seeds: fetch the frontier's outgoing transfers, follow the recipients
    that are laundering wallets (the engine would stop at exchanges and hubs)."""
    head = await client.head()
    seen: set[str] = set()
    frontier = {s.lower() for s in sc.seeds}
    found: dict[tuple[str, str, str], Transfer] = {}
    per_hop: list[dict[str, Any]] = []
    for hop in range(1, max_hops + 1):
        if not frontier:
            break
        before = Counter(client.request_counts)
        got = await client.transfers(TransferQuery(sorted(frontier), 0, head))
        spent = Counter(client.request_counts)
        spent.subtract(before)
        for t in got:
            found.setdefault(t.key, t)
        seen |= frontier
        frontier = {t.to_address for t in got if t.to_address in follow and t.to_address not in seen}
        per_hop.append(
            {
                "hop": hop,
                "addresses": len(seen) - sum(h["addresses"] for h in per_hop),
                "transfers": len(got),
                "jsonrpc_requests": sum(v for k, v in spent.items() if k != "http"),
                "http_posts": spent["http"],
            }
        )
    return sorted(found.values(), key=lambda t: t.order), seen, per_hop


async def run_mode(
    sc: Scenario, mode: str, *, max_hops: int, batch_size: int, concurrency: int, latency: float
) -> tuple[ModeResult, list[Transfer]]:
    """Serve the scenario, walk it with one client, check what it found against the scenario."""
    server = DevChainServer(sc, latency=latency, traces=(mode != "block-scan"))
    url = await server.start(host="127.0.0.1", port=0)
    try:
        client = EvmChain(
            url,
            chain=sc.chain,
            expected_chain_id=sc.chain_id,
            batch_size=batch_size,
            transport=TransportOptions(concurrency=concurrency),
            use_trace_filter=(mode == "trace_filter"),
            block_cache_size=max(4096, sc.head + 1),
        )
        await client.connect()
        try:
            start = time.perf_counter()
            found, seen, per_hop = await walk(client, sc, laundering_set(sc), max_hops)
            seconds = time.perf_counter() - start
            result = ModeResult(
                mode, client.path, len(found), len(per_hop), len(seen), seconds, Counter(client.request_counts), per_hop
            )
            check(sc, mode, found, seen, internal=(mode != "block-scan"))
            return result, found
        finally:
            await client.close()
    finally:
        await server.stop()


def check(sc: Scenario, mode: str, found: list[Transfer], visited: set[str], internal: bool) -> None:
    """The walk fetched the outgoing transfers of every visited address: exactly the scenario's."""
    want = expected_moves(sc, visited, internal)
    got = Counter((t.from_address, t.to_address, t.asset, t.amount) for t in found)
    if got != want:
        missing = want - got
        extra = got - want
        raise SystemExit(
            f"{mode}: transfers differ from the scenario: {sum(missing.values())} missing "
            f"(e.g. {list(missing)[:3]}), {sum(extra.values())} extra (e.g. {list(extra)[:3]})"
        )


def table(results: list[ModeResult]) -> str:
    head = (
        f"{'mode':<18} {'path':<38} {'found':>8} {'requests':>9} {'http':>7} {'req/1k':>8} {'http/1k':>8} {'secs':>7}"
    )
    lines = ["JSON-RPC requests per 1,000 transfers found", head, "-" * len(head)]
    for r in results:
        lines.append(
            f"{r.mode:<18} {r.path:<38} {r.transfers:>8} {r.requests:>9} {r.http:>7} "
            f"{r.per_1000(r.requests):>8.1f} {r.per_1000(r.http):>8.1f} {r.seconds:>7.2f}"
        )
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    size = 1_500 if args.smoke else args.size
    t0 = time.perf_counter()
    sc = generate(ScenarioParams.for_size(size, seed=args.seed))
    gen_seconds = time.perf_counter() - t0
    print(f"scenario: {sc.summary()} (generated in {gen_seconds:.1f}s)", flush=True)
    results: list[ModeResult] = []
    reference: list[tuple[str, str, str]] | None = None
    for mode in ("trace_filter", "block-scan+debug", "block-scan"):
        result, found = await run_mode(
            sc,
            mode,
            max_hops=args.max_hops,
            batch_size=args.batch_size,
            concurrency=args.concurrency,
            latency=args.latency_ms / 1000.0,
        )
        keys = [t.key for t in found]
        if mode != "block-scan":
            if reference is None:
                reference = keys
            elif keys != reference:
                raise SystemExit(f"{mode} found other transfers than trace_filter")
        results.append(result)
        print(
            f"  {mode}: {result.transfers} transfers, {result.requests} requests, {result.http} posts, "
            f"{result.seconds:.2f}s",
            flush=True,
        )
    print()
    print(table(results))
    report = {
        "benchmark": "rpc_efficiency",
        "smoke": bool(args.smoke),
        "scenario": {
            "size_param": size,
            "seed": args.seed,
            "blocks": len(sc.blocks),
            "transactions": sc.tx_count,
            "transfers": sc.transfer_count(),
            "seeds": len(sc.seeds),
            "laundering_wallets": len(laundering_set(sc)),
        },
        "client": {"batch_size": args.batch_size, "concurrency": args.concurrency, "latency_ms": args.latency_ms},
        "modes": [r.as_json() for r in results],
    }
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=100_000, help="scenario size in transfers (default 100000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--smoke", action="store_true", help="tiny scenario, a few seconds")
    parser.add_argument("--max-hops", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="devchain latency per HTTP request")
    parser.add_argument("--out", type=Path, default=None, help=f"JSON output (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    report = asyncio.run(main_async(args))
    # A smoke run must not overwrite the committed figures of a full run.
    write_result("rpc_efficiency", report, args.smoke, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
