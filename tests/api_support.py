"""Helpers for the API tests: a live server on a real port, an HTTP client, contract checks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from tracer.api.app import create_app, server_options
from tracer.api.context import Settings
from tracer.api.openapi import validator
from tracer.store.db import Database


@dataclass
class Api:
    """A running API server and a client session pointed at it."""

    base: str
    session: aiohttp.ClientSession
    app: web.Application

    async def call(self, method: str, path: str, *, key: str | None = None, expect: int | None = None,
                   **kwargs: Any) -> tuple[int, Any, Mapping[str, str]]:
        headers = dict(kwargs.pop("headers", {}))
        if key is not None:
            headers["X-API-Key"] = key
        async with self.session.request(method, self.base + path, headers=headers, **kwargs) as r:
            raw = await r.read()
            ctype = r.headers.get("Content-Type", "")
            body: Any = raw.decode()
            if "json" in ctype and raw:
                body = json.loads(raw)
            if expect is not None:
                assert r.status == expect, (method, path, r.status, body)
            if r.status >= 400 and path != "/v1/health":  # health answers 503 with its own body
                check_problem(r.status, ctype, body)
            assert r.status < 500 or r.status == 503, (method, path, r.status, body)
            return r.status, body, r.headers

    async def pages(self, url: str, *, most: int = 1000) -> AsyncIterator[dict[str, Any]]:
        """Each page of a paginated list, from `url` on through links.next (which must agree with
        next_cursor), at most `most` pages."""
        next_url = url
        for _ in range(most):
            _, page, _ = await self.call("GET", next_url, expect=200)
            yield page
            link: str | None = page["links"]["next"]
            assert (link is None) == (page["next_cursor"] is None), page
            if link is None:
                return
            next_url = link
        raise AssertionError(f"{url}: more than {most} pages")

    async def wait_done(self, trace_id: int, *, tries: int = 600) -> dict[str, Any]:
        """The trace once it has left queued/running (polled every 0.1 s, at most `tries` times),
        which must be done."""
        body: dict[str, Any] = {}
        for _ in range(tries):
            _, body, _ = await self.call("GET", f"/v1/traces/{trace_id}", expect=200)
            if body["status"] not in ("queued", "running"):
                break
            await asyncio.sleep(0.1)
        assert body["status"] == "done", body
        return body

    async def run_trace(self, body: dict[str, Any], *, tries: int = 600) -> dict[str, Any]:
        """POST /v1/traces (201, a valid trace) and wait_done(): the finished trace."""
        _, made, _ = await self.call("POST", "/v1/traces", expect=201, json=body)
        conforms("trace", made)
        return await self.wait_done(int(made["id"]), tries=tries)


def check_problem(status: int, ctype: str, body: Any) -> None:
    """Every error is RFC 9457 problem+json, valid against its schema, with no traceback in it."""
    assert ctype.startswith("application/problem+json"), (status, ctype, body)
    conforms("problem", body)
    assert body["status"] == status
    text = json.dumps(body)
    assert "Traceback" not in text and 'File "' not in text


def conforms(schema: str, body: Any) -> None:
    errors = sorted(validator(schema).iter_errors(body), key=lambda e: list(e.absolute_path))
    assert not errors, f"{schema}: " + "; ".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:5])


@asynccontextmanager
async def running_api(db: Database, chains: Mapping[str, Any] | None = None,
                      settings: Settings | None = None, read_db: Database | None = None) -> AsyncIterator[Api]:
    """create_app() served by aiohttp on 127.0.0.1 (a real socket), plus a client session;
    `read_db`: a streaming replica of `db` for the read endpoints."""
    settings = settings or Settings()
    app = create_app(db, chains or {}, settings, read_db=read_db)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server(**server_options(settings))  # runner options go here, not to TestServer()
    try:
        async with aiohttp.ClientSession() as session:
            yield Api(str(server.make_url("")).rstrip("/"), session, app)
    finally:
        await server.close()
