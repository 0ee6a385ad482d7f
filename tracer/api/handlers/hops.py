"""A trace's hops, one keyset page at a time, with filters and a choice of sort."""

from __future__ import annotations

from aiohttp import web

from tracer.api import params, usd
from tracer.api import serialize as ser
from tracer.api.errors import not_found
from tracer.api.handlers.common import dumps_bytes, page, page_limit, read_cursor, trace_request
from tracer.api.pages import FINISHED, conditional, etag_of
from tracer.domain.verdicts import HopStatus
from tracer.store import reads

KINDS = ("native", "internal", "token")
HOP_STATUSES = tuple(HopStatus)
_PARAMS = ("limit", "cursor", "sort", "depth", "min_depth", "max_depth", "min_amount", "asset", "address", "from",
           "to", "kind", "status")


def _filter(request: web.Request) -> reads.HopFilter:
    return reads.HopFilter(
        depth=params.int_param(request, "depth", maximum=10_000),
        min_depth=params.int_param(request, "min_depth", maximum=10_000),
        max_depth=params.int_param(request, "max_depth", maximum=10_000),
        min_amount=params.decimal_param(request, "min_amount"),
        asset=params.asset_param(request, "asset"),
        address=params.address_param(request, "address", params.ANY_CHAIN),
        from_addr=params.address_param(request, "from", params.ANY_CHAIN),
        to_addr=params.address_param(request, "to", params.ANY_CHAIN),
        kind=params.enum_param(request, "kind", KINDS),
        status=params.enum_param(request, "status", HOP_STATUSES),
    )


async def list_(request: web.Request) -> web.Response:
    ctx, trace_id = trace_request(request, _PARAMS)
    f = _filter(request)
    sort = params.enum_param(request, "sort", reads.HOP_SORTS, default="block")
    assert sort is not None
    limit = page_limit(request)
    # The cursor is bound to this trace, sort and filter set: reusing it elsewhere is a 400.
    scope = {"trace": trace_id, "sort": sort, "filter": repr(f)}
    after = read_cursor(request, "hops", scope)
    async with ctx.read_pool.acquire() as conn:
        version = await reads.trace_version(conn, trace_id)
        if version is None:
            raise not_found(f"no trace {trace_id}")
        # A finished trace's page is the same bytes for every reader: kept (tracer.api.pages).
        key = (str(request.rel_url), version.status, version.updated_at, version.hop_count)
        cache = ctx.pages if version.status in FINISHED else None
        cached = cache.get(key) if cache is not None else None
        if cached is not None:
            return conditional(request, *cached)
        rows = await reads.hops_page(conn, trace_id, f, sort=sort, after=after, limit=limit + 1)
    chain = str(version.chain)
    values = await usd.hop_values(ctx, rows[:limit])
    items = [ser.hop(chain, r, usd.fields(values.get(int(r.transfer_id)))) for r in rows[:limit]]
    body = dumps_bytes({"trace_id": trace_id, "sort": sort,
                        **page(request, "hops", scope, items, rows, limit, lambda r: reads.hop_sort_key(sort, r))})
    etag = etag_of(body)
    if cache is not None:
        cache.put(key, body, etag)
    return conditional(request, body, etag)
