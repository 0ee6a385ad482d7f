"""Alert latency: block confirmed -> signed webhook received, the previous code and this code side by side.

One command runs every scenario on the code of `--before REF` (a git worktree of it, kept under the
temp folder) and on this tree, one after the other on the same machine in the same run, each on
its own throwaway database migrated by its own migrations:

    python bench/alert_latency.py                        # scenarios 1000x1, 10000x1, 1000x100
    python bench/alert_latency.py --before none --smoke  # this code only, tiny (the test suite)

A scenario `NxT` is N webhook subscriptions over T watching traces (N/T each, assorted filters that
all match). A devchain and a webhook receiver run in the bench's child process; `tracer worker`,
`tracer monitor` and `tracer alerts deliver` run as real processes of the code measured, with
their own defaults (the monitor polls the head every --poll seconds and, in code that has it, steps
at once when the devchain pushes a new head over WebSocket: `monitor_heads` in the results says
which it got, from the devchain's count of newHeads notices sent). Each round mines one block
in which every trace's wallet pays a fresh address, then the blocks that confirm it; the clock
starts when the confirming block is mined and stops when each subscription's signed `hop_added`
webhook for that payment arrives (signatures checked, duplicates per subscription counted).
The first `--warmup` blocks (default 1) are delivered before the measured ones and reported apart
(`warmup_rounds_ms`): the processes have just started, so the first block also pays for opening
connections to the receiver and Postgres, checking every subscription's URL and Python's first
runs of each path, which a delivery worker running for days pays once. The measured rounds are the
steady state, every figure below is theirs.

Where the time goes: triggers the bench adds to its own database stamp (clock_timestamp, inside
the writing transaction, a few ms before its commit) when the monitor puts a wallet back on the
frontier, when a worker claims it, when the hop event is written, numbered and fanned out to
deliveries, and when a delivery worker leases subscriptions; the receiver stamps arrivals. Each
stage is "done for every trace of the block" (the last one); stage times are p50 over rounds. The
delivery worker's CPU per webhook comes from /proc, and the cost of a body and of its signature
from timing the code's own functions.

The receiver is a minimal HTTP/1.1 server (keep-alive, Content-Length) rather than aiohttp's, so
the figures are the sender's and not those of a test receiver sharing its CPUs. While a round runs
it only stamps and keeps each request; right after the round's last hop it checks every signature
and body and counts duplicates (its CPU, checks included, is reported as the receiver's). Everything else
(Postgres, node, three processes, other people's work) shares the machine: the load average before
each run is recorded next to its figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets as secrets_mod
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
#: The code before the #22 alert work (store split, bodies rendered once, claims by the slot-load).
BEFORE = "194b507"
SCENARIOS = "1000x1,10000x1,1000x100"
TARGET_P99_MS = 1000.0

ETH = 10**18


def _seed(i: int) -> str:
    return f"0x{0x5E000000 + i:040x}"


def _wallet(i: int) -> str:
    return f"0x{0xA1000000 + i:040x}"


def _fresh(r: int, i: int) -> str:
    return f"0x{0xF0000000 + r * 10_000 + i:040x}"


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------------------------ receiver


class _Http(asyncio.Protocol):
    """Just enough HTTP/1.1 for webhooks: requests with Content-Length on kept-alive connections.
    A request is only cut out, stamped and kept here; the receiver checks it after the round."""

    def __init__(self, rx: Receiver) -> None:
        self.rx = rx
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end]
            lower = head.lower()
            at = lower.find(b"\r\ncontent-length:")
            size = 0
            if at >= 0:
                stop = lower.find(b"\r\n", at + 17)
                size = int(lower[at + 17:stop if stop >= 0 else len(lower)])
            if len(self.buf) < end + 4 + size:
                return
            body, self.buf = self.buf[end + 4:end + 4 + size], self.buf[end + 4 + size:]
            self.rx.handle(head, lower, body)
            assert self.transport is not None
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok")


class Receiver:
    """The subscriptions' receiver. During a round it only stamps and keeps each request (and
    counts the hop_added ones by their event-type header, to know when the round is complete);
    `settle()` then checks every signature, decodes every body and counts duplicates. A real
    receiver runs on another machine: this one shares the bench's two CPUs with the code measured,
    so it takes as little of them as it can while the clock runs, and checks everything after."""

    def __init__(self, secrets: dict[str, str], verify: Any, type_header: str) -> None:
        self.secrets = secrets
        self.verify = verify
        self.hop_marker = f"\r\n{type_header.lower()}: hop_added\r\n".encode()
        self.kept: list[tuple[float, bytes, bytes]] = []  # (arrival, head, body), unchecked yet
        self.hops_received = 0  # hop_added requests so far, by header (checked by settle)
        self.arrivals: dict[str, list[float]] = {}  # recipient -> arrival times (one per subscription)
        self.bad_signatures = 0
        self.requests = 0
        self.seen: Counter[tuple[str, Any]] = Counter()  # (subscription path, event id) -> deliveries
        self.changed = asyncio.Event()
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: _Http(self), "127.0.0.1", 0, backlog=4096)
        self.port = self.server.sockets[0].getsockname()[1]

    def handle(self, head: bytes, lower: bytes, body: bytes) -> None:
        self.kept.append((time.time(), head, body))
        self.requests += 1
        if self.hop_marker in lower + b"\r\n":
            self.hops_received += 1
            self.changed.set()

    def settle(self) -> None:
        """Check what was kept: signatures, bodies, duplicates; hop arrivals by recipient."""
        kept, self.kept = self.kept, []
        for at, head, body in kept:
            lines = head.decode("latin-1").split("\r\n")
            path = lines[0].split(" ")[1]
            headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
            if not self.verify(self.secrets.get(path, ""), body, headers.get("x-tracer-timestamp"),
                               headers.get("x-tracer-signature")):
                self.bad_signatures += 1
            event = json.loads(body)
            self.seen[(path, event.get("id"))] += 1
            if event["type"] == "hop_added":
                self.arrivals.setdefault(event["hop"]["to"], []).append(at)

    @property
    def duplicates(self) -> int:
        return sum(n - 1 for n in self.seen.values() if n > 1)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)


# ------------------------------------------------------------------- stage stamps (bench only)

MARKS_SQL = """
CREATE TABLE bench_marks (at timestamptz NOT NULL DEFAULT clock_timestamp(), what text NOT NULL, detail text,
                          n bigint);
CREATE FUNCTION bench_job_mark() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.state = 'pending' AND (TG_OP = 'INSERT' OR OLD.state IS DISTINCT FROM 'pending') THEN
    INSERT INTO bench_marks (what, detail) VALUES ('woken', NEW.address);
  ELSIF TG_OP = 'UPDATE' AND NEW.state = 'running' AND OLD.state IS DISTINCT FROM 'running' THEN
    INSERT INTO bench_marks (what, detail) VALUES ('claimed', NEW.address);
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER bench_job_mark AFTER INSERT OR UPDATE OF state ON jobs FOR EACH ROW EXECUTE FUNCTION bench_job_mark();
CREATE FUNCTION bench_event_mark() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.type = 'hop_added' AND TG_OP = 'INSERT' THEN
    INSERT INTO bench_marks (what, detail) VALUES ('written', NEW.payload->>'to');
  ELSIF NEW.type = 'hop_added' AND OLD.seq IS NULL AND NEW.seq IS NOT NULL THEN
    INSERT INTO bench_marks (what, detail) VALUES ('numbered', NEW.payload->>'to');
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER bench_event_mark AFTER INSERT OR UPDATE OF seq ON events FOR EACH ROW
  EXECUTE FUNCTION bench_event_mark();
CREATE FUNCTION bench_fanout_mark() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO bench_marks (what, n) SELECT 'fanned', count(*) FROM new_rows HAVING count(*) > 0;
  RETURN NULL;
END $$;
CREATE TRIGGER bench_fanout_mark AFTER INSERT ON deliveries REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION bench_fanout_mark();
CREATE FUNCTION bench_lease_mark() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO bench_marks (what, n)
    SELECT 'leased', count(*) FROM new_rows n JOIN old_rows o ON o.id = n.id
    WHERE n.leased_by IS NOT NULL AND n.lease_until IS DISTINCT FROM o.lease_until HAVING count(*) > 0;
  RETURN NULL;
END $$;
CREATE TRIGGER bench_lease_mark AFTER UPDATE ON subscriptions REFERENCING NEW TABLE AS new_rows OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION bench_lease_mark();
"""

#: Stages in order: (key, what it covers). Each is "done for every trace of the block" at a time
#: since the block was confirmed; the stage's cost is the difference to the previous one.
STAGES = [
    ("monitor", "monitor woken (a pushed head, else its poll), head and transfers read, trace window moved, "
                "wallet back on the frontier"),
    ("worker_wakeup", "a trace worker claims the woken job"),
    ("worker_step", "the worker's batch: fetch, decide, commit hops with their hop_added event"),
    ("outbox_read", "the sequencer wakes and numbers the committed event"),
    ("fan_out", "deliveries inserted for every matching subscription"),
    ("delivery_wakeup", "a delivery worker wakes and leases the first subscriptions"),
    ("first_webhook", "first queue read, body rendered and signed, posted, received"),
    ("last_webhook", "the rest of the block's webhooks, to the last one received"),
]


def _stage_times(marks: list[tuple[float, str, str | None]], targets: dict[str, str], confirmed: float,
                 arrivals: dict[str, list[float]]) -> dict[str, float]:
    """Since `confirmed` (ms), when each stage was done for every trace of the block (targets:
    wallet -> the fresh address it paid; arrivals by fresh address). Per trace the stages follow
    one another; the block's time of a stage is its last trace's."""
    first: dict[tuple[str, str], float] = {}
    for at, what, detail in marks:
        if detail is not None:
            first.setdefault((what, detail), at)
    fanned = [at for at, what, _ in marks if what == "fanned"]
    leased = [at for at, what, _ in marks if what == "leased"]
    nan = float("nan")
    per_trace: list[dict[str, float]] = []
    for wallet, fresh in targets.items():
        t = {"monitor": first.get(("woken", wallet), nan), "worker_wakeup": first.get(("claimed", wallet), nan),
             "worker_step": first.get(("written", fresh), nan), "outbox_read": first.get(("numbered", fresh), nan)}
        t["fan_out"] = min((at for at in fanned if at >= t["outbox_read"]), default=nan)
        t["delivery_wakeup"] = min((at for at in leased if at >= t["fan_out"]), default=nan)
        t["first_webhook"] = min(arrivals[fresh])
        t["last_webhook"] = max(arrivals[fresh])
        per_trace.append(t)
    return {k: (max(t[k] for t in per_trace) - confirmed) * 1000 for k, _ in STAGES}


# ----------------------------------------------------------------------------- one code, one run


async def _spawn(tree: Path, args: list[str], env: dict[str, str], profile: str | None = None
                 ) -> asyncio.subprocess.Process:
    prof = ["-m", "cProfile", "-o", profile] if profile else []
    return await asyncio.create_subprocess_exec(sys.executable, *prof, "-m", "tracer.cli", *args, cwd=tree, env=env,
                                                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)


async def _backend_cpu(pool: Any) -> dict[int, float]:
    """CPU seconds so far of every Postgres backend connected to the bench's database (all of
    them: tracer's processes and the bench's own pool), read from /proc: a server on this
    machine. Empty when it is elsewhere."""
    out: dict[int, float] = {}
    for r in await pool.fetch("SELECT pid FROM pg_stat_activity WHERE datname = current_database()"):
        with contextlib.suppress(OSError):
            out[r["pid"]] = _cpu_seconds(r["pid"])
    return out


async def _quiet(pool: Any, timeout: float = 300.0) -> None:
    """Every event numbered and every delivery made: a round's clock starts on an idle pipeline."""
    deadline = time.monotonic() + timeout
    while await pool.fetchval("SELECT EXISTS (SELECT 1 FROM events WHERE seq IS NULL) "
                              "OR EXISTS (SELECT 1 FROM deliveries WHERE state = 'pending')"):
        if time.monotonic() > deadline:
            raise TimeoutError("events or deliveries still pending")
        await asyncio.sleep(0.05)


async def _wait_status(pool: Any, trace_ids: list[int], status: str, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while await pool.fetchval("SELECT count(*) FROM traces WHERE id = ANY($1::bigint[]) AND status <> $2",
                              trace_ids, status):
        if time.monotonic() > deadline:
            raise TimeoutError(f"traces never all became {status}")
        await asyncio.sleep(0.05)


def _body_costs(n: int = 2000, repeat: int = 5) -> dict[str, float]:
    """Microseconds per webhook of the code's body making and signing, timed here (the best of
    `repeat` runs: the machine is shared)."""
    runs = [_body_cost(n) for _ in range(repeat)]
    return {"body_us": min(r["body_us"] for r in runs), "sign_us": min(r["sign_us"] for r in runs),
            "body_bytes": runs[0]["body_bytes"]}


def _body_cost(n: int) -> dict[str, float]:
    from datetime import UTC, datetime

    from tracer.alerts import events, signing

    payload = {"transfer_id": 11, "tx_hash": "0x" + "ab" * 32, "position": "tx", "block_number": 120,
               "block_time": 1_700_000_000, "from": _wallet(0), "to": _fresh(0, 0), "asset": "native",
               "amount": "1000000000000000000", "transfer_amount": "1000000000000000000", "symbol": None,
               "decimals": None, "depth": 2, "kind": "native", "status": "followed", "reason": None, "share": 1.0,
               "to_entity": None, "to_category": None, "chain": "ethereum"}
    created = datetime(2026, 1, 2, tzinfo=UTC)
    once = getattr(events, "rendered", None)
    if once is not None:  # this code: rendered once per event, then per subscription a join
        from tracer.domain.alerts import EventRow

        row: Any = EventRow(7, 1, "hop_added", payload, created, "ethereum")
        started = time.perf_counter()
        r = once(row)
        bodies = [r.for_subscription(i) for i in range(n)]
    else:  # the previous code rendered and encoded the event for every subscription
        row = {"seq": 7, "trace_id": 1, "type": "hop_added", "payload": payload, "created_at": created,
               "chain": "ethereum"}
        started = time.perf_counter()
        bodies = [events.encode(events.render(row, subscription_id=i)) for i in range(n)]
    body_us = (time.perf_counter() - started) / n * 1e6
    started = time.perf_counter()
    for i, b in enumerate(bodies):
        signing.sign(f"bench-secret-{i:06d}", 1_764_000_000, b)
    return {"body_us": round(body_us, 2), "sign_us": round((time.perf_counter() - started) / n * 1e6, 2),
            "body_bytes": len(bodies[0])}


async def child(args: argparse.Namespace) -> dict[str, Any]:
    import asyncpg

    from tracer.alerts import signing
    from tracer.chains.evm import EvmChain
    from tracer.devchain.chain import Chain
    from tracer.devchain.scenario import KIND_NATIVE, ScenarioTx
    from tracer.devchain.server import DevChainServer
    from tracer.engine.service import create_trace
    from tracer.store.db import Database
    from tracer.store.urls import quote_ident, with_database

    tree = Path(args.tree)  # resolved by main
    name = f"tracer_bench_alerts_{secrets_mod.token_hex(4)}"
    admin = await asyncpg.connect(args.server_url)
    try:
        await admin.execute(f"CREATE DATABASE {quote_ident(name)}")
    finally:
        await admin.close()
    n_subs, n_traces, rounds, c = args.subscriptions, args.traces, args.rounds, args.confirmations
    per_trace = n_subs // n_traces
    procs: list[asyncio.subprocess.Process] = []
    db = node = client = rx = None
    try:
        chain = Chain(chain_id=1337, genesis_balances={_seed(i): {"native": 1000 * ETH} for i in range(n_traces)})
        chain.append_block([ScenarioTx(KIND_NATIVE, _seed(i), _wallet(i), 100 * ETH) for i in range(n_traces)])
        for _ in range(c + 2):
            chain.append_block([])
        node = DevChainServer(chain)
        rpc = await node.start("127.0.0.1", 0)
        db = await Database.connect(with_database(args.server_url, name), max_size=4)
        await db.pool.execute(MARKS_SQL)
        client = EvmChain(rpc, chain="ethereum", expected_chain_id=1337)
        await client.connect()
        secrets = {f"/s/{i}": f"bench-secret-{i:06d}" for i in range(n_subs)}
        rx = Receiver(secrets, signing.verify, signing.EVENT_TYPE_HEADER)
        await rx.start()
        env = dict(os.environ, TRACER_WEBHOOK_ALLOW="127.0.0.1", TRACER_LOG_LEVEL="WARNING", DATABASE_URL=db.url,
                   PYTHONPATH=str(tree))
        procs.append(await _spawn(tree, ["worker", "--rpc", rpc, "--concurrency", "2"], env, args.profile_worker))
        procs.append(await _spawn(tree, ["monitor", "--rpc", rpc, "--poll", str(args.poll)], env,
                                  args.profile_monitor))
        for k in range(args.deliverers):
            procs.append(await _spawn(tree, ["alerts", "deliver", "--poll", "0.5"], env,
                                      args.profile_deliver if k == 0 else None))
        trace_ids = [await create_trace(db.pool, client, chain="ethereum", seeds=[_seed(i)], label=f"alert bench {i}",
                                        policy={"watch": True, "confirmations": c}, created_by="bench")
                     for i in range(n_traces)]
        await _wait_status(db.pool, trace_ids, "watching")
        await _quiet(db.pool)  # subscriptions start after the traces' own events
        # Assorted filters, all of which the measured hops match: the fan-out evaluates them all.
        shapes: list[dict[str, Any]] = [{}, {"event_types": ["hop_added", "exit_reached"]},
                                        {"min_amount": json.dumps({"native": "1000"})}, {"addresses": True}]
        rows = []
        for i in range(n_subs):
            t = min(i // per_trace, n_traces - 1)
            shape = shapes[i % len(shapes)]
            rows.append((f"bench {i}", f"http://127.0.0.1:{rx.port}/s/{i}", secrets[f"/s/{i}"], trace_ids[t],
                         [_wallet(t)] if shape.get("addresses") else None, shape.get("event_types"),
                         shape.get("min_amount")))
        await db.pool.execute(
            """INSERT INTO subscriptions (name, delivery, url, secret, chain, trace_id, addresses, event_types,
                                          min_amount, created_by, start_seq)
               SELECT n, 'webhook', u, s, 'ethereum', t, CASE WHEN a = '' THEN NULL ELSE ARRAY[a] END,
                      CASE WHEN e = '' THEN NULL ELSE string_to_array(e, ',') END, m::jsonb, 'bench',
                      (SELECT last_seq FROM alert_state WHERE id = 1)
               FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[])
                    AS x(n, u, s, t, a, e, m)""",
            [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows],
            [r[4][0] if r[4] else "" for r in rows], [",".join(r[5]) if r[5] else "" for r in rows],
            [r[6] for r in rows])
        await asyncio.sleep(2 * args.pause)
        await _quiet(db.pool)
        deliverers = [p.pid for p in procs[2:]]
        latencies: list[float] = []
        stage_rows: list[dict[str, float]] = []
        warmups: list[dict[str, float]] = []  # blocks before the measured ones: first and last webhook, ms
        for r in range(args.warmup + rounds):
            if r == args.warmup:  # the measured rounds start: counters from here
                cpu_before = {p.pid: _cpu_seconds(p.pid) for p in procs}
                own_cpu_before = time.process_time()  # this process: the receiver (and the devchain)
                pg_before = await _backend_cpu(db.pool)
                requests_before = rx.requests
                # None: the code measured has no WebSocket side to its devchain (nor heads to its monitor).
                pushed_before = getattr(node, "heads_pushed", None)
            targets = {_wallet(i): _fresh(r, i) for i in range(n_traces)}
            block = chain.append_block([ScenarioTx(KIND_NATIVE, w, f, ETH) for w, f in targets.items()]).number
            for _ in range(c):
                chain.append_block([])
            confirmed_at = time.time()  # block `block` has its confirmations from now on
            deadline = time.monotonic() + 300
            expected = per_trace * n_traces
            need = rx.hops_received + expected  # hop_added requests to see before checking them
            while True:
                if rx.hops_received >= need:
                    rx.settle()  # the round's requests checked and counted by recipient
                    got = sum(len(rx.arrivals.get(f, ())) for f in targets.values())
                    if got >= expected:
                        break
                    need = rx.hops_received + expected - got  # duplicates or strays: wait for the rest
                if time.monotonic() > deadline:
                    rx.settle()
                    got = sum(len(rx.arrivals.get(f, ())) for f in targets.values())
                    raise TimeoutError(f"round {r}: {got}/{n_subs} webhooks arrived")
                rx.changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(rx.changed.wait(), 1.0)
            arrivals = {f: list(rx.arrivals[f]) for f in targets.values()}
            every = [t for ts in arrivals.values() for t in ts]
            if r < args.warmup:
                first, last = (min(every) - confirmed_at) * 1000, (max(every) - confirmed_at) * 1000
                warmups.append({"first": first, "last": last})
                print(f"  warm-up block {block}: first {first:.0f} ms, last {last:.0f} ms", file=sys.stderr, flush=True)
                await _wait_status(db.pool, trace_ids, "watching")
                await asyncio.sleep(args.pause)
                await _quiet(db.pool)
                continue
            latencies.extend(t - confirmed_at for t in every)
            marks = [(float(m["at"]), m["what"], m["detail"]) for m in await db.pool.fetch(
                "SELECT extract(epoch FROM at) AS at, what, detail FROM bench_marks WHERE at >= to_timestamp($1) "
                "ORDER BY at", confirmed_at - 0.001)]
            stage_rows.append(_stage_times(marks, targets, confirmed_at, arrivals))
            first, last = (min(every) - confirmed_at) * 1000, (max(every) - confirmed_at) * 1000
            print(f"  round {r - args.warmup + 1}/{rounds}: block {block}, first {first:.0f} ms, last {last:.0f} ms",
                  file=sys.stderr, flush=True)
            await _wait_status(db.pool, trace_ids, "watching")
            await asyncio.sleep(args.pause)
            await _quiet(db.pool)
        rx.settle()  # the last round's other events (its CPU is the receiver's too)
        pushed = None if pushed_before is None else getattr(node, "heads_pushed", 0) - pushed_before
        cpu = {p.pid: _cpu_seconds(p.pid) - cpu_before[p.pid] for p in procs}
        own_cpu = time.process_time() - own_cpu_before
        pg_after = await _backend_cpu(db.pool)  # a backend that started meanwhile counts from its start
        pg_cpu = sum(cpu - pg_before.get(pid, 0.0) for pid, cpu in pg_after.items()) if pg_after else None
        deliveries = len(latencies)
        done = {k: statistics.median(row[k] for row in stage_rows) for k, _ in STAGES}
        spans, prev = {}, 0.0
        for k, _ in STAGES:
            spans[k] = done[k] - prev
            prev = done[k]
        # From the delivery worker's first lease to the block's last webhook, per round (one trace).
        spread = [row["last_webhook"] - row["delivery_wakeup"] for row in stage_rows]
        return {
            "subscriptions": n_subs, "traces": n_traces, "rounds": rounds, "confirmations": c,
            "warmup_rounds_ms": warmups,
            "monitor_poll_s": args.poll, "monitor_heads": "pushed" if pushed else "polled",
            "heads_pushed": pushed, "deliveries": deliveries, "bad_signatures": rx.bad_signatures,
            "duplicate_deliveries": rx.duplicates,
            # Events other than the measured hops (trace_watching to unfiltered subscriptions).
            "other_events_delivered": rx.requests - requests_before - deliveries,
            "latency_ms": {"p50": _percentile(latencies, 50) * 1000, "p90": _percentile(latencies, 90) * 1000,
                           "p99": _percentile(latencies, 99) * 1000, "max": max(latencies) * 1000},
            "stages_done_ms": done, "stages_ms": spans,
            "stages_done_ms_by_round": [{k: round(v, 1) for k, v in row.items()} for row in stage_rows],
            # Over many traces the webhooks come as fast as the trace worker commits the hops: no rate.
            "webhooks_per_s": round(n_subs / (statistics.median(spread) / 1000), 0) if n_traces == 1 else None,
            "deliverers": len(deliverers),
            "deliver_cpu_us_per_webhook": round(sum(cpu[d] for d in deliverers) / (rx.requests - requests_before)
                                                * 1e6, 1),
            # The bench's receiver (parse, verify, json) and devchain share this process: its CPU
            # per webhook bounds what one receiving core can take, whatever the sender does.
            "receiver_cpu_us_per_webhook": round(own_cpu / max(1, rx.requests - requests_before) * 1e6, 1),
            "worker_cpu_s": round(cpu[procs[0].pid], 2), "monitor_cpu_s": round(cpu[procs[1].pid], 2),
            "deliver_cpu_s": round(sum(cpu[d] for d in deliverers), 2),
            # Postgres's share, the fan-out, claims, queue reads, marks and releases with the rest
            # of the pipeline (the trace worker's and monitor's queries too), per webhook sent.
            "postgres_cpu_us_per_webhook": (round(pg_cpu / max(1, rx.requests - requests_before) * 1e6, 1)
                                            if pg_cpu is not None else None),
            **_body_costs(),
        }
    finally:
        for p in procs:
            if p.returncode is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                await asyncio.wait_for(p.wait(), 30)
            except TimeoutError:
                p.kill()
        if rx is not None:
            await rx.stop()
        if client is not None:
            await client.close()
        if node is not None:
            await node.stop()
        if db is not None:
            await db.close()
        admin = await asyncpg.connect(args.server_url)
        try:
            await admin.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")
        finally:
            await admin.close()


# -------------------------------------------------------------------------------- side by side


def run_side(tree: Path, scenario: tuple[int, int], rounds: int, args: argparse.Namespace) -> dict[str, Any]:
    """One scenario on the code in `tree`, in a child process that imports that code."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        out = Path(fh.name)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--tree", str(tree), "--out", str(out),
           "--server-url", args.server_url, "--subscriptions", str(scenario[0]), "--traces", str(scenario[1]),
           "--rounds", str(rounds), "--confirmations", str(args.confirmations), "--poll", str(args.poll),
           "--pause", str(args.pause), "--deliverers", str(args.deliverers), "--warmup", str(args.warmup)]
    for flag in ("deliver", "worker", "monitor"):
        if getattr(args, f"profile_{flag}"):
            cmd += [f"--profile-{flag}", getattr(args, f"profile_{flag}")]
    load = [round(x, 2) for x in os.getloadavg()]
    try:
        subprocess.run(cmd, cwd=tree, env=dict(os.environ, PYTHONPATH=str(tree)), check=True)
        return {**json.loads(out.read_text()), "load_average_before": load}
    finally:
        out.unlink(missing_ok=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--server-url", default=os.environ.get("TRACER_BENCH_DATABASE_URL",
                                                         "postgresql://postgres@127.0.0.1:5432/postgres"),
                   help="a Postgres server to create throwaway databases on (env TRACER_BENCH_DATABASE_URL)")
    p.add_argument("--before", default=None, help=f"the previous code, a git ref (default {BEFORE}; none: skip)")
    p.add_argument("--scenarios", default=None, help=f"subscriptions x traces, comma-separated (default {SCENARIOS})")
    p.add_argument("--subscriptions", type=int, default=None, help="one scenario of this many subscriptions, 1 trace")
    p.add_argument("--rounds", type=int, default=None,
                   help="blocks per scenario (default 10; 3 at 5,000+ subscriptions, 5 at 50+ traces)")
    p.add_argument("--confirmations", type=int, default=2)
    p.add_argument("--poll", type=float, default=0.2, help="monitor head poll interval, seconds")
    p.add_argument("--pause", type=float, default=None,
                   help="seconds between rounds, twice that after the subscriptions are in (default 0.5; 0.1 with "
                        "--smoke)")
    p.add_argument("--warmup", type=int, default=1,
                   help="blocks delivered before the measured ones, reported apart (default 1; see the docstring)")
    p.add_argument("--deliverers", type=int, default=1, help="delivery worker processes (default 1)")
    p.add_argument("--smoke", action="store_true",
                   help="this code only unless --before, 50x1 and 20x2 at once, a warm-up block and 2 measured")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--tree", default=str(ROOT), help=argparse.SUPPRESS)
    p.add_argument("--profile-deliver", default=None, metavar="FILE",
                   help="run the delivery worker under cProfile, stats to FILE (with --before none)")
    p.add_argument("--profile-worker", default=None, metavar="FILE", help="the trace worker under cProfile")
    p.add_argument("--profile-monitor", default=None, metavar="FILE", help="the monitor under cProfile")
    p.add_argument("--traces", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        args.tree = str(Path(args.tree).resolve())
        sys.path.insert(0, args.tree)
        # The receiver (and the devchain beside it) on uvloop where there is one: a receiver that
        # takes less of the two CPUs leaves the code measured more of them, as one elsewhere would.
        try:
            import uvloop
            run: Any = uvloop.run
        except ImportError:
            run = asyncio.run
        result = run(child(args))
        assert args.out is not None
        args.out.write_text(json.dumps(result, default=str))
        return 0
    return parent(args)


def parent(args: argparse.Namespace) -> int:
    sys.path.insert(0, str(HERE))
    from common import before_tree, head_commit, write_result  # they import this tree's tracer

    before = args.before if args.before is not None else ("none" if args.smoke else BEFORE)
    if args.pause is None:
        args.pause = 0.1 if args.smoke else 0.5
    text = args.scenarios or ("50x1,20x2" if args.smoke else
                              f"{args.subscriptions}x1" if args.subscriptions else SCENARIOS)
    scenarios = [(int(a), int(b)) for a, b in (s.split("x") for s in text.split(","))]
    versions: list[tuple[str, Path, str]] = []
    if before != "none":
        tree, commit = before_tree(before)
        versions.append(("before", tree, commit))
    versions.append(("after", ROOT, head_commit()))
    sides: list[tuple[tuple[int, int], int, str, Path, str]] = []
    for subs, traces in scenarios:
        rounds = args.rounds or (2 if args.smoke else 5 if subs >= 5000 or traces >= 50 else 10)
        sides += [((subs, traces), rounds, name, tree, commit) for name, tree, commit in versions]

    def side(scenario: tuple[int, int], rounds: int, name: str, tree: Path, commit: str) -> dict[str, Any]:
        print(f"{name} ({commit[:12]}): {scenario[0]} subscriptions over {scenario[1]} trace(s), {rounds} blocks",
              file=sys.stderr, flush=True)
        return {"scenario": f"{scenario[0]}x{scenario[1]}", "code": name, "commit": commit,
                **run_side(tree, scenario, rounds, args)}

    # A smoke run's figures mean nothing (it shows that the bench works end to end): its runs go at
    # once, so their processes' start-ups overlap. Measured runs go one at a time on the machine.
    with ThreadPoolExecutor(len(sides) if args.smoke else 1) as pool:
        runs = list(pool.map(lambda s: side(*s), sides))
    report = {"bench": "alert_latency", "smoke": args.smoke, "target_p99_ms": TARGET_P99_MS,
              "codes": {name: commit for name, _, commit in versions}, "runs": runs,
              "machine": {"shared": "the machine is shared with other work (up to 8 engineers' test runs): "
                                    "see each run's load_average_before; rerun idle for representative figures"}}
    _print(report)
    write_result("alert_latency", report, args.smoke, args.out, database_url=args.server_url)
    return 0 if all(r["bad_signatures"] == 0 and r["duplicate_deliveries"] == 0 for r in runs) else 1


def _num(value: float | None) -> float:
    return float("nan") if value is None else value


def _print(report: dict[str, Any]) -> None:
    print("\nblock confirmed -> signed webhook received (ms; stage = when done for every trace of the block)")
    head = f"  {'scenario':<10}{'code':<8}{'heads':>7}{'load':>6}{'p50':>8}{'p99':>8}{'hooks/s':>9}"
    print(head + "".join(f"{k[:11]:>12}" for k, _ in STAGES)
          + f"{'us/hook':>9}{'pg us':>7}{'rx us':>7}{'sign us':>9}{'body us':>9}")
    for r in report["runs"]:
        lat = r["latency_ms"]
        print(f"  {r['scenario']:<10}{r['code']:<8}{r.get('monitor_heads', '?'):>7}"
              f"{r['load_average_before'][0]:>6.1f}{lat['p50']:>8.0f}"
              f"{lat['p99']:>8.0f}{r['webhooks_per_s'] or float('nan'):>9.0f}"
              + "".join(f"{r['stages_ms'][k]:>12.0f}" for k, _ in STAGES)
              + f"{r['deliver_cpu_us_per_webhook']:>9.0f}{_num(r.get('postgres_cpu_us_per_webhook')):>7.0f}"
              + f"{r['receiver_cpu_us_per_webhook']:>7.0f}{r['sign_us']:>9.1f}{r['body_us']:>9.1f}")
    print("  heads: pushed = the monitor stepped on new heads the devchain pushed over WebSocket, "
          "polled = on its --poll alone")
    for k, what in STAGES:
        print(f"  {k}: {what}")
    dup = sum(r["duplicate_deliveries"] for r in report["runs"])
    bad = sum(r["bad_signatures"] for r in report["runs"])
    print(f"  bad signatures: {bad}; events delivered twice to one subscription: {dup}")


if __name__ == "__main__":
    raise SystemExit(main())
