"""One address across everything tracer knows: labels, sanctions, the traces it appears in, exposure."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiohttp import web

from tracer.api import owners, params
from tracer.api import serialize as ser
from tracer.api.auth import Principal, audit, principal_of
from tracer.api.errors import bad_request
from tracer.api.handlers.common import checked_body, ctx_of, ok
from tracer.domain.labels import CATEGORIES, Label
from tracer.domain.verdicts import Role
from tracer.store import cases as case_store
from tracer.store import labels as label_store
from tracer.store import ownership, reads

TRACE_LIMIT = 200
INVESTIGATOR_SOURCE = owners.INVESTIGATOR_SOURCE


def _target(request: web.Request) -> tuple[str, str]:
    chain = params.chain_name(request.match_info["chain"])
    address = params.parse_address("address", request.match_info["address"], chain)
    return chain, address


def _parse_time(field: str, value: Any) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise bad_request(field, "must be an RFC 3339 date-time such as 2024-05-01T00:00:00Z") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


async def get(request: web.Request) -> web.Response:
    params.reject_unknown(request, ())
    ctx = ctx_of(request)
    chain, address = _target(request)
    now = datetime.now(UTC)
    async with ctx.pool.acquire() as conn:
        seen = owners.viewer(principal_of(request))
        labels = (await label_store.lookup(conn, chain, [address], viewer=seen)).get(address, [])
        sanctions = (await label_store.screen(conn, chain, [address], at=now, viewer=seen)).get(address, [])
        rows = await reads.address_traces(conn, chain, address, limit=TRACE_LIMIT)
        seeded = await reads.traces_seeded_by(conn, chain, address, limit=TRACE_LIMIT)
        in_cases = await case_store.cases_with_address(conn, chain, address,
                                                       owners.viewer(principal_of(request), admin_sees_all=True))
    traces: list[dict[str, Any]] = []
    most: dict[str, tuple[int, str | None, int | None]] = {}
    for r in rows:
        received = []
        for item in r.received:
            raw = item.amount
            received.append(ser.amount(chain, item.asset, raw, item.symbol, item.decimals))
            prev = most.get(item.asset)
            if prev is None or raw > prev[0]:
                most[item.asset] = (raw, item.symbol, item.decimals)
        traces.append({
            "trace_id": r.id, "status": r.status, "label": r.label, "created_at": ser.iso(r.created_at),
            "seed": bool(r.verdict.is_seed) or r.id in seeded, "role": r.verdict.shown_role,
            "reason": r.verdict.reason, "entity": r.verdict.entity, "category": r.verdict.category, "depth": r.depth,
            "received": received, "links": {"trace": f"/v1/traces/{r.id}",
                                            "paths": f"/v1/traces/{r.id}/paths?to={address}"},
        })
    listed = {t["trace_id"] for t in traces}
    for trace_id in seeded:  # queued traces have no job rows yet
        if trace_id not in listed:
            traces.append({"trace_id": trace_id, "status": None, "label": None, "created_at": None, "seed": True,
                           "role": Role.SEED, "reason": None, "entity": None, "category": None, "depth": 0,
                           "received": [], "links": {"trace": f"/v1/traces/{trace_id}",
                                                     "paths": f"/v1/traces/{trace_id}/paths?to={address}"}})
    traces.sort(key=lambda t: -int(t["trace_id"]))
    seed_of = sum(1 for t in traces if t["seed"])
    exit_of = sum(1 for t in traces if t["role"] == Role.EXIT)
    level = "sanctioned" if sanctions else ("flagged" if seed_of or most else "none")
    return ok({
        "chain": chain,
        "address": address,
        "address_checksum": ser.checksummed(address),
        "labels": [ser.label(lb, now) for lb in labels],
        "sanctions": [ser.label(lb, now) for lb in sanctions],
        "traces": traces,
        # "also in case N": the cases this key can see that reached, noted or tagged the address.
        "cases": [{"case_id": c.id, "title": c.title, "via": c.via, "links": {"case": f"/v1/cases/{c.id}"}}
                  for c in in_cases],
        "exposure": {
            "level": level,
            "sanctioned": bool(sanctions),
            "traces": len(traces),
            "seed_of": seed_of,
            "exit_of": exit_of,
            # Per asset, the most flagged money that reached it in any one trace (summing over
            # traces would count the same coins twice when traces overlap).
            "max_received": [ser.amount(chain, a, raw, sym, dec) for a, (raw, sym, dec) in sorted(most.items())],
        },
    })


async def add_label(request: web.Request) -> web.Response:
    params.reject_unknown(request, ())
    ctx = ctx_of(request)
    chain, address = _target(request)
    body = await checked_body(request, "label-create")
    principal = principal_of(request)
    label = label_from_body(principal, chain, address, body)
    async with ctx.pool.acquire() as conn, conn.transaction():
        await save_label(request, conn, principal, label)
    return ok(ser.label(label, datetime.now(UTC)), status=201)


def label_from_body(principal: Principal, chain: str, address: str, body: dict[str, Any]) -> Label:
    """An investigator's label of `address` from a checked POST body (label-create, label-post)."""
    if body["category"] not in CATEGORIES:
        raise bad_request("category", f"must be one of {', '.join(sorted(CATEGORIES))}")
    valid_from = _parse_time("valid_from", body.get("valid_from"))
    valid_to = _parse_time("valid_to", body.get("valid_to"))
    if valid_from and valid_to and valid_to < valid_from:
        raise bad_request("valid_to", "is before valid_from")
    try:
        return Label(
            chain=chain, address=address, entity=body["entity"].strip(), category=body["category"],
            source=owners.label_source(principal), confidence=float(body.get("confidence", 1.0)),
            valid_from=valid_from, valid_to=valid_to, evidence={"note": body["note"]} if body.get("note") else None,
            created_by=principal.name,
        )
    except ValueError as exc:  # a rule of Label the schema does not repeat is still the caller's error
        raise bad_request("body", str(exc)) from None


async def save_label(request: web.Request, conn: asyncpg.pool.PoolConnectionProxy, principal: Principal,
                     label: Label) -> bool:
    """Write an investigator's label, private to its key (or team) where its labels are, and audit
    it; True when private. Call inside a transaction."""
    await label_store.upsert_labels(conn, [label])
    private = owners.private_labels(principal)
    if private:
        await ownership.make_labels_private(conn, label.chain, label.address, label.source, principal.owner)
    await audit(request, conn, "label.create", f"address:{label.chain}:{label.address}",
                {"entity": label.entity, "category": label.category})
    return private
