"""Helpers every handler uses: JSON responses, the trace a URL names, page sizes, cursors."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import asyncpg
import orjson
from aiohttp import web

from tracer.addresses import show_tron
from tracer.api import params
from tracer.api.context import CTX, ApiContext
from tracer.api.cursors import CursorError
from tracer.api.errors import ApiError, bad_request, not_found
from tracer.api.openapi import field_of, validator
from tracer.domain.views import StoredTrace
from tracer.store import reads


def ctx_of(request: web.Request) -> ApiContext:
    return request.app[CTX]


def trace_request(request: web.Request, allowed: Sequence[str]) -> tuple[ApiContext, int]:
    """The context and the trace id of a request on /v1/traces/{trace_id}...: query parameters
    other than `allowed` are refused first, as on every route, then a malformed id."""
    params.reject_unknown(request, allowed)
    return ctx_of(request), params.trace_id(request)


def dumps(data: Any) -> str:
    # Tron addresses are stored as hex and shown as T... (tracer.addresses.show_tron).
    return show_tron(json.dumps(data, separators=(",", ":"), ensure_ascii=False))


def dumps_bytes(data: Any) -> bytes:
    """`dumps` for the hot pages (hops, exits): orjson encodes a page of 100 hops ~8x faster than
    json. Only plain JSON values go in (str, int, float, None, lists, dicts with str keys)."""
    return tron_shown(orjson.dumps(data))


def tron_shown(body: bytes) -> bytes:
    """A JSON body with its stored Tron addresses shown as T... (tracer.addresses.show_tron)."""
    if b"0x41" not in body:
        return body
    return show_tron(body.decode()).encode()


def ok_fast(data: Any) -> web.Response:
    return web.Response(body=dumps_bytes(data), content_type="application/json")


def ok(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response(data, status=status, dumps=dumps, headers=dict(headers or {}))


async def checked_body(request: web.Request, schema: str) -> dict[str, Any]:
    """The request's JSON object, checked against schemas/json/<schema>.schema.json (the contract's
    schema, so what the OpenAPI document accepts and what the server accepts never drift apart);
    the first error by where it is becomes the 400."""
    body = await params.json_object(request)
    errors = sorted(validator(schema).iter_errors(body), key=lambda e: list(e.absolute_path))
    if errors:
        raise bad_request(field_of(errors[0]), errors[0].message[:300])
    return body


async def trace_or_404(conn: asyncpg.pool.PoolConnectionProxy, trace_id: int) -> StoredTrace:
    row = await reads.get_trace(conn, trace_id)
    if row is None:
        raise not_found(f"no trace {trace_id}")
    return row


async def asset_meta(ctx: ApiContext, conn: asyncpg.pool.PoolConnectionProxy,
                     row: StoredTrace) -> dict[str, tuple[str | None, int | None]]:
    """(symbol, decimals) of the assets of a trace's totals, from the in-process cache first."""
    chain = row.chain
    assets = list((row.totals or {}).keys())
    missing = [a for a in assets if (chain, a) not in ctx.asset_meta and a != "native"]
    if missing:
        found = await reads.asset_meta(conn, chain, list(row.seeds), missing)
        for a, meta in found.items():
            if meta != (None, None):  # not named yet (a trace just started): ask again next time
                ctx.asset_meta[(chain, a)] = meta
    return {a: ctx.asset_meta.get((chain, a), (None, None)) for a in assets}


def page_limit(request: web.Request) -> int:
    s = ctx_of(request).settings
    value = params.int_param(request, "limit", minimum=1, maximum=s.page_max, default=s.page_default)
    assert value is not None
    return value


def read_cursor(request: web.Request, kind: str, scope: Mapping[str, Any]) -> list[str] | None:
    token = params.str_param(request, "cursor", max_len=2048)
    if token is None:
        return None
    codec = ctx_of(request).cursors
    assert codec is not None, "cursor codec is set up by the app's cleanup context"
    try:
        return codec.decode(token, kind, scope)
    except CursorError as exc:
        raise bad_request("cursor", str(exc)) from None


def make_cursor(request: web.Request, kind: str, scope: Mapping[str, Any], key: list[str]) -> str:
    codec = ctx_of(request).cursors
    assert codec is not None
    return codec.encode(kind, scope, key)


def next_link(request: web.Request, cursor: str | None) -> str | None:
    if cursor is None:
        return None
    query = {k: v for k, v in request.query.items() if k != "cursor"}
    query["cursor"] = cursor
    return str(request.rel_url.with_query(query))


_Row = TypeVar("_Row")


def page(request: web.Request, kind: str, scope: Mapping[str, Any], items: list[Any], rows: Sequence[_Row],
         limit: int, key: Callable[[_Row], list[str]]) -> dict[str, Any]:
    """A list page's body: `items` (made of rows[:limit]) and, when the store returned a row more
    than `limit`, the cursor after the page's last row (`key` of it) and the link to the next page."""
    cursor = make_cursor(request, kind, scope, key(rows[limit - 1])) if len(rows) > limit else None
    return {"items": items, "next_cursor": cursor,
            "links": {"self": str(request.rel_url), "next": next_link(request, cursor)}}


def chain_client(request: web.Request, chain: str) -> Any:
    chains = ctx_of(request).chains
    client = chains.get(chain)
    if client is None and chains:
        # The server follows other chains: asking it for this one is the request's mistake, and
        # waiting will not fix it (a server with no node at all is unavailable: 503 below).
        raise bad_request("chain", f"this server has no node for chain {chain!r}; it serves "
                          f"{', '.join(sorted(chains))}")
    if client is None:
        raise ApiError(503, "Chain unavailable", f"no node is configured for chain {chain!r} on this server",
                       field="chain", headers={"Retry-After": "30"})
    return client
