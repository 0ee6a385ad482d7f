"""Widest paths (tracer.engine.widest) against brute force over every simple path, on random
DAGs and on random graphs with cycles."""

from __future__ import annotations

import itertools

import networkx as nx
from hypothesis import given, settings
from hypothesis import strategies as st

from tracer.engine import widest


@st.composite
def dags(draw: st.DrawFn) -> dict[int, dict[int, float]]:
    """A random DAG on up to 8 nodes (edges go from lower to higher numbers), with few distinct
    widths so ties between paths are common."""
    n = draw(st.integers(2, 8))
    g: dict[int, dict[int, float]] = {}
    for u, v in itertools.combinations(range(n), 2):
        if draw(st.booleans()):
            g.setdefault(u, {})[v] = draw(st.integers(1, 6))
    return g


@st.composite
def digraphs(draw: st.DrawFn) -> dict[int, dict[int, float]]:
    """A random directed graph with cycles (money going back and forth) on up to 7 nodes."""
    n = draw(st.integers(2, 7))
    g: dict[int, dict[int, float]] = {}
    for u, v in itertools.permutations(range(n), 2):
        if draw(st.integers(0, 2)) == 0:
            g.setdefault(u, {})[v] = draw(st.integers(1, 5))
    return g


def _brute(g: dict[int, dict[int, float]], s: int, t: int) -> list[tuple[float, int]]:
    dg = nx.DiGraph([(u, v) for u, succ in g.items() for v in succ])
    if s not in dg or t not in dg:
        return []
    keys = [(widest.width(g, p), len(p) - 1) for p in nx.all_simple_paths(dg, s, t)]
    return sorted(keys, key=lambda x: (-x[0], x[1]))


@settings(max_examples=300, deadline=None)
@given(st.one_of(dags(), digraphs()), st.integers(1, 12))
def test_k_widest_ranks_like_brute_force(g: dict[int, dict[int, float]], k: int) -> None:
    n = 1 + max([*g, *(v for succ in g.values() for v in succ)], default=1)
    expected = _brute(g, 0, n - 1)
    got = widest.k_widest(g, 0, n - 1, k)
    # The same widths and hop counts, in order, as the k best of all simple paths.
    assert [(w, len(p) - 1) for w, p in got] == expected[:k]
    assert len({tuple(p) for _, p in got}) == len(got)  # distinct
    for w, p in got:
        assert p[0] == 0 and p[-1] == n - 1 and len(set(p)) == len(p)
        assert all(v in g[u] for u, v in itertools.pairwise(p))
        assert w == widest.width(g, p)


@settings(max_examples=200, deadline=None)
@given(st.one_of(dags(), digraphs()))
def test_best_is_the_widest_then_shortest(g: dict[int, dict[int, float]]) -> None:
    n = 1 + max([*g, *(v for succ in g.values() for v in succ)], default=1)
    expected = _brute(g, 0, n - 1)
    p = widest.best(g, 0, n - 1)
    assert (p is None) == (not expected)
    if p is not None:
        assert (widest.width(g, p), len(p) - 1) == expected[0]


def test_cycles_do_not_loop_and_paths_stay_simple() -> None:
    g: dict[str, dict[str, float]] = {"s": {"a": 5, "b": 1}, "a": {"b": 5, "s": 9}, "b": {"a": 9, "t": 3}}
    got = widest.k_widest(g, "s", "t", 5)
    assert [p for _, p in got] == [["s", "a", "b", "t"], ["s", "b", "t"]]
    assert [w for w, _ in got] == [3, 1]


def test_fan_out_loses_to_a_wide_long_chain() -> None:
    # The example: 60 wallets of 1 each into z, and one 1,000 chain of 4 hops.
    g: dict[str, dict[str, float]] = {"seed": {f"w{i}": 1 for i in range(60)} | {"c1": 1000}}
    for i in range(60):
        g[f"w{i}"] = {"z": 0.999}
    g["c1"], g["c2"], g["c3"] = {"c2": 999}, {"c3": 998}, {"z": 997}
    got = widest.k_widest(g, "seed", "z", 2)
    assert got[0] == (997, ["seed", "c1", "c2", "c3", "z"])
    assert got[1] == (0.999, ["seed", "w0", "z"])
