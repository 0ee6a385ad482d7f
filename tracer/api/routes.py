"""Every route of the API in one table: method, path, handler and the scope a key needs.

Read it top to bottom to know the whole surface; schemas/openapi.yaml documents the same routes
(a test checks the two agree).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import NamedTuple

from aiohttp import web

from tracer.api.handlers import (
    addresses,
    alerts,
    audit,
    cases,
    connections,
    exits,
    graph,
    hops,
    label_imports,
    labels,
    mixer_links,
    paths,
    report,
    system,
    traces,
)


class Route(NamedTuple):
    method: str
    path: str
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    scope: str | None  # None: public (no key needed)


ROUTES: tuple[Route, ...] = (
    Route("GET", "/v1/health", system.health, None),
    Route("GET", "/metrics", system.metrics, None),
    Route("GET", "/v1/openapi.json", system.openapi, None),
    Route("POST", "/v1/traces", traces.create, "trace"),
    Route("GET", "/v1/traces", traces.list_, "read"),
    Route("GET", "/v1/traces/{trace_id}", traces.get, "read"),
    Route("DELETE", "/v1/traces/{trace_id}", traces.delete, "admin"),
    Route("POST", "/v1/traces/{trace_id}/cancel", traces.cancel, "trace"),
    Route("GET", "/v1/traces/{trace_id}/hops", hops.list_, "read"),
    Route("GET", "/v1/traces/{trace_id}/exits", exits.list_, "read"),
    Route("GET", "/v1/traces/{trace_id}/report", report.get, "read"),
    Route("GET", "/v1/traces/{trace_id}/paths", paths.get, "read"),
    Route("GET", "/v1/traces/{trace_id}/graph", graph.export, "read"),
    Route("GET", "/v1/traces/{trace_id}/mixer-links", mixer_links.list_, "read"),
    Route("GET", "/v1/addresses/{chain}/{address}", addresses.get, "read"),
    Route("POST", "/v1/addresses/{chain}/{address}/labels", addresses.add_label, "trace"),
    Route("GET", "/v1/audit", audit.list_, "admin"),
    Route("GET", "/v1/labels", labels.list_, "read"),
    Route("POST", "/v1/labels", labels.create, "trace"),
    Route("POST", "/v1/labels/import", label_imports.create, "admin"),
    Route("POST", "/v1/labels/{label_id}/publish", labels.publish, "admin"),
    Route("GET", "/v1/screen", labels.screen, "read"),
    Route("POST", "/v1/cases", cases.create, "trace"),
    Route("GET", "/v1/cases", cases.list_, "read"),
    Route("GET", "/v1/cases/{case_id}", cases.get, "read"),
    Route("PATCH", "/v1/cases/{case_id}", cases.update, "trace"),
    Route("DELETE", "/v1/cases/{case_id}", cases.delete, "trace"),
    Route("POST", "/v1/cases/{case_id}/traces", cases.add_traces, "trace"),
    Route("DELETE", "/v1/cases/{case_id}/traces/{trace_id}", cases.remove_trace, "trace"),
    Route("GET", "/v1/cases/{case_id}/notes", cases.list_notes, "read"),
    Route("POST", "/v1/cases/{case_id}/notes", cases.add_note, "trace"),
    Route("POST", "/v1/cases/{case_id}/tags", cases.add_tag, "trace"),
    Route("DELETE", "/v1/cases/{case_id}/tags", cases.remove_tag, "trace"),
    Route("GET", "/v1/cases/{case_id}/timeline", cases.timeline, "read"),
    Route("GET", "/v1/connections", connections.get, "read"),
    Route("GET", "/v1/traces/{trace_id}/events", alerts.trace_events, "read"),
    Route("POST", "/v1/subscriptions", alerts.create, "trace"),
    Route("GET", "/v1/subscriptions", alerts.list_, "read"),
    Route("GET", "/v1/subscriptions/{subscription_id}", alerts.get, "read"),
    Route("DELETE", "/v1/subscriptions/{subscription_id}", alerts.delete, "trace"),
    Route("GET", "/v1/subscriptions/{subscription_id}/deliveries", alerts.deliveries, "read"),
    Route("POST", "/v1/subscriptions/{subscription_id}/replay", alerts.replay, "trace"),
    Route("GET", "/v1/subscriptions/{subscription_id}/events", alerts.subscription_events, "read"),
)


def add_routes(app: web.Application) -> dict[tuple[str, str], str | None]:
    """Register ROUTES; return (method, path) -> scope for the auth middleware."""
    scopes: dict[tuple[str, str], str | None] = {}
    for r in ROUTES:
        app.router.add_route(r.method, r.path, r.handler)
        scopes[(r.method, r.path)] = r.scope
    alerts.setup(app)  # the hub behind the event streams
    return scopes
