"""A trace's money-flow graph in networkx, for paths and per-exit flows."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import networkx as nx


@dataclass(frozen=True)
class PathStep:
    from_addr: str
    to_addr: str
    amount: int
    asset: str
    tx_hash: str
    block_number: int


def build(hops: Iterable[Any]) -> nx.MultiDiGraph:
    """One edge per hop (keyed by transfer id); nodes are addresses. A bridge payout on another
    chain also gets an edge from each depositor it pays out (keyed "bridge:<id>:<n>", status
    followed), so paths cross the bridge: the vault paying it is not where the money came from."""
    g: nx.MultiDiGraph = nx.MultiDiGraph()
    for h in hops:
        g.add_edge(h["from_addr"], h["to_addr"], key=h["transfer_id"], amount=int(h["amount"]),
                   asset=h["asset"], tx_hash=h["tx_hash"], block_number=h["block_number"],
                   depth=h["depth"], status=h["status"], reason=h["reason"])
        evidence = h.get("evidence") if hasattr(h, "get") else None
        if isinstance(evidence, str):
            evidence = json.loads(evidence)
        for n, d in enumerate((evidence or {}).get("deposits", []) if isinstance(evidence, dict) else []):
            if d.get("from"):
                g.add_edge(d["from"], h["to_addr"], key=f"bridge:{h['transfer_id']}:{n}", amount=int(h["amount"]),
                           asset=h["asset"], tx_hash=h["tx_hash"], block_number=h["block_number"],
                           depth=h["depth"], status="followed", reason=h["reason"])
    return g


def _flow_graph(g: nx.MultiDiGraph) -> nx.DiGraph:
    """Collapse parallel hops: one edge per (from, to) with the summed amount."""
    d: nx.DiGraph = nx.DiGraph()
    for u, v, data in g.edges(data=True):
        if d.has_edge(u, v):
            d[u][v]["amount"] += data["amount"]
            d[u][v]["hops"].append(data)
        else:
            d.add_edge(u, v, amount=data["amount"], hops=[data])
    return d


def paths_to(g: nx.MultiDiGraph, seeds: Sequence[str], target: str, limit: int = 10) -> list[list[PathStep]]:
    """The widest paths (largest bottleneck amount first) from any seed to `target`.

    Only hops that were followed (or end at the target) count, so a path never runs through
    an exit or a stop.
    """
    d = _flow_graph(g)
    if target not in d:
        return []
    # Work backwards from the target over followed edges: the sub-graph that can reach it.
    usable = nx.DiGraph()
    for u, v, data in d.edges(data=True):
        if v == target or any(h["status"] == "followed" for h in data["hops"]):
            usable.add_edge(u, v, amount=data["amount"], hops=data["hops"])
    if target not in usable:
        return []
    ancestors = nx.ancestors(usable, target) | {target}
    sub = usable.subgraph(ancestors)
    paths: list[list[PathStep]] = []
    found: list[tuple[int, list[str]]] = []
    for seed in seeds:
        if seed not in sub:
            continue
        found.extend(_k_widest(sub, seed, target, limit))
    found.sort(key=lambda x: -x[0])
    for _, node_path in found[:limit]:
        steps = []
        for u, v in itertools.pairwise(node_path):
            data = sub[u][v]
            biggest = max(data["hops"], key=lambda h: h["amount"])
            steps.append(PathStep(u, v, data["amount"], biggest["asset"], biggest["tx_hash"],
                                  biggest["block_number"]))
        paths.append(steps)
    return paths


def _k_widest(g: nx.DiGraph, source: str, target: str, k: int) -> list[tuple[int, list[str]]]:
    # Simple paths ordered by hop count can be exponential in number; cap the enumeration and
    # keep the widest ones, which is what an investigator reads first.
    out: list[tuple[int, list[str]]] = []
    try:
        gen = nx.shortest_simple_paths(g, source, target)
        for i, p in enumerate(gen):
            width = min(g[u][v]["amount"] for u, v in itertools.pairwise(p))
            out.append((width, p))
            if i >= 4 * k:
                break
    except nx.NetworkXNoPath:
        return []
    out.sort(key=lambda x: -x[0])
    return out[:k]


def flow_per_exit(g: nx.MultiDiGraph) -> dict[str, dict[str, int]]:
    flows: dict[str, dict[str, int]] = {}
    for _u, v, data in g.edges(data=True):
        if data["status"] == "exit":
            per = flows.setdefault(v, {})
            per[data["asset"]] = per.get(data["asset"], 0) + data["amount"]
    return flows
