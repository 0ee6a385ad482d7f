"""The attack suite of issue #17: probes a pentester ran against `tracer serve`, each must be refused.

Runs real `tracer serve` processes (open mode, then with keys, then with its node down) on a
throwaway database and a devchain node, all on 127.0.0.1, and sends each probe over HTTP:

- SSRF: webhook URLs disguising internal addresses (fullwidth and circled digits, 127.1, octal,
  trailing dot, IPv4-mapped, 6to4, NAT64) must get 400, and a loopback listener must see no connection;
- a YAML alias bomb and a label with oversized evidence: 400 within 2 s, nothing written;
- open mode: a cross-site text/plain form post, an Origin of null, no Content-Type, a foreign Host;
- ownership: another trace key cancelling a trace, deleting or replaying a subscription, labelling
  an address sanctioned for everyone; a read key reading a delivery's network error;
- exports: CSV formula cells, GraphML with control characters;
- quotas: seeds per trace, subscriptions per key, the per-key rate limit, slow-header connections,
  the /paths budget;
- the node down: the API must start, serve reads and refuse new traces with 503.

Each row says what was sent, what must come back, what came back and how long it took; nothing
refused may have written anything (rows counted before and after).

    python bench/attacks.py            # 200 slow-header connections, every probe
    python bench/attacks.py --smoke    # 40 connections (run by the test suite)

Prints the table and writes bench/results/attacks.json (attacks.smoke.json for --smoke).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import os
import re
import signal
import socket
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import add_common_args, drop_database, migrated_database, new_db_name, server_url, write_result
from tracer.devchain.scenario import ScenarioParams, generate
from tracer.devchain.server import DevChainServer
from tracer.store import keys as key_store
from tracer.store.db import Database

ROOT = Path(__file__).resolve().parent.parent
EVIL = '=HYPERLINK("http://evil.example/","open")\x07\x1b[31m'
DISGUISED = ["https://１２７.０.０.１:{port}/x", "https://①②⑦.0.0.1:{port}/x", "https://127.1:{port}/x",
             "https://0177.0.0.1:{port}/x", "https://2130706433:{port}/x", "https://127.0.0.1.:{port}/x",
             "https://[::ffff:127.0.0.1]:{port}/x", "https://[2002:7f00:1::1]:{port}/x",
             "https://[64:ff9b::7f00:1]:{port}/x", "https://１６９.２５４.１６９.２５４/latest/meta-data/"]


@dataclass
class Row:
    area: str
    probe: str
    expected: str
    got: str
    seconds: float
    ok: bool


class Suite:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.rows: list[Row] = []

    async def written(self) -> tuple[int, ...]:
        row = await self.db.pool.fetchrow(
            """SELECT (SELECT count(*) FROM labels), (SELECT count(*) FROM label_imports),
                      (SELECT count(*) FROM traces), (SELECT count(*) FROM subscriptions)""")
        return tuple(row)

    async def probe(self, area: str, what: str, expected: str, run: Callable[[], Awaitable[tuple[bool, str]]],
                    *, limit: float = 2.0, writes: bool = False) -> None:
        before = await self.written()
        started = time.monotonic()
        try:
            ok, got = await run()
        except Exception as exc:
            ok, got = False, f"{type(exc).__name__}: {exc}"[:120]
        took = time.monotonic() - started
        if took > limit:
            ok, got = False, f"{got} (took {took:.1f} s)"
        if not writes and await self.written() != before:
            ok, got = False, f"{got}; WROTE ROWS"
        self.rows.append(Row(area, what, expected, got, round(took, 3), ok))


class Server:
    """A `tracer serve` process."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.args, self.env = args, env
        self.proc: asyncio.subprocess.Process | None = None
        self.base = ""
        self.banner = ""

    async def __aenter__(self) -> Server:
        env = dict(os.environ, TRACER_LOG_LEVEL="WARNING", **self.env)
        env.pop("TRACER_RPC_URL", None)
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tracer.cli", "serve", "--port", "0", *self.args, cwd=ROOT, env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        assert self.proc.stderr is not None
        while "listening on" not in self.banner:
            line = await asyncio.wait_for(self.proc.stderr.readline(), 90)
            if not line:
                raise RuntimeError(f"tracer serve exited: {self.banner}")
            self.banner += line.decode()
        found = re.search(r"listening on (http://\S+)", self.banner)
        assert found is not None
        self.base = found.group(1)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(self.proc.wait(), 30)


class Http:
    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session, self.base = session, base

    async def send(self, method: str, path: str, *, key: str | None = None, headers: dict[str, str] | None = None,
                   body: bytes | None = None, json: Any = None) -> tuple[int, Any, Any]:
        h = dict(headers or {})
        if key:
            h["X-API-Key"] = key
        async with self.session.request(method, self.base + path, headers=h, data=body, json=json,
                                        skip_auto_headers=() if json is not None else ("Content-Type",)) as r:
            raw = await r.read()
            data: Any = raw.decode(errors="replace")
            if "json" in r.headers.get("Content-Type", "") and raw:
                import json as _json
                data = _json.loads(raw)
            return r.status, data, r.headers


def status_is(want: int, status: int, data: Any) -> tuple[bool, str]:
    detail = data.get("detail", "") if isinstance(data, dict) else ""
    return status == want, f"{status} {detail[:70]}".strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def open_mode(suite: Suite, http: Http, scenario: Any, slow: int) -> None:
    csv_body = b"chain,address,entity,category,source\nethereum,0x" + b"44" * 20 + b",Desk,otc,analyst\n"
    evil = {"Origin": "https://evil.example"}

    async def cross_site() -> tuple[bool, str]:
        s, d, _ = await http.send("POST", "/v1/labels/import", headers={**evil, "Content-Type": "text/plain"},
                                  body=csv_body)
        return status_is(403, s, d)
    await suite.probe("open mode", "text/plain form post from https://evil.example to /v1/labels/import", "403",
                      cross_site)

    async def null_origin() -> tuple[bool, str]:
        s, d, _ = await http.send("POST", "/v1/labels", headers={"Origin": "null", "Content-Type": "application/json"},
                                  body=b'{"address": "0x' + b"44" * 20 + b'", "entity": "x", "category": "otc"}')
        return status_is(403, s, d)
    await suite.probe("open mode", "POST /v1/labels with Origin: null", "403", null_origin)

    async def untyped() -> tuple[bool, str]:
        s, d, _ = await http.send("POST", "/v1/labels",
                                  body=b'{"address": "0x' + b"44" * 20 + b'", "entity": "x", "category": "otc"}')
        return status_is(415, s, d)
    await suite.probe("open mode", "POST /v1/labels with no Content-Type", "415", untyped)

    async def rebinding() -> tuple[bool, str]:
        s, d, _ = await http.send("GET", "/v1/traces", headers={"Host": "evil.example"})
        return status_is(421, s, d)
    await suite.probe("open mode", "GET /v1/traces with Host: evil.example (DNS rebinding)", "421", rebinding)

    lines = ['title: t', 'l0: &l0 "lolololololololololololololololololol"']
    lines += [f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 7)]
    lines += ["tags:", "  - address: '0x" + "ab" * 20 + "'", "    label: bomb", "    currency: ETH", "    context: *l6"]
    bomb = ("\n".join(lines) + "\n").encode()

    async def alias_bomb() -> tuple[bool, str]:
        s, d, _ = await http.send("POST", "/v1/labels/import?filename=bomb.yaml",
                                  headers={"Content-Type": "application/yaml"}, body=bomb)
        return status_is(400, s, d)
    await suite.probe("labels", f"YAML alias bomb ({len(bomb)} bytes, six levels)", "400 < 2 s", alias_bomb)

    big = b"title: t\ntags:\n  - address: '0x" + b"cd" * 20 + b"'\n    label: b\n    currency: ETH\n    context: '" + \
        b"x" * 70_000 + b"'\n"

    async def bloated() -> tuple[bool, str]:
        s, d, _ = await http.send("POST", "/v1/labels/import?filename=big.yaml",
                                  headers={"Content-Type": "application/yaml"}, body=big)
        return status_is(400, s, d)
    await suite.probe("labels", "tagpack with 70 KB of evidence on one label", "400", bloated)

    listener_hits = [0]

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        listener_hits[0] += 1
        writer.close()

    listener = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        for template in DISGUISED:
            url = template.format(port=port)

            async def ssrf(url: str = url) -> tuple[bool, str]:
                s, d, _ = await http.send("POST", "/v1/subscriptions",
                                          json={"url": url, "addresses": ["0x" + "11" * 20], "watch": False})
                return status_is(400, s, d)
            await suite.probe("ssrf", f"webhook {url}", "400", ssrf)
        await asyncio.sleep(0.2)

        async def no_connection() -> tuple[bool, str]:
            return listener_hits[0] == 0, f"{listener_hits[0]} connections"
        await suite.probe("ssrf", "connections seen by the loopback listener", "0", no_connection)
    finally:
        listener.close()
        await listener.wait_closed()

    many = [f"0x{i + 1:040x}" for i in range(51)]

    async def seeds() -> tuple[bool, str]:
        s, d, _ = await http.send("POST", "/v1/traces", json={"chain": scenario.chain, "seeds": many})
        return status_is(400, s, d)
    await suite.probe("quotas", "a trace with 51 seeds (--max-seeds 50)", "400", seeds)

    # A trace to export, through a service labelled by an attacker.
    label_csv = "chain,address,entity,category,source\n" + "".join(
        f"{scenario.chain},{lb.address},\"{EVIL.replace(chr(34), chr(34) * 2)}{lb.entity}\",exchange,attacker\n"
        for lb in scenario.labels)
    status, _, _ = await http.send("POST", "/v1/labels/import?filename=evil.csv", headers={"Content-Type": "text/csv"},
                                   body=label_csv.encode())
    assert status == 201, status
    _, made, _ = await http.send("POST", "/v1/traces", json={"chain": scenario.chain, "seeds": scenario.seeds})
    tid = made["id"]
    for _ in range(600):
        _, trace, _ = await http.send("GET", f"/v1/traces/{tid}")
        if trace["status"] not in ("queued", "running"):
            break
        await asyncio.sleep(0.2)

    async def csv_cells() -> tuple[bool, str]:
        _, text, _ = await http.send("GET", f"/v1/traces/{tid}/graph?format=csv&table=nodes")
        cells = [c for row in csv.reader(io.StringIO(text)) for c in row]
        formulas = [c for c in cells if c.startswith(("=", "+", "-", "@", "\t", "\r"))]
        quoted = [c for c in cells if c.startswith("'=")]
        return not formulas and bool(quoted), f"{len(formulas)} formula cells, {len(quoted)} quoted"
    await suite.probe("exports", "CSV of a trace through '=HYPERLINK(...)' entities", "no formula cell", csv_cells)

    async def graphml() -> tuple[bool, str]:
        _, text, _ = await http.send("GET", f"/v1/traces/{tid}/graph?format=graphml")
        ET.fromstring(text.encode())
        return True, "parses"
    await suite.probe("exports", "GraphML with control characters in entity names", "valid XML", graphml)

    async def paths() -> tuple[bool, str]:
        _, hops, _ = await http.send("GET", f"/v1/traces/{tid}/hops?sort=-block&limit=1")
        s, d, _ = await http.send("GET", f"/v1/traces/{tid}/paths?to={hops['items'][0]['to']}&limit=50")
        return status_is(503, s, d)
    await suite.probe("quotas", "/paths past its budget (--paths-budget 0.001)", "503 < 2 s", paths)

    async def slow_headers() -> tuple[bool, str]:
        host, port_text = http.base.removeprefix("http://").split(":")
        conns = [await asyncio.open_connection(host, int(port_text)) for _ in range(slow)]
        for _, w in conns:
            w.write(b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        ends = await asyncio.gather(*(asyncio.wait_for(r.read(), 10) for r, _ in conns), return_exceptions=True)
        for _, w in conns:
            w.close()
        closed = sum(1 for e in ends if e == b"")
        return closed == slow, f"{closed}/{slow} closed by the server"
    await suite.probe("quotas", f"{slow} slow-header connections (--header-timeout 1)", "all closed", slow_headers,
                      limit=4.0)


async def with_keys(suite: Suite, http: Http, scenario: Any) -> None:
    keys: dict[str, str] = {}
    async with suite.db.pool.acquire() as conn:
        for name, scopes in (("admin", ["admin"]), ("alice", ["trace"]), ("bob", ["trace"]), ("reader", ["read"]),
                             ("rate", ["read"])):
            _, keys[name] = await key_store.create_key(conn, f"attack-{name}", scopes)
    _, trace, _ = await http.send("POST", "/v1/traces", key=keys["alice"],
                                  json={"chain": scenario.chain, "seeds": scenario.seeds[:1]})
    _, sub, _ = await http.send("POST", "/v1/subscriptions", key=keys["alice"],
                                json={"delivery": "stream", "addresses": ["0x" + "77" * 20], "watch": False})

    async def cancel() -> tuple[bool, str]:
        s, d, _ = await http.send("POST", f"/v1/traces/{trace['id']}/cancel", key=keys["bob"])
        return status_is(403, s, d)
    await suite.probe("ownership", "bob cancels alice's trace", "403", cancel)

    async def delete() -> tuple[bool, str]:
        s, d, _ = await http.send("DELETE", f"/v1/subscriptions/{sub['id']}", key=keys["bob"])
        return status_is(403, s, d)
    await suite.probe("ownership", "bob deletes alice's subscription", "403", delete)

    async def replay() -> tuple[bool, str]:
        s, d, _ = await http.send("POST", f"/v1/subscriptions/{sub['id']}/replay", key=keys["bob"])
        return status_is(403, s, d)
    await suite.probe("ownership", "bob replays alice's subscription", "403", replay)

    target = "0x" + "66" * 20
    await http.send("POST", f"/v1/addresses/ethereum/{target}/labels", key=keys["bob"],
                    json={"entity": "Framed", "category": "sanctioned"})

    async def screen() -> tuple[bool, str]:
        _, d, _ = await http.send("GET", f"/v1/screen?address={target}", key=keys["reader"])
        return d["sanctioned"] is False, f"sanctioned={d['sanctioned']}"
    await suite.probe("ownership", "bob labels an address sanctioned; the reader screens it", "not sanctioned",
                      screen)

    await suite.db.pool.execute("UPDATE subscriptions SET last_error = $2 WHERE id = $1", sub["id"],
                                "ClientConnectorError: Cannot connect to host 10.0.0.1:22 [Connect call failed]")

    async def port_scan() -> tuple[bool, str]:
        _, d, _ = await http.send("GET", f"/v1/subscriptions/{sub['id']}", key=keys["reader"])
        return d["last_error"] == "delivery failed (network)", str(d["last_error"])
    await suite.probe("ssrf", "a read key reads a delivery's network error", "no detail", port_scan)

    for i in range(2):
        await http.send("POST", "/v1/subscriptions", key=keys["alice"],
                        json={"delivery": "stream", "addresses": [f"0x{i + 1:040x}"], "watch": False})

    async def subs_quota() -> tuple[bool, str]:
        s, d, h = await http.send("POST", "/v1/subscriptions", key=keys["alice"],
                                  json={"delivery": "stream", "addresses": ["0x" + "78" * 20], "watch": False})
        ok, got = status_is(429, s, d)
        return ok and "Retry-After" in h, got
    await suite.probe("quotas", "a 4th subscription (--max-subscriptions 3)", "429 + Retry-After", subs_quota)

    async def rate() -> tuple[bool, str]:
        statuses = [(await http.send("GET", "/v1/traces?limit=1", key=keys["rate"]))[:3:2] for _ in range(12)]
        limited = [h for s, h in statuses if s == 429]
        return bool(limited) and all("Retry-After" in h for h in limited), f"{len(limited)}/12 answered 429"
    await suite.probe("quotas", "12 requests at once by one key (--rate-limit 2, burst 5)", "429 + Retry-After",
                      rate)


async def node_down(suite: Suite, db_url: str, scenario: Any) -> None:
    port = free_port()
    async with Server(["--database-url", db_url, "--rpc", f"http://127.0.0.1:{port}", "--chain", scenario.chain,
                       "--allowed-hosts", "127.0.0.1"], {}) as server, aiohttp.ClientSession() as session:
        http = Http(session, server.base)
        async with suite.db.pool.acquire() as conn:
            _, admin = await key_store.create_key(conn, "attack-node", ["admin"])

        async def health() -> tuple[bool, str]:
            s, d, _ = await http.send("GET", "/v1/health")
            return s == 503 and d["chains"][scenario.chain]["ok"] is False, f"{s} {d['chains']}"
        await suite.probe("node down", "GET /v1/health with the node unreachable", "503, node down", health)

        async def reads() -> tuple[bool, str]:
            s, d, _ = await http.send("GET", "/v1/traces", key=admin)
            return status_is(200, s, d)
        await suite.probe("node down", "GET /v1/traces with the node unreachable", "200", reads)

        async def new_trace() -> tuple[bool, str]:
            s, d, _ = await http.send("POST", "/v1/traces", key=admin,
                                      json={"chain": scenario.chain, "seeds": scenario.seeds[:1]})
            return status_is(503, s, d)
        await suite.probe("node down", "POST /v1/traces with the node unreachable", "503", new_trace)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    scenario = generate(ScenarioParams.for_size(300, seed=7))
    server = server_url(args.database_url)
    name = new_db_name("attacks")
    url = await migrated_database(server, name)
    node = DevChainServer(scenario)
    rpc = await node.start("127.0.0.1", 0)
    db = await Database.connect(url, migrate=False, max_size=4)
    suite = Suite(db)
    slow = 40 if args.smoke else 200
    try:
        common = ["--database-url", url, "--rpc", rpc, "--chain", scenario.chain, "--workers", "2"]
        env = {"TRACER_WEBHOOK_ALLOW": ""}
        # Open mode first (no key exists yet), then the same database behind keys.
        async with Server([*common, "--max-seeds", "50", "--header-timeout", "1", "--paths-budget", "0.001"],
                          env) as srv, aiohttp.ClientSession() as session:
            await open_mode(suite, Http(session, srv.base), scenario, slow)
        async with Server([*common, "--max-subscriptions", "3", "--rate-limit", "2", "--rate-limit-burst", "5"],
                          env) as srv, aiohttp.ClientSession() as session:
            await with_keys(suite, Http(session, srv.base), scenario)
        await node_down(suite, url, scenario)
    finally:
        await db.close()
        await node.stop()
        await drop_database(server, name)
    return {"smoke": args.smoke, "probes": [asdict(r) for r in suite.rows],
            "refused": sum(r.ok for r in suite.rows), "total": len(suite.rows)}


def print_table(report: dict[str, Any]) -> None:
    rows = report["probes"]
    print(f"{'area':<10} {'probe':<66} {'expected':<18} {'got':<44} {'s':>6}  ok")
    for r in rows:
        print(f"{r['area']:<10} {r['probe'][:66]:<66} {r['expected'][:18]:<18} {r['got'][:44]:<44} "
              f"{r['seconds']:>6.2f}  {'yes' if r['ok'] else 'NO'}")
    print(f"\n{report['refused']}/{report['total']} probes refused as they must be")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser)
    args = parser.parse_args()
    report = asyncio.run(run(args))
    print_table(report)
    write_result("attacks", report, args.smoke, args.out, database_url=server_url(args.database_url))
    return 0 if report["refused"] == report["total"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
