"""A trace's graph for other tools: JSON (node-link), GraphML and GEXF (Gephi, yEd, Cytoscape),
DOT (Graphviz) and CSV (spreadsheets, Gephi's and Maltego's table import).

JSON, DOT and CSV are streamed from a server-side cursor, so a trace of millions of hops exports
in constant memory. GraphML and GEXF are written by networkx from an in-memory graph and are
refused (422) above Settings.graph_max_hops.
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

from tracer.api import params
from tracer.api import serialize as ser
from tracer.api.errors import ApiError
from tracer.api.handlers.common import ctx_of, trace_or_404
from tracer.store import reads

FORMATS = {
    "json": ("application/json", "json"),
    "graphml": ("application/graphml+xml", "graphml"),
    "gexf": ("application/gexf+xml", "gexf"),
    "dot": ("text/vnd.graphviz", "dot"),
    "csv": ("text/csv", "csv"),
}
EDGE_COLUMNS = ("source", "target", "tx_hash", "position", "block_number", "timestamp", "asset", "symbol",
                "decimals", "amount", "amount_raw", "depth", "kind", "status", "reason")
NODE_COLUMNS = ("id", "label", "role", "reason", "entity", "category", "depth", "seed")
_FLUSH = 64 * 1024


def _role(node: asyncpg.Record) -> str:
    if node["is_seed"]:
        return "seed"
    return node["role"] or "reached"


def _node_label(node: asyncpg.Record) -> str:
    a = node["address"]
    short = f"{a[:8]}…{a[-4:]}"
    return f"{node['entity']} ({short})" if node["entity"] else short


def _edge(chain: str, row: asyncpg.Record) -> dict[str, Any]:
    h = ser.hop(chain, row)
    return {"source": h["from"], "target": h["to"], **{k: h[k] for k in EDGE_COLUMNS[2:]}}


def _node(node: asyncpg.Record) -> dict[str, Any]:
    return {"id": node["address"], "label": _node_label(node), "role": _role(node), "reason": node["reason"],
            "entity": node["entity"], "category": node["category"], "depth": node["depth"],
            "seed": bool(node["is_seed"])}


def _dot_id(text: Any) -> str:
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ") + '"'


class _Out:
    """Buffers small writes into ~64 KiB chunks so a million-row export is not a million syscalls."""

    def __init__(self, response: web.StreamResponse) -> None:
        self.response = response
        self.buf = io.StringIO()

    async def write(self, text: str) -> None:
        self.buf.write(text)
        if self.buf.tell() >= _FLUSH:
            await self.flush()

    async def flush(self) -> None:
        data = self.buf.getvalue()
        if data:
            await self.response.write(data.encode())
        self.buf = io.StringIO()


async def _stream(conn: asyncpg.pool.PoolConnectionProxy, out: _Out, fmt: str, table: str, trace: asyncpg.Record
                  ) -> None:
    chain, trace_id = trace["chain"], trace["id"]
    nodes: AsyncIterator[asyncpg.Record] = reads.iter_graph_nodes(conn, trace_id)
    edges: AsyncIterator[asyncpg.Record] = reads.iter_hops(conn, trace_id)
    if fmt == "csv":
        line = io.StringIO()
        writer = csv.writer(line, lineterminator="\n")
        columns = NODE_COLUMNS if table == "nodes" else EDGE_COLUMNS
        writer.writerow(columns)
        source = (_node(n) async for n in nodes) if table == "nodes" else (_edge(chain, e) async for e in edges)
        async for item in source:
            writer.writerow(["" if item[c] is None else item[c] for c in columns])
            await out.write(line.getvalue())
            line.seek(0)
            line.truncate()
    elif fmt == "json":
        await out.write(json.dumps({"trace_id": trace_id, "chain": chain, "directed": True,
                                    "multigraph": True})[:-1] + ',"nodes":[')
        first = True
        async for n in nodes:
            await out.write(("" if first else ",") + json.dumps(_node(n), ensure_ascii=False))
            first = False
        await out.write('],"edges":[')
        first = True
        async for e in edges:
            await out.write(("" if first else ",") + json.dumps(_edge(chain, e), ensure_ascii=False))
            first = False
        await out.write("]}")
    else:  # dot
        await out.write(f"digraph {_dot_id(f'trace {trace_id}')} {{\n  rankdir=LR;\n  node [shape=box];\n")
        colours = {"seed": "red", "exit": "darkgreen", "stopped": "orange"}
        async for n in nodes:
            role = _role(n)
            colour = f", color={colours[role]}" if role in colours else ""
            await out.write(f"  {_dot_id(n['address'])} [label={_dot_id(_node_label(n))}{colour}];\n")
        async for e in edges:
            d = _edge(chain, e)
            label = f"{d['amount']} {d['symbol'] or d['asset'][:10]}"
            await out.write(f"  {_dot_id(d['source'])} -> {_dot_id(d['target'])} [label={_dot_id(label)}];\n")
        await out.write("}\n")
    await out.flush()


def _nx_graph(chain: str, trace_id: int, nodes: list[asyncpg.Record], edges: list[asyncpg.Record]
              ) -> nx.MultiDiGraph:
    g: nx.MultiDiGraph = nx.MultiDiGraph(name=f"tracer trace {trace_id} ({chain})")
    for n in nodes:
        # GraphML and GEXF want one type per attribute and no nulls: empty strings stand in.
        g.add_node(n["address"], label=_node_label(n), role=_role(n), reason=n["reason"] or "",
                   entity=n["entity"] or "", category=n["category"] or "",
                   depth=n["depth"] if n["depth"] is not None else -1)
    for e in edges:
        d = _edge(chain, e)
        g.add_edge(d["source"], d["target"], key=str(e["transfer_id"]), tx_hash=d["tx_hash"],
                   position=d["position"], block_number=d["block_number"], timestamp=d["timestamp"] or "",
                   asset=d["asset"], symbol=d["symbol"] or "", amount=d["amount"], amount_raw=d["amount_raw"],
                   # Gephi lays out and sizes edges by a numeric weight. It is an approximation for
                   # drawing only; amount / amount_raw stay the exact values.
                   weight=float(d["amount"]), depth=d["depth"], kind=d["kind"], status=d["status"],
                   reason=d["reason"])
    return g


def _render(g: nx.MultiDiGraph, fmt: str) -> Iterator[str]:
    if fmt == "graphml":
        return nx.generate_graphml(g)
    return nx.generate_gexf(g)


async def export(request: web.Request) -> web.StreamResponse:
    params.reject_unknown(request, ("format", "table"))
    ctx = ctx_of(request)
    trace_id = params.trace_id(request)
    fmt = params.enum_param(request, "format", tuple(FORMATS), default="json")
    table = params.enum_param(request, "table", ("edges", "nodes"), default="edges")
    assert fmt is not None and table is not None
    if table == "nodes" and fmt != "csv":
        raise ApiError(400, "Invalid request", "table=nodes only applies to format=csv", field="table")
    content_type, ext = FORMATS[fmt]
    async with ctx.pool.acquire() as conn:
        trace = await trace_or_404(conn, trace_id)
        if fmt in ("graphml", "gexf"):
            count = await reads.hop_count(conn, trace_id)
            if count > ctx.settings.graph_max_hops:
                raise ApiError(422, "Graph too large", f"trace {trace_id} has {count} hops; {fmt} is built in "
                               f"memory and limited to {ctx.settings.graph_max_hops}: use format=csv, json or dot",
                               field="format")
            async with conn.transaction(readonly=True):
                nodes = [n async for n in reads.iter_graph_nodes(conn, trace_id)]
                edges = [e async for e in reads.iter_hops(conn, trace_id)]
            g = await asyncio.to_thread(_nx_graph, trace["chain"], trace_id, nodes, edges)
            text = await asyncio.to_thread(lambda: "\n".join(_render(g, fmt)) + "\n")
            return web.Response(text=text, content_type=content_type, headers={
                "Content-Disposition": f'attachment; filename="trace-{trace_id}.{ext}"'})
        suffix = f"-{table}" if fmt == "csv" else ""
        response = web.StreamResponse(headers={
            "Content-Type": f"{content_type}; charset=utf-8",
            "Content-Disposition": f'attachment; filename="trace-{trace_id}{suffix}.{ext}"'})
        # One read-only snapshot for nodes and edges, so they agree while workers keep writing.
        async with conn.transaction(readonly=True, isolation="repeatable_read"):
            await response.prepare(request)
            await _stream(conn, _Out(response), fmt, table, trace)
        await response.write_eof()
        return response
