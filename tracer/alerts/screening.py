"""Screening results for watched addresses (issue 20): when a subscription's address receives new
money, once the inflow is confirmed, a `screening_result` event says what GET /v1/screen?depth=N
answers for it at that block: its direct labels (sanctioned, hacker, scam, ...) and its indirect
exposure, the share and amount of what it received within N hops back that came from each flagged
category and entity (tracer/engine/backward.py), with the inflows that set it off.

The monitor calls `screen_new_inflows` on every look at a chain it leads. Each screening
subscription (`screen_depth` set) keeps the last block whose inflows were screened: its first look
starts at the confirmed head (only money that arrives after subscribing is screened), each later
one screens the confirmed blocks since, and the events and the new mark commit together (a
monitor that lost its lead, or a second one, cannot screen a range twice). The event goes to that
subscription only (its stream and its webhook), whoever else watches the address.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg

from tracer.alerts.events import format_units
from tracer.chains.evm import EvmChain
from tracer.domain.chains import native_unit
from tracer.domain.labels import RISK_CATEGORIES, Category, Label
from tracer.domain.transfers import NATIVE, Transfer, TransferQuery
from tracer.engine import backward
from tracer.store import labels as label_store
from tracer.store import screening as screen_store
from tracer.store import traces as trace_store

log = logging.getLogger("tracer.alerts")

EVENT = "screening_result"
MAX_RANGE = 2_000  # blocks screened per look (catching up after downtime goes in steps)
MAX_WALKED = 500  # wallets one screening walks back at most (as TRACER_SCREEN_MAX_ADDRESSES)
_INFLOWS = 50  # inflows listed in one event (the largest)


async def screen_new_inflows(pool: asyncpg.Pool, chain: str, client: Any, head: int) -> int:
    """Screen the confirmed new inflows of every screening subscription on `chain`; events written."""
    if not isinstance(client, EvmChain):
        return 0  # inflows are walked back on EVM chains only (as by /v1/screen)
    async with pool.acquire() as conn:
        subs = await screen_store.watches(conn, chain)
    written = 0
    for sub in subs:
        target = head - sub.confirmations
        if sub.screened_to is None:  # the first look: from now on
            async with pool.acquire() as conn:
                await screen_store.move_screened(conn, sub.id, None, max(0, target))
            continue
        target = min(target, sub.screened_to + MAX_RANGE)
        if target <= sub.screened_to:
            continue
        watched = set(sub.addresses)
        found = await client.transfers(
            TransferQuery(sorted(watched), sub.screened_to + 1, target, outgoing=False, incoming=True))
        inflows: dict[str, list[Transfer]] = defaultdict(list)
        for t in found:
            if t.to_address in watched and t.from_address != t.to_address and t.amount > 0 \
                    and sub.screened_to < t.block_number <= target:
                inflows[t.to_address].append(t)
        events = [(None, EVENT, await _result(pool, client, chain, sub.id, address, sub.depth, target, got))
                  for address, got in sorted(inflows.items())]
        async with pool.acquire() as conn, conn.transaction():
            if await screen_store.move_screened(conn, sub.id, sub.screened_to, target):
                await trace_store.insert_events(conn, events)
                written += len(events)
        if events:
            log.info("event=screening_results subscription=%d chain=%s blocks=%d..%d addresses=%d", sub.id, chain,
                     sub.screened_to + 1, target, len(events))
    return written


def _amount(chain: str, asset: str, raw: int, symbol: str | None = None, decimals: int | None = None
            ) -> dict[str, Any]:
    if asset == NATIVE:
        symbol, decimals = native_unit(chain)
    return {"asset": asset, "symbol": symbol, "decimals": decimals, "amount": format_units(raw, decimals),
            "amount_raw": str(raw)}


def _label(lb: Label, kind: str) -> dict[str, Any]:
    return {"kind": kind, "entity": lb.entity, "category": lb.category, "source": lb.source,
            "confidence": lb.confidence}


async def _result(pool: asyncpg.Pool, client: Any, chain: str, subscription_id: int, address: str, depth: int,
                  block: int, got: Sequence[Transfer]) -> dict[str, Any]:
    """The event's payload: the inflows, then the screening at `block` (GET /v1/screen's answer)."""
    now = datetime.now(UTC)
    async with pool.acquire() as conn:
        sanctions = (await label_store.screen(conn, chain, [address], at=now)).get(address, [])
        risks = (await label_store.screen(conn, chain, [address], at=now,
                                          categories=sorted(RISK_CATEGORIES))).get(address, [])

    async def lookup(addresses: Sequence[str]) -> dict[str, backward.SourceLabel]:
        async with pool.acquire() as conn:
            found = await label_store.lookup(conn, chain, list(addresses))
        return {a: backward.SourceLabel(lbs[0].entity, lbs[0].category) for a, lbs in found.items() if lbs}

    sof = await backward.source_of_funds(client, chain, lookup, address, from_block=1, to_block=max(1, block),
                                         depth=depth, max_addresses=MAX_WALKED)
    largest = sorted(got, key=lambda t: (-t.amount, t.block_number, t.tx_hash))[:_INFLOWS]
    return {
        "subscription_id": subscription_id, "chain": chain, "address": address, "block_number": block,
        "inflows": [{"tx_hash": t.tx_hash, "block_number": t.block_number, "from": t.from_address,
                     **_amount(chain, t.asset, t.amount, t.symbol, t.decimals)} for t in largest],
        "inflow_count": len(got),
        "sanctioned": bool(sanctions),
        "hits": [_label(lb, "sanction") for lb in sanctions]
        + [_label(lb, "risk") for lb in risks if lb.category != Category.SANCTIONED],
        "exposure": {
            "depth": sof.depth, "from_block": sof.from_block, "to_block": sof.to_block,
            "received": [_amount(chain, a, v) for a, v in sorted(sof.received.items())],
            "flagged": [{"category": e["category"], "entity": e["entity"],
                         "amounts": [{**_amount(chain, a, v), "share": e["shares"][a]}
                                     for a, v in sorted(e["amounts"].items())]}
                        for e in backward.flagged_exposure(sof)],
            "sources": [{"address": s.address, "how": s.how, "hops": s.depth, "flagged": s.flagged,
                         "entity": s.label.entity if s.label else None,
                         "category": s.label.category if s.label else None,
                         "amounts": [_amount(chain, a, v) for a, v in sorted(s.amounts.items())], "path": s.path}
                        for s in sof.sources[:20]],
            "sources_total": len(sof.sources), "walked": sof.walked, "truncated": sof.truncated,
        },
    }
