"""Connections: the money paths from one set of addresses to another inside a trace's graph, or
inside every trace of a case, widest (largest bottleneck) first.

The same search as `/v1/traces/{id}/paths` (tracer.engine.widest through graph.paths_to, in a
child process under TRACER_PATHS_BUDGET), with the `from` addresses in place of the seeds. A case's
traces are searched one by one and their paths merged: adding their graphs together would count
money twice where two traces saw the same transfer.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from tracer.api import owners, params, pathsearch
from tracer.api import serialize as ser
from tracer.api.auth import principal_of
from tracer.api.errors import ApiError, bad_request, not_found
from tracer.api.handlers.common import ctx_of, ok, trace_or_404
from tracer.api.handlers.paths import _step
from tracer.engine import graph as tgraph
from tracer.store import cases as case_store
from tracer.store import reads

log = logging.getLogger("tracer.api")
MAX_ADDRESSES = 20
MAX_TRACES = 50


def _addresses(request: web.Request, name: str) -> list[str]:
    raw = [v for text in request.query.getall(name, []) for v in text.split(",") if v.strip()]
    if not raw:
        raise bad_request(name, "required: one or more addresses (repeat the parameter or separate with commas)")
    if len(raw) > MAX_ADDRESSES:
        raise bad_request(name, f"at most {MAX_ADDRESSES} addresses")
    return sorted({params.parse_address(name, v.strip(), params.ANY_CHAIN) for v in raw})


async def _traces(request: web.Request, conn: Any) -> tuple[str, int, list[tuple[int, str, list[str]]]]:
    """('trace' | 'case', its id, [(trace id, chain, seeds)])."""
    trace_id = params.int_param(request, "trace_id", minimum=1)
    case_id = params.int_param(request, "case_id", minimum=1)
    if (trace_id is None) == (case_id is None):
        raise bad_request("trace_id", "give exactly one of trace_id and case_id: the graph to search")
    if trace_id is not None:
        row = await trace_or_404(conn, trace_id)
        return "trace", trace_id, [(trace_id, row.chain, list(row.seeds))]
    assert case_id is not None
    case = await case_store.get_case(conn, case_id, owners.viewer(principal_of(request), admin_sees_all=True))
    if case is None:
        raise not_found(f"no case {case_id}")
    if len(case.trace_ids) > MAX_TRACES:
        raise ApiError(422, "Graph too large", f"case {case_id} has {len(case.trace_ids)} traces; connections "
                       f"search at most {MAX_TRACES}", field="case_id")
    out = []
    for tid in case.trace_ids:
        stored = await reads.get_trace(conn, tid)
        if stored is not None:
            out.append((tid, stored.chain, list(stored.seeds)))
    return "case", case_id, out


async def get(request: web.Request) -> web.Response:
    params.reject_unknown(request, ("from", "to", "trace_id", "case_id", "limit"))
    ctx = ctx_of(request)
    sources = _addresses(request, "from")
    targets = _addresses(request, "to")
    limit = params.int_param(request, "limit", minimum=1, maximum=50, default=10)
    assert limit is not None
    s = ctx.settings
    cap = s.paths_max_hops
    found: list[tuple[tuple[int, int], int, list[tgraph.PathStep]]] = []
    meta: dict[tuple[str, str], tuple[str | None, int | None]] = {}
    times: dict[tuple[str, str], Any] = {}
    async with ctx.pool.acquire() as conn:
        kind, graph_id, traces = await _traces(request, conn)
        work = []
        for trace_id, chain, _seeds in traces:
            for target in targets:
                rows = await reads.ancestor_hops(conn, trace_id, target, max_hops=cap)
                if len(rows) > cap:
                    raise ApiError(422, "Graph too large", f"more than {cap} hops lead to {target} in trace "
                                   f"{trace_id}; export the graph instead", field="to")
                if rows:
                    work.append((trace_id, chain, target, rows))
    for trace_id, chain, target, rows in work:
        meta.update({(r.chain or chain, r.asset): (r.symbol, r.decimals) for r in rows})
        times.update({(r.chain or chain, r.tx_hash): r.block_time for r in rows})
        try:
            paths = await pathsearch.search(rows, sources, target, limit, chain, budget=s.paths_budget,
                                            gone=lambda: request.transport is None or request.transport.is_closing())
        except pathsearch.PathSearchTimeout:
            raise ApiError(503, "Path search over budget", f"the search was stopped after {s.paths_budget:g} s "
                           "(TRACER_PATHS_BUDGET); ask for fewer paths (limit) or fewer addresses",
                           headers={"Retry-After": "60"}) from None
        except pathsearch.PathSearchAbandoned:
            raise ApiError(499, "Client closed request", "the client left; the search was stopped") from None
        for steps in paths:
            if steps:
                found.append(((-min(st.amount for st in steps), len(steps)), trace_id, steps))
    # Widest first across traces (one trace's list is already in that order), then fewest hops.
    found.sort(key=lambda x: (x[0], x[1]))
    out = []
    for _, trace_id, steps in found[:limit]:
        units = {(st.chain, st.asset) for st in steps}
        one = next(iter(units)) if len(units) == 1 else None
        out.append({
            "trace_id": trace_id, "hops": len(steps),
            "addresses": [steps[0].from_addr] + [st.to_addr for st in steps],
            "bottleneck": (ser.amount(one[0], one[1], min(st.amount for st in steps), *meta.get(one, (None, None)))
                           if one is not None else None),
            "steps": [_step(st, meta, times) for st in steps],
        })
    return ok({"from": sources, "to": targets, kind + "_id": graph_id, "traces": [t[0] for t in traces],
               "paths": out})
