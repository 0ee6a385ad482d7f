"""Alerting over HTTP: subscriptions, their deliveries and dead-letter replay, and live event streams.

Streams (`GET /v1/traces/{id}/events`, `GET /v1/subscriptions/{id}/events`) answer with
Server-Sent Events when the client asks for `text/event-stream` (what EventSource sends) and with
a JSON page otherwise, so the same URL serves live dashboards and polling scripts. A stream starts
after `Last-Event-ID` (or `?after=`), so a client that reconnects misses nothing; each event's id
is its seq, a commit-order cursor (see tracer.alerts). Streams read Postgres and are woken by the
process's hub (LISTEN/NOTIFY), so they see events written by any worker, and they end when the
trace is over (a reconnect then gets 204, which tells EventSource to stop).

WebSocket is not offered: events only flow one way, SSE resumes with a standard header, and it
passes proxies that WebSocket upgrades do not.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from tracer.addresses import shape_chain, show_tron
from tracer.alerts import events as ev
from tracer.alerts import subscriptions as subs
from tracer.alerts.guard import UrlPolicy
from tracer.alerts.hub import Hub
from tracer.alerts.prices import event_values
from tracer.api import limits, nodewatch, owners, params
from tracer.api.auth import principal_of
from tracer.api.context import CTX
from tracer.api.errors import ApiError, bad_request, not_found
from tracer.api.handlers.common import ctx_of, ok, page, page_limit, read_cursor, trace_or_404, trace_request
from tracer.api.openapi import field_of, validator
from tracer.domain.alerts import EventRow, Subscription
from tracer.store import deliveries as delivery_store
from tracer.store import keys as key_store
from tracer.store import outbox, ownership, reads
from tracer.store import subscriptions as sub_store
from tracer.store.listen import connector

_FINAL = ("done", "failed", "cancelled")
_MAX_SEQ = (1 << 63) - 1
DELIVERY_STATES = ("pending", "delivered", "dead")


@dataclass
class AlertsState:
    """Alerting settings and the hub of one API app."""

    url_policy: UrlPolicy
    hub: Hub | None = None
    heartbeat: float = 15.0  # SSE comment lines keep proxies from closing an idle stream
    poll: float = 5.0  # a stream re-reads Postgres at least this often (a lost notification)
    batch: int = 500  # events per read


ALERTS: web.AppKey[AlertsState] = web.AppKey("tracer_alerts", AlertsState)


def setup(app: web.Application) -> None:
    """Give the app its alerting state and hub (called by routes.add_routes)."""
    app[ALERTS] = AlertsState(UrlPolicy.from_env())
    app.cleanup_ctx.append(_hub_ctx)
    app.on_shutdown.append(_close_streams)


async def _hub_ctx(app: web.Application) -> AsyncIterator[None]:
    ctx = app[CTX]
    state = app[ALERTS]
    hub = Hub(ctx.pool, connector(ctx.db.url))
    await hub.start()
    state.hub = hub
    try:
        yield
    finally:
        await hub.stop()
        state.hub = None


async def _close_streams(app: web.Application) -> None:
    # Before aiohttp waits for open requests: streams would otherwise hold shutdown up.
    hub = app[ALERTS].hub
    if hub is not None:
        hub.close_streams()


def _state(request: web.Request) -> AlertsState:
    return request.app[ALERTS]


def _subscription_id(request: web.Request) -> int:
    text = request.match_info["subscription_id"]
    if not text.isdigit() or not 1 <= int(text) <= _MAX_SEQ or len(text) > 19:
        raise bad_request("subscription_id", "must be a positive integer")
    return int(text)


async def _subscription_or_404(conn: Any, sid: int) -> Subscription:
    row = await sub_store.get_subscription(conn, sid)
    if row is None:
        raise not_found(f"no subscription {sid}")
    return row


_HTTP_ERROR = re.compile(r"HTTP [0-9]{3}")
NETWORK_ERROR = "delivery failed (network)"


def shown_error(request: web.Request, error: str | None) -> str | None:
    """A delivery error as this caller may see it. The network-level text (refused, reset, TLS
    version, resolver messages) tells which internal hosts and ports answer: only an admin reads
    it (the delivery worker logs it too); others learn the receiver's HTTP status or that the
    network failed."""
    if error is None or principal_of(request).allows("admin") or _HTTP_ERROR.fullmatch(error):
        return error
    return NETWORK_ERROR


def _show(request: web.Request, row: Subscription, counts: dict[str, int] | None) -> dict[str, Any]:
    body = subs.public(row, counts)
    body["last_error"] = shown_error(request, body["last_error"])
    principal = principal_of(request)
    owner = principal.key_pk is not None and principal.key_pk == row.api_key_id
    if body["url"] and not (principal.allows("admin") or owner):
        # Webhook URLs often carry their own credentials (chat hooks): only the key that made the
        # subscription, or an admin, sees more than where it points.
        parts = urlsplit(body["url"])
        body["url"] = f"{parts.scheme}://{parts.netloc}/…"
    return body


# ---------------------------------------------------------------- subscriptions


async def create(request: web.Request) -> web.Response:
    params.reject_unknown(request, ())
    ctx = ctx_of(request)
    body = await params.json_object(request)
    errors = sorted(validator("subscription-create").iter_errors(body), key=lambda e: list(e.absolute_path))
    if errors:
        raise bad_request(field_of(errors[0]), errors[0].message[:300])
    principal = principal_of(request)
    watchlist = body.get("addresses") is not None and body.get("trace_id") is None and body.get("watch") is not False
    if watchlist and isinstance(body["addresses"], list):  # it starts a trace from these addresses
        limits.check_seeds(request, len(body["addresses"]), "addresses")
        first = body["addresses"][0] if body["addresses"] else ""
        shape = shape_chain(first)
        nodewatch.refuse_if_down(request, body.get("chain") or shape)
    async with ctx.pool.acquire() as conn:
        await limits.check_subscription_quota(request, conn, principal)
        if watchlist:
            await limits.check_trace_quota(request, conn, principal)
    if body.get("watch") and isinstance(body.get("trace_id"), int):
        async with ctx.pool.acquire() as conn:
            # Watching changes the trace (a done one starts again): its owner's call. One that
            # cannot watch any more is refused below with 409, whoever asks.
            watched = await reads.get_trace(conn, body["trace_id"])
            if watched is not None and watched.status not in ("failed", "cancelled"):
                await owners.require_trace(request, conn, body["trace_id"])
    try:
        created = await subs.create(ctx.pool, ctx.chains, body, url_policy=_state(request).url_policy,
                                    created_by=principal.name, api_key_id=principal.key_pk)
    except subs.SubscriptionError as exc:
        raise ApiError(exc.status, {400: "Invalid subscription", 404: "Not found", 409: "Conflict",
                                    503: "Chain unavailable"}.get(exc.status, "Invalid subscription"),
                       exc.message, field=exc.field) from None
    async with ctx.pool.acquire() as conn:
        await ownership.set_subscription_team(conn, created.id, principal.team)
        if created.watch_trace_id is not None:
            await ownership.set_trace_owner(conn, created.watch_trace_id, principal.owner)
        await key_store.audit(conn, actor=principal.name, api_key_id=principal.key_pk, action="subscription.create",
                              target=f"subscription:{created.id}", remote=request.remote,
                              details={"delivery": body.get("delivery", "webhook"), "trace_id": body.get("trace_id"),
                                       "watch_trace_id": created.watch_trace_id,
                                       "host": urlsplit(body["url"]).hostname if body.get("url") else None})
        row = await _subscription_or_404(conn, created.id)
    out = subs.public(row, {"pending": 0, "delivered": 0, "dead": 0})
    if created.secret is not None:
        out["secret"] = created.secret  # shown this once: sign-checking needs it, we never show it again
    return ok(out, status=201, headers={"Location": f"/v1/subscriptions/{created.id}"})


async def list_(request: web.Request) -> web.Response:
    params.reject_unknown(request, ("trace_id", "limit", "cursor"))
    ctx = ctx_of(request)
    trace_id = params.int_param(request, "trace_id", minimum=1)
    limit = page_limit(request)
    scope = {"trace_id": trace_id}
    after = read_cursor(request, "subscriptions", scope)
    before = params.parse_int("cursor", after[0], minimum=1) if after else None
    async with ctx.pool.acquire() as conn:
        rows = await sub_store.list_subscriptions(conn, before_id=before, limit=limit + 1, trace_id=trace_id)
        counts = await sub_store.delivery_counts(conn, [r.id for r in rows[:limit]])
    items = [_show(request, r, counts[r.id]) for r in rows[:limit]]
    return ok(page(request, "subscriptions", scope, items, rows, limit, lambda r: [str(r.id)]))


async def get(request: web.Request) -> web.Response:
    params.reject_unknown(request, ())
    sid = _subscription_id(request)
    async with ctx_of(request).pool.acquire() as conn:
        row = await _subscription_or_404(conn, sid)
        counts = await sub_store.delivery_counts(conn, [sid])
    return ok(_show(request, row, counts[sid]))


async def delete(request: web.Request) -> web.Response:
    params.reject_unknown(request, ())
    ctx = ctx_of(request)
    sid = _subscription_id(request)
    async with ctx.pool.acquire() as conn:
        await owners.require_subscription(request, conn, sid)
    if not await subs.delete(ctx.pool, sid):
        raise not_found(f"no subscription {sid}")
    principal = principal_of(request)
    async with ctx.pool.acquire() as conn:
        await key_store.audit(conn, actor=principal.name, api_key_id=principal.key_pk, action="subscription.delete",
                              target=f"subscription:{sid}", remote=request.remote)
    return web.Response(status=204)


async def deliveries(request: web.Request) -> web.Response:
    params.reject_unknown(request, ("state", "limit", "cursor"))
    ctx = ctx_of(request)
    sid = _subscription_id(request)
    state = params.enum_param(request, "state", DELIVERY_STATES)
    limit = page_limit(request)
    scope = {"subscription": sid, "state": state}
    after = read_cursor(request, "deliveries", scope)
    after_seq = params.parse_int("cursor", after[0], minimum=0) if after else 0
    async with ctx.pool.acquire() as conn:
        await _subscription_or_404(conn, sid)
        rows = await delivery_store.list_deliveries(conn, sid, state=state, after_seq=after_seq, limit=limit + 1)
    items = [{
        "event_id": int(r.seq), "trace_id": r.trace_key or None, "type": r.type, "state": r.state,
        "attempts": r.attempts, "next_attempt_at": ev.iso(r.next_at) if r.state == "pending" else None,
        "last_status": r.last_status, "last_error": shown_error(request, r.last_error),
        "created_at": ev.iso(r.created_at),
        "delivered_at": ev.iso(r.delivered_at),
    } for r in rows[:limit]]
    return ok(page(request, "deliveries", scope, items, rows, limit, lambda r: [str(r.seq)]))


async def replay(request: web.Request) -> web.Response:
    """Put the subscription's dead-lettered deliveries back in its queue (tries reset)."""
    params.reject_unknown(request, ())
    ctx = ctx_of(request)
    sid = _subscription_id(request)
    if request.body_exists:
        body = await params.json_object(request)
        if body:
            raise bad_request(next(iter(body)), "replay takes no options")
    async with ctx.pool.acquire() as conn:
        row = await _subscription_or_404(conn, sid)
        await owners.require_subscription(request, conn, sid)
        if row.delivery != "webhook":
            raise ApiError(409, "Conflict", "a stream subscription has no deliveries: resume it with Last-Event-ID")
        count = await delivery_store.replay_dead(conn, sid)
        principal = principal_of(request)
        await key_store.audit(conn, actor=principal.name, api_key_id=principal.key_pk, action="subscription.replay",
                              target=f"subscription:{sid}", remote=request.remote, details={"replayed": count})
    return ok({"replayed": count})


# ---------------------------------------------------------------- event streams


def _after(request: web.Request, default: int) -> int:
    """Where a stream resumes: Last-Event-ID (EventSource's reconnect), else ?after=, else default."""
    header = request.headers.get("Last-Event-ID")
    query = params.int_param(request, "after", minimum=0)
    if header is not None and header.strip():
        text = header.strip()
        if not text.isdigit() or len(text) > 19:
            raise bad_request("Last-Event-ID", "must be an event id (a non-negative integer)")
        return int(text)
    return default if query is None else query


def _wants_stream(request: web.Request) -> bool:
    return "text/event-stream" in request.headers.get("Accept", "")


Fetch = Callable[[Any, int], Awaitable[tuple[list[EventRow], int]]]
Over = Callable[[Any, int], Awaitable[bool]]


async def trace_events(request: web.Request) -> web.StreamResponse:
    ctx, trace_id = trace_request(request, ("after", "limit"))
    after = _after(request, 0)
    limit = page_limit(request)
    async with ctx.pool.acquire() as conn:
        row = await trace_or_404(conn, trace_id)

    async def fetch(conn: Any, cursor: int) -> tuple[list[EventRow], int]:
        rows = await outbox.trace_events(conn, trace_id, cursor, _state(request).batch)
        return rows, rows[-1].seq if rows else cursor

    async def over(conn: Any, cursor: int) -> bool:
        # Over when the trace is finished and every event it wrote is numbered and sent.
        return await outbox.trace_stream_over(conn, trace_id, cursor, _FINAL)

    if not _wants_stream(request):
        async with ctx.pool.acquire() as conn:
            rows = await outbox.trace_events(conn, trace_id, after, limit)
        nxt = rows[-1].seq if rows else after
        usd = await event_values(ctx.pool, rows, ctx.chains)
        return ok({"items": [ev.render(r, usd=usd.get(r.seq)) for r in rows], "next_after": nxt,
                   "trace_status": row.status})
    return await _stream(request, fetch, over, key=trace_id, after=after)


async def subscription_events(request: web.Request) -> web.StreamResponse:
    params.reject_unknown(request, ("after", "limit"))
    ctx = ctx_of(request)
    sid = _subscription_id(request)
    limit = page_limit(request)
    async with ctx.pool.acquire() as conn:
        row = await _subscription_or_404(conn, sid)
    after = _after(request, int(row.start_seq))

    async def fetch(conn: Any, cursor: int) -> tuple[list[EventRow], int]:
        return await outbox.subscription_events(conn, sid, cursor, _state(request).batch)

    async def over(conn: Any, cursor: int) -> bool:
        return await sub_store.get_subscription(conn, sid) is None  # deleted: the stream ends

    if not _wants_stream(request):
        async with ctx.pool.acquire() as conn:
            rows, upto = await outbox.subscription_events(conn, sid, after, limit)
        usd = await event_values(ctx.pool, rows, ctx.chains)
        return ok({"items": [ev.render(r, subscription_id=sid, usd=usd.get(r.seq)) for r in rows],
                   "next_after": upto})
    return await _stream(request, fetch, over, key=None, after=after, subscription_id=sid)


async def _stream(request: web.Request, fetch: Fetch, over: Over, *, key: int | None, after: int,
                  subscription_id: int | None = None) -> web.StreamResponse:
    ctx = ctx_of(request)
    state = _state(request)
    hub = state.hub
    if hub is None:
        raise ApiError(503, "Service unavailable", "event streams are not running on this server",
                       headers={"Retry-After": "5"})
    async with ctx.pool.acquire() as conn:
        if await over(conn, after):
            return web.Response(status=204)  # nothing more will come: EventSource stops reconnecting
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache",
                                       "X-Accel-Buffering": "no"})
    await resp.prepare(request)
    cursor = after
    with hub.subscribe(key) as wake, contextlib.suppress(ConnectionResetError):
        # Reconnect quickly after a server restart; the client resumes from its last id.
        await resp.write(b"retry: 2000\n\n")
        last_write = time.monotonic()
        while not hub.closing:
            wake.clear()
            async with ctx.pool.acquire() as conn:
                rows, cursor = await fetch(conn, cursor)
                done = len(rows) < state.batch and await over(conn, cursor)
            if rows:
                usd = await event_values(ctx.pool, rows, ctx.chains)
                chunk = b"".join(_sse(ev.render(r, subscription_id=subscription_id, usd=usd.get(r.seq)))
                                 for r in rows)
                await resp.write(chunk)
                last_write = time.monotonic()
                if len(rows) >= state.batch:
                    continue
            if done:
                break
            timeout = min(state.poll, max(0.0, state.heartbeat - (time.monotonic() - last_write)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout)
            if time.monotonic() - last_write >= state.heartbeat:
                await resp.write(b": keep-alive\n\n")
                last_write = time.monotonic()
    with contextlib.suppress(ConnectionResetError):
        await resp.write_eof()
    return resp


def _sse(body: dict[str, Any]) -> bytes:
    # One data line: the JSON has no raw newlines (json.dumps escapes them).
    return b"id: %d\ndata: %s\n\n" % (body["id"], show_tron(json.dumps(body, separators=(",", ":"))).encode())
