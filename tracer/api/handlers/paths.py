"""The paths money took from a trace's seeds to one address, widest (largest bottleneck) first."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from aiohttp import web

from tracer.api import params, pathsearch
from tracer.api import serialize as ser
from tracer.api.errors import ApiError, bad_request
from tracer.api.handlers.common import ok, trace_or_404, trace_request
from tracer.engine import graph as tgraph
from tracer.engine import pricing
from tracer.engine.pricing import PriceBook, usd_text
from tracer.store import reads

log = logging.getLogger("tracer.api")


def _step(s: tgraph.PathStep, meta: dict[tuple[str, str], tuple[str | None, int | None]],
          times: dict[tuple[str, str], Any], book: PriceBook | None = None) -> dict[str, Any]:
    # Amounts in the step's own chain's units: a trace that crossed a bridge onto Bitcoin counts
    # satoshis there, not wei.
    step = dict(ser.amount(s.chain, s.asset, s.amount, *meta.get((s.chain, s.asset), (None, None))),
                **{"chain": s.chain, "from": s.from_addr, "to": s.to_addr, "tx_hash": s.tx_hash,
                   "block_number": s.block_number, "timestamp": ser.iso(times.get((s.chain, s.tx_hash)))})
    if book is not None:  # dollars at the step's block
        value = book.value(s.chain, s.asset, s.block_number, int(times.get((s.chain, s.tx_hash)) or 0), s.amount,
                           meta.get((s.chain, s.asset), (None, None))[1])
        step["usd"], step["usd_source"] = usd_text(value.usd), value.source
    if s.from_chain and s.from_chain != s.chain:
        step["from_chain"] = s.from_chain  # a bridge: the depositor on one chain, the payout on another
    return step


async def get(request: web.Request) -> web.Response:
    ctx, trace_id = trace_request(request, ("to", "limit"))
    target = params.address_param(request, "to", params.ANY_CHAIN)
    if target is None:
        raise bad_request("to", "required: the address to find paths to")
    limit = params.int_param(request, "limit", minimum=1, maximum=50, default=10)
    assert limit is not None
    s = ctx.settings
    cap = s.paths_max_hops
    async with ctx.pool.acquire() as conn:
        trace = await trace_or_404(conn, trace_id)
        if len(trace.seeds) > s.paths_max_seeds:
            raise ApiError(422, "Graph too large", f"trace {trace_id} has {len(trace.seeds)} seeds; path search is "
                           f"limited to traces of {s.paths_max_seeds} (TRACER_PATHS_MAX_SEEDS)", field="trace_id")
        rows = await reads.ancestor_hops(conn, trace_id, target, max_hops=cap)
    if len(rows) > cap:
        raise ApiError(422, "Graph too large", f"more than {cap} hops lead to {target}; path search is refused "
                       "rather than tying up the server (export the graph instead)", field="to")
    chain = trace.chain
    meta = {(r.chain or chain, r.asset): (r.symbol, r.decimals) for r in rows}
    times = {(r.chain or chain, r.tx_hash): r.block_time for r in rows}
    # CPU-bound and its cost grows with seeds × limit: in a child process, under a budget, and
    # stopped if the client leaves (tracer.api.pathsearch).
    found: list[list[tgraph.PathStep]] = []
    if rows:
        try:
            found = await pathsearch.search(rows, list(trace.seeds), target, limit, chain, budget=s.paths_budget,
                                            gone=lambda: request.transport is None or request.transport.is_closing())
        except pathsearch.PathSearchTimeout:
            raise ApiError(503, "Path search over budget",
                           f"the search for paths to {target} was stopped after {s.paths_budget:g} s "
                           "(TRACER_PATHS_BUDGET); ask for fewer paths (limit) or export the graph",
                           headers={"Retry-After": "60"}) from None
        except pathsearch.PathSearchAbandoned:
            log.info("event=paths_abandoned trace=%d to=%s", trace_id, target)
            # Nobody reads it; 499 ("client closed request", as proxies log it) keeps metrics honest.
            raise ApiError(499, "Client closed request", "the client left; the search was stopped") from None
    # Each step's dollars at its block (prices still missing read from the nodes' feeds first).
    book = PriceBook([])
    if found:
        await pricing.price_keys(ctx.pool, ctx.chains, pricing.keys_of(
            [dataclasses.replace(r, chain=r.chain or chain) for r in rows]))
        async with ctx.pool.acquire() as conn:
            book = await pricing.price_book(conn, {(r.chain or chain, r.asset) for r in rows})
    paths: list[dict[str, Any]] = []
    for steps in found:
        if not steps:  # the target is itself a seed: nothing to walk
            continue
        units = {(s.chain, s.asset) for s in steps}
        one = next(iter(units)) if len(units) == 1 else None
        path: dict[str, Any] = {
            "hops": len(steps),
            "addresses": [steps[0].from_addr] + [s.to_addr for s in steps],
            # The most flagged money that can have flowed along the whole path: its narrowest step
            # (only when every step is in one unit: one asset on one chain).
            "bottleneck": (
                ser.amount(one[0], one[1], min(s.amount for s in steps), *meta.get(one, (None, None)))
                if one is not None else None),
            "steps": [_step(s, meta, times, book) for s in steps],
        }
        paths.append(path)
    return ok({"trace_id": trace_id, "to": target, "seeds_reached": bool(found), "paths": paths})
