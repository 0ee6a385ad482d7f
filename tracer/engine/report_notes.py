"""The investigators' notes as a section of the trace report (GET /v1/traces/{id}/report): the
notes of the cases the reader can see that concern the trace. Everything in it was typed by an
API caller, so every value is escaped like the rest of the report."""

from __future__ import annotations

from collections.abc import Sequence

from tracer.engine.report_doc import e
from tracer.store.cases import TraceNote


def _about(kind: str, target: str) -> str:
    if kind == "case":
        return "the case"
    if kind == "trace":
        return f"trace #{target}"
    if kind == "hop":
        trace_id, _, transfer_id = target.partition(":")
        return f"hop (transfer {transfer_id}) of trace #{trace_id}"
    return target


def section(notes: Sequence[TraceNote]) -> str:
    if not notes:
        return ""
    rows = "".join(
        f"<tr><td>{e(n.note.created_at.isoformat(timespec='seconds'))}</td><td>#{n.note.case_id} {e(n.case_title)}</td>"
        f"<td>{e(n.note.author or '')}</td><td>{e(_about(n.note.target_kind, n.note.target))}</td>"
        f"<td>{e(n.note.body)}</td></tr>" for n in notes)
    return (f"<h2>Investigators' notes ({len(notes)})</h2><table><tr><th>written</th><th>case</th><th>author</th>"
            f"<th>about</th><th>note</th></tr>{rows}</table>")


def add_to(html_text: str, notes: Sequence[TraceNote]) -> str:
    """The report with the notes section before its end."""
    extra = section(notes)
    if not extra:
        return html_text
    head, sep, tail = html_text.rpartition("</body>")
    return f"{head}{extra}{sep}{tail}" if sep else html_text + extra
