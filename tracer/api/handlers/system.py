"""Health, Prometheus metrics and the OpenAPI document: the routes that need no key."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiohttp import web

from tracer import __version__
from tracer.api import nodewatch, params
from tracer.api.context import ApiContext
from tracer.api.handlers.common import ctx_of, ok
from tracer.api.metrics import CONTENT_TYPE, Labels
from tracer.api.openapi import document_bytes
from tracer.store import reads
from tracer.store.listen import ping

log = logging.getLogger("tracer.api")


async def _check_db(ctx: ApiContext) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(ctx.settings.health_timeout):
            async with ctx.pool.acquire() as conn:
                await ping(conn)
    except Exception as exc:  # any failure is the answer here, not an error of the endpoint
        log.warning("event=health_db_failed error=%r", exc)
        return {"ok": False, "error": type(exc).__name__}
    return {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 3)}


async def _check_chain(ctx: ApiContext, name: str) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(ctx.settings.health_timeout):
            head = await ctx.chains[name].head()
    except Exception as exc:
        # Only the error's type goes out: health is public, and node URLs often embed an API key.
        log.warning("event=health_chain_failed chain=%s error=%r", name, exc)
        return {"ok": False, "error": type(exc).__name__}
    return {"ok": True, "head": int(head), "latency_ms": round((time.perf_counter() - started) * 1000, 3)}


async def health(request: web.Request) -> web.Response:
    params.reject_unknown(request, ())
    ctx = ctx_of(request)
    names = sorted(ctx.chains)
    results = await asyncio.gather(_check_db(ctx), *(_check_chain(ctx, n) for n in names))
    db, chains = results[0], dict(zip(names, results[1:], strict=True))
    for name in request.app[nodewatch.NODES]:  # unreachable since start; retried in the background
        chains[name] = {"ok": False, "error": "NodeUnavailable"}
    healthy = db["ok"] and all(c["ok"] for c in chains.values())
    body = {"status": "ok" if healthy else "unavailable", "version": __version__, "postgres": db,
            "chains": chains, "embedded_workers": len(ctx.workers)}
    return ok(body, status=200 if healthy else 503)


async def metrics(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    gauges: dict[str, tuple[str, str, dict[Labels, float]]] = {}
    try:
        async with asyncio.timeout(ctx.settings.health_timeout):
            async with ctx.pool.acquire() as conn:
                statuses = await reads.trace_statuses(conn)
                jobs = await reads.job_states(conn)
        gauges["tracer_traces"] = ("gauge", "Traces by status.",
                                   {(("status", k),): float(v) for k, v in statuses.items()})
        gauges["tracer_jobs"] = ("gauge", "Unfinished frontier jobs by state (all workers, from Postgres).",
                                 {(("state", s),): float(jobs.get(s, 0)) for s in ("pending", "running")})
        db_up = 1.0
    except Exception:  # metrics must still be served when Postgres is down: that is when they matter
        db_up = 0.0
    pool = ctx.pool
    gauges["tracer_postgres_up"] = ("gauge", "Whether the last query for these metrics succeeded.", {(): db_up})
    gauges["tracer_db_pool_connections"] = ("gauge", "Connections in this process's pool.", {
        (("state", "open"),): float(pool.get_size()), (("state", "idle"),): float(pool.get_idle_size())})
    if ctx.workers:
        stats = [w.stats for w in ctx.workers]
        hops = sum(s.hops_written for s in stats)
        ctx.metrics.sample_hops(hops)
        gauges["tracer_worker_hops_written_total"] = ("counter", "Hops written by this process's embedded workers.",
                                                      {(): float(hops)})
        gauges["tracer_worker_hops_per_second"] = ("gauge", "Hops written per second by embedded workers, "
                                                   "over the last minute.", {(): ctx.metrics.hops_per_second()})
        gauges["tracer_worker_batches_total"] = ("counter", "Job batches completed by embedded workers.",
                                                 {(): float(sum(s.batches for s in stats))})
        gauges["tracer_worker_jobs_total"] = ("counter", "Jobs processed by embedded workers.",
                                              {(): float(sum(s.jobs for s in stats))})
        gauges["tracer_worker_errors_total"] = ("counter", "Failed job batches in embedded workers.",
                                                {(): float(sum(s.errors for s in stats))})
    rpc: dict[Labels, float] = {}
    for name, client in ctx.chains.items():
        counts = getattr(client, "request_counts", None) or {}
        for method, n in counts.items():
            rpc[(("chain", name), ("method", str(method)))] = float(n)
    gauges["tracer_rpc_requests_total"] = ("counter", "JSON-RPC calls made by this process, by method "
                                           "(method=\"http\" counts HTTP requests; batches hold many calls).", rpc)
    return web.Response(body=ctx.metrics.render(gauges).encode(), headers={"Content-Type": CONTENT_TYPE})


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=document_bytes(), content_type="application/json")
