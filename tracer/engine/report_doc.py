"""The trace report to file: one self-contained HTML document (no script, no external resource),
printed to PDF by headless Chromium. Every name that came from a label, a token or a node is
hostile input and is escaped; control characters are dropped."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import html
import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from tracer import __version__
from tracer.domain.labels import Label
from tracer.domain.records import UnknownTrace
from tracer.domain.views import StoredHop, StoredTrace
from tracer.engine import report as treport
from tracer.engine import report_backward
from tracer.engine.dollars import TraceDollars, trace_dollars
from tracer.engine.pricing import usd_text
from tracer.store import chains as chain_store
from tracer.store import labels as label_store
from tracer.store import traces as store

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
TAINT_MODELS = {
    "haircut": "haircut: each outgoing transfer carries the flagged share of the sender's balance at the time",
    "flagged_first": "flagged first: flagged funds are assumed to leave before clean ones",
    "fifo": "first in, first out: outgoing transfers spend the oldest incoming funds first",
    "full_poison": "full poison: every outgoing transfer of a flagged address is flagged in full",
}


class PdfUnavailable(RuntimeError):
    """No Chromium to print with, or it failed."""


@dataclass
class Document:
    trace: StoredTrace
    report: treport.Report
    dollars: TraceDollars
    hops: list[StoredHop]
    seed_labels: dict[str, list[Label]]
    exit_labels: dict[tuple[str, str], list[Label]]
    hop_set_sha256: str
    blocks: dict[str, tuple[int, int]]
    nodes: dict[str, tuple[chain_store.PinnedChain | None, list[chain_store.NodeState]]]


def e(value: object) -> str:
    return html.escape(_CONTROL.sub("", str(value)), quote=True)


def hop_set_digest(hops: list[StoredHop]) -> str:
    """SHA-256 of the hop set, independent of row order: a second run can be compared."""
    lines = sorted(f"{h.chain}|{h.tx_hash}|{h.from_addr}|{h.to_addr}|{h.asset}|{int(h.amount)}|"
                   f"{h.status}" for h in hops)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


async def build_document(pool: asyncpg.Pool, trace_id: int, chains: Mapping[str, Any] | None = None) -> Document:
    rep = await treport.build(pool, trace_id)
    async with pool.acquire() as conn:
        trace = await store.get_trace(conn, trace_id)
        if trace is None:
            raise UnknownTrace(trace_id)
        hops = list(await store.all_hops(conn, trace_id))
        seed_labels = await label_store.lookup(conn, trace.chain, list(trace.seeds))
        exit_labels: dict[tuple[str, str], list[Label]] = {}
        by_chain: dict[str, list[str]] = {}
        for x in rep.exits:
            by_chain.setdefault(x.chain or trace.chain, []).append(x.address)
        for c, addrs in by_chain.items():
            for a, lbs in (await label_store.lookup(conn, c, addrs)).items():
                exit_labels[(c, a)] = lbs
    dollars = await trace_dollars(pool, trace_id, chains, hops)
    blocks: dict[str, tuple[int, int]] = {}
    for h in hops:
        c = h.chain or trace.chain
        lo, hi = blocks.get(c, (h.block_number, h.block_number))
        blocks[c] = (min(lo, h.block_number), max(hi, h.block_number))
    nodes = {}
    async with pool.acquire() as conn:
        for c in sorted(set(blocks) | {trace.chain}):
            nodes[c] = (await chain_store.recorded_chain_id(conn, c), await chain_store.node_states(conn, c))
    return Document(trace, rep, dollars, hops, seed_labels, exit_labels, hop_set_digest(hops), blocks, nodes)


def _usd(value: Any) -> str:
    text = usd_text(value)
    if text is None:
        return "unknown"
    whole, _, cents = text.partition(".")
    return f"${int(whole):,}.{cents}"


def _when(ts: int | None) -> str:
    return "" if not ts else dt.datetime.fromtimestamp(int(ts), dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _graph_svg(doc: Document) -> str:
    """The seeds, each exit's widest path and the exits, as columns by depth."""
    cols: dict[str, int] = {s: 0 for s in doc.report.seeds}
    edges: set[tuple[str, str]] = set()
    for x in doc.report.exits:
        for i, step in enumerate(x.path):
            cols.setdefault(step["from"], i)
            cols[step["to"]] = max(cols.get(step["to"], 0), i + 1)
            edges.add((step["from"], step["to"]))
        cols.setdefault(x.address, 1)
    by_col: dict[int, list[str]] = {}
    for a, c in sorted(cols.items(), key=lambda kv: (kv[1], kv[0])):
        by_col.setdefault(c, []).append(a)
    pos = {a: (40 + c * 150, 30 + i * 28) for c, addrs in by_col.items() for i, a in enumerate(addrs)}
    width = 80 + 150 * (max(by_col) + 1 if by_col else 1)
    height = 60 + 28 * max((len(v) for v in by_col.values()), default=1)
    exits = {x.address for x in doc.report.exits}
    seeds = set(doc.report.seeds)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="graph of the widest paths">']
    for a, b in sorted(edges):
        (x1, y1), (x2, y2) = pos[a], pos[b]
        parts.append(f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="#888" stroke-width="1"/>')
    for a, (px, py) in pos.items():
        color = "#c0392b" if a in seeds else "#27ae60" if a in exits else "#2c3e50"
        parts.append(f'<circle cx="{px}" cy="{py}" r="5" fill="{color}"/>'
                     f'<text x="{px + 8}" y="{py + 4}" font-size="9">{e(a[:10])}…</text>')
    parts.append("</svg>")
    return "".join(parts)


def render_html(doc: Document) -> str:
    rep, d, t = doc.report, doc.dollars, doc.trace
    policy = t.policy
    model = str(policy.get("taint_model") or policy.get("model") or "haircut")
    out: list[str] = []
    w = out.append
    w("<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
      "<meta http-equiv=Content-Security-Policy content=\"default-src 'none'; style-src 'unsafe-inline'; "
      "img-src data:\">")
    w(f"<title>Trace #{rep.trace_id} report</title><style>body{{font-family:sans-serif;font-size:11px;margin:24px}}"
      "table{border-collapse:collapse;margin:6px 0}td,th{border:1px solid #bbb;padding:2px 5px;text-align:left;"
      "vertical-align:top}td.n{text-align:right}code{font-size:10px;word-break:break-all}h2{margin-top:18px}"
      "</style></head><body>")
    w(f"<h1>Trace report #{rep.trace_id}: {e(t.label or 'unlabelled case')}</h1>")
    w(f"<p>Status {e(rep.status)} on {e(rep.chain)}; created {e(t.created_at)}; tracer {e(__version__)}. "
      f"SHA-256 of the hop set ({len(doc.hops)} hops): <code>{doc.hop_set_sha256}</code></p>")
    w("<h2>Seeds and why they are flagged</h2><table><tr><th>address</th><th>label</th><th>source</th>"
      "<th>valid</th></tr>")
    for s in rep.seeds:
        lbs = doc.seed_labels.get(s) or []
        if not lbs:
            w(f"<tr><td><code>{e(s)}</code></td><td colspan=3>given as a seed by the investigator "
              f"(no label)</td></tr>")
        for lb in lbs:
            w(f"<tr><td><code>{e(s)}</code></td><td>{e(lb.entity)} ({e(lb.category)})</td><td>{e(lb.source)}</td>"
              f"<td>{e(lb.valid_from or '')} – {e(lb.valid_to or '')}</td></tr>")
    w("</table>")
    w("<h2>Policy and taint model</h2>")
    w(f"<p>Taint model: {e(TAINT_MODELS.get(model, model))}. The trace follows flagged value hop by hop from "
      "the seeds until it reaches an off-ramp (a labelled exchange or service, a deposit address that sweeps "
      "to one), a stop (hub, mixer without a confident link, depth or size limits) or the end of the block "
      "window. Amounts are in each coin's own units; dollars are the value at the block of each hop, from the "
      "chain's own price feeds (or an imported price file), summed per exit. Policy: "
      f"<code>{e(json.dumps(policy, sort_keys=True, default=str))}</code></p>")
    if t.direction == "backward":
        w(report_backward.summary_html(rep))
    w("<h2>Summary</h2>")
    w(f"<p>Left the seeds: <b>{_usd(d.seeds.usd)}</b>"
      + (f" ({d.seeds.unpriced} hops without a price)" if d.seeds.unpriced else "") + "; ")
    ex = d.exits_total
    share = d.share(ex.usd)
    w(f"reached exits: <b>{_usd(ex.usd)}</b>" + (f" ({share:.1%} of the seeds' dollars)" if share is not None else "")
      + f"; stopped: {_usd(d.stopped.usd)}; held at addresses followed: {_usd(d.held.usd)}.</p>")
    for note in (d.pricing.notes if d.pricing else []):
        w(f"<p><i>Prices: {e(note)}</i></p>")
    w("<table><tr><th>#</th><th>entity</th><th>exit address</th><th>chain</th><th>amount</th><th>USD</th>"
      "<th>share</th><th>first seen</th><th>last seen</th></tr>")
    lines = sorted(rep.exits, key=lambda x: -(d.exit_usd(x.chain or rep.chain, x.address, x.asset) or -1))
    for i, x in enumerate(lines, 1):
        usd = d.exit_usd(x.chain or rep.chain, x.address, x.asset)
        sh = d.share(usd)
        w(f"<tr><td>{i}</td><td>{e(x.entity or '?')}</td><td><code>{e(x.address)}</code></td><td>{e(x.chain)}</td>"
          f"<td class=n>{e(treport.format_amount(x.amount, x.decimals, 6))} {e(x.symbol)}</td>"
          f"<td class=n>{_usd(usd)}</td><td class=n>{'' if sh is None else f'{sh:.2%}'}</td>"
          f"<td>{_when(x.first_time)}</td><td>{_when(x.last_time)}</td></tr>")
    w("</table>")
    w("<h2>Graph of the widest paths</h2>" + _graph_svg(doc))
    w("<h2>Each exit's widest path</h2>")
    hop_by_tx = {(h.chain or rep.chain, h.tx_hash, h.from_addr, h.to_addr): h for h in doc.hops}
    for i, x in enumerate(lines, 1):
        w(f"<h3>{i}. {e(x.entity or '?')} <code>{e(x.address)}</code> ({e(x.reason or '')})</h3>")
        if not x.path:
            w("<p>No path recorded.</p>")
            continue
        w("<table><tr><th>block</th><th>time</th><th>from</th><th>to</th><th>amount</th><th>USD</th></tr>")
        for step in x.path:
            h = hop_by_tx.get((step["chain"] or rep.chain, step["tx_hash"], step["from"], step["to"]))
            amount = usd_cell = when = ""
            if h is not None:
                sym, dec = treport.units(h.chain or rep.chain, h.asset, h.symbol, h.decimals)
                amount = f"{treport.format_amount(int(h.amount), dec, 6)} {sym}"
                usd_cell = _usd(d.values[int(h.transfer_id)].usd)
                when = _when(h.block_time)
            # The hash on a row of its own: a wrapped hash would not read back as one word.
            w(f"<tr><td colspan=6>tx <code>{e(step['tx_hash'])}</code></td></tr>")
            w(f"<tr><td>{e(step['block_number'])}</td><td>{when}</td>"
              f"<td><code>{e(step['from'])}</code></td><td><code>{e(step['to'])}</code></td>"
              f"<td class=n>{e(amount)}</td>"
              f"<td class=n>{usd_cell}</td></tr>")
        w("</table>")
    # Links the trace inferred rather than saw: mixer withdrawals, bridge payouts, swaps, change
    # outputs, CoinJoin outputs (each hop with evidence or a confidence below 1).
    links = [h for h in doc.hops if h.evidence is not None
             or (h.confidence is not None and float(h.confidence) < 1.0)]
    w(f"<h2>Inferred links ({len(links)})</h2>")
    if links:
        w("<table><tr><th>link</th><th>from</th><th>to</th><th>tx</th><th>confidence</th><th>why</th></tr>")
        for h in links[:500]:
            ev = h.evidence
            ev = json.loads(ev) if isinstance(ev, str) else (ev or {})
            why = ", ".join(f"{k}: {v}" for k, v in ev.items() if isinstance(v, (str, int, float)) and k not in
                            ("tx_hash",))[:400] if isinstance(ev, dict) else ""
            conf = "" if h.confidence is None else f"{float(h.confidence):.0%}"
            w(f"<tr><td>{e(h.reason or h.kind or '')}</td><td><code>{e(h.from_addr)}</code></td>"
              f"<td><code>{e(h.to_addr)}</code></td><td><code>{e(h.tx_hash)}</code></td>"
              f"<td>{conf}</td><td>{e(why)}</td></tr>")
        if len(links) > 500:
            w(f"<p>… {len(links) - 500} more (see the graph export).</p>")
        w("</table>")
    w("<h2>Labels and their provenance</h2><table><tr><th>address</th><th>entity</th><th>category</th>"
      "<th>source</th><th>confidence</th><th>valid</th></tr>")
    for (c, a), lbs in sorted(doc.exit_labels.items()):
        for lb in lbs:
            w(f"<tr><td><code>{e(a)}</code> ({e(c)})</td><td>{e(lb.entity)}</td><td>{e(lb.category)}</td>"
              f"<td>{e(lb.source)}</td><td>{lb.confidence:.2f}</td>"
              f"<td>{e(lb.valid_from or '')} – {e(lb.valid_to or '')}</td></tr>")
    w("</table><h2>Nodes and blocks read</h2><ul>")
    for c, (lo, hi) in sorted(doc.blocks.items()):
        pinned, states = doc.nodes.get(c, (None, []))
        who = f" (chain id {pinned.chain_id}, first node {pinned.first_node or 'unrecorded'})" if pinned else ""
        w(f"<li>{e(c)}{e(who)}: hops in blocks {lo} – {hi}</li>")
        for st in states:
            w(f"<li>{e(c)} node {e(st.node)}: {'keeps' if st.historical_state else 'does not keep'} old state "
              f"(probed at block {st.probe_block} of {st.head}, {e(st.checked_at)})</li>")
    w(f"<li>trace window on {e(rep.chain)}: blocks {e(t.from_block)} – {e(t.to_block)}</li>")
    if rep.balance_method:
        w(f"<li>prior balances: {e(rep.balance_method)} {e(rep.balance_method_reason or '')}</li>")
    w(f"<li>price sources: {e(', '.join(f'{k} {v} hops' for k, v in sorted(d.sources.items())) or 'none')}</li>")
    w("</ul></body></html>")
    return "".join(out)


def find_chromium() -> str | None:
    explicit = os.environ.get("TRACER_CHROMIUM")
    if explicit:
        return explicit
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


async def html_to_pdf(text: str, *, timeout: float = 60.0) -> bytes:
    """Print `text` to PDF with headless Chromium (no network, a throwaway profile)."""
    binary = find_chromium()
    if binary is None:
        raise PdfUnavailable("no Chromium found: install chromium or set TRACER_CHROMIUM")
    with tempfile.TemporaryDirectory(prefix="tracer-report-") as tmp:
        src, pdf = Path(tmp) / "report.html", Path(tmp) / "report.pdf"
        src.write_text(text, encoding="utf-8")
        proc = await asyncio.create_subprocess_exec(
            binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-dev-shm-usage", "--disable-extensions", "--no-first-run", "--mute-audio",
            f"--user-data-dir={tmp}/profile", "--no-pdf-header-footer", f"--print-to-pdf={pdf}", src.as_uri(),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        try:
            _, err = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise PdfUnavailable(f"Chromium did not print within {timeout:.0f} s") from None
        if not pdf.exists() or pdf.stat().st_size == 0:
            tail = err.decode(errors="replace")[-300:]
            raise PdfUnavailable(f"Chromium printed nothing (exit {proc.returncode}): {tail}")
        return pdf.read_bytes()
