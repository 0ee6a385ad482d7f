"""Cases: investigations that span traces, with notes and tags, and their timeline.

A case is seen only by its owner (its key, or its key's team) and admins, like private labels: its
notes name suspects and legal steps. For anyone else it does not exist (404, never 403, so ids do
not tell which cases other teams keep). Writes need the `trace` scope; every write is audited.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from tracer.api import owners, params
from tracer.api import serialize as ser
from tracer.api.auth import Principal, audit, principal_of
from tracer.api.errors import bad_request, not_found
from tracer.api.handlers.common import checked_body, ctx_of, ok, page, page_limit, read_cursor
from tracer.store import cases as store
from tracer.store.ownership import Viewer

_ID = re.compile(r"\d{1,19}")
_MAX_BIGINT = (1 << 63) - 1
TIMELINE_MAX = 5000


def _path_id(request: web.Request, name: str) -> int:
    text = request.match_info[name]
    if not _ID.fullmatch(text) or not 1 <= int(text) <= _MAX_BIGINT:
        raise bad_request(name, "must be a positive integer")
    return int(text)


async def _case_write(request: web.Request, schema: str) -> tuple[int, dict[str, Any]]:
    """The path's case id and the checked JSON body of a write to that case (it takes no query)."""
    params.reject_unknown(request, ())
    return _path_id(request, "case_id"), await checked_body(request, schema)


def _viewer(principal: Principal) -> Viewer:
    return owners.viewer(principal, admin_sees_all=True)


def target_json(kind: str, target: str) -> dict[str, Any]:
    """The stored target text back as the API's object."""
    if kind == "trace":
        return {"kind": kind, "trace_id": int(target)}
    if kind == "address":
        chain, _, address = target.partition(":")
        return {"kind": kind, "chain": chain, "address": address}
    if kind == "hop":
        trace_id, _, transfer_id = target.partition(":")
        return {"kind": kind, "trace_id": int(trace_id), "transfer_id": int(transfer_id)}
    return {"kind": "case"}


def _case(case: store.Case) -> dict[str, Any]:
    return {
        "id": case.id, "title": case.title, "description": case.description, "status": case.status,
        "owner": {"key_id": case.owner.key_id, "team": case.owner.team}, "created_by": case.created_by,
        "created_at": ser.iso(case.created_at), "updated_at": ser.iso(case.updated_at), "traces": list(case.trace_ids),
        "links": {"self": f"/v1/cases/{case.id}", "timeline": f"/v1/cases/{case.id}/timeline",
                  "web": f"/ui?case={case.id}"},
    }


def _note(note: store.Note) -> dict[str, Any]:
    return {"id": note.id, "case_id": note.case_id, "target": target_json(note.target_kind, note.target),
            "text": note.body, "author": note.author, "created_at": ser.iso(note.created_at)}


def _tag(tag: store.Tag) -> dict[str, Any]:
    return {"case_id": tag.case_id, "target": target_json(tag.target_kind, tag.target), "tag": tag.tag,
            "author": tag.author, "created_at": ser.iso(tag.created_at)}


async def _visible_case(request: web.Request, conn: Any, case_id: int) -> store.Case:
    case = await store.get_case(conn, case_id, _viewer(principal_of(request)))
    if case is None:
        raise not_found(f"no case {case_id}")
    return case


async def _owned_case(request: web.Request, conn: Any, case_id: int) -> store.Case:
    """The case, if the caller may change it (visible cases are exactly the owned ones)."""
    case = await _visible_case(request, conn, case_id)
    if not principal_of(request).owns(case.owner):  # cannot happen today; kept should visibility widen
        raise not_found(f"no case {case_id}")
    return case


async def _target(conn: Any, case: store.Case, raw: dict[str, Any] | None) -> tuple[str, str]:
    """(kind, stored target text) of a note's or tag's target, checked against the case."""
    if raw is None or raw["kind"] == "case":
        return "case", ""
    kind = raw["kind"]
    if kind == "address":
        chain = params.chain_name(raw.get("chain", "ethereum"))
        return kind, f"{chain}:{params.parse_address('target.address', raw['address'], chain)}"
    trace_id = int(raw["trace_id"])
    if trace_id not in case.trace_ids:
        raise bad_request("target.trace_id", f"trace {trace_id} is not in case {case.id}; add it first")
    if kind == "trace":
        return kind, str(trace_id)
    transfer_id = int(raw["transfer_id"])
    if not await store.hop_exists(conn, trace_id, transfer_id):
        raise bad_request("target.transfer_id", f"trace {trace_id} has no hop with transfer {transfer_id}")
    return kind, f"{trace_id}:{transfer_id}"


async def _audit(request: web.Request, conn: Any, action: str, case_id: int, **details: Any) -> None:
    await audit(request, conn, action, f"case:{case_id}", details or None)


async def create(request: web.Request) -> web.Response:
    params.reject_unknown(request, ())
    body = await checked_body(request, "case-create")
    principal = principal_of(request)
    async with ctx_of(request).pool.acquire() as conn:
        try:
            case = await store.create_case(
                conn, title=body["title"], description=body.get("description", ""),
                status=body.get("status", "open"), owner=principal.owner, created_by=principal.name,
                trace_ids=list(body.get("traces", [])))
        except store.MissingTraces as exc:
            raise bad_request("traces", str(exc)) from None
        await _audit(request, conn, "case.create", case.id, traces=len(case.trace_ids))
    return ok(_case(case), status=201, headers={"Location": f"/v1/cases/{case.id}"})


async def list_(request: web.Request) -> web.Response:
    params.reject_unknown(request, ("status", "limit", "cursor"))
    statuses = params.enum_list_param(request, "status", store.STATUSES)
    limit = page_limit(request)
    scope = {"status": statuses}
    after = read_cursor(request, "cases", scope)
    before_id = params.parse_int("cursor", after[0], minimum=1) if after else None
    async with ctx_of(request).pool.acquire() as conn:
        rows = await store.list_cases(conn, _viewer(principal_of(request)), statuses=statuses, before_id=before_id,
                                      limit=limit + 1)
    return ok(page(request, "cases", scope, [_case(c) for c in rows[:limit]], rows, limit, lambda c: [str(c.id)]))


async def get(request: web.Request) -> web.Response:
    params.reject_unknown(request, ())
    case_id = _path_id(request, "case_id")
    async with ctx_of(request).pool.acquire() as conn:
        case = await _visible_case(request, conn, case_id)
        notes = await store.notes(conn, case_id)
        tags = await store.tags(conn, case_id)
        shared = await store.shared_addresses(conn, case_id)
    out = _case(case)
    out["notes"] = [_note(n) for n in notes]
    out["tags"] = [_tag(t) for t in tags]
    out["shared_addresses"] = [{"chain": c, "address": a, "traces": t} for c, a, t in shared]
    return ok(out)


async def update(request: web.Request) -> web.Response:
    case_id, body = await _case_write(request, "case-update")
    async with ctx_of(request).pool.acquire() as conn:
        await _owned_case(request, conn, case_id)
        await store.update_case(conn, case_id, title=body.get("title"), description=body.get("description"),
                                status=body.get("status"))
        await _audit(request, conn, "case.update", case_id, fields=sorted(body))
        case = await _visible_case(request, conn, case_id)
    return ok(_case(case))


async def delete(request: web.Request) -> web.Response:
    params.reject_unknown(request, ())
    case_id = _path_id(request, "case_id")
    async with ctx_of(request).pool.acquire() as conn:
        case = await _owned_case(request, conn, case_id)
        if not await store.delete_case(conn, case_id):
            raise not_found(f"no case {case_id}")
        await _audit(request, conn, "case.delete", case_id, title=case.title, traces=len(case.trace_ids))
    return web.Response(status=204)


async def add_traces(request: web.Request) -> web.Response:
    case_id, body = await _case_write(request, "case-traces")
    async with ctx_of(request).pool.acquire() as conn:
        await _owned_case(request, conn, case_id)
        try:
            await store.add_traces(conn, case_id, list(body["traces"]), principal_of(request).name)
        except store.MissingTraces as exc:
            raise bad_request("traces", str(exc)) from None
        await _audit(request, conn, "case.add_traces", case_id, traces=body["traces"])
        case = await _visible_case(request, conn, case_id)
    return ok(_case(case))


async def remove_trace(request: web.Request) -> web.Response:
    params.reject_unknown(request, ())
    case_id = _path_id(request, "case_id")
    trace_id = params.trace_id(request)
    async with ctx_of(request).pool.acquire() as conn:
        await _owned_case(request, conn, case_id)
        if not await store.remove_trace(conn, case_id, trace_id):
            raise not_found(f"trace {trace_id} is not in case {case_id}")
        await _audit(request, conn, "case.remove_trace", case_id, trace=trace_id)
    return web.Response(status=204)


async def add_note(request: web.Request) -> web.Response:
    case_id, body = await _case_write(request, "note-create")
    principal = principal_of(request)
    async with ctx_of(request).pool.acquire() as conn:
        case = await _owned_case(request, conn, case_id)
        kind, target = await _target(conn, case, body.get("target"))
        note = await store.add_note(conn, case_id, target_kind=kind, target=target, body=body["text"],
                                    author=principal.name, author_key_id=principal.key_pk)
        await _audit(request, conn, "case.note", case_id, note=note.id)
    return ok(_note(note), status=201)


async def list_notes(request: web.Request) -> web.Response:
    params.reject_unknown(request, ())
    case_id = _path_id(request, "case_id")
    async with ctx_of(request).pool.acquire() as conn:
        await _visible_case(request, conn, case_id)
        notes = await store.notes(conn, case_id)
    return ok({"items": [_note(n) for n in notes]})


async def add_tag(request: web.Request) -> web.Response:
    case_id, body = await _case_write(request, "tag-create")
    async with ctx_of(request).pool.acquire() as conn:
        case = await _owned_case(request, conn, case_id)
        kind, target = await _target(conn, case, body.get("target"))
        tag = await store.add_tag(conn, case_id, target_kind=kind, target=target, tag=body["tag"],
                                  author=principal_of(request).name)
        await _audit(request, conn, "case.tag", case_id, tag=tag.tag)
    return ok(_tag(tag), status=201)


def _tag_target(request: web.Request) -> tuple[str, str]:
    """(kind, stored target text) named by a DELETE's query, as `_target` stores them; not checked
    against the case's traces and hops (a tag on a hop of a trace detached since can go too)."""
    kind = params.enum_param(request, "kind", ("case", "trace", "address", "hop"), default="case") or "case"
    if kind == "case":
        return "case", ""
    if kind == "address":
        chain = params.chain_name(request.query.get("chain", "ethereum"))
        text = request.query.get("address")
        if text is None:
            raise bad_request("address", "required with kind=address")
        return kind, f"{chain}:{params.parse_address('address', text, chain)}"
    trace_id = params.int_param(request, "trace_id", minimum=1)
    if trace_id is None:
        raise bad_request("trace_id", f"required with kind={kind}")
    if kind == "trace":
        return kind, str(trace_id)
    transfer_id = params.int_param(request, "transfer_id", minimum=1)
    if transfer_id is None:
        raise bad_request("transfer_id", "required with kind=hop")
    return kind, f"{trace_id}:{transfer_id}"


async def remove_tag(request: web.Request) -> web.Response:
    """Untag: the owner (or the team, or an admin) of the case only, like every change to it."""
    params.reject_unknown(request, ("tag", "kind", "trace_id", "chain", "address", "transfer_id"))
    case_id = _path_id(request, "case_id")
    tag = params.str_param(request, "tag", max_len=64)
    if not tag:
        raise bad_request("tag", "required: the tag to remove")
    kind, target = _tag_target(request)
    async with ctx_of(request).pool.acquire() as conn:
        await _owned_case(request, conn, case_id)
        if not await store.remove_tag(conn, case_id, target_kind=kind, target=target, tag=tag):
            raise not_found(f"case {case_id} has no tag {tag!r} on that {kind}")
        await _audit(request, conn, "case.untag", case_id, tag=tag, kind=kind, target=target)
    return web.Response(status=204)


async def timeline(request: web.Request) -> web.Response:
    params.reject_unknown(request, ("limit",))
    case_id = _path_id(request, "case_id")
    limit = params.int_param(request, "limit", minimum=1, maximum=TIMELINE_MAX, default=1000)
    assert limit is not None
    async with ctx_of(request).pool.acquire() as conn:
        await _visible_case(request, conn, case_id)
        entries = await store.timeline(conn, case_id, limit=limit + 1)
    truncated = len(entries) > limit
    entries = entries[-limit:]
    return ok({"case_id": case_id, "truncated": truncated, "items": [
        {"at": ser.iso(e.at), "kind": e.kind, "trace_id": e.trace_id, "note_id": e.note_id, "text": e.text,
         "data": e.data} for e in entries]})
