"""Postgres ingest: rows/s the store writes, against a raw COPY of the same rows into the same table.

Workers write two things: the chain transfers they fetched (`store_transfers`, the shared cache)
and the hops of each batch (`upsert_hops`, idempotent: insert or update when the flagged amount
grew, returning what changed so the recipients can be woken). This bench writes the same
synthetic rows through those functions and, into the same (emptied) table on the same server,
with one binary `COPY` — the fastest way Postgres takes rows, and what a write path is measured
against. The ratio (COPY time / store time, so 1.0 means "as fast as COPY") is the figure.

Hops are written in batches of three sizes: what one worker batch commits (~64 hops, each in its
own transaction, as `_commit` does), and bigger batches (1,000 and 10,000 per statement) that
show the per-statement cost apart from the per-transaction one. Every run starts from an empty
table with its indexes (hops has six) after a CHECKPOINT, so runs do not pay for each other's
dirty pages.

    python bench/ingest.py                 # 1,000,000 transfers and hops
    python bench/ingest.py --rows 200000
    python bench/ingest.py --smoke         # tiny (the test suite runs it)
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from typing import Any

import asyncpg
from common import (
    add_common_args,
    machine,
    postgres_info,
    server_url,
    table,
    throwaway_database,
    write_result,
)

from tracer.domain.records import HopRow
from tracer.domain.transfers import NATIVE, Transfer, TransferKind
from tracer.store import traces as store
from tracer.store.db import create_pool

NAME = "ingest"
CHAIN = "ethereum"
TOKEN = "0xdac17f958d2ee523a2206206994597c13d831ec7"
TRANSFER_COLUMNS = ["chain", "tx_hash", "position", "block_number", "block_time", "tx_index", "from_addr",
                    "to_addr", "asset", "amount", "kind", "decimals", "symbol"]
HOP_COLUMNS = ["trace_id", "transfer_id", "from_addr", "to_addr", "asset", "block_number", "depth", "amount",
               "share", "kind", "status", "reason", "parents", "confidence"]


def synth_transfers(n: int, seed: int) -> list[Transfer]:
    """Transfers shaped like a trace's: ~30% internal calls and 30% token logs, wei-sized amounts,
    a few per transaction, addresses drawn from a pool a tenth the size (wallets reappear)."""
    rng = random.Random(seed)
    pool = [f"0x{rng.getrandbits(160):040x}" for _ in range(max(10, n // 10))]
    out: list[Transfer] = []
    i = 0
    tx = 0
    while i < n:
        tx += 1
        block = 15_000_000 + tx // 150
        tx_hash = f"0x{rng.getrandbits(256):064x}"
        for k in range(min(n - i, rng.choice((1, 1, 1, 2, 3)))):
            r = rng.random()
            if r < 0.4 or k == 0:
                position, kind, asset, amount = "tx", TransferKind.NATIVE, NATIVE, rng.getrandbits(70)
            elif r < 0.7:
                position, kind, asset, amount = f"call:0.{k}", TransferKind.INTERNAL, NATIVE, rng.getrandbits(66)
            else:
                position, kind, asset, amount = f"log:{k}", TransferKind.TOKEN, TOKEN, rng.getrandbits(40)
            if position == "tx" and k:
                position, kind = f"call:{k}", TransferKind.INTERNAL
            out.append(Transfer(
                chain=CHAIN, block_number=block, block_time=1_660_000_000 + 12 * block // 1000, tx_hash=tx_hash,
                tx_index=tx % 150, position=position, from_address=rng.choice(pool), to_address=rng.choice(pool),
                asset=asset, amount=amount + 1, kind=kind,
                decimals=6 if asset == TOKEN else None, symbol="USDT" if asset == TOKEN else None))
            i += 1
    return out


def synth_hops(transfers: Sequence[tuple[int, Transfer]], seed: int) -> list[HopRow]:
    """One hop per transfer, as a big trace writes them: mostly followed, some exits and stops,
    haircut amounts below the transfer's, one to three parents."""
    rng = random.Random(seed)
    out: list[HopRow] = []
    for k, (tid, t) in enumerate(transfers):
        r = rng.random()
        status, reason = (("exit", "deposit_address") if r < 0.05 else
                          ("stopped", "below_threshold") if r < 0.15 else ("followed", "flagged funds"))
        share = rng.random()
        parents = [transfers[max(0, k - 1 - j * 7)][0] for j in range(rng.randint(1, 3))]
        out.append(HopRow(transfer_id=tid, from_addr=t.from_address, to_addr=t.to_address, asset=t.asset,
                          block_number=t.block_number, depth=1 + k // 5000, amount=max(1, int(t.amount * share)),
                          share=share, kind=str(t.kind), status=status, reason=reason, parents=parents))
    return out


def transfer_record(t: Transfer) -> tuple[Any, ...]:
    return (t.chain, t.tx_hash, t.position, t.block_number, t.block_time, t.tx_index, t.from_address, t.to_address,
            t.asset, Decimal(t.amount), str(t.kind), t.decimals, t.symbol)


def hop_record(trace_id: int, h: HopRow) -> tuple[Any, ...]:
    return (trace_id, h.transfer_id, h.from_addr, h.to_addr, h.asset, h.block_number, h.depth, Decimal(h.amount),
            h.share, h.kind, h.status, h.reason, h.parents, h.confidence)


async def fresh(conn: asyncpg.Connection, table_name: str) -> None:
    """Empty the table (keeping its indexes) and flush dirty pages, so each run starts alike."""
    await conn.execute(f"TRUNCATE {table_name} CASCADE")
    await conn.execute("CHECKPOINT")


async def timed(label: str, rows: int, work: Callable[[], Awaitable[None]]) -> dict[str, Any]:
    started = time.perf_counter()
    await work()
    seconds = time.perf_counter() - started
    print(f"  {label}: {rows:,} rows in {seconds:.1f}s ({rows / seconds:,.0f}/s)", flush=True)
    return {"path": label, "rows": rows, "seconds": round(seconds, 3), "rows_per_second": round(rows / seconds, 1)}


async def table_digest(conn: asyncpg.Connection, table_name: str) -> tuple[int, str]:
    """Row count and total amount: both paths must leave the same rows behind."""
    row = await conn.fetchrow(f"SELECT count(*) AS n, coalesce(sum(amount), 0)::text AS s FROM {table_name}")
    return int(row["n"]), str(row["s"])


async def bench_transfers(conn: asyncpg.Connection, transfers: list[Transfer], batch: int,
                          repeats: int) -> list[dict[str, Any]]:
    records = [transfer_record(t) for t in transfers]
    results: list[dict[str, Any]] = []
    digests: dict[str, tuple[int, str]] = {}
    for _ in range(repeats):
        await fresh(conn, "transfers")

        async def copy() -> None:
            await conn.copy_records_to_table("transfers", columns=TRANSFER_COLUMNS, records=records)

        results.append(await timed("transfers: COPY", len(records), copy))
        digests["copy"] = await table_digest(conn, "transfers")
        await fresh(conn, "transfers")

        async def through_store() -> None:
            for i in range(0, len(transfers), batch):
                await store.store_transfers(conn, transfers[i:i + batch])

        results.append(await timed(f"transfers: store_transfers ({batch:,}/batch)", len(records), through_store))
        digests["store"] = await table_digest(conn, "transfers")
    if digests["copy"] != digests["store"]:
        raise SystemExit(f"transfers differ: COPY {digests['copy']} vs store {digests['store']}")
    return results


async def bench_hops(conn: asyncpg.Connection, hops: list[HopRow], trace_id: int, batches: Sequence[int],
                     repeats: int) -> list[dict[str, Any]]:
    records = [hop_record(trace_id, h) for h in hops]
    results: list[dict[str, Any]] = []
    digests: dict[str, tuple[int, str]] = {}
    for _ in range(repeats):
        await fresh(conn, "hops")

        async def copy() -> None:
            await conn.copy_records_to_table("hops", columns=HOP_COLUMNS, records=records)

        results.append(await timed("hops: COPY", len(records), copy))
        digests["copy"] = await table_digest(conn, "hops")
        for batch in batches:
            await fresh(conn, "hops")

            async def through_store(batch: int = batch) -> None:
                for i in range(0, len(hops), batch):
                    # One transaction per batch, as a worker commits each batch it processed.
                    async with conn.transaction():
                        await store.upsert_hops(conn, trace_id, hops[i:i + batch])

            results.append(await timed(f"hops: upsert_hops ({batch:,}/batch)", len(records), through_store))
            digests[f"store {batch}"] = await table_digest(conn, "hops")
    if len(set(digests.values())) != 1:
        raise SystemExit(f"hops differ between paths: {digests}")
    return results


def summarise(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Best of the repeats per path, with the ratio to COPY of the same table."""
    best: dict[str, dict[str, Any]] = {}
    for r in results:
        if r["path"] not in best or r["seconds"] < best[r["path"]]["seconds"]:
            best[r["path"]] = r
    out = []
    for path, r in best.items():
        copy = best[path.split(":")[0] + ": COPY"]
        out.append({**r, "ratio_to_copy": round(copy["seconds"] / r["seconds"], 3)})
    return out


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    pg = server_url(args.database_url)
    t0 = time.perf_counter()
    transfers = synth_transfers(args.rows, args.seed)
    print(f"synthesised {len(transfers):,} transfers in {time.perf_counter() - t0:.0f}s", flush=True)
    async with throwaway_database(pg, "ingest", keep=args.keep) as url:
        pool = await create_pool(url, min_size=1, max_size=1, command_timeout=None)
        try:
            async with pool.acquire() as conn:
                t_results = await bench_transfers(conn, transfers, args.transfer_batch, args.repeats)
                # Hops reference transfers: the ones now in the table (ids assigned by the last run).
                rows = await conn.fetch(
                    "SELECT id, tx_hash, position FROM transfers ORDER BY id")
                by_key = {(t.tx_hash, t.position): t for t in transfers}
                stored = [(r["id"], by_key[(r["tx_hash"], r["position"])]) for r in rows]
                trace_id = await store.insert_trace(conn, chain=CHAIN, seeds=[stored[0][1].from_address],
                                                    policy={}, label="bench:ingest", from_block=0,
                                                    to_block=20_000_000)
                hops = synth_hops(stored, args.seed)
                h_results = await bench_hops(conn, hops, trace_id, args.hop_batches, args.repeats)
        finally:
            await pool.close()
    return {
        "benchmark": NAME,
        "smoke": bool(args.smoke),
        "rows": args.rows,
        "repeats": args.repeats,
        "results": summarise(t_results + h_results),
        "all_runs": t_results + h_results,
        "machine": machine(),
        "postgres": await postgres_info(pg),
    }


def print_table(report: dict[str, Any]) -> None:
    print()
    print(table(
        f"Postgres ingest: {report['rows']:,} rows, best of {report['repeats']} (ratio = COPY time / this time)",
        ["path", "rows", "seconds", "rows/s", "ratio to COPY"],
        [[r["path"], r["rows"], r["seconds"], r["rows_per_second"], r["ratio_to_copy"]]
         for r in report["results"]]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="transfers, and as many hops (default 1000000)")
    parser.add_argument("--transfer-batch", type=int, default=2_000,
                        help="transfers per store_transfers call (a worker stores one fetch at a time)")
    parser.add_argument("--hop-batches", type=lambda s: [int(x) for x in s.split(",")], default=[64, 1_000, 10_000],
                        help="hops per upsert_hops call, comma-separated (default 64,1000,10000)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each path; the best is reported")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the database")
    add_common_args(parser)
    args = parser.parse_args(argv)
    if args.smoke:
        args.rows, args.repeats, args.hop_batches = 3_000, 1, [64, 1_000]
    report = asyncio.run(main_async(args))
    print_table(report)
    write_result(NAME, report, args.smoke, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
