"""Faults survived, bad input refused, nothing lost: the issue #9 table.

Three parts, all on real pieces (devchain over HTTP, Postgres, workers, the API over a socket):

1. Node faults. The same generated scenario is traced once against a healthy devchain (the
   reference) and then against a devchain with one fault kind at a time (hangs past the client's
   timeout, HTTP 500/502/503, connection resets, malformed JSON, batches answered out of order or
   in part, 429 with and without Retry-After, all of them at once), plus a node serving another
   chain id (must be refused at connect) and a node that reorganises mid-trace (its trace must fail
   with the reason and keep no hop of a vanished block, and tracing again must give the hops of a
   healthy node of the final chain). Hops lost = reference hops missing, wrong = hops not in the
   reference, duplicated = transfers with two hops in one trace.
2. Worker SIGKILL rounds: real `tracer worker` processes killed at seeded moments; the trace must
   finish with exactly the reference hops.
3. Malformed input against the API: one request per operation and parameter/body member with a
   junk value, from the served OpenAPI document; hand-written junk addresses, chain names,
   policies, bodies; tampered pagination cursors; malformed label files through
   `POST /v1/labels/import` (labels, imports and audit rows counted before and after each).
   Every answer must be 4xx problem+json naming the problem (or a success where the junk happened
   to be valid); server errors must be 0.

    python bench/faults.py                 # ~1,500-transfer scenario, 2 rounds per fault kind, 5 kill rounds
    python bench/faults.py --smoke         # tiny, about a minute (run by the test suite)

Prints the table and writes bench/results/faults.json (faults.smoke.json for --smoke).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402
from common import (  # noqa: E402
    add_common_args,
    machine,
    postgres_info,
    server_url,
    table,
    throwaway_database,
    write_result,
)
from yarl import URL  # noqa: E402

from tests.fuzz_inputs import (  # noqa: E402
    Request,
    junk_requests,
    label_files,
    openapi_cases,
    refusal_problem,
    tampered,
    url_of,
)
from tests.reliability_support import (  # noqa: E402
    SCRIPT,
    FaultyDevChain,
    ReorgingDevChain,
    duplicate_hops,
    every_fault,
    forget_transfers,
    hop_rows,
    kill_workers_at_random,
    label_reorg_exchange,
    reorg_chains,
    run_faulty,
    run_trace,
    trace_reorg_seed,
)
from tracer.api.app import PARSER_LIMITS, create_app  # noqa: E402
from tracer.api.context import Settings  # noqa: E402
from tracer.chains.errors import WrongChain  # noqa: E402
from tracer.chains.evm import EvmChain  # noqa: E402
from tracer.demo import load_scenario_labels  # noqa: E402
from tracer.devchain.chain import Chain  # noqa: E402
from tracer.devchain.scenario import Scenario, ScenarioParams, generate  # noqa: E402
from tracer.devchain.server import DevChainServer, FaultPlan  # noqa: E402
from tracer.nodes import connect_checked  # noqa: E402
from tracer.reorg import ReorgGuard, guarded  # noqa: E402
from tracer.store import keys as key_store  # noqa: E402
from tracer.store.db import Database  # noqa: E402

Hop = tuple[Any, ...]

#: One fault kind per row: the devchain's FaultPlan (rates per request, batch ones per batch) and
#: server options; each run is also forced to start with one fault of its kind.
KINDS: dict[str, dict[str, Any]] = {
    "timeout (hang)": {"faults": {"hang": 0.06, "hang_seconds": 1.2}, "script": ("hang",)},
    "http 500": {"faults": {"http_500": 0.2}, "script": ("http_500",)},
    "http 502": {"faults": {"http_502": 0.2}, "script": ("http_502",)},
    "http 503": {"faults": {"http_503": 0.2}, "script": ("http_503",)},
    "connection reset": {"faults": {"reset": 0.2}, "script": ("reset",)},
    "malformed json": {"faults": {"malformed": 0.2}, "script": ("malformed",)},
    "batch out of order": {"faults": {"shuffle_batch": 0.6}},
    "partial batch": {"faults": {"partial_batch": 0.4}},
    "429 with Retry-After": {"rate_limit": 15.0},
    "429 without Retry-After": {"bare_429": 0.2, "script": ("http_429_bare",)},
}


@dataclass
class Row:
    kind: str
    injected: int = 0
    traces: int = 0
    completed: int = 0
    failed_with_reason: int = 0
    refused: int = 0
    lost: int = 0
    duplicated: int = 0
    wrong: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


def _compare(row: Row, reference: list[Hop], hops: list[Hop], duplicates: int) -> None:
    ref, got = set(reference), set(hops)
    row.lost += len(ref - got)
    row.wrong += len(got - ref)
    row.duplicated += duplicates


# ------------------------------------------------------------------------------------ node faults


async def reference_trace(db: Database, sc: Scenario) -> tuple[int, list[Hop]]:
    await load_scenario_labels(db.pool, sc)
    server = DevChainServer(sc)
    await server.start("127.0.0.1", 0)
    client = EvmChain(server.url, chain=sc.chain, expected_chain_id=sc.chain_id)
    try:
        await client.connect()
        trace_id, status = await run_trace(db.pool, client, sc)
    finally:
        await client.close()
        await server.stop()
    if status != "done":
        raise SystemExit(f"the reference trace ended {status}")
    return trace_id, await hop_rows(db.pool, trace_id)


async def fault_rows(db: Database, sc: Scenario, reference: list[Hop], rounds: int) -> list[Row]:
    rows: list[Row] = []
    kinds = dict(KINDS)
    kinds["all at once"] = {"plan": every_fault, "rate_limit": 10.0, "bare_429": 0.05, "script": SCRIPT}
    for kind, spec in kinds.items():
        row = Row(kind)
        started = time.perf_counter()
        for r in range(rounds):
            seed = 1000 * (r + 1) + len(rows)
            plan = spec["plan"](seed) if "plan" in spec else FaultPlan(seed=seed, **spec.get("faults", {}))
            server = FaultyDevChain(sc, faults=plan, rate_limit=spec.get("rate_limit"),
                                    bare_429=spec.get("bare_429", 0.0), seed=seed, script=spec.get("script", ()))
            await server.start("127.0.0.1", 0)
            try:
                run = await run_faulty(db.pool, sc, server)
            finally:
                await server.stop()
            row.traces += 1
            row.injected += sum(run.injected.values())
            if run.status == "done":
                row.completed += 1
                _compare(row, reference, run.hops, run.duplicates)
            else:
                row.failed_with_reason += bool(run.error)
                row.notes.append(f"round {r}: {run.status}: {run.error}")
                # A failed trace may stop early (hops missing) but must not hold a wrong hop.
                row.wrong += len(set(run.hops) - set(reference))
                row.duplicated += run.duplicates
        row.seconds = time.perf_counter() - started
        rows.append(row)
        print(f"  {kind}: {row.injected} faults, {row.completed}/{row.traces} done, lost {row.lost}, "
              f"dup {row.duplicated}, wrong {row.wrong}, {row.seconds:.1f}s", flush=True)
    return rows


async def wrong_chain_row(db: Database, sc: Scenario) -> Row:
    """A node answering another chain id: refused at connect (expected id), and refused against the
    id the database recorded for the name (what worker/serve/trace do)."""
    row = Row("wrong chain id")
    started = time.perf_counter()
    server = FaultyDevChain(sc, faults=FaultPlan(wrong_chain_id=1.0))
    other = DevChainServer(Chain(chain_id=sc.chain_id + 7))
    right = DevChainServer(sc)
    for s in (server, other, right):
        await s.start("127.0.0.1", 0)
    try:
        client = EvmChain(server.url, chain=sc.chain, expected_chain_id=sc.chain_id)
        try:
            await client.connect()
            row.notes.append("a node on another chain id was accepted")
        except WrongChain as exc:
            row.refused += 1
            row.notes.append(f"expected id: {exc}")
        finally:
            await client.close()
        row.injected += server.fault_counts["wrong_chain_id"]
        first = await connect_checked(db.pool, sc.chain, right.url)  # records the name's chain id
        await first.close()
        try:
            second = await connect_checked(db.pool, sc.chain, other.url)
            await second.close()
            row.notes.append("a node on another chain id was accepted against the recorded id")
        except WrongChain as exc:
            row.refused += 1
            row.notes.append(f"recorded id: {exc}")
        row.injected += 1
    finally:
        for s in (server, other, right):
            await s.stop()
    row.seconds = time.perf_counter() - started
    print(f"  wrong chain id: {row.refused}/{row.injected} refused", flush=True)
    return row


async def reorg_row(server_pg: str, rounds: int) -> Row:
    """A node that reorganises A -> B into A -> C after the trace recorded the hop into B. Each
    round on its own database: the reorg retracts every trace's reads past the fork."""
    row = Row("reorg mid-trace")
    started = time.perf_counter()
    for _ in range(rounds):
        async with throwaway_database(server_pg, "faults_reorg") as url:
            db = await Database.connect(url, min_size=1, max_size=6)
            try:
                await label_reorg_exchange(db.pool)
                final = DevChainServer(reorg_chains()[1])
                await final.start("127.0.0.1", 0)
                healthy = EvmChain(final.url, chain="ethereum", expected_chain_id=1337)
                try:
                    await healthy.connect()
                    ref_id, _ = await trace_reorg_seed(db.pool, healthy)
                    reference = await hop_rows(db.pool, ref_id)
                finally:
                    await healthy.close()
                    await final.stop()
                await forget_transfers(db.pool)
                server = ReorgingDevChain()
                await server.start("127.0.0.1", 0)
                raw = EvmChain(server.url, chain="ethereum", expected_chain_id=1337, timeout=5.0, retries=2,
                               backoff=0.05)
                try:
                    await raw.connect()
                    client = guarded(raw, db.pool, "ethereum")
                    assert isinstance(client, ReorgGuard)
                    trace_id, status = await trace_reorg_seed(db.pool, client)
                    row.injected += server.fault_counts["reorg"]
                    row.traces += 1
                    error = await db.pool.fetchval("SELECT error FROM traces WHERE id = $1", trace_id)
                    hops = await hop_rows(db.pool, trace_id)
                    row.wrong += len(set(hops) - set(reference))
                    row.duplicated += await duplicate_hops(db.pool, trace_id)
                    if status == "done":
                        row.completed += 1
                        row.lost += len(set(reference) - set(hops))
                    elif error and "reorganised" in error:
                        row.failed_with_reason += 1
                        row.notes.append(error)
                    else:
                        row.notes.append(f"{status} without the reorg as reason: {error}")
                    # Traced again on the same node, now serving the final chain.
                    again_id, again_status = await trace_reorg_seed(db.pool, client)
                    row.traces += 1
                    again = await hop_rows(db.pool, again_id)
                    if again_status == "done":
                        row.completed += 1
                    _compare(row, reference, again, await duplicate_hops(db.pool, again_id))
                finally:
                    await raw.close()
                    await server.stop()
            finally:
                await db.close()
    row.seconds = time.perf_counter() - started
    print(f"  reorg: {row.failed_with_reason} failed with the reason, {row.completed}/{row.traces} done, "
          f"wrong {row.wrong}, lost {row.lost}", flush=True)
    return row


async def kill_row(db: Database, sc: Scenario, reference: list[Hop], rounds: int) -> Row:
    row = Row("worker SIGKILL")
    started = time.perf_counter()
    slow = DevChainServer(sc, latency=0.03)  # batches stay in flight long enough for kills to land in them
    await slow.start("127.0.0.1", 0)
    try:
        for seed in range(1, rounds + 1):
            await forget_transfers(db.pool)
            run = await kill_workers_at_random(db, sc, slow.url, random.Random(seed))
            row.traces += 1
            row.injected += run.kills
            if run.status == "done":
                row.completed += 1
            else:
                row.notes.append(f"seed {seed}: {run.status}: {run.error}")
            _compare(row, reference, await hop_rows(db.pool, run.trace_id), await duplicate_hops(db.pool, run.trace_id))
            print(f"  SIGKILL seed {seed}: {run.kills} kills, {run.status}", flush=True)
    finally:
        await slow.stop()
    row.seconds = time.perf_counter() - started
    return row


# ------------------------------------------------------------------------------------ API fuzz


@dataclass
class FuzzRow:
    category: str
    tried: int = 0
    accepted: int = 0  # 2xx: the junk happened to be valid input
    refused: int = 0  # 4xx with a proper problem+json body
    unclear: int = 0  # 4xx without a machine-readable body naming the problem
    unexpected: int = 0  # a status outside what the case allows (not a server error)
    server_errors: int = 0  # 5xx
    half_written: int = 0  # refused label files that left something behind
    examples: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


async def _send(session: aiohttp.ClientSession, base: str, key: str, req: Request) -> tuple[int, str, Any]:
    headers = {"X-API-Key": key, **req.headers}
    kwargs: dict[str, Any] = {"headers": headers}
    if req.raw_body is not None:
        kwargs["data"] = req.raw_body
    elif req.send_json:
        kwargs["data"] = json.dumps(req.json_body, allow_nan=True)
        headers.setdefault("Content-Type", "application/json")
    async with session.request(req.method, URL(base + url_of(req), encoded=True), **kwargs) as r:
        raw = await r.read()
        ctype = r.headers.get("Content-Type", "")
        body: Any = raw.decode(errors="replace")
        if "json" in ctype and raw:
            try:
                body = json.loads(raw)
            except ValueError:
                pass
        return r.status, ctype, body


def _judge(row: FuzzRow, req: Request, status: int, ctype: str, body: Any) -> None:
    row.tried += 1
    if status >= 500:
        row.server_errors += 1
        row.examples.append(f"{status} {req.method} {req.path} ({req.what}): {str(body)[:200]}")
    elif status >= 400:
        why = refusal_problem(status, ctype, body)
        if why is not None:
            row.unclear += 1
            row.examples.append(f"unclear {status} {req.what}: {why}")
        else:
            row.refused += 1
        if status not in req.allowed:
            row.unexpected += 1
            row.examples.append(f"status {status} for {req.what}")
    else:
        row.accepted += 1
        if status not in req.allowed:
            row.unexpected += 1
            row.examples.append(f"accepted ({status}) {req.method} {req.path}: {req.what}")


async def _label_counts(db: Database) -> tuple[int, ...]:
    row = await db.pool.fetchrow(
        """SELECT (SELECT count(*) FROM labels), (SELECT count(*) FROM label_imports),
                  (SELECT count(*) FROM label_events), (SELECT count(*) FROM audit_log)""")
    return tuple(row)


async def fuzz_api(db: Database, sc: Scenario, trace_id: int, *, per_field: int, label_mutations: int,
                   seed: int) -> list[FuzzRow]:
    rng = random.Random(seed)
    server = DevChainServer(sc)
    await server.start("127.0.0.1", 0)
    client = EvmChain(server.url, chain=sc.chain, expected_chain_id=sc.chain_id)
    await client.connect()
    async with db.pool.acquire() as conn:
        _, key = await key_store.create_key(conn, "fuzzer", ["admin"])
    app = create_app(db, {sc.chain: client}, Settings())
    runner = web.AppRunner(app, access_log=None, **PARSER_LIMITS)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
    base = f"http://127.0.0.1:{port}"
    rows: dict[str, FuzzRow] = {}
    # Errors are logged by the server with their traceback; the table counts them.
    logging.getLogger("tracer.api").setLevel(logging.CRITICAL)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            async with session.get(base + "/v1/openapi.json") as r:
                doc = await r.json()
            throwaway = str(await db.pool.fetchval(
                "INSERT INTO traces (chain, seeds, policy, from_block, to_block, status) "
                "VALUES ($1, $2, '{}'::jsonb, 0, 0, 'cancelled') RETURNING id", sc.chain, sc.seeds[:1]))
            cases = openapi_cases(doc, {"trace_id": str(trace_id), "chain": sc.chain, "address": sc.seeds[0]},
                                  rng, per_field=per_field)
            # DELETEs go to a throwaway trace and run last, so reads keep a trace with hops.
            cases.sort(key=lambda c: c.method == "DELETE")
            for c in cases:
                if c.method == "DELETE":
                    c.path = c.path.replace(f"/v1/traces/{trace_id}", f"/v1/traces/{throwaway}")
            requests = [*cases, *junk_requests(trace_id)]
            # Tampered cursors: real ones from the first page of each keyset list.
            for path in (f"/v1/traces/{trace_id}/hops", "/v1/traces", "/v1/labels", "/v1/audit"):
                status, _, body = await _send(session, base, key, Request("cursors", "page", "GET", path,
                                                                          params={"limit": "1"}))
                cursor = body.get("next_cursor") if isinstance(body, dict) else None
                if status != 200 or not cursor:
                    continue
                for what, bad in tampered(cursor, rng):
                    requests.append(Request("cursors", f"{path}: {what}", "GET", path,
                                            params={"limit": "1", "cursor": bad}, allowed=(400,)))
                # A real cursor reused with other filters is refused too.
                if path.endswith("/hops"):
                    requests.append(Request("cursors", "hops cursor with another filter", "GET", path,
                                            params={"limit": "1", "cursor": cursor, "min_depth": "1"},
                                            allowed=(400,)))
            for req in requests:
                status, ctype, body = await _send(session, base, key, req)
                _judge(rows.setdefault(req.category, FuzzRow(req.category)), req, status, ctype, body)
            label_row = rows.setdefault("label files", FuzzRow("label files"))
            for f in label_files(rng, n=label_mutations):
                before = await _label_counts(db)
                req = Request("label files", f.what, "POST", "/v1/labels/import",
                              params={"filename": f.filename} if f.filename else {}, raw_body=f.body,
                              headers={"Content-Type": f.content_type}, allowed=(200, 201, 400, 413, 415))
                status, ctype, body = await _send(session, base, key, req)
                _judge(label_row, req, status, ctype, body)
                if status >= 400 and await _label_counts(db) != before:
                    label_row.half_written += 1
                    label_row.examples.append(f"half-written: {f.what}")
    finally:
        await runner.cleanup()
        await client.close()
        await server.stop()
    return list(rows.values())


# ------------------------------------------------------------------------------------ main


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    pg = server_url(args.database_url)
    size = 200 if args.smoke else args.size
    rounds = 1 if args.smoke else args.rounds
    kill_rounds = 1 if args.smoke else args.kill_rounds
    per_field = 2 if args.smoke else args.per_field
    label_mutations = 2 if args.smoke else args.label_mutations
    sc = generate(ScenarioParams.for_size(size, seed=args.seed))
    print(f"scenario: {sc.summary()}", flush=True)
    async with throwaway_database(pg, "faults") as url:
        db = await Database.connect(url, min_size=1, max_size=12)
        try:
            started = time.perf_counter()
            ref_id, reference = await reference_trace(db, sc)
            print(f"reference: trace {ref_id}, {len(reference)} hops", flush=True)
            print("node faults:", flush=True)
            rows = await fault_rows(db, sc, reference, rounds)
            rows.append(await wrong_chain_row(db, sc))
            rows.append(await reorg_row(pg, rounds))
            print("worker SIGKILL:", flush=True)
            rows.append(await kill_row(db, sc, reference, kill_rounds))
            print("API fuzz:", flush=True)
            fuzz = await fuzz_api(db, sc, ref_id, per_field=per_field, label_mutations=label_mutations, seed=args.seed)
            total_seconds = time.perf_counter() - started
            pg_info = await postgres_info(url)
        finally:
            await db.close()

    print()
    print(table("Faults injected (each trace compared with the healthy node's hops)",
                ["fault", "injected", "traces", "completed", "failed+reason", "refused", "hops lost",
                 "hops duplicated", "wrong hops", "seconds"],
                [[r.kind, r.injected, r.traces, r.completed, r.failed_with_reason, r.refused, r.lost, r.duplicated,
                  r.wrong, r.seconds] for r in rows]))
    totals = Row("total", sum(r.injected for r in rows), sum(r.traces for r in rows),
                 sum(r.completed for r in rows), sum(r.failed_with_reason for r in rows),
                 sum(r.refused for r in rows), sum(r.lost for r in rows), sum(r.duplicated for r in rows),
                 sum(r.wrong for r in rows))
    print(f"{'total':<24} faults injected {totals.injected}, traces completed {totals.completed}/{totals.traces}, "
          f"hops lost {totals.lost}, hops duplicated {totals.duplicated}, wrong hops {totals.wrong}")
    print()
    print(table("Malformed input against the API",
                ["input", "tried", "refused 4xx", "accepted 2xx", "unclear 4xx", "unexpected", "server errors",
                 "half-written"],
                [[f.category, f.tried, f.refused, f.accepted, f.unclear, f.unexpected, f.server_errors,
                  f.half_written] for f in fuzz]))
    tried = sum(f.tried for f in fuzz)
    errors = sum(f.server_errors for f in fuzz)
    print(f"{'total':<24} malformed inputs tried {tried}, server errors {errors}")
    for f in fuzz:
        for example in f.examples[:5]:
            print(f"  {f.category}: {example}")
    for r in rows:
        for note in r.notes[:3]:
            print(f"  {r.kind}: {note[:300]}")
    return {
        "benchmark": "faults",
        "smoke": bool(args.smoke),
        "machine": machine(),
        "postgres": pg_info,
        "scenario": {"size_param": size, "seed": args.seed, "transfers": sc.transfer_count(),
                     "reference_hops": len(reference)},
        "rounds_per_kind": rounds,
        "kill_rounds": kill_rounds,
        "faults": [r.as_json() for r in rows],
        "totals": {"faults_injected": totals.injected, "traces": totals.traces, "traces_completed": totals.completed,
                   "traces_failed_with_reason": totals.failed_with_reason, "hops_lost": totals.lost,
                   "hops_duplicated": totals.duplicated, "wrong_hops": totals.wrong,
                   "malformed_inputs_tried": tried, "server_errors": errors,
                   "unclear_refusals": sum(f.unclear for f in fuzz),
                   "half_written": sum(f.half_written for f in fuzz)},
        "fuzz": [f.as_json() for f in fuzz],
        "seconds": total_seconds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--size", type=int, default=1500, help="scenario size in transfers (default 1500)")
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--rounds", type=int, default=2, help="faulty traces per fault kind (default 2)")
    parser.add_argument("--kill-rounds", type=int, default=5, help="SIGKILL rounds (seeds), default 5")
    parser.add_argument("--per-field", type=int, default=6, help="junk values per OpenAPI parameter/member")
    parser.add_argument("--label-mutations", type=int, default=10, help="random mutations per valid label file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    # Clients that time out and drop connections are the point here: the devchain's aiohttp
    # server logs each one with a traceback.
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    report = asyncio.run(main_async(args))
    write_result("faults", report, args.smoke, args.out)
    # The bar: nothing lost, duplicated or wrong, no server error.
    t = report["totals"]
    bad = t["hops_lost"] + t["hops_duplicated"] + t["wrong_hops"] + t["server_errors"] + t["half_written"]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
