"""Indirect exposure: `GET /v1/screen?address=...&depth=N` walks the address's inflows N hops
back (tracer.engine.backward) and says what share of what it received came from each flagged
category and entity, with every source and the path its money took as evidence.

Answers are cached in this process per (address, window, depth, caller's labels, labels'
version): asking again is free until a label changes, which recomputes it. The walk is bounded
(TRACER_SCREEN_MAX_ADDRESSES wallets, 500 by default; an answer cut by it says `truncated`) and
timed (TRACER_SCREEN_BUDGET seconds, 60 by default; past it a 503).
"""

from __future__ import annotations

import asyncio
import os
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from tracer.api import owners
from tracer.api import serialize as ser
from tracer.api.auth import principal_of
from tracer.api.errors import ApiError, bad_request
from tracer.api.handlers.common import chain_client, ctx_of
from tracer.chains.errors import ChainError
from tracer.chains.evm import EvmChain
from tracer.engine import backward
from tracer.store import labels as label_store
from tracer.store import screening

MAX_DEPTH = 10
_CACHE_SIZE = 512
_cache: OrderedDict[tuple[Any, ...], backward.SourceOfFunds] = OrderedDict()


def max_addresses() -> int:
    return max(1, int(os.environ.get("TRACER_SCREEN_MAX_ADDRESSES", "500")))


def budget() -> float:
    return max(0.001, float(os.environ.get("TRACER_SCREEN_BUDGET", "60")))


async def indirect(request: web.Request, chain: str, address: str, depth: int, from_block: int | None,
                   to_block: int | None) -> dict[str, Any]:
    """The `exposure` member of a screening answer."""
    ctx = ctx_of(request)
    client = chain_client(request, chain)
    if not isinstance(client, EvmChain):  # Bitcoin's flattened inputs and Tron are not walked back yet
        raise bad_request("depth", f"indirect exposure is not available on {chain} yet (EVM chains only)")
    head = await client.head()
    to_block = head if to_block is None else to_block
    from_block = 1 if from_block is None else from_block
    if to_block > head:
        raise bad_request("to_block", f"is past the chain head ({head})")
    if from_block > to_block:
        raise bad_request("from_block", "is after to_block")
    seen = owners.viewer(principal_of(request))
    async with ctx.pool.acquire() as conn:
        version = await screening.labels_version(conn)
    key = (id(ctx.pool), chain, address, depth, from_block, to_block, version, seen.args())
    result = _cache.get(key)
    cached = result is not None
    if result is None:
        async def lookup(addresses: Sequence[str]) -> dict[str, backward.SourceLabel]:
            async with ctx.pool.acquire() as conn:
                found = await label_store.lookup(conn, chain, list(addresses), viewer=seen)
            return {a: backward.SourceLabel(lbs[0].entity, lbs[0].category) for a, lbs in found.items() if lbs}
        walk = backward.source_of_funds(client, chain, lookup, address, from_block=from_block, to_block=to_block,
                                        depth=depth, max_addresses=max_addresses())
        try:
            result = await asyncio.wait_for(walk, budget())
        except TimeoutError:
            raise ApiError(503, "Screening over budget", f"the walk back from {address} was stopped after "
                           f"{budget():g} s (TRACER_SCREEN_BUDGET); ask for a smaller depth",
                           headers={"Retry-After": "60"}) from None
        except (OSError, ChainError) as exc:
            raise ApiError(503, "Chain node unavailable", f"{type(exc).__name__} while walking inflows",
                           headers={"Retry-After": "10"}) from None
        _cache[key] = result
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    else:
        _cache.move_to_end(key)
    return render(chain, result, cached)


def _amounts(chain: str, amounts: dict[str, int]) -> list[dict[str, Any]]:
    return [ser.amount(chain, a, v, None, None) for a, v in sorted(amounts.items())]


def render(chain: str, result: backward.SourceOfFunds, cached: bool) -> dict[str, Any]:
    flagged = []
    for e in backward.flagged_exposure(result):
        flagged.append({"category": e["category"], "entity": e["entity"],
                        "amounts": [{**ser.amount(chain, a, v, None, None), "share": e["shares"][a]}
                                    for a, v in sorted(e["amounts"].items())]})
    return {
        "depth": result.depth, "from_block": result.from_block, "to_block": result.to_block,
        "received": _amounts(chain, result.received),
        "flagged": flagged,
        "sources": [{"address": s.address, "how": s.how, "hops": s.depth, "flagged": s.flagged,
                     "entity": s.label.entity if s.label else None,
                     "category": s.label.category if s.label else None,
                     "amounts": _amounts(chain, s.amounts), "path": s.path} for s in result.sources[:100]],
        "sources_total": len(result.sources), "walked": result.walked, "truncated": result.truncated,
        "cached": cached,
    }
