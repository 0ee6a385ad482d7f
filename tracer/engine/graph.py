"""A trace's money-flow graph in networkx, for paths and per-exit flows."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import networkx as nx

from tracer.domain.verdicts import HopStatus
from tracer.domain.views import StoredHop
from tracer.engine import widest


@dataclass(frozen=True)
class PathStep:
    from_addr: str
    to_addr: str
    amount: int
    asset: str
    tx_hash: str
    block_number: int
    chain: str = ""  # the chain the step's transaction and amount are on
    from_chain: str = ""  # the sender's chain: another one only on a bridge step


Node = tuple[str, str]  # (chain, address): one address on two chains of a trace is two nodes
_ANY_SEED: Node = ("", "")  # no address is empty: the virtual source of every path


def _evidence(h: StoredHop) -> dict[str, Any]:
    evidence = h.evidence
    return evidence if isinstance(evidence, dict) else {}


def bridge_deposits(h: StoredHop) -> list[dict[str, Any]]:
    """The deposits a bridge payout hop pays out (its evidence), each naming its depositor."""
    deposits = _evidence(h).get("deposits", [])
    return [d for d in deposits if isinstance(d, dict) and d.get("from")] if isinstance(deposits, list) else []


def build(hops: Iterable[StoredHop], chain: str = "") -> nx.MultiDiGraph:
    """One edge per hop (keyed by transfer id); nodes are (chain, address), `chain` standing in
    for hops that do not name theirs. A bridge payout also gets an edge from each depositor it pays
    out, on the deposit's chain (keyed "bridge:<id>:<n>", status followed), so paths cross the
    bridge: the vault paying it is not where the money came from."""
    g: nx.MultiDiGraph = nx.MultiDiGraph()
    for h in hops:
        c = h.chain or chain
        g.add_edge((c, h.from_addr), (c, h.to_addr), key=h.transfer_id, amount=int(h.amount),
                   asset=h.asset, tx_hash=h.tx_hash, block_number=h.block_number,
                   depth=h.depth, status=h.status, reason=h.reason, chain=c, from_chain=c)
        for n, d in enumerate(bridge_deposits(h)):
            src = d.get("chain") or chain
            g.add_edge((src, d["from"]), (c, h.to_addr), key=f"bridge:{h.transfer_id}:{n}",
                       amount=int(d.get("carried") or h.amount), asset=h.asset, tx_hash=h.tx_hash,
                       block_number=h.block_number, depth=h.depth, status=HopStatus.FOLLOWED, reason=h.reason,
                       chain=c, from_chain=src)
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


def paths_to(g: nx.MultiDiGraph, seeds: Sequence[str], target: str, limit: int = 10,
             chain: str | None = None, target_chain: str | None = None) -> list[list[PathStep]]:
    """The widest paths (largest bottleneck amount first, then fewest hops: tracer.engine.widest)
    from any seed (on `chain`, the trace's own; None: any) to `target` on `target_chain` (None:
    whichever chains of the trace it is on). Exact, however many paths the graph holds.

    Only hops that were followed (or end at the target) count, so a path never runs through
    an exit or a stop.
    """
    d = _flow_graph(g)
    targets = sorted(n for n in d if n[1] == target and (target_chain is None or n[0] == target_chain))
    wanted = set(seeds)
    sources = [n for n in d if n[1] in wanted and (chain is None or n[0] == chain)]
    found: list[tuple[tuple[float, int], list[Node]]] = []
    for goal in targets:
        # Only edges that continue (followed) or end at the goal carry money towards it.
        adj: dict[Node, dict[Node, float]] = {}
        for u, v, data in d.edges(data=True):
            if v == goal or any(h["status"] == HopStatus.FOLLOWED for h in data["hops"]):
                adj.setdefault(u, {})[v] = data["amount"]
        # One virtual source paying every seed without limit: a path from any seed, ranked once.
        adj[_ANY_SEED] = {s: widest.INF for s in sorted(sources)}
        for w, node_path in widest.k_widest(adj, _ANY_SEED, goal, limit):
            found.append(((-w, len(node_path)), node_path[1:]))
    # Paths to the same address on several chains: merge their rankings (each is already sorted).
    found.sort(key=lambda x: x[0])
    paths: list[list[PathStep]] = []
    for _, node_path in found[:limit]:
        steps = []
        for u, v in itertools.pairwise(node_path):
            data = d[u][v]
            biggest = max(data["hops"], key=lambda h: h["amount"])
            steps.append(PathStep(u[1], v[1], data["amount"], biggest["asset"], biggest["tx_hash"],
                                  biggest["block_number"], biggest["chain"], biggest["from_chain"]))
        paths.append(steps)
    return paths


def flow_per_exit(g: nx.MultiDiGraph) -> dict[Node, dict[str, int]]:
    flows: dict[Node, dict[str, int]] = {}
    for _u, v, data in g.edges(data=True):
        if data["status"] == HopStatus.EXIT:
            per = flows.setdefault(v, {})
            per[data["asset"]] = per.get(data["asset"], 0) + data["amount"]
    return flows
