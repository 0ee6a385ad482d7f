"""The paths money took from a trace's seeds to one address, widest (largest bottleneck) first."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from aiohttp import web

from tracer.api import params
from tracer.api import serialize as ser
from tracer.api.errors import ApiError, bad_request
from tracer.api.handlers.common import ctx_of, ok, trace_or_404
from tracer.engine import graph as tgraph
from tracer.store import reads


def _paths(rows: list[asyncpg.Record], seeds: list[str], target: str, limit: int, chain: str
           ) -> list[list[tgraph.PathStep]]:
    return tgraph.paths_to(tgraph.build(rows, chain), seeds, target, limit=limit, chain=chain)


def _step(s: tgraph.PathStep, meta: dict[tuple[str, str], tuple[str | None, int | None]],
          times: dict[tuple[str, str], Any]) -> dict[str, Any]:
    # Amounts in the step's own chain's units: a trace that crossed a bridge onto Bitcoin counts
    # satoshis there, not wei.
    step = dict(ser.amount(s.chain, s.asset, s.amount, *meta.get((s.chain, s.asset), (None, None))),
                **{"chain": s.chain, "from": s.from_addr, "to": s.to_addr, "tx_hash": s.tx_hash,
                   "block_number": s.block_number, "timestamp": ser.iso(times.get((s.chain, s.tx_hash)))})
    if s.from_chain and s.from_chain != s.chain:
        step["from_chain"] = s.from_chain  # a bridge: the depositor on one chain, the payout on another
    return step


async def get(request: web.Request) -> web.Response:
    params.reject_unknown(request, ("to", "limit"))
    ctx = ctx_of(request)
    trace_id = params.trace_id(request)
    target = params.address_param(request, "to", params.ANY_CHAIN)
    if target is None:
        raise bad_request("to", "required: the address to find paths to")
    limit = params.int_param(request, "limit", minimum=1, maximum=50, default=10)
    assert limit is not None
    cap = ctx.settings.paths_max_hops
    async with ctx.pool.acquire() as conn:
        trace = await trace_or_404(conn, trace_id)
        rows = await reads.ancestor_hops(conn, trace_id, target, max_hops=cap)
    if len(rows) > cap:
        raise ApiError(422, "Graph too large", f"more than {cap} hops lead to {target}; path search is refused "
                       "rather than tying up the server (export the graph instead)", field="to")
    chain = trace["chain"]
    meta = {(r["chain"] or chain, r["asset"]): (r["symbol"], r["decimals"]) for r in rows}
    times = {(r["chain"] or chain, r["tx_hash"]): r["block_time"] for r in rows}
    # networkx is CPU-bound: run it off the event loop so other requests keep flowing.
    found = await asyncio.to_thread(_paths, rows, list(trace["seeds"]), target, limit, chain) if rows else []
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
            "steps": [_step(s, meta, times) for s in steps],
        }
        paths.append(path)
    return ok({"trace_id": trace_id, "to": target, "seeds_reached": bool(found), "paths": paths})
