"""Widest paths: the simple paths whose narrowest edge carries the most, fewest hops on a tie.

A path's width is its smallest edge amount (the most flagged money that can have flowed along the
whole of it); paths are ranked by width, largest first, then by hop count, fewest first, then by
their node sequence (so the answer does not depend on dict order).

`best` finds one such path exactly in two passes: a bottleneck Dijkstra gives the largest width W
reachable, then a breadth-first search over the edges at least W wide gives the fewest hops among
paths of width W (any path over those edges is W wide, and every W-wide path uses only them). One
Dijkstra on the pair (width, hops) would be wrong: a wider prefix with more hops can lose to a
narrower, shorter one once a narrow edge caps both.

`k_widest` is Yen's algorithm (with Lawler's saving) over that ranking: each candidate is a root
(a prefix of a path already taken) plus the best spur from the root's last node avoiding the
root's nodes and the edges the taken paths with that root leave by. The spur search is capped at the root's width, so
"best spur" means best for the whole path, not best on its own.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

N = TypeVar("N", bound=Hashable)

INF = float("inf")
Graph = Mapping[Any, Mapping[Any, float]]  # node -> {successor: edge width}


def width(g: Graph, path: Sequence[Any]) -> float:
    """The path's narrowest edge (INF for a path of one node)."""
    return min((g[u][v] for u, v in itertools.pairwise(path)), default=INF)


def _key(g: Graph, path: Sequence[Any]) -> tuple[float, int, tuple[Any, ...]]:
    return (-width(g, path), len(path), tuple(path))


@dataclass(frozen=True)
class Bounds:
    """What the whole graph allows from each node to the target: the widest bottleneck (an upper
    bound once nodes and edges are banned) and the fewest hops (a lower bound). They steer the
    searches (A*) so a spur search does not sweep the whole graph; nodes absent cannot reach it."""

    width: Mapping[Any, float]
    hops: Mapping[Any, int]


def bounds(g: Graph, target: Any) -> Bounds:
    reverse: dict[Any, list[tuple[Any, float]]] = {}
    for u, succ in g.items():
        for v, w in succ.items():
            reverse.setdefault(v, []).append((u, w))
    width: dict[Any, float] = {target: INF}
    heap: list[tuple[float, int, Any]] = [(-INF, 0, target)]
    order = itertools.count(1)
    while heap:
        neg, _, v = heapq.heappop(heap)
        if -neg < width[v]:
            continue
        for u, w in reverse.get(v, ()):
            cand = min(-neg, w)
            if cand > width.get(u, -INF):
                width[u] = cand
                heapq.heappush(heap, (-cand, next(order), u))
    hops: dict[Any, int] = {target: 0}
    queue = deque([target])
    while queue:
        v = queue.popleft()
        for u, _ in reverse.get(v, ()):
            if u not in hops:
                hops[u] = hops[v] + 1
                queue.append(u)
    return Bounds(width, hops)


def best(g: Graph, source: Any, target: Any, *, cap: float = INF, banned_nodes: frozenset[Any] = frozenset(),
         banned_edges: frozenset[tuple[Any, Any]] = frozenset(), within: Bounds | None = None) -> list[Any] | None:
    """The widest simple path source -> target, its width counted as at most `cap`, fewest hops
    among the widest; None when target cannot be reached. `within`: bounds(g, target), to search
    only where it can still pay."""
    if source in banned_nodes or target in banned_nodes:
        return None
    if source == target:
        return [source]
    hint = within if within is not None else bounds(g, target)
    if source not in hint.hops:
        return None
    # Pass 1: the largest bottleneck width reachable at target. A* on width: a node is ranked by
    # what it can still carry to the target at best (min(width so far, its bound)); once the
    # target is taken nothing left can beat it. Nodes are never closed: a better width reopens one.
    reach: dict[Any, float] = {source: cap}
    order = itertools.count(1)  # nodes need not be comparable
    heap: list[tuple[float, int, float, Any]] = [(-min(cap, hint.width[source]), 0, cap, source)]
    while heap:
        _, _, got, u = heapq.heappop(heap)
        if got < reach[u]:
            continue
        if u == target:
            break
        for v, w in g.get(u, {}).items():
            if v in banned_nodes or (u, v) in banned_edges or v not in hint.hops:
                continue
            cand = min(got, w)
            if cand > reach.get(v, -INF):
                reach[v] = cand
                heapq.heappush(heap, (-min(cand, hint.width[v]), next(order), cand, v))
    if target not in reach:
        return None
    limit = reach[target]
    # Pass 2: fewest hops over the edges at least that wide (A* on hops; neighbours in sorted
    # order when they sort, so ties resolve the same way every time).
    parent: dict[Any, Any] = {source: None}
    depth: dict[Any, int] = {source: 0}
    queue: list[tuple[int, int, int, Any]] = [(hint.hops[source], 0, 0, source)]
    while queue:
        _, d, _, u = heapq.heappop(queue)
        if d > depth[u]:
            continue
        if u == target:
            break
        succ = g.get(u, {})
        for v in _ordered(succ):
            if v in banned_nodes or (u, v) in banned_edges or succ[v] < limit or v not in hint.hops:
                continue
            if d + 1 < depth.get(v, len(hint.hops) + 1):
                depth[v] = d + 1
                parent[v] = u
                heapq.heappush(queue, (d + 1 + hint.hops[v], d + 1, next(order), v))
    path = [target]
    while parent[path[-1]] is not None:
        path.append(parent[path[-1]])
    return path[::-1]


def _ordered(succ: Mapping[Any, float]) -> list[Any]:
    try:
        return sorted(succ)
    except TypeError:
        return list(succ)


def k_widest(g: Graph, source: Any, target: Any, k: int) -> list[tuple[float, list[Any]]]:
    """Up to k simple paths source -> target in ranking order, each with its width."""
    within = bounds(g, target)
    first = best(g, source, target, within=within)
    if first is None or k < 1:
        return []
    taken: list[list[Any]] = [first]
    seen = {tuple(first)}
    # Each candidate keeps the index where it left the path it was spurred from (Lawler): spurs
    # from before that index would repeat candidates already made, with the same edges banned.
    candidates: list[tuple[tuple[float, int, tuple[Any, ...]], int, list[Any]]] = []
    start = 0
    while len(taken) < k:
        last = taken[-1]
        wanted = k - len(taken)  # candidates still to take
        for i in range(start, len(last) - 1):
            root = last[: i + 1]
            spur = root[-1]
            # The best this spur can give is the root's width with one more hop: skip it when
            # enough candidates already rank at least that well.
            bound = (-width(g, root), i + 2)
            if sum(1 for key, _, _ in candidates if key[:2] <= bound) >= wanted:
                continue
            # Edges out of the spur node that the taken paths sharing this root already use.
            banned_edges = frozenset((p[i], p[i + 1]) for p in taken if len(p) > i + 1 and p[: i + 1] == root)
            tail = best(g, spur, target, cap=width(g, root), banned_nodes=frozenset(root[:-1]),
                        banned_edges=banned_edges, within=within)
            if tail is None:
                continue
            path = root[:-1] + tail
            if tuple(path) in seen:
                continue
            seen.add(tuple(path))
            heapq.heappush(candidates, (_key(g, path), i, path))
        if not candidates:
            break
        _, start, path = heapq.heappop(candidates)
        taken.append(path)
    return [(width(g, p), p) for p in taken]
