"""The trace report to file: GET /v1/traces/{id}/report?format=html|pdf (engine/report_doc.py).
Prices the trace's hops still lack are read from the configured nodes' feeds first."""

from __future__ import annotations

from aiohttp import web

from tracer.api import owners, params
from tracer.api.auth import principal_of
from tracer.api.errors import ApiError
from tracer.api.handlers.common import trace_or_404, trace_request
from tracer.engine import report_doc, report_notes
from tracer.store import cases as case_store


async def get(request: web.Request) -> web.Response:
    ctx, trace_id = trace_request(request, ("format",))
    fmt = params.enum_param(request, "format", ("html", "pdf"), default="html")
    async with ctx.pool.acquire() as conn:
        await trace_or_404(conn, trace_id)
    doc = await report_doc.build_document(ctx.pool, trace_id, ctx.chains)
    text = report_doc.render_html(doc)
    async with ctx.pool.acquire() as conn:  # the notes of the cases this caller can see
        notes = await case_store.notes_on_trace(conn, trace_id,
                                                owners.viewer(principal_of(request), admin_sees_all=True))
    text = report_notes.add_to(text, notes)
    name = f"trace-{trace_id}-report"
    if fmt == "pdf":
        try:
            pdf = await report_doc.html_to_pdf(text)
        except report_doc.PdfUnavailable as exc:
            raise ApiError(503, "PDF unavailable", str(exc)) from None
        return web.Response(body=pdf, content_type="application/pdf",
                            headers={"Content-Disposition": f'attachment; filename="{name}.pdf"'})
    return web.Response(text=text, content_type="text/html", charset="utf-8",
                        headers={"Content-Disposition": f'inline; filename="{name}.html"',
                                 "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"})
