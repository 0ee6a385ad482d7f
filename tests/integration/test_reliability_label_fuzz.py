"""Label importers fuzzed through the API (`POST /v1/labels/import`): truncated and garbage CSV,
JSON, YAML and OFAC XML, huge lines, foreign encodings, bad addresses, entity bombs. Every one
gets a 4xx problem+json naming what is wrong and leaves nothing half-written (labels, imports,
their events and the audit log are counted before and after each); valid files go in whole,
once, audited."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from tests.api_support import Api, running_api
from tests.fuzz_inputs import PLAIN_CSV, SDN_XML, VALID_FILES, LabelFile, label_files, refusal_problem
from tracer.api.handlers import label_imports
from tracer.store import keys as key_store
from tracer.store.db import Database

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _counts(db: Database) -> tuple[int, ...]:
    row = await db.pool.fetchrow(
        """SELECT (SELECT count(*) FROM labels) AS labels, (SELECT count(*) FROM label_imports) AS imports,
                  (SELECT count(*) FROM label_events) AS events, (SELECT count(*) FROM audit_log) AS audit""")
    return tuple(row)


async def _send(api: Api, key: str, f: LabelFile) -> tuple[int, Any, str]:
    query = {"filename": f.filename} if f.filename else {}
    headers = {"X-API-Key": key, "Content-Type": f.content_type}
    async with api.session.post(api.base + "/v1/labels/import", params=query, data=f.body, headers=headers) as r:
        raw = await r.read()
        ctype = r.headers.get("Content-Type", "")
        body: Any = json.loads(raw) if "json" in ctype and raw else raw.decode(errors="replace")
        return r.status, body, ctype


async def _admin(db: Database, name: str, scopes: list[str] | None = None) -> str:
    async with db.pool.acquire() as conn:
        _, key = await key_store.create_key(conn, name, scopes or ["admin"])
    return key


# First, while the database holds none of these labels (the fuzzing below may import some).
async def test_valid_files_are_imported_whole_once_and_audited(db: Database) -> None:
    key = await _admin(db, "importer")
    async with running_api(db) as api:
        for name, (ctype, text) in VALID_FILES.items():
            before = await _counts(db)
            status, body, _ = await _send(api, key, LabelFile(name, name, ctype, text.encode()))
            assert status == 201, (name, body)
            assert body["file"] == name and not body["duplicate"] and body["stats"]["parsed"] >= 1, body
            after = await _counts(db)
            # (two OFAC formats may name the same labels: the count need not grow for each)
            assert after[0] >= before[0] and after[1] == before[1] + 1 and after[3] == before[3] + 1, name
            status, again, _ = await _send(api, key, LabelFile(name, name, ctype, text.encode()))
            assert status == 200 and again["duplicate"] and again["import_id"] == body["import_id"], again
            assert await _counts(db) == after
        _, audit, _ = await api.call("GET", "/v1/audit", key=key, params={"action": "label.import"}, expect=200)
    assert len(audit["items"]) == len(VALID_FILES)
    assert {item["actor"] for item in audit["items"]} == {"importer"}
    # A label the CSV named is really there, with its source.
    found = await db.pool.fetchval(
        "SELECT count(*) FROM labels WHERE address = '0x28c6c06298d514db089934071355e5743bf21d60'")
    assert found >= 1


async def test_malformed_label_files_get_a_4xx_and_leave_nothing(db: Database) -> None:
    key = await _admin(db, "fuzzer")
    files = label_files(random.Random(20261125), n=10)
    refused = accepted = 0
    async with running_api(db) as api:
        for f in files:
            before = await _counts(db)
            status, body, ctype = await _send(api, key, f)
            assert status < 500, (f.what, status, body)
            if status >= 400:
                refused += 1
                assert status in (400, 413, 415), (f.what, status, body)
                why = refusal_problem(status, ctype, body)
                assert why is None, (f.what, why, body)
                # The message says which file and what is wrong, never where we spooled it.
                assert "tracer-label-import-" not in json.dumps(body), (f.what, body)
                assert await _counts(db) == before, f"{f.what}: refused but something was written"
            else:
                # Accepted: damage that only made some rows invalid (reported) or a no-op repeat.
                accepted += 1
                assert status in (200, 201), (f.what, status, body)
                after = await _counts(db)
                if status == 201:
                    assert after[1] == before[1] + 1 and after[3] == before[3] + 1, f.what
                else:
                    assert body["duplicate"] and after == before, f.what
    assert refused >= len(files) * 2 // 3, (refused, accepted, len(files))


async def test_specific_refusals_name_the_problem(db: Database) -> None:
    key = await _admin(db, "specific")
    async with running_api(db) as api:
        def file(body: bytes, name: str | None = "x.csv", ctype: str = "text/csv") -> LabelFile:
            return LabelFile("", name, ctype, body)

        status, body, _ = await _send(api, key, file(b""))
        assert (status, body["field"]) == (400, "body") and "empty" in body["detail"]
        status, body, _ = await _send(api, key, file(SDN_XML.encode()[:200], "sdn.xml", "application/xml"))
        assert status == 400 and "sdn.xml" in body["detail"] and "malformed" in body["detail"], body
        status, body, _ = await _send(api, key, file(PLAIN_CSV.encode(), "../../etc/passwd"))
        assert (status, body["field"]) == (400, "filename")
        status, body, _ = await _send(api, key, file(PLAIN_CSV.encode(), ctype="image/png"))
        assert (status, body["field"]) == (415, "Content-Type")
        headers = {"X-API-Key": key, "Content-Type": "text/csv"}
        for query, field in (({"format": "pdf"}, "format"), ({"list_date": "yesterday"}, "list_date"),
                             ({"bogus": "1"}, "bogus")):
            async with api.session.post(api.base + "/v1/labels/import", params=query, data=PLAIN_CSV,
                                        headers=headers) as r:
                body = await r.json(content_type=None)
                assert (r.status, body["field"]) == (400, field), body
        # Only admin keys import lists that apply to every trace.
        reader = await _admin(db, "tracer-scope", ["trace"])
        status, body, _ = await _send(api, reader, file(PLAIN_CSV.encode()))
        assert status == 403, body


async def test_a_file_past_the_size_cap_is_413_and_nothing_is_written(db: Database,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    key = await _admin(db, "big")
    monkeypatch.setattr(label_imports, "MAX_FILE", 4096)
    before = await _counts(db)
    async with running_api(db) as api:
        status, body, ctype = await _send(api, key, LabelFile("", "big.csv", "text/csv",
                                                              PLAIN_CSV.encode() + b"#" * 8192 + b"\n"))
    assert status == 413 and refusal_problem(status, ctype, body) is None, body
    assert await _counts(db) == before


async def test_deeply_nested_json_is_refused_not_a_crash(db: Database) -> None:
    # With web3 imported (as in every process with a chain client) the recursion limit is 100,000:
    # this body used to overflow the C stack of the JSON decoder and kill the server (SIGSEGV).
    import sys

    import tracer.chains.evm  # noqa: F401  (what raises the limit)

    key = await _admin(db, "nested")
    deep = b"[" * 100_000 + b"]" * 100_000
    old_limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old_limit, 100_000))  # the condition, whatever web3 does in future
    async with running_api(db) as api:
        _, body, _ = await api.call("POST", "/v1/traces", key=key, data=deep,
                                    headers={"Content-Type": "application/json"}, expect=400)
        assert body["field"] == "body" and "nested" in body["detail"]
        status, body, ctype = await _send(api, key, LabelFile("", "sanctioned-addresses.json", "application/json",
                                                              b'{"addresses": ' + deep + b"}"))
        assert status == 400 and "nested" in body["detail"] and refusal_problem(status, ctype, body) is None
        await api.call("GET", "/v1/health")  # still serving
    sys.setrecursionlimit(old_limit)
