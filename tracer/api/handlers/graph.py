"""A trace's graph for other tools: JSON (node-link), GraphML and GEXF (Gephi, yEd, Cytoscape),
DOT (Graphviz) and CSV (spreadsheets, Gephi's and Maltego's table import).

JSON, DOT and CSV are streamed from a server-side cursor, so a trace of millions of hops exports
in constant memory. GraphML and GEXF are written by networkx from an in-memory graph and are
refused (422) above Settings.graph_max_hops.

A trace that continued onto other chains through bridges (it has `trace_chains` windows) names
its nodes "<chain>:<address>", an address on two chains being two nodes, and links each bridge
deposit to its payout on the destination chain with an edge of kind "bridge" (depositor -> payout
recipient, carrying the payout's flagged share, with the match's confidence). A single-chain
trace keeps plain addresses as ids.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import networkx as nx
from aiohttp import web

from tracer.addresses import show_tron
from tracer.api import params
from tracer.api import serialize as ser
from tracer.api.errors import ApiError
from tracer.api.handlers.common import trace_or_404, trace_request
from tracer.domain.verdicts import Role
from tracer.domain.views import GraphNode, StoredHop, StoredTrace
from tracer.engine import pricing
from tracer.engine.graph import bridge_deposits
from tracer.engine.pricing import PriceBook, usd_text
from tracer.store import reads
from tracer.store import traces as trace_store
from tracer.textsafe import csv_cell, escape_controls, xml_text

FORMATS = {
    "json": ("application/json", "json"),
    "graphml": ("application/graphml+xml", "graphml"),
    "gexf": ("application/gexf+xml", "gexf"),
    "dot": ("text/vnd.graphviz", "dot"),
    "csv": ("text/csv", "csv"),
}
EDGE_COLUMNS = ("source", "target", "tx_hash", "position", "block_number", "timestamp", "asset", "symbol",
                "decimals", "amount", "amount_raw", "depth", "kind", "status", "reason", "chain", "confidence", "usd")
_HOP_FIELDS = EDGE_COLUMNS[2:15]  # what an edge copies from the hop
NODE_COLUMNS = ("id", "label", "role", "reason", "entity", "category", "depth", "seed", "chain")
BRIDGE = "bridge"  # the kind of an edge from a bridge deposit's sender to its payout's recipient
_FLUSH = 64 * 1024


class _Ids:
    """Node ids: plain addresses on a single-chain trace, "<chain>:<address>" on a multichain one."""

    def __init__(self, chain: str, multi: bool) -> None:
        self.chain = chain
        self.multi = multi

    def of(self, chain: str | None, address: str) -> str:
        return f"{chain or self.chain}:{address}" if self.multi else address


def _node_label(node: GraphNode, ids: _Ids) -> str:
    a = show_tron(node.address)  # shortened below: the T... form, not the stored hex
    short = f"{a[:8]}…{a[-4:]}"
    entity = node.verdict.entity
    text = f"{entity} ({short})" if entity else short
    return f"{node.chain}: {text}" if ids.multi else text


def _edges(ids: _Ids, row: StoredHop, book: PriceBook) -> list[dict[str, Any]]:
    """The hop's edge, then, for a bridge payout, one "bridge" edge per deposit it pays out;
    `usd`: the amount at its asset's price at the hop's block (None: unknown)."""
    h = ser.hop(ids.chain, row)
    chain = h["chain"]

    def usd(raw: int) -> str | None:
        return usd_text(book.value(chain, row.asset, int(row.block_number), int(row.block_time or 0), raw,
                                   row.decimals).usd)

    edge = {"source": ids.of(chain, h["from"]), "target": ids.of(chain, h["to"]),
            **{k: h[k] for k in _HOP_FIELDS}, "chain": chain, "usd": usd(int(h["amount_raw"]))}
    if "confidence" in h:
        edge["confidence"] = h["confidence"]
    out = [edge]
    for d in bridge_deposits(row):
        carried = int(d.get("carried") or h["amount_raw"])
        src = str(d.get("chain") or ids.chain)
        out.append({"source": ids.of(src, str(d["from"])), "target": edge["target"],
                    **{k: h[k] for k in _HOP_FIELDS},
                    **ser.amount(chain, h["asset"], carried, h["symbol"], h["decimals"]),
                    "kind": BRIDGE, "reason": BRIDGE, "chain": chain,
                    "confidence": round(float(d.get("confidence") or 0.0), 6), "from_chain": src,
                    "deposit_tx_hash": str(d.get("tx_hash")), "protocol": d.get("protocol"),
                    "match": d.get("match"), "usd": usd(carried)})
    return out


def _node(node: GraphNode, ids: _Ids) -> dict[str, Any]:
    v = node.verdict
    return {"id": ids.of(node.chain, node.address), "label": _node_label(node, ids), "role": v.shown_role,
            "reason": v.reason, "entity": v.entity, "category": v.category,
            "depth": node.depth, "seed": bool(v.is_seed), "chain": node.chain or ids.chain}


def _dot_id(text: Any) -> str:
    return '"' + escape_controls(str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")) + '"'


class _Out:
    """Buffers small writes into ~64 KiB chunks so a million-row export is not a million syscalls."""

    def __init__(self, response: web.StreamResponse) -> None:
        self.response = response
        self.buf = io.StringIO()

    async def write(self, text: str) -> None:
        self.buf.write(show_tron(text))  # Tron's stored hex shown as T..., in every format
        if self.buf.tell() >= _FLUSH:
            await self.flush()

    async def flush(self) -> None:
        data = self.buf.getvalue()
        if data:
            await self.response.write(data.encode())
        self.buf = io.StringIO()


async def _stream(conn: asyncpg.pool.PoolConnectionProxy, out: _Out, fmt: str, table: str, trace: StoredTrace,
                  ids: _Ids, book: PriceBook) -> None:
    chain, trace_id = trace.chain, trace.id
    nodes: AsyncIterator[GraphNode] = reads.iter_graph_nodes(conn, trace_id)
    hops: AsyncIterator[StoredHop] = reads.iter_hops(conn, trace_id)

    async def edges() -> AsyncIterator[dict[str, Any]]:
        async for row in hops:
            for e in _edges(ids, row, book):
                yield e

    if fmt == "csv":
        line = io.StringIO()
        writer = csv.writer(line, lineterminator="\n")
        columns = NODE_COLUMNS if table == "nodes" else EDGE_COLUMNS
        writer.writerow(columns)
        source = (_node(n, ids) async for n in nodes) if table == "nodes" else edges()
        async for item in source:
            writer.writerow(["" if item.get(c) is None else csv_cell(item[c]) for c in columns])
            await out.write(line.getvalue())
            line.seek(0)
            line.truncate()
    elif fmt == "json":
        await out.write(json.dumps({"trace_id": trace_id, "chain": chain, "directed": True,
                                    "multigraph": True})[:-1] + ',"nodes":[')
        first = True
        async for n in nodes:
            await out.write(("" if first else ",") + json.dumps(_node(n, ids), ensure_ascii=False))
            first = False
        await out.write('],"edges":[')
        first = True
        async for e in edges():
            await out.write(("" if first else ",") + json.dumps(e, ensure_ascii=False))
            first = False
        await out.write("]}")
    else:  # dot
        await out.write(f"digraph {_dot_id(f'trace {trace_id}')} {{\n  rankdir=LR;\n  node [shape=box];\n")
        colours: dict[str, str] = {Role.SEED: "red", Role.EXIT: "darkgreen", Role.STOPPED: "orange"}
        async for n in nodes:
            role = n.verdict.shown_role
            colour = f", color={colours[role]}" if role in colours else ""
            await out.write(f"  {_dot_id(ids.of(n.chain, n.address))} "
                            f"[label={_dot_id(_node_label(n, ids))}{colour}];\n")
        async for d in edges():
            label = f"{d['amount']} {d['symbol'] or d['asset'][:10]}"
            style = ""
            if d["kind"] == BRIDGE:
                label = f"{d['protocol'] or BRIDGE} {d['from_chain']} → {d['chain']}: {label} ({d['confidence']:.0%})"
                style = ", style=dashed, color=blue"
            await out.write(f"  {_dot_id(d['source'])} -> {_dot_id(d['target'])} [label={_dot_id(label)}{style}];\n")
        await out.write("}\n")
    await out.flush()


def _nx_graph(ids: _Ids, trace_id: int, nodes: list[GraphNode], rows: list[StoredHop],
              book: PriceBook) -> nx.MultiDiGraph:
    g: nx.MultiDiGraph = nx.MultiDiGraph(name=f"tracer trace {trace_id} ({ids.chain})")
    for n in nodes:
        v = n.verdict
        # GraphML and GEXF want one type per attribute and no nulls: empty strings stand in.
        # Attribute text comes from label files and keys: no raw control characters in XML.
        g.add_node(ids.of(n.chain, n.address), label=xml_text(_node_label(n, ids)), role=v.shown_role,
                   reason=xml_text(v.reason or ""), entity=xml_text(v.entity or ""),
                   category=xml_text(v.category or ""),
                   depth=n.depth if n.depth is not None else -1, chain=n.chain or ids.chain)
    for row in rows:
        for i, d in enumerate(_edges(ids, row, book)):
            key = str(row.transfer_id) if i == 0 else f"{BRIDGE}:{row.transfer_id}:{i - 1}"
            g.add_edge(d["source"], d["target"], key=key, tx_hash=d["tx_hash"], position=d["position"],
                       block_number=d["block_number"], timestamp=d["timestamp"] or "", asset=d["asset"],
                       symbol=xml_text(d["symbol"] or ""), amount=d["amount"], amount_raw=d["amount_raw"],
                       # Gephi lays out and sizes edges by a numeric weight. It is an approximation for
                       # drawing only; amount / amount_raw stay the exact values.
                       weight=float(d["amount"]), depth=d["depth"], kind=d["kind"], status=d["status"],
                       reason=xml_text(d["reason"]), chain=d["chain"], confidence=float(d.get("confidence", 1.0)),
                       usd=d["usd"] or "")
    return g


def _render(g: nx.MultiDiGraph, fmt: str) -> Iterator[str]:
    if fmt == "graphml":
        return nx.generate_graphml(g)
    return nx.generate_gexf(g)


async def export(request: web.Request) -> web.StreamResponse:
    ctx, trace_id = trace_request(request, ("format", "table"))
    fmt = params.enum_param(request, "format", tuple(FORMATS), default="json")
    table = params.enum_param(request, "table", ("edges", "nodes"), default="edges")
    assert fmt is not None and table is not None
    if table == "nodes" and fmt != "csv":
        raise ApiError(400, "Invalid request", "table=nodes only applies to format=csv", field="table")
    content_type, ext = FORMATS[fmt]
    async with ctx.pool.acquire() as conn:
        await trace_or_404(conn, trace_id)
    # Dollars beside the amounts: prices still missing are read from the nodes' feeds first.
    run = await pricing.price_trace(ctx.pool, ctx.chains, trace_id)
    async with ctx.pool.acquire() as conn:
        trace = await trace_or_404(conn, trace_id)
        ids = _Ids(trace.chain, bool(await trace_store.chain_windows(conn, trace_id)))
        book = await pricing.price_book(conn, await reads.trace_assets(conn, trace_id), run.misses)
        if fmt in ("graphml", "gexf"):
            count = await reads.hop_count(conn, trace_id)
            if count > ctx.settings.graph_max_hops:
                raise ApiError(422, "Graph too large", f"trace {trace_id} has {count} hops; {fmt} is built in "
                               f"memory and limited to {ctx.settings.graph_max_hops}: use format=csv, json or dot",
                               field="format")
            async with conn.transaction(readonly=True):
                nodes = [n async for n in reads.iter_graph_nodes(conn, trace_id)]
                edges = [e async for e in reads.iter_hops(conn, trace_id)]
            g = await asyncio.to_thread(_nx_graph, ids, trace_id, nodes, edges, book)
            text = await asyncio.to_thread(lambda: show_tron("\n".join(_render(g, fmt)) + "\n"))
            return web.Response(text=text, content_type=content_type, headers={
                "Content-Disposition": f'attachment; filename="trace-{trace_id}.{ext}"'})
        suffix = f"-{table}" if fmt == "csv" else ""
        response = web.StreamResponse(headers={
            "Content-Type": f"{content_type}; charset=utf-8",
            "Content-Disposition": f'attachment; filename="trace-{trace_id}{suffix}.{ext}"'})
        # One read-only snapshot for nodes and edges, so they agree while workers keep writing.
        async with conn.transaction(readonly=True, isolation="repeatable_read"):
            await response.prepare(request)
            await _stream(conn, _Out(response), fmt, table, trace, ids, book)
        await response.write_eof()
        return response
