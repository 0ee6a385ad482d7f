"""Labels as a collection (`/v1/labels`) and sanctions screening (`/v1/screen`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from tracer.addresses import shape_chain
from tracer.api import owners, params
from tracer.api import serialize as ser
from tracer.api.auth import audit, principal_of
from tracer.api.errors import bad_request, not_found
from tracer.api.handlers import exposure
from tracer.api.handlers.addresses import _parse_time, label_from_body, save_label
from tracer.api.handlers.common import checked_body, ctx_of, ok, page, page_limit, read_cursor
from tracer.domain.labels import CATEGORIES, RISK_CATEGORIES, Label
from tracer.store import labels as label_store
from tracer.store import ownership


def _item(label_id: int, chain: str, address: str, lb: Label, now: datetime,
          private: bool) -> dict[str, Any]:
    return {"id": label_id, "chain": chain, "address": address, **ser.label(lb, now), "private": private}


def _shape_chain(address: Any) -> str:
    """The chain a request that names none means: 0x addresses are Ethereum's, T... Tron's, any
    other is taken for Bitcoin (and must then pass Bitcoin's checks, or the answer is a 400 naming it)."""
    return shape_chain(address)


async def list_(request: web.Request) -> web.Response:
    params.reject_unknown(request, ("chain", "address", "category", "source", "entity", "limit", "cursor"))
    ctx = ctx_of(request)
    chain_text = params.str_param(request, "chain", max_len=32)
    chain = params.chain_name(chain_text) if chain_text else None
    address = params.address_param(request, "address", chain or params.ANY_CHAIN)
    category = params.enum_param(request, "category", sorted(CATEGORIES))
    source = params.str_param(request, "source", max_len=64)
    entity = params.str_param(request, "entity")
    limit = page_limit(request)
    scope = {"chain": chain, "address": address, "category": category, "source": source, "entity": entity}
    after = read_cursor(request, "labels", scope)
    after_id = params.parse_int("cursor", after[0], minimum=0) if after else None
    async with ctx.pool.acquire() as conn:
        rows = await label_store.list_labels(conn, chain=chain, address=address, category=category, source=source,
                                             entity=entity, after_id=after_id, limit=limit + 1,
                                             viewer=owners.viewer(principal_of(request), admin_sees_all=True))
        private = await ownership.label_privacy(conn, [r[0] for r in rows[:limit]])
    now = datetime.now(UTC)
    items = [_item(i, c, a, lb, now, private.get(i, False)) for i, c, a, lb in rows[:limit]]
    return ok(page(request, "labels", scope, items, rows, limit, lambda r: [str(r[0])]))


async def create(request: web.Request) -> web.Response:
    """A case-specific label from an investigator, with who added it in the audit log."""
    params.reject_unknown(request, ())
    ctx = ctx_of(request)
    body = await checked_body(request, "label-post")
    chain = params.chain_name(body["chain"]) if "chain" in body else _shape_chain(body["address"])
    address = params.parse_address("address", body["address"], chain)
    principal = principal_of(request)
    label = label_from_body(principal, chain, address, body)
    async with ctx.pool.acquire() as conn, conn.transaction():
        private = await save_label(request, conn, principal, label)
        rows = await label_store.list_labels(conn, chain=chain, address=address, source=label.source,
                                             entity=label.entity, category=label.category, limit=1000,
                                             viewer=owners.viewer(principal))
    label_id = max((r[0] for r in rows), default=0)
    return ok(_item(label_id, chain, address, label, datetime.now(UTC), private), status=201)


async def publish(request: web.Request) -> web.Response:
    """An admin makes a key's private label public: screening and every trace then use it."""
    params.reject_unknown(request, ())
    ctx = ctx_of(request)
    text = request.match_info["label_id"]
    if not text.isdigit() or len(text) > 18 or int(text) < 1:
        raise bad_request("label_id", "must be a positive integer")
    label_id = int(text)
    principal = principal_of(request)
    async with ctx.pool.acquire() as conn, conn.transaction():
        was_private = await ownership.publish_label(conn, label_id)
        if was_private is None:
            raise not_found(f"no label {label_id}")
        if was_private:
            await audit(request, conn, "label.publish", f"label:{label_id}")
        rows = await label_store.list_labels(conn, after_id=label_id - 1, limit=1, viewer=owners.viewer(principal))
    i, c, a, lb = rows[0]
    return ok(_item(i, c, a, lb, datetime.now(UTC), False))


async def screen(request: web.Request) -> web.Response:
    """Was the address sanctioned (or flagged as hacker, scam, ...) at a time, and by whom."""
    params.reject_unknown(request, ("chain", "address", "at", "depth", "from_block", "to_block"))
    ctx = ctx_of(request)
    chain_text = params.str_param(request, "chain", max_len=32)
    text = params.str_param(request, "address", max_len=128)
    if text is None:
        raise bad_request("address", "is required")
    chain = params.chain_name(chain_text) if chain_text else _shape_chain(text)
    address = params.parse_address("address", text, chain)
    at = _parse_time("at", params.str_param(request, "at", max_len=64)) or datetime.now(UTC)
    depth = params.int_param(request, "depth", minimum=0, maximum=exposure.MAX_DEPTH, default=0)
    from_block = params.int_param(request, "from_block", minimum=1)
    to_block = params.int_param(request, "to_block", minimum=1)
    async with ctx.pool.acquire() as conn:
        seen = owners.viewer(principal_of(request))  # public labels plus the caller's own
        sanctions = (await label_store.screen(conn, chain, [address], at=at, viewer=seen)).get(address, [])
        risks = (await label_store.screen(conn, chain, [address], at=at, categories=sorted(RISK_CATEGORIES),
                                          viewer=seen)).get(address, [])
    risk_only = [lb for lb in risks if lb.category != "sanctioned"]
    answer: dict[str, Any] = {
        "chain": chain, "address": address, "at": ser.iso(at),
        "sanctioned": bool(sanctions),
        "hits": [{"kind": "sanction", **ser.label(lb, at)} for lb in sanctions]
        + [{"kind": "risk", **ser.label(lb, at)} for lb in risk_only],
    }
    if depth:  # indirect exposure: the inflows `depth` hops back (tracer.engine.backward)
        answer["exposure"] = await exposure.indirect(request, chain, address, depth, from_block, to_block)
    return ok(answer)
