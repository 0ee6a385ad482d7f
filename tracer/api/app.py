"""The API application factory: `create_app(db, chains, settings)`.

The caller owns the database and the chain clients (it opened them, it closes them). What the
app itself starts lives in `cleanup_ctx`, started before the first request and stopped after the
last one: the cursor secret, the open-mode check, and the embedded workers when Settings.workers
asks for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from tracer.api import nodewatch
from tracer.api.auth import Authenticator, auth_middleware
from tracer.api.context import CTX, REQUEST_ID, ApiContext, ChainClient, Settings
from tracer.api.cursors import CursorCodec
from tracer.api.errors import error_middleware
from tracer.api.metrics import Metrics, metrics_middleware
from tracer.api.pages import PageCache
from tracer.api.replica import ReadRouting, replica_middleware
from tracer.api.routes import add_routes
from tracer.api.sameorigin import same_origin_middleware
from tracer.store import keys as key_store
from tracer.store import ownership
from tracer.store.db import Database
from tracer.web import server as web_ui
from tracer.workers.trace import Worker, WorkerSettings

log = logging.getLogger("tracer.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
CURSOR_SECRET_NAME = "cursor_hmac"


#: Passed to aiohttp's request parser (AppRunner/TestServer kwargs). Its default 8 KiB line limit
#: is answered by the parser itself in text/plain, outside our middlewares; a signed cursor plus
#: filters, percent-encoded, stays far below 64 KiB, so well-formed requests never meet it.
PARSER_LIMITS: dict[str, Any] = {"max_line_size": 65536, "max_field_size": 65536}


def server_options(settings: Settings) -> dict[str, Any]:
    """AppRunner/TestServer kwargs: the parser limits, and the header-read timeout. aiohttp arms its
    keep-alive timer when a connection opens and closes the connection if, when it fires, the
    request's headers are still incomplete: so it bounds how long headers may take to arrive
    (slow-header clients holding connections open), and how long an idle connection stays."""
    return {**PARSER_LIMITS, "keepalive_timeout": settings.header_timeout}


class OpenServerRefused(RuntimeError):
    """No API key exists and the server would listen beyond loopback: it would be open to anyone."""


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    # Keep a caller's id (a proxy's trace id) when it is sane, so logs line up across services.
    given = request.headers.get("X-Request-Id", "")
    request[REQUEST_ID] = given if _REQUEST_ID.match(given) else secrets.token_hex(8)
    return await handler(request)


async def _response_headers(request: web.Request, response: web.StreamResponse) -> None:
    # on_response_prepare runs for streamed responses too, where middlewares are too late.
    if REQUEST_ID in request:
        response.headers["X-Request-Id"] = request[REQUEST_ID]
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers["X-Content-Type-Options"] = "nosniff"


async def _secret_ctx(app: web.Application) -> AsyncIterator[None]:
    ctx = app[CTX]
    secret = ctx.settings.secret
    if secret is None:
        async with ctx.pool.acquire() as conn:
            secret = await key_store.server_secret(conn, CURSOR_SECRET_NAME)
    ctx.cursors = CursorCodec(secret)
    yield


async def _auth_ctx(app: web.Application) -> AsyncIterator[None]:
    ctx = app[CTX]
    async with ctx.pool.acquire() as conn:
        active = await key_store.active_key_count(conn)
    if active == 0:
        if not ctx.settings.allow_open:
            raise OpenServerRefused(
                f"no API key exists and --host {ctx.settings.host} is not a loopback address: the API would be "
                "open to anyone who can reach it. Create a key first (tracer keys create --scope admin) or "
                "serve on 127.0.0.1."
            )
        log.warning("event=api_open host=%s: no API keys configured; the API is OPEN to every local user of "
                    "this machine (create one with `tracer keys create`)", ctx.settings.host)
    else:
        log.info("event=api_keys active=%d", active)
    pruner = asyncio.create_task(_prune_rate_buckets(ctx)) if ctx.settings.rate_limit else None
    yield
    if pruner is not None:
        pruner.cancel()
        await asyncio.gather(pruner, return_exceptions=True)
    await ctx.auth.close()


async def _prune_rate_buckets(ctx: ApiContext) -> None:
    """Forget rate buckets idle long enough to be full again: one row per key ever seen otherwise."""
    s = ctx.settings
    assert s.rate_limit
    idle = max(3600.0, s.rate_limit_burst / s.rate_limit)
    while True:
        await asyncio.sleep(600.0)
        try:
            async with ctx.pool.acquire() as conn:
                await ownership.prune_buckets(conn, idle)
        except Exception as exc:  # housekeeping: the next round tries again
            log.debug("event=rate_prune_failed error=%r", exc)


async def _workers_ctx(app: web.Application) -> AsyncIterator[None]:
    ctx = app[CTX]
    s = ctx.settings
    if s.workers <= 0:
        yield
        return
    if not ctx.chains and not app[nodewatch.NODES]:
        raise RuntimeError("embedded workers need a chain node: pass --rpc or set TRACER_RPC_URL")
    stop = asyncio.Event()
    settings = WorkerSettings(batch_size=s.worker_batch_size, lease_seconds=s.worker_lease_seconds)
    workers = [Worker(ctx.pool, ctx.chains, name=f"api-{secrets.token_hex(3)}-{i}", settings=settings)
               for i in range(s.workers)]
    ctx.workers = workers
    tasks = [asyncio.create_task(w.run(stop), name=f"tracer-worker-{i}") for i, w in enumerate(workers)]

    async def sample() -> None:
        # Feed the hops/s gauge on a fixed clock so the rate does not depend on scrape intervals.
        while True:
            ctx.metrics.sample_hops(sum(w.stats.hops_written for w in workers))
            await asyncio.sleep(5.0)

    sampler = asyncio.create_task(sample())
    log.info("event=embedded_workers count=%d chains=%s", len(workers), ",".join(sorted(ctx.chains)))
    try:
        yield
    finally:
        stop.set()
        sampler.cancel()
        # A worker finishes its batch before it looks at `stop`; a batch that outlives the grace
        # period is cancelled, which is safe: nothing is committed and its lease lapses.
        done, pending = await asyncio.wait(tasks, timeout=s.worker_lease_seconds)
        for t in pending:
            t.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*pending, sampler, return_exceptions=True)
        for t in done:
            if not t.cancelled() and t.exception() is not None:
                log.error("event=worker_crashed error=%r", t.exception())


def create_app(
    db: Database,
    chains: Mapping[str, ChainClient] | None = None,
    settings: Settings | None = None,
    down_nodes: Mapping[str, nodewatch.DownNode] | None = None,
    read_db: Database | None = None,
) -> web.Application:
    """`down_nodes`: chains whose node could not be reached at start; the app serves without them
    and connects them in the background (tracer.api.nodewatch). `read_db`: a streaming replica
    of `db` for the read endpoints (tracer.api.replica)."""
    settings = settings or Settings()
    metrics = Metrics()
    auth = Authenticator(lambda: db.pool, cache_seconds=settings.key_cache_seconds, allow_open=settings.allow_open,
                         rate_limit=settings.rate_limit, rate_limit_burst=settings.rate_limit_burst)
    reads = ReadRouting(db, read_db)
    ctx = ApiContext(db=db, chains=dict(chains or {}), settings=settings, metrics=metrics, auth=auth, reads=reads,
                     pages=PageCache(settings.page_cache_bytes, settings.page_cache_seconds)
                     if settings.page_cache_bytes > 0 else None)
    app = web.Application(
        client_max_size=settings.max_body,
        # Outermost first: the request id exists before anything logs, metrics see the final
        # status of every response including errors, and auth errors become problem bodies.
        middlewares=[request_id_middleware, metrics_middleware(metrics), error_middleware, same_origin_middleware,
                     auth_middleware, replica_middleware(reads)],
    )
    app[CTX] = ctx
    ctx.scopes = add_routes(app)
    web_ui.add_routes(app)  # the investigator page on / and /ui: public files, no data
    app.on_response_prepare.append(_response_headers)
    app[nodewatch.NODES] = dict(down_nodes or {})
    app.cleanup_ctx.extend([_secret_ctx, _auth_ctx, nodewatch.reconnect_ctx, _workers_ctx])
    return app
