"""Open mode (no keys, loopback) against browsers: DNS rebinding (a foreign Host) gets 421,
cross-site writes (a foreign Origin, text/plain or untyped bodies) get 403/415, and nothing is
written; same-origin use by the web page and non-browser clients keep working."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.api_support import Api, running_api
from tracer.api.context import Settings
from tracer.store import keys as key_store
from tracer.store.db import Database

pytestmark = pytest.mark.asyncio(loop_scope="session")
ADDRESS = "0x" + "44" * 20
CSV = f"chain,address,entity,category,source\nethereum,{ADDRESS},Desk,otc,analyst\n".encode()


async def _written(db: Database) -> tuple[int, ...]:
    row = await db.pool.fetchrow(
        """SELECT (SELECT count(*) FROM labels), (SELECT count(*) FROM label_imports),
                  (SELECT count(*) FROM audit_log), (SELECT count(*) FROM traces)""")
    return tuple(row)


async def _raw(api: Api, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, Any]:
    async with api.session.request(method, api.base + path, headers=headers, data=body,
                                   skip_auto_headers=("Content-Type",)) as r:
        return r.status, await r.json(content_type=None)


async def test_open_mode_refuses_rebinding_and_cross_site_writes(db: Database) -> None:
    before = await _written(db)
    async with running_api(db) as api:
        port = api.base.rsplit(":", 1)[1]
        evil = {"Origin": "https://evil.example"}
        # The probe: a text/plain form post from another site to the label import.
        status, body = await _raw(api, "POST", "/v1/labels/import", {**evil, "Content-Type": "text/plain"}, CSV)
        assert (status, body["field"]) == (403, "Origin"), body
        # Same with a declared type: still cross-site.
        status, body = await _raw(api, "POST", "/v1/labels/import?filename=l.csv", {**evil, "Content-Type": "text/csv"},
                                  CSV)
        assert status == 403, body
        status, body = await _raw(api, "POST", "/v1/labels", {"Origin": "null", "Content-Type": "application/json"},
                                  b'{"address": "%s", "entity": "x", "category": "otc"}' % ADDRESS.encode())
        assert status == 403, body
        status, body = await _raw(api, "POST", "/v1/labels", {"Sec-Fetch-Site": "cross-site",
                                                              "Content-Type": "application/json"},
                                  b'{"address": "%s", "entity": "x", "category": "otc"}' % ADDRESS.encode())
        assert status == 403, body
        # No Content-Type, or text/plain, on a JSON endpoint: 415.
        json_body = b'{"address": "%s", "entity": "Desk", "category": "otc"}' % ADDRESS.encode()
        for headers in ({}, {"Content-Type": "text/plain"}, {"Content-Type": "application/x-www-form-urlencoded"}):
            status, body = await _raw(api, "POST", "/v1/labels", headers, json_body)
            assert (status, body["field"]) == (415, "Content-Type"), (headers, body)
        # Label files only as their declared type.
        for query, ctype in (("", "text/plain"), ("?filename=l.xml", "text/csv"), ("?format=sdn-xml", "text/csv"),
                             ("", "application/x-www-form-urlencoded"), ("", "multipart/form-data; boundary=x")):
            status, body = await _raw(api, "POST", "/v1/labels/import" + query, {"Content-Type": ctype}, CSV)
            assert status == 415, (query, ctype, body)
        status, body = await _raw(api, "POST", "/v1/labels/import", {}, CSV)
        assert status == 415, body
        # DNS rebinding: the page's own name in Host, on reads and writes.
        for method, path in (("GET", "/v1/traces"), ("GET", "/v1/audit"), ("POST", "/v1/labels")):
            status, body = await _raw(api, method, path, {"Host": f"evil.example:{port}",
                                                          "Content-Type": "application/json"}, json_body)
            assert (status, body["field"]) == (421, "Host"), (path, body)
        assert await _written(db) == before
        # What stays allowed: loopback names, the page's own origin, and clients without Origin.
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "localhost."):
            status, _ = await _raw(api, "GET", "/v1/traces", {"Host": host})
            assert status == 200, host
        status, body = await _raw(api, "POST", "/v1/labels", {"Origin": api.base, "Content-Type": "application/json"},
                                  json_body)
        assert status == 201, body
        status, body = await _raw(api, "POST", "/v1/labels/import?filename=l.csv", {"Content-Type": "text/csv"}, CSV)
        assert status == 201, body


async def test_missing_host_header_is_refused_in_open_mode(db: Database) -> None:
    async with running_api(db) as api:
        host, port = api.base.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"GET /v1/traces HTTP/1.0\r\n\r\n")  # HTTP/1.0 needs no Host
        await writer.drain()
        head = await asyncio.wait_for(reader.read(200), 5)
        writer.close()
        assert head.split(b"\r\n")[0].endswith(b" 400 Bad Request"), head


async def test_an_explicit_allow_list_applies_with_keys_and_origin_always(db: Database) -> None:
    async with db.pool.acquire() as conn:
        _, key = await key_store.create_key(conn, "open-mode-admin", ["admin"])
    try:
        async with running_api(db) as api:
            # Behind keys the default list is not enforced (a proxy may use any name) ...
            status, _ = await _raw(api, "GET", "/v1/traces", {"Host": "tracer.corp.example", "X-API-Key": key})
            assert status == 200
            # ... but a cross-site write is refused even with a key.
            status, body = await _raw(api, "POST", "/v1/labels", {"Origin": "https://evil.example", "X-API-Key": key,
                                                                  "Content-Type": "application/json"}, b"{}")
            assert status == 403, body
        settings = Settings(allowed_hosts=("tracer.corp.example",))
        async with running_api(db, settings=settings) as api:
            status, _ = await _raw(api, "GET", "/v1/traces", {"Host": "tracer.corp.example", "X-API-Key": key})
            assert status == 200
            status, _ = await _raw(api, "GET", "/v1/traces", {"Host": "other.example", "X-API-Key": key})
            assert status == 421
            status, body = await _raw(api, "POST", "/v1/labels", {
                "Host": "tracer.corp.example", "Origin": "https://tracer.corp.example", "X-API-Key": key,
                "Content-Type": "application/json"},
                b'{"address": "%s", "entity": "Desk 2", "category": "otc"}' % ADDRESS.encode())
            assert status == 201, body
    finally:
        await db.pool.execute("UPDATE api_keys SET revoked_at = now()")
