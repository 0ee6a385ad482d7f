"""Labels as a collection (`/v1/labels`) and sanctions screening (`/v1/screen`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from tracer.addresses import shape_chain
from tracer.api import owners, params
from tracer.api import serialize as ser
from tracer.api.auth import principal_of
from tracer.api.errors import bad_request, not_found
from tracer.api.handlers import exposure
from tracer.api.handlers.addresses import _parse_time
from tracer.api.handlers.common import ctx_of, make_cursor, next_link, ok, page_limit, read_cursor
from tracer.api.openapi import field_of, validator
from tracer.domain.labels import CATEGORIES, RISK_CATEGORIES
from tracer.store import keys as key_store
from tracer.store import labels as label_store
from tracer.store import ownership


def _item(label_id: int, chain: str, address: str, lb: label_store.Label, now: datetime,
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
    cursor = make_cursor(request, "labels", scope, [str(rows[limit - 1][0])]) if len(rows) > limit else None
    return ok({"items": items, "next_cursor": cursor,
               "links": {"self": str(request.rel_url), "next": next_link(request, cursor)}})


async def create(request: web.Request) -> web.Response:
    """A case-specific label from an investigator, with who added it in the audit log."""
    params.reject_unknown(request, ())
    ctx = ctx_of(request)
    body = await params.json_object(request)
    errors = sorted(validator("label-post").iter_errors(body), key=lambda e: list(e.absolute_path))
    if errors:
        raise bad_request(field_of(errors[0]), errors[0].message[:300])
    chain = params.chain_name(body["chain"]) if "chain" in body else _shape_chain(body["address"])
    address = params.parse_address("address", body["address"], chain)
    if body["category"] not in CATEGORIES:
        raise bad_request("category", f"must be one of {', '.join(sorted(CATEGORIES))}")
    valid_from = _parse_time("valid_from", body.get("valid_from"))
    valid_to = _parse_time("valid_to", body.get("valid_to"))
    if valid_from and valid_to and valid_to < valid_from:
        raise bad_request("valid_to", "is before valid_from")
    principal = principal_of(request)
    label = label_store.Label(
        chain=chain, address=address, entity=body["entity"].strip(), category=body["category"],
        source=owners.label_source(principal), confidence=float(body.get("confidence", 1.0)), valid_from=valid_from,
        valid_to=valid_to, evidence={"note": body["note"]} if body.get("note") else None, created_by=principal.name,
    )
    async with ctx.pool.acquire() as conn, conn.transaction():
        await label_store.upsert_labels(conn, [label])
        private = owners.private_labels(principal)
        if private:
            await ownership.make_labels_private(conn, chain, address, label.source, principal.owner)
        await key_store.audit(conn, actor=principal.name, api_key_id=principal.key_pk, action="label.create",
                              target=f"address:{chain}:{address}", remote=request.remote,
                              details={"entity": label.entity, "category": label.category})
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
            await key_store.audit(conn, actor=principal.name, api_key_id=principal.key_pk, action="label.publish",
                                  target=f"label:{label_id}", remote=request.remote)
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
