"""Cases over real HTTP on real traces: two traces of one laundering case (one per seed, run by real
workers on the devchain) in a case show the addresses both reached; notes and tags on the case,
its traces, hops and addresses; the timeline; "also in case N" on the address page; a case is
seen and changed only by its key, its team and admins; bad input is a 4xx and writes nothing."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tests.api_support import Api, conforms, running_api
from tracer.chains.evm import EvmChain
from tracer.devchain.scenario import Scenario
from tracer.engine.service import create_trace
from tracer.runner import run_with_workers
from tracer.store import keys as key_store
from tracer.store.db import Database

pytestmark = pytest.mark.asyncio(loop_scope="session")
HOSTILE = '<img src=x onerror="alert(1)"><script>alert(2)</script>'


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def traces(db: Database, small_scenario: Scenario, devchain_factory: Any) -> list[int]:
    server = await devchain_factory(small_scenario)
    client = EvmChain(server.url, chain=small_scenario.chain, expected_chain_id=small_scenario.chain_id)
    await client.connect()
    ids = []
    try:
        for seed in small_scenario.seeds[:2]:
            tid = await create_trace(db.pool, client, chain=small_scenario.chain, seeds=[seed], policy={},
                                     label=f"seed {seed[:8]}")
            assert await run_with_workers(db.pool, {small_scenario.chain: client}, tid, workers=2,
                                          progress=False) == "done"
            ids.append(tid)
    finally:
        await client.close()
    return ids


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def keys(db: Database) -> dict[str, str]:
    out = {}
    async with db.pool.acquire() as conn:
        for name, scopes, team in (("admin", ["admin"], None), ("alice", ["trace"], None), ("bob", ["trace"], None),
                                   ("carol", ["trace"], "fraud"), ("dave", ["read"], "fraud")):
            _, out[name] = await key_store.create_key(conn, name, scopes, team=team)
    return out


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def api(db: Database, keys: dict[str, str]) -> AsyncIterator[Api]:
    async with running_api(db) as a:
        yield a


async def _count(db: Database, table: str) -> int:
    return int(await db.pool.fetchval(f"SELECT count(*) FROM {table}"))


async def test_a_case_with_two_traces_shows_the_addresses_both_reached(
        api: Api, keys: dict[str, str], traces: list[int], db: Database, small_scenario: Scenario) -> None:
    _, case, headers = await api.call("POST", "/v1/cases", key=keys["alice"], expect=201,
                                      json={"title": "Two seeds", "description": "one theft", "traces": traces})
    conforms("case", case)
    assert headers["Location"] == f"/v1/cases/{case['id']}"
    assert case["traces"] == sorted(traces) and case["status"] == "open"
    _, full, _ = await api.call("GET", f"/v1/cases/{case['id']}", key=keys["alice"], expect=200)
    conforms("case", full)
    shared = full["shared_addresses"]
    assert shared, "the two seeds' money meets downstream (hubs, exchanges) in this scenario"
    # Checked against the jobs table directly: exactly the addresses both traces reached.
    rows = await db.pool.fetch(
        """SELECT address FROM jobs WHERE trace_id = ANY($1::bigint[]) AND kind = 'address'
           GROUP BY chain, address HAVING count(DISTINCT trace_id) = 2""", traces)
    assert {s["address"] for s in shared} == {r["address"] for r in rows}
    assert all(s["traces"] == sorted(traces) for s in shared)
    # "also in case N" on the address page, for its owner only.
    address = shared[0]["address"]
    _, page, _ = await api.call("GET", f"/v1/addresses/ethereum/{address}", key=keys["alice"], expect=200)
    conforms("address", page)
    assert [(c["case_id"], c["via"]) for c in page["cases"]] == [(case["id"], "trace")]
    _, page, _ = await api.call("GET", f"/v1/addresses/ethereum/{address}", key=keys["bob"], expect=200)
    assert page["cases"] == []


async def test_notes_and_tags_on_case_trace_hop_and_address_and_the_timeline(
        api: Api, keys: dict[str, str], traces: list[int], db: Database) -> None:
    _, case, _ = await api.call("POST", "/v1/cases", key=keys["alice"], expect=201,
                                json={"title": HOSTILE, "traces": traces[:1]})
    cid = case["id"]
    hop = await db.pool.fetchrow("SELECT transfer_id, to_addr FROM hops WHERE trace_id = $1 ORDER BY transfer_id "
                                 "LIMIT 1", traces[0])
    notes = [
        {"text": HOSTILE},
        {"text": "the seed's first victim", "target": {"kind": "trace", "trace_id": traces[0]}},
        {"text": "hop to check", "target": {"kind": "hop", "trace_id": traces[0], "transfer_id": hop["transfer_id"]}},
        {"text": "subpoena sent", "target": {"kind": "address", "chain": "ethereum",
                                             "address": hop["to_addr"].upper().replace("0X", "0x")}},
    ]
    for n in notes:
        _, made, _ = await api.call("POST", f"/v1/cases/{cid}/notes", key=keys["alice"], expect=201, json=n)
        conforms("note", made)
        assert made["author"] == "alice" and made["text"] == n["text"]
    assert made["target"]["address"] == hop["to_addr"], "addresses are stored normalised"
    _, tag, _ = await api.call("POST", f"/v1/cases/{cid}/tags", key=keys["alice"], expect=201,
                               json={"tag": "subpoenaed", "target": {"kind": "trace", "trace_id": traces[0]}})
    conforms("tag", tag)
    await api.call("POST", f"/v1/cases/{cid}/tags", key=keys["alice"], expect=201, json={"tag": "subpoenaed",
                   "target": {"kind": "trace", "trace_id": traces[0]}})
    _, full, _ = await api.call("GET", f"/v1/cases/{cid}", key=keys["alice"], expect=200)
    conforms("case", full)
    assert full["title"] == HOSTILE, "stored verbatim; the web view escapes it"
    assert [n["text"] for n in full["notes"]] == [n["text"] for n in notes]
    assert [(t["tag"], t["target"]) for t in full["tags"]] == [("subpoenaed", {"kind": "trace",
                                                                               "trace_id": traces[0]})]
    # A note on a trace or hop outside the case, or on a hop that does not exist: 400, nothing written.
    before = await _count(db, "case_notes")
    _, p, _ = await api.call("POST", f"/v1/cases/{cid}/notes", key=keys["alice"], expect=400,
                             json={"text": "x", "target": {"kind": "trace", "trace_id": traces[1]}})
    assert p["field"] == "target.trace_id"
    _, p, _ = await api.call("POST", f"/v1/cases/{cid}/notes", key=keys["alice"], expect=400,
                             json={"text": "x", "target": {"kind": "hop", "trace_id": traces[0],
                                                           "transfer_id": 10**12}})
    assert p["field"] == "target.transfer_id"
    _, p, _ = await api.call("POST", f"/v1/cases/{cid}/notes", key=keys["alice"], expect=400,
                             json={"text": "x", "target": {"kind": "address", "address": "0x12"}})
    assert p["field"] == "target.address"
    _, p, _ = await api.call("POST", f"/v1/cases/{cid}/notes", key=keys["alice"], expect=400, json={"text": "  "})
    assert p["field"] == "text"
    assert await _count(db, "case_notes") == before
    # The address page of the noted address names the case (via a note).
    _, page, _ = await api.call("GET", f"/v1/addresses/ethereum/{hop['to_addr']}", key=keys["alice"], expect=200)
    assert cid in [c["case_id"] for c in page["cases"]]

    _, tl, _ = await api.call("GET", f"/v1/cases/{cid}/timeline", key=keys["alice"], expect=200)
    conforms("case-timeline", tl)
    times = [e["at"] for e in tl["items"]]
    assert times == sorted(times), "oldest first"
    kinds = [e["kind"] for e in tl["items"]]
    assert kinds.count("note") == len(notes)
    assert {"case.created", "trace.added", "trace.created", "trace.finished"} <= set(kinds)
    assert kinds.index("trace.created") < kinds.index("trace.finished") < kinds.index("case.created")
    _, short, _ = await api.call("GET", f"/v1/cases/{cid}/timeline?limit=2", key=keys["alice"], expect=200)
    assert short["truncated"] and short["items"] == tl["items"][-2:]


async def test_a_case_is_seen_and_changed_by_its_key_team_and_admins_only(
        api: Api, keys: dict[str, str], traces: list[int], db: Database) -> None:
    _, mine, _ = await api.call("POST", "/v1/cases", key=keys["alice"], expect=201, json={"title": "alice's"})
    _, team, _ = await api.call("POST", "/v1/cases", key=keys["carol"], expect=201, json={"title": "fraud team's"})
    cid, tid = mine["id"], team["id"]
    for method, path, body in (("GET", f"/v1/cases/{cid}", None), ("PATCH", f"/v1/cases/{cid}", {"status": "closed"}),
                               ("DELETE", f"/v1/cases/{cid}", None), ("GET", f"/v1/cases/{cid}/timeline", None),
                               ("POST", f"/v1/cases/{cid}/notes", {"text": "hi"}),
                               ("POST", f"/v1/cases/{cid}/traces", {"traces": traces[:1]})):
        _, p, _ = await api.call(method, path, key=keys["bob"], expect=404, json=body)
        assert p["detail"] == f"no case {cid}", "another key's case does not exist for it"
    for who, sees in (("alice", {cid}), ("bob", set()), ("carol", {tid}), ("dave", {tid}), ("admin", {cid, tid})):
        _, page, _ = await api.call("GET", "/v1/cases?limit=1000", key=keys[who], expect=200)
        conforms("case-list", page)
        assert {c["id"] for c in page["items"]} & {cid, tid} == sees, who
    # dave shares carol's team but only reads: he sees the case, the scope stops his writes.
    await api.call("PATCH", f"/v1/cases/{tid}", key=keys["dave"], expect=403, json={"status": "closed"})
    _, changed, _ = await api.call("PATCH", f"/v1/cases/{tid}", key=keys["admin"], expect=200,
                                   json={"status": "closed", "description": "done"})
    assert (changed["status"], changed["description"], changed["title"]) == ("closed", "done", "fraud team's")
    _, page, _ = await api.call("GET", "/v1/cases?status=closed", key=keys["carol"], expect=200)
    assert [c["id"] for c in page["items"]] == [tid]
    await api.call("DELETE", f"/v1/cases/{cid}", key=keys["alice"], expect=204)
    await api.call("GET", f"/v1/cases/{cid}", key=keys["alice"], expect=404)
    assert await db.pool.fetchval("SELECT count(*) FROM traces WHERE id = ANY($1::bigint[])", traces) == 2


async def test_paging_and_bad_input(api: Api, keys: dict[str, str], traces: list[int], db: Database) -> None:
    made = []
    for i in range(5):
        _, c, _ = await api.call("POST", "/v1/cases", key=keys["bob"], expect=201, json={"title": f"page {i}"})
        made.append(c["id"])
    seen = []
    url: str | None = "/v1/cases?limit=2"
    while url is not None:
        _, page, _ = await api.call("GET", url, key=keys["bob"], expect=200)
        seen += [c["id"] for c in page["items"]]
        url = page["links"]["next"]
    assert seen == sorted(made, reverse=True), "bob sees his own cases, newest first, each once"
    _, first, _ = await api.call("GET", "/v1/cases?limit=2", key=keys["bob"], expect=200)
    _, p, _ = await api.call("GET", f"/v1/cases?limit=2&status=open&cursor={first['next_cursor']}",
                             key=keys["bob"], expect=400)
    assert p["field"] == "cursor"

    before = (await _count(db, "cases"), await _count(db, "case_traces"))
    for body, field in (({"title": ""}, "title"), ({"title": "x", "traces": [10**9]}, "traces"),
                        ({"title": "x", "owner": 1}, "owner"), ({"title": "x", "status": "lost"}, "status"),
                        ({"title": "x" * 201}, "title"), ({}, "title"),
                        ({"title": "x", "traces": [traces[0], 10**9]}, "traces")):
        _, p, _ = await api.call("POST", "/v1/cases", key=keys["bob"], expect=400, json=body)
        assert p["field"] == field, (body, p)
    await api.call("POST", "/v1/cases", key=keys["bob"], expect=415, data="{}")
    await api.call("GET", "/v1/cases/0", key=keys["bob"], expect=400)
    await api.call("GET", "/v1/cases/abc", key=keys["bob"], expect=400)
    await api.call("GET", "/v1/cases?status=lost", key=keys["bob"], expect=400)
    await api.call("PATCH", f"/v1/cases/{made[0]}", key=keys["bob"], expect=400, json={})
    await api.call("POST", "/v1/cases", key=keys["dave"], expect=403, json={"title": "read-only key"})
    assert (await _count(db, "cases"), await _count(db, "case_traces")) == before
    _, c, _ = await api.call("POST", f"/v1/cases/{made[0]}/traces", key=keys["bob"], expect=200,
                             json={"traces": traces})
    assert c["traces"] == sorted(traces)
    await api.call("DELETE", f"/v1/cases/{made[0]}/traces/{traces[0]}", key=keys["bob"], expect=204)
    await api.call("DELETE", f"/v1/cases/{made[0]}/traces/{traces[0]}", key=keys["bob"], expect=404)
    _, c, _ = await api.call("GET", f"/v1/cases/{made[0]}", key=keys["bob"], expect=200)
    assert c["traces"] == [traces[1]]


async def _cli(db: Database, *argv: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tracer.cli", "cases", *argv, "--database-url", db.url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_cli_creates_notes_lists_and_shows_cases(api: Api, keys: dict[str, str], traces: list[int],
                                                       db: Database) -> None:
    rc, out, _ = await _cli(db, "create", "From the shell \x1b[31mred", "--trace", str(traces[0]),
                            "--trace", str(traces[1]), "--json")
    assert rc == 0
    cid = json.loads(out)["id"]
    rc, out, _ = await _cli(db, "note", str(cid), "exchange answered", "--address", "0x" + "AB" * 20)
    assert rc == 0 and out.strip().startswith("note ")
    rc, _, err = await _cli(db, "create", "x", "--trace", "999999999")
    assert rc != 0 and "no trace 999999999" in err
    rc, out, _ = await _cli(db, "list")
    assert rc == 0 and f"{cid:>5}  open" in out and "\x1b" not in out
    rc, out, _ = await _cli(db, "show", str(cid), "--json")
    shown = json.loads(out)
    assert shown["traces"] == sorted(traces) and shown["shared_addresses"]
    assert shown["notes"][0]["target"] == "ethereum:0x" + "ab" * 20 and shown["notes"][0]["author"] == "cli"
    rc, out, _ = await _cli(db, "show", str(cid))
    assert "exchange answered" in out and "addresses reached by several of its traces" in out
    # Made without a key: only admins see it through the API.
    await api.call("GET", f"/v1/cases/{cid}", key=keys["alice"], expect=404)
    await api.call("GET", f"/v1/cases/{cid}", key=keys["admin"], expect=200)


async def test_connections_between_addresses_in_a_trace_and_a_case(api: Api, keys: dict[str, str], traces: list[int],
                                                                   small_scenario: Scenario) -> None:
    _, case, _ = await api.call("POST", "/v1/cases", key=keys["alice"], expect=201,
                                json={"title": "connections", "traces": traces})
    _, full, _ = await api.call("GET", f"/v1/cases/{case['id']}", key=keys["alice"], expect=200)
    target = full["shared_addresses"][0]["address"]
    seeds = small_scenario.seeds[:2]
    # In one trace: the same paths as the trace's own /paths from its seed.
    _, body, _ = await api.call("GET", f"/v1/connections?from={seeds[0]}&to={target}&trace_id={traces[0]}",
                                key=keys["alice"], expect=200)
    conforms("connections", body)
    _, own, _ = await api.call("GET", f"/v1/traces/{traces[0]}/paths?to={target}", key=keys["alice"], expect=200)
    assert [p["addresses"] for p in body["paths"]] == [p["addresses"] for p in own["paths"]]
    assert body["paths"] and all(p["trace_id"] == traces[0] for p in body["paths"])
    # From a wallet in the middle of a path: the paths start there.
    middle = own["paths"][0]["addresses"][1]
    if middle != target:
        _, mid, _ = await api.call("GET", f"/v1/connections?from={middle}&to={target}&trace_id={traces[0]}",
                                   key=keys["alice"], expect=200)
        assert mid["paths"] and all(p["addresses"][0] == middle for p in mid["paths"])
    # In the case: both seeds (a set, comma-separated) reach the address, each through its own trace.
    _, both, _ = await api.call("GET", f"/v1/connections?from={','.join(seeds)}&to={target}&case_id={case['id']}"
                                "&limit=50", key=keys["alice"], expect=200)
    conforms("connections", both)
    assert {p["trace_id"] for p in both["paths"]} == set(traces)
    widths = [int(p["bottleneck"]["amount_raw"]) for p in both["paths"] if p["bottleneck"]]
    assert widths == sorted(widths, reverse=True), "widest first"
    # Not connected: the target does not send back to the seed.
    _, none, _ = await api.call("GET", f"/v1/connections?from={target}&to={seeds[0]}&trace_id={traces[0]}",
                                key=keys["alice"], expect=200)
    assert none["paths"] == []
    await api.call("GET", f"/v1/connections?from={seeds[0]}&to={target}&case_id={case['id']}", key=keys["bob"],
                   expect=404)
    for query, field in ((f"from={seeds[0]}&to={target}", "trace_id"),
                         (f"from={seeds[0]}&to={target}&trace_id=1&case_id=1", "trace_id"),
                         (f"to={target}&trace_id=1", "from"), (f"from=0x12&to={target}&trace_id=1", "from")):
        _, p, _ = await api.call("GET", f"/v1/connections?{query}", key=keys["alice"], expect=400)
        assert p["field"] == field


async def test_the_trace_report_shows_the_notes_of_cases_the_reader_can_see(
        api: Api, keys: dict[str, str], traces: list[int]) -> None:
    _, case, _ = await api.call("POST", "/v1/cases", key=keys["carol"], expect=201,
                                json={"title": "report notes", "traces": traces[:1]})
    await api.call("POST", f"/v1/cases/{case['id']}/notes", key=keys["carol"], expect=201,
                   json={"text": HOSTILE, "target": {"kind": "trace", "trace_id": traces[0]}})
    await api.call("POST", f"/v1/cases/{case['id']}/notes", key=keys["carol"], expect=201,
                   json={"text": "exchange answered the subpoena"})
    _, page, headers = await api.call("GET", f"/v1/traces/{traces[0]}/report", key=keys["dave"], expect=200)
    assert headers["Content-Type"].startswith("text/html")
    assert "Investigators' notes (2)" in page and "exchange answered the subpoena" in page
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in page and "<script>alert(2)" not in page
    assert page.rstrip().endswith("</body></html>")
    # Another team's reader gets the report without them.
    _, other, _ = await api.call("GET", f"/v1/traces/{traces[0]}/report", key=keys["bob"], expect=200)
    assert "exchange answered the subpoena" not in other and "Investigators' notes" not in other


async def test_tags_are_removed_by_who_may_change_the_case_only(
        api: Api, keys: dict[str, str], traces: list[int], db: Database) -> None:
    _, case, _ = await api.call("POST", "/v1/cases", key=keys["carol"], expect=201,
                                json={"title": "untag", "traces": traces[:1]})
    cid = case["id"]
    hop = await db.pool.fetchrow("SELECT transfer_id, to_addr FROM hops WHERE trace_id = $1 ORDER BY transfer_id "
                                 "LIMIT 1", traces[0])
    targets = [None, {"kind": "trace", "trace_id": traces[0]},
               {"kind": "hop", "trace_id": traces[0], "transfer_id": hop["transfer_id"]},
               {"kind": "address", "chain": "ethereum", "address": hop["to_addr"]}]
    queries = ["", f"&kind=trace&trace_id={traces[0]}",
               f"&kind=hop&trace_id={traces[0]}&transfer_id={hop['transfer_id']}",
               f"&kind=address&chain=ethereum&address={hop['to_addr'].upper().replace('0X', '0x')}"]
    for target in targets:
        body: dict[str, Any] = {"tag": "frozen"} if target is None else {"tag": "frozen", "target": target}
        await api.call("POST", f"/v1/cases/{cid}/tags", key=keys["carol"], expect=201, json=body)
        await api.call("POST", f"/v1/cases/{cid}/tags", key=keys["carol"], expect=201, json={**body, "tag": "kept"})
    _, page, _ = await api.call("GET", f"/v1/addresses/ethereum/{hop['to_addr']}", key=keys["carol"], expect=200)
    assert cid in [c["case_id"] for c in page["cases"]]

    # Another key does not see the case; a reader of the team may not change it.
    _, p, _ = await api.call("DELETE", f"/v1/cases/{cid}/tags?tag=frozen", key=keys["bob"], expect=404)
    assert p["detail"] == f"no case {cid}"
    await api.call("DELETE", f"/v1/cases/{cid}/tags?tag=frozen", key=keys["dave"], expect=403)
    _, p, _ = await api.call("DELETE", f"/v1/cases/{cid}/tags", key=keys["carol"], expect=400)
    assert p["field"] == "tag"
    _, p, _ = await api.call("DELETE", f"/v1/cases/{cid}/tags?tag=frozen&kind=hop&trace_id=1", key=keys["carol"],
                             expect=400)
    assert p["field"] == "transfer_id"
    for q in queries:
        await api.call("DELETE", f"/v1/cases/{cid}/tags?tag=frozen{q}", key=keys["carol"], expect=204)
        await api.call("DELETE", f"/v1/cases/{cid}/tags?tag=frozen{q}", key=keys["carol"], expect=404)
    _, full, _ = await api.call("GET", f"/v1/cases/{cid}", key=keys["carol"], expect=200)
    assert sorted(t["tag"] for t in full["tags"]) == ["kept"] * 4, "only the tag named goes"
    # An admin may untag too; the address keeps the case while a tag on it is left.
    await api.call("DELETE", f"/v1/cases/{cid}/tags?tag=kept", key=keys["admin"], expect=204)
    _, full, _ = await api.call("GET", f"/v1/cases/{cid}", key=keys["carol"], expect=200)
    assert len(full["tags"]) == 3
    audit = await db.pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'case.untag' AND target = $1",
                                   f"case:{cid}")
    assert audit == 5
