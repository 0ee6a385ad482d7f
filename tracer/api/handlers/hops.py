"""A trace's hops, one keyset page at a time, with filters and a choice of sort."""

from __future__ import annotations

from aiohttp import web

from tracer.api import params, usd
from tracer.api import serialize as ser
from tracer.api.errors import ApiError
from tracer.api.handlers.common import ctx_of, make_cursor, next_link, ok_fast, page_limit, read_cursor, trace_or_404
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
    params.reject_unknown(request, _PARAMS)
    ctx = ctx_of(request)
    trace_id = params.trace_id(request)
    f = _filter(request)
    sort = params.enum_param(request, "sort", reads.HOP_SORTS, default="block")
    assert sort is not None
    limit = page_limit(request)
    # The cursor is bound to this trace, sort and filter set: reusing it elsewhere is a 400.
    scope = {"trace": trace_id, "sort": sort, "filter": repr(f)}
    after = read_cursor(request, "hops", scope)
    async with ctx.read_pool.acquire() as conn:
        # A trace's chain never changes, so a known trace costs one query per page, not two. An
        # empty page is the only case where the trace may be gone: check it then (404).
        chain = ctx.trace_chains.get(trace_id)
        if chain is None:
            chain = str((await trace_or_404(conn, trace_id))["chain"])
        rows = await reads.hops_page(conn, trace_id, f, sort=sort, after=after, limit=limit + 1)
        if not rows:
            try:
                await trace_or_404(conn, trace_id)
            except ApiError:
                ctx.trace_chains.pop(trace_id, None)
                raise
    if len(ctx.trace_chains) > 10_000:
        ctx.trace_chains.clear()
    ctx.trace_chains[trace_id] = chain
    values = await usd.hop_values(ctx, rows[:limit])
    items = [ser.hop(chain, r, usd.fields(values.get(int(r["transfer_id"])))) for r in rows[:limit]]
    cursor = (make_cursor(request, "hops", scope, reads.hop_sort_key(sort, rows[limit - 1]))
              if len(rows) > limit else None)
    return ok_fast({"trace_id": trace_id, "sort": sort, "items": items, "next_cursor": cursor,
               "links": {"self": str(request.rel_url), "next": next_link(request, cursor)}})
