"""Faults survived, bad input refused, nothing lost: the issue #9 table.

Three parts, all on real pieces (devchain over HTTP, Postgres, workers, the API over a socket):

1. Node faults. The same generated scenario is traced once against a healthy devchain (the
   reference) and then against a devchain with one fault kind at a time (hangs past the client's
   timeout, HTTP 500/502/503, connection resets, malformed JSON, batches answered out of order or
   in part, 429 with and without Retry-After, all of them at once), plus a node serving another
   chain id (must be refused at connect) and a node that reorganises mid-trace (its trace must fail
   with the reason and keep no hop of a vanished block, and tracing again must give the hops of a
   healthy node of the final chain). Every trace runs on a fresh database (a clone of one holding
   only the schema and the scenario's labels), so its workers ask the faulty node for every
   transfer: nothing is read from a cache the healthy run filled. Its hops are compared with the
   reference one by one, by transfer: lost = reference hops it does not have (a trace that failed
   counts the hops it never reached), wrong = hops of other transfers, or of the same transfer with
   another sender, recipient, amount, asset or status. Duplicated = hop announcements the events
   outbox made twice (a transfer announced as added twice, a hop "updated" to what was already
   said): hops themselves cannot be duplicated, they are keyed by (trace, transfer). Repeated
   `exit_reached` events (one per batch reaching an exit, faults or not) are counted apart, with
   the reference's count next to them. The reorg's first trace is expected
   to fail: only its wrong hops count, the trace run again after it is compared in full.
2. Worker SIGKILL rounds: real `tracer worker` processes killed at seeded moments, each round on a
   fresh database; the trace must finish with exactly the reference hops.
3. Malformed input against the API: one request per operation and parameter/body member with a
   junk value, from the served OpenAPI document; hand-written junk addresses, chain names,
   policies, bodies; tampered pagination cursors; malformed label files through
   `POST /v1/labels/import` (labels, imports and audit rows counted before and after each).
   Every answer must be 4xx problem+json naming the problem (or a success where the junk happened
   to be valid); server errors must be 0.

    python bench/faults.py                 # ~1,500-transfer scenario, 2 rounds per fault kind, 5 kill rounds
    python bench/faults.py --smoke         # tiny, every kind at once, under a minute (run by the test suite)

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
    postgres_info,
    server_url,
    table,
    throwaway_database,
    write_result,
)
from faultkit import (  # noqa: E402
    SCRIPT,
    FaultyDevChain,
    FreshDatabases,
    Hop,
    ReorgingDevChain,
    compare_hops,
    duplicate_events,
    every_fault,
    hop_rows,
    kill_workers_at_random,
    label_reorg_exchange,
    reorg_chains,
    repeated_exit_events,
    run_faulty,
    run_trace,
    trace_reorg_seed,
)
from fuzz_inputs import (  # noqa: E402
    Request,
    junk_requests,
    label_files,
    openapi_cases,
    refusal_problem,
    tampered,
    url_of,
)
from yarl import URL  # noqa: E402

from tracer.api.app import PARSER_LIMITS, create_app  # noqa: E402
from tracer.api.context import Settings  # noqa: E402
from tracer.chains.errors import WrongChain  # noqa: E402
from tracer.chains.evm import EvmChain  # noqa: E402
from tracer.chains.retry import RetryPolicy, TransportOptions  # noqa: E402
from tracer.devchain.chain import Chain  # noqa: E402
from tracer.devchain.scenario import Scenario, ScenarioParams, generate  # noqa: E402
from tracer.devchain.server import DevChainServer, FaultPlan  # noqa: E402
from tracer.nodes import connect_checked  # noqa: E402
from tracer.reorg import ReorgGuard, guarded  # noqa: E402
from tracer.store import keys as key_store  # noqa: E402
from tracer.store.db import Database  # noqa: E402

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
    "429 with Retry-After": {"rate_limit": 15.0, "script": ("http_429_retry_after",)},
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
    wrong: int = 0
    duplicated_events: int = 0
    repeated_exit_events: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


#: The healthy node's hops, or the reference trace still running: rows run at once start beside
#: it and wait for it only to compare their hops with it.
Reference = list[Hop] | asyncio.Future[list[Hop]]


async def _compare(row: Row, reference: Reference, hops: list[Hop], *, count_lost: bool = True) -> None:
    diff = compare_hops(reference if isinstance(reference, list) else await reference, hops)
    if count_lost:
        row.lost += len(diff.lost)
    row.wrong += diff.wrong
    # The first differences, so a failing run says what went wrong.
    for h in diff.lost[:2] if count_lost else ():
        row.notes.append(f"lost {h[0]}:{h[1]} {h[2]} -> {h[3]} {h[4]}")
    for ref, got in diff.altered[:2]:
        row.notes.append(f"altered {ref[0]}:{ref[1]}: {ref[2:]} became {got[2:]}")
    for h in diff.extra[:2]:
        row.notes.append(f"not in the reference {h[0]}:{h[1]} {h[2]} -> {h[3]} {h[4]}")


# ------------------------------------------------------------------------------------ node faults


async def reference_trace(db: Database, sc: Scenario) -> tuple[int, list[Hop]]:
    """The scenario traced on a healthy node: what every faulty run must match, hop by hop."""
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


async def _hops(reference_run: asyncio.Future[tuple[int, list[Hop], int]]) -> list[Hop]:
    return (await reference_run)[1]


async def fault_rows(dbs: FreshDatabases, sc: Scenario, reference: Reference, rounds: int,
                     kinds: dict[str, dict[str, Any]] | None = None, *, parallel: int = 1) -> list[Row]:
    """One row per fault kind, in the order of `kinds`. With `parallel` > 1 that many kinds run at
    once (each on its own node and its own fresh database, so they share nothing but the event
    loop); a row's seconds then overlap the others'."""
    if kinds is None:
        kinds = dict(KINDS)
        kinds["all at once"] = {"plan": every_fault, "rate_limit": 10.0, "bare_429": 0.05, "script": SCRIPT}
    slots = asyncio.Semaphore(max(1, parallel))

    async def one(index: int, kind: str, spec: dict[str, Any]) -> Row:
        async with slots:
            return await _fault_row(dbs, sc, reference, rounds, index, kind, spec)

    return list(await asyncio.gather(*(one(i, kind, spec) for i, (kind, spec) in enumerate(kinds.items()))))


async def _fault_row(dbs: FreshDatabases, sc: Scenario, reference: Reference, rounds: int, index: int, kind: str,
                     spec: dict[str, Any]) -> Row:
    row = Row(kind)
    started = time.perf_counter()
    runs: list[list[Hop]] = []
    for r in range(rounds):
        seed = 1000 * (r + 1) + index
        plan = spec["plan"](seed) if "plan" in spec else FaultPlan(seed=seed, **spec.get("faults", {}))
        server = FaultyDevChain(sc, faults=plan, rate_limit=spec.get("rate_limit"),
                                bare_429=spec.get("bare_429", 0.0), seed=seed, script=spec.get("script", ()))
        await server.start("127.0.0.1", 0)
        try:
            async with dbs.fresh() as db:
                run = await run_faulty(db.pool, sc, server)
                row.duplicated_events += await duplicate_events(db.pool, run.trace_id)
                row.repeated_exit_events += await repeated_exit_events(db.pool, run.trace_id)
        finally:
            await server.stop()
        row.traces += 1
        row.injected += sum(run.injected.values())
        if run.status == "done":
            row.completed += 1
        else:
            row.failed_with_reason += bool(run.error)
            row.notes.append(f"round {r}: {run.status}: {run.error}")
        runs.append(run.hops)
    row.seconds = time.perf_counter() - started  # its own runs (a reference still running is waited for below)
    for hops in runs:
        # A failed trace's missing hops are lost too: the faults were meant to be survived.
        await _compare(row, reference, hops)
    print(f"  {kind}: {row.injected} faults, {row.completed}/{row.traces} done, lost {row.lost}, "
          f"wrong {row.wrong}, duplicated events {row.duplicated_events}, {row.seconds:.1f}s", flush=True)
    return row


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
    """A node that reorganises A -> B into A -> C after the trace recorded the hop into B. The
    reference (a healthy node of the final chain) and each round run on databases of their own;
    a round's second trace runs on the first one's database: what it cached before the reorg
    must not leak into it."""
    row = Row("reorg mid-trace")
    started = time.perf_counter()
    async with throwaway_database(server_pg, "faults_reorg_ref") as ref_url:
        ref_db = await Database.connect(ref_url, min_size=1, max_size=6)
        try:
            await label_reorg_exchange(ref_db.pool)
            final = DevChainServer(reorg_chains()[1])
            await final.start("127.0.0.1", 0)
            healthy = EvmChain(final.url, chain="ethereum", expected_chain_id=1337)
            try:
                await healthy.connect()
                ref_id, _ = await trace_reorg_seed(ref_db.pool, healthy)
                reference = await hop_rows(ref_db.pool, ref_id)
            finally:
                await healthy.close()
                await final.stop()
        finally:
            await ref_db.close()
    for _ in range(rounds):
        async with throwaway_database(server_pg, "faults_reorg") as url:
            db = await Database.connect(url, min_size=1, max_size=6)
            try:
                await label_reorg_exchange(db.pool)
                server = ReorgingDevChain()
                await server.start("127.0.0.1", 0)
                raw = EvmChain(server.url, chain="ethereum", expected_chain_id=1337,
                               transport=TransportOptions(timeout=5.0, policy=RetryPolicy(retries=2, backoff=0.05)))
                try:
                    await raw.connect()
                    client = guarded(raw, db.pool, "ethereum")
                    assert isinstance(client, ReorgGuard)
                    trace_id, status = await trace_reorg_seed(db.pool, client)
                    row.injected += server.fault_counts["reorg"]
                    row.traces += 1
                    error = await db.pool.fetchval("SELECT error FROM traces WHERE id = $1", trace_id)
                    hops = await hop_rows(db.pool, trace_id)
                    row.duplicated_events += await duplicate_events(db.pool, trace_id)
                    if status == "done":
                        row.completed += 1
                        await _compare(row, reference, hops)
                    elif error and "reorganised" in error:
                        # The expected outcome: stopped with the reason, no hop of a vanished block.
                        row.failed_with_reason += 1
                        row.notes.append(error)
                        await _compare(row, reference, hops, count_lost=False)
                    else:
                        row.notes.append(f"{status} without the reorg as reason: {error}")
                        await _compare(row, reference, hops)
                    # Traced again on the same node, now serving the final chain.
                    again_id, again_status = await trace_reorg_seed(db.pool, client)
                    row.traces += 1
                    if again_status == "done":
                        row.completed += 1
                    await _compare(row, reference, await hop_rows(db.pool, again_id))
                    row.duplicated_events += await duplicate_events(db.pool, again_id)
                finally:
                    await raw.close()
                    await server.stop()
            finally:
                await db.close()
    row.seconds = time.perf_counter() - started
    print(f"  reorg: {row.failed_with_reason} failed with the reason, {row.completed}/{row.traces} done, "
          f"wrong {row.wrong}, lost {row.lost}", flush=True)
    return row


async def kill_row(dbs: FreshDatabases, sc: Scenario, reference: Reference, rounds: int) -> Row:
    row = Row("worker SIGKILL")
    started = time.perf_counter()
    runs: list[list[Hop]] = []
    slow = DevChainServer(sc, latency=0.03)  # batches stay in flight long enough for kills to land in them
    await slow.start("127.0.0.1", 0)
    try:
        for seed in range(1, rounds + 1):
            async with dbs.fresh() as db:
                run = await kill_workers_at_random(db, sc, slow.url, random.Random(seed))
                hops = await hop_rows(db.pool, run.trace_id)
                row.duplicated_events += await duplicate_events(db.pool, run.trace_id)
                row.repeated_exit_events += await repeated_exit_events(db.pool, run.trace_id)
            row.traces += 1
            row.injected += run.kills
            if run.status == "done":
                row.completed += 1
            else:
                row.notes.append(f"seed {seed}: {run.status}: {run.error}")
            runs.append(hops)
            print(f"  SIGKILL seed {seed}: {run.kills} kills, {run.status}", flush=True)
    finally:
        await slow.stop()
    row.seconds = time.perf_counter() - started  # its own runs (a reference still running is waited for below)
    for hops in runs:
        await _compare(row, reference, hops)
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
    parallel = args.parallel or (len(KINDS) + 1 if args.smoke else 1)  # smoke: every kind and all at once
    sc = generate(ScenarioParams.for_size(size, seed=args.seed))
    print(f"scenario: {sc.summary()}", flush=True)
    dbs = await FreshDatabases.create(pg, sc)
    try:
        async with dbs.fresh(max_size=12) as db:
            started = time.perf_counter()

            async def reference_run() -> tuple[int, list[Hop], int]:
                ref_id, hops = await reference_trace(db, sc)
                repeats = await repeated_exit_events(db.pool, ref_id)
                print(f"reference: trace {ref_id}, {len(hops)} hops, {repeats} repeated exit events", flush=True)
                return ref_id, hops, repeats

            healthy = asyncio.ensure_future(reference_run())

            async def on_healthy_database() -> tuple[Row, list[FuzzRow]]:
                # What runs on the reference's database once its trace is done (the fuzz reads it).
                ref_id, _, _ = await healthy
                wrong = await wrong_chain_row(db, sc)
                print("API fuzz:", flush=True)
                return wrong, await fuzz_api(db, sc, ref_id, per_field=per_field, label_mutations=label_mutations,
                                             seed=args.seed)

            if parallel > 1:
                # The runs are independent (own node, own database each) and mostly wait on
                # timeouts, backoff and rate limits: overlapping them, and them with the reference
                # trace (which they need only to compare hops) and the API fuzz, cuts the wall time,
                # not the checks.
                print("reference, node faults, reorg, worker SIGKILL, API fuzz:", flush=True)
                faulty, reorg, kill, (wrong, fuzz) = await asyncio.gather(
                    fault_rows(dbs, sc, asyncio.ensure_future(_hops(healthy)), rounds, parallel=parallel),
                    reorg_row(pg, rounds), kill_row(dbs, sc, asyncio.ensure_future(_hops(healthy)), kill_rounds),
                    on_healthy_database())
            else:
                _, reference, _ = await healthy
                print("node faults, reorg, worker SIGKILL:", flush=True)
                faulty = await fault_rows(dbs, sc, reference, rounds)
                reorg = await reorg_row(pg, rounds)
                kill = await kill_row(dbs, sc, reference, kill_rounds)
                wrong, fuzz = await on_healthy_database()
            _, reference, ref_exit_repeats = await healthy
            rows = [*faulty, wrong, reorg, kill]
            total_seconds = time.perf_counter() - started
            pg_info = await postgres_info(db.url)
    finally:
        await dbs.drop()

    print()
    print(table("Faults injected (each trace compared with the healthy node's hops)",
                ["fault", "injected", "traces", "completed", "failed+reason", "refused", "hops lost",
                 "wrong hops", "events duplicated", "seconds"],
                [[r.kind, r.injected, r.traces, r.completed, r.failed_with_reason, r.refused, r.lost, r.wrong,
                  r.duplicated_events, r.seconds] for r in rows]))
    totals = Row("total", sum(r.injected for r in rows), sum(r.traces for r in rows),
                 sum(r.completed for r in rows), sum(r.failed_with_reason for r in rows),
                 sum(r.refused for r in rows), sum(r.lost for r in rows), sum(r.wrong for r in rows),
                 sum(r.duplicated_events for r in rows))
    print(f"{'total':<24} faults injected {totals.injected}, traces completed {totals.completed}/{totals.traces}, "
          f"hops lost {totals.lost}, wrong hops {totals.wrong}, events duplicated {totals.duplicated_events}")
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
        "postgres": pg_info,
        "scenario": {"size_param": size, "seed": args.seed, "transfers": sc.transfer_count(),
                     "reference_hops": len(reference)},
        "rounds_per_kind": rounds,
        "kill_rounds": kill_rounds,
        "parallel": parallel,
        "faults": [r.as_json() for r in rows],
        "totals": {"faults_injected": totals.injected, "traces": totals.traces, "traces_completed": totals.completed,
                   "traces_failed_with_reason": totals.failed_with_reason, "hops_lost": totals.lost,
                   "wrong_hops": totals.wrong, "events_duplicated": totals.duplicated_events,
                   "reference_hops": len(reference),
                   "repeated_exit_events": sum(r.repeated_exit_events for r in rows),
                   "reference_repeated_exit_events": ref_exit_repeats,
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
    parser.add_argument("--parallel", type=int, default=0,
                        help="fault kinds run at once, next to the reorg and SIGKILL rows when > 1 "
                             "(default 1; every kind with --smoke); per-kind seconds then overlap")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    # Clients that time out and drop connections are the point here: the devchain's aiohttp
    # server logs each one with a traceback.
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    report = asyncio.run(main_async(args))
    write_result("faults", report, args.smoke, args.out)
    # The bar: nothing lost, wrong or announced twice, no server error.
    t = report["totals"]
    bad = t["hops_lost"] + t["wrong_hops"] + t["events_duplicated"] + t["server_errors"] + t["half_written"]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
