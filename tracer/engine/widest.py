"""Widest paths: the simple paths whose narrowest edge carries the most, fewest hops on a tie.

A path's width is its smallest edge amount (the most flagged money that can have flowed along the
whole of it); paths are ranked by width, largest first, then by hop count, fewest first, then by
their node sequence (so the answer does not depend on dict order).

`best` finds one such path exactly in two passes: a bottleneck Dijkstra gives the largest width W
reachable, then a breadth-first search over the edges at least W wide gives the fewest hops among
paths of width W (any path over those edges is W wide, and every W-wide path uses only them). One
Dijkstra on the pair (width, hops) would be wrong: a wider prefix with more hops can lose to a
narrower, shorter one once a narrow edge caps both.

`k_widest` is Yen's algorithm over that ranking: each candidate is a root (a prefix of a path
already taken) plus the best spur from the root's last node avoiding the root's nodes and the
edges the taken paths with that root leave by. The spur search is capped at the root's width, so
"best spur" means best for the whole path, not best on its own.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, TypeVar

N = TypeVar("N", bound=Hashable)

INF = float("inf")
Graph = Mapping[Any, Mapping[Any, float]]  # node -> {successor: edge width}


def width(g: Graph, path: Sequence[Any]) -> float:
    """The path's narrowest edge (INF for a path of one node)."""
    return min((g[u][v] for u, v in itertools.pairwise(path)), default=INF)


def _key(g: Graph, path: Sequence[Any]) -> tuple[float, int, tuple[Any, ...]]:
    return (-width(g, path), len(path), tuple(path))


def best(g: Graph, source: Any, target: Any, *, cap: float = INF, banned_nodes: frozenset[Any] = frozenset(),
         banned_edges: frozenset[tuple[Any, Any]] = frozenset()) -> list[Any] | None:
    """The widest simple path source -> target, its width counted as at most `cap`, fewest hops
    among the widest; None when target cannot be reached."""
    if source in banned_nodes or target in banned_nodes:
        return None
    if source == target:
        return [source]
    # Pass 1: the largest bottleneck width reachable at target (Dijkstra on -width).
    reach: dict[Any, float] = {source: cap}
    heap: list[tuple[float, int, Any]] = [(-cap, 0, source)]
    order = itertools.count(1)  # nodes need not be comparable
    done: set[Any] = set()
    while heap:
        neg, _, u = heapq.heappop(heap)
        if u in done:
            continue
        done.add(u)
        if u == target:
            break
        for v, w in g.get(u, {}).items():
            if v in banned_nodes or (u, v) in banned_edges or v in done:
                continue
            cand = min(-neg, w)
            if cand > reach.get(v, -INF):
                reach[v] = cand
                heapq.heappush(heap, (-cand, next(order), v))
    if target not in reach:
        return None
    limit = reach[target]
    # Pass 2: fewest hops over the edges at least that wide (neighbours in sorted order when
    # they sort, so ties resolve the same way every time).
    parent: dict[Any, Any] = {source: None}
    queue = deque([source])
    while queue:
        u = queue.popleft()
        if u == target:
            break
        succ = g.get(u, {})
        for v in _ordered(succ):
            if v in parent or v in banned_nodes or (u, v) in banned_edges or succ[v] < limit:
                continue
            parent[v] = u
            queue.append(v)
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
    first = best(g, source, target)
    if first is None or k < 1:
        return []
    taken: list[list[Any]] = [first]
    seen = {tuple(first)}
    candidates: list[tuple[tuple[float, int, tuple[Any, ...]], list[Any]]] = []
    while len(taken) < k:
        last = taken[-1]
        for i in range(len(last) - 1):
            root = last[: i + 1]
            spur = root[-1]
            # Edges out of the spur node that the taken paths sharing this root already use.
            banned_edges = frozenset((p[i], p[i + 1]) for p in taken if len(p) > i + 1 and p[: i + 1] == root)
            tail = best(g, spur, target, cap=width(g, root), banned_nodes=frozenset(root[:-1]),
                        banned_edges=banned_edges)
            if tail is None:
                continue
            path = root[:-1] + tail
            if tuple(path) in seen:
                continue
            seen.add(tuple(path))
            heapq.heappush(candidates, (_key(g, path), path))
        if not candidates:
            break
        _, path = heapq.heappop(candidates)
        taken.append(path)
    return [(width(g, p), p) for p in taken]
