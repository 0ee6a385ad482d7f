"""The same hops whatever the number and timing of workers: hop by hop (transfer, amount, status)
on generated scenarios of several seeds and shapes, with 1 worker taking big batches (breadth
first), 2 workers taking batches of 3 and 4 workers taking one address at a time; with max_depth
cuts; through swaps, bridges and mixer links (a services case, and the mixer family where many
wallets' deposits compete for one pool's withdrawals); on a hand-made chain where a slow node
makes the long path to an address arrive before the short one (a max_depth stop that a shorter
path must lift) and new flagged money reach an address already processed (a re-wake). max_hops
is a global cap whose cut depends on timing: what it guarantees is checked instead (README,
"max_hops"). Real devchain over JSON-RPC, real Postgres, real workers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web

from tests.determinism_support import hops_of, roles_of, trace_with
from tracer.chains.evm import EvmChain
from tracer.chains.retry import TransportOptions
from tracer.demo import load_scenario_labels
from tracer.devchain.chain import Chain
from tracer.devchain.mixer_family import MixerFamilyParams, generate_family
from tracer.devchain.scenario import KIND_NATIVE, Scenario, ScenarioParams, ScenarioTx, generate
from tracer.devchain.server import DevChainServer
from tracer.store.db import Database

pytestmark = pytest.mark.asyncio(loop_scope="session")

CREWS = [(1, 256), (2, 3), (4, 1)]  # (workers, batch size)


def _key(hops: list[tuple[Any, ...]]) -> dict[int, tuple[Any, ...]]:
    # (transfer) -> (from, to, asset, amount, status)
    return {h[0]: h[1:6] for h in hops}


def _diff(ref: dict[int, tuple[Any, ...]], got: dict[int, tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [(t, ref.get(t), got.get(t)) for t in sorted(set(ref) | set(got)) if ref.get(t) != got.get(t)]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def served(db: Database, devchain_factory: Any) -> AsyncIterator[dict[int, tuple[Scenario, EvmChain]]]:
    out: dict[int, tuple[Scenario, EvmChain]] = {}
    for size, seed in ((300, 3), (700, 12)):
        sc = generate(ScenarioParams.for_size(size, seed=seed))
        node = await devchain_factory(sc)
        client = EvmChain(node.url, chain=sc.chain, expected_chain_id=sc.chain_id)
        await client.connect()
        await load_scenario_labels(db.pool, sc)
        out[seed] = (sc, client)
    yield out
    for _, client in out.values():
        await client.close()


@pytest.mark.parametrize("seed", [3, 12])
@pytest.mark.parametrize("policy", [{}, {"max_depth": 3}, {"max_depth": 5}], ids=["default", "depth3", "depth5"])
async def test_hops_are_the_same_with_1_2_and_4_workers(
    db: Database, served: dict[int, tuple[Scenario, EvmChain]], seed: int, policy: dict[str, Any]
) -> None:
    sc, client = served[seed]
    runs = {}
    for workers, batch in CREWS:
        tid = await trace_with(db.pool, client, sc.chain, sc.seeds, policy, workers=workers, batch_size=batch)
        runs[(workers, batch)] = (_key(await hops_of(db.pool, tid)), await roles_of(db.pool, tid))
    ref_hops, ref_roles = runs[CREWS[0]]
    assert len(ref_hops) > 20
    if policy:
        assert any(r[2] == "max_depth" for r in ref_roles), "the cut was never reached"
    for crew, (hops, roles) in runs.items():
        assert _diff(ref_hops, hops) == [], crew
        assert roles == ref_roles, crew


@pytest.mark.parametrize("size,seed", [(1000, 5), (1200, 8)])
async def test_swaps_bridges_and_mixer_links_are_the_same_too(
    db: Database, devchain_factory: Any, size: int, seed: int
) -> None:
    # Cases with services: swaps, bridge deposits and mixer links (what each carries, and all it
    # reaches) are followed the same whatever the crew. In seed 8 one wallet's three deposits into
    # two pools are first seen with one flagged: its links must not depend on that.
    sc = generate(ScenarioParams.for_size(size, seed=seed, services=True))
    node = await devchain_factory(sc)
    client = EvmChain(node.url, chain=sc.chain, expected_chain_id=sc.chain_id)
    await client.connect()
    try:
        await load_scenario_labels(db.pool, sc)
        runs = []
        for workers, batch in CREWS:
            tid = await trace_with(db.pool, client, sc.chain, sc.seeds, {}, workers=workers, batch_size=batch)
            rows = await db.pool.fetch("SELECT transfer_id, reason FROM hops WHERE trace_id = $1", tid)
            reasons = {r["transfer_id"]: r["reason"] for r in rows}
            runs.append({t: (*h, reasons[t]) for t, h in _key(await hops_of(db.pool, tid)).items()})
    finally:
        await client.close()
    ref = runs[0]
    assert sum(1 for h in ref.values() if h[5] == "swap") >= 2
    assert sum(1 for h in ref.values() if h[5] == "bridge") >= 1 and len(ref) > 100
    assert sum(1 for h in ref.values() if h[5] == "mixer link" and h[4] == "followed") >= 3
    for crew, run in zip(CREWS[1:], runs[1:], strict=True):
        assert _diff(ref, run) == [], crew


async def test_deposits_competing_for_one_pool_s_withdrawals_link_the_same_whatever_the_crew(
    db: Database, devchain_factory: Any
) -> None:
    # The mixer family: a dozen launderers' wallets, all fed by the same two seeds (so several are
    # flagged in one batch or not, depending on the crew), deposit into the same three pools, and
    # OTC desks that paid several of them also paid unrelated recipients: their deposits compete
    # for the same withdrawals. Links, what they carry and all it reaches: the same hop by hop.
    sc = generate_family(MixerFamilyParams(seed=1, users=60))
    node = await devchain_factory(sc)
    client = EvmChain(node.url, chain=sc.chain, expected_chain_id=sc.chain_id)
    await client.connect()
    try:
        await load_scenario_labels(db.pool, sc)
        runs, contested = [], []
        for workers, batch in CREWS:
            tid = await trace_with(db.pool, client, sc.chain, sc.seeds, {}, workers=workers, batch_size=batch)
            rows = await db.pool.fetch("SELECT transfer_id, reason FROM hops WHERE trace_id = $1", tid)
            reasons = {r["transfer_id"]: r["reason"] for r in rows}
            runs.append({t: (*h, reasons[t]) for t, h in _key(await hops_of(db.pool, tid)).items()})
            links = await db.pool.fetch(
                """SELECT deposit_transfer_id AS d, withdrawal_tx AS w, confidence, carried, status FROM mixer_links
                   WHERE trace_id = $1 ORDER BY 1, 2""", tid)
            contested.append([tuple(r.values()) for r in links])
    finally:
        await client.close()
    ref = runs[0]
    # Competition really happens: several wallets' flagged deposits in each pool (every withdrawal
    # after two of them is a candidate of both).
    pools = {p.address for p in sc.mixer_pools}
    depositors: dict[str, set[str]] = {}
    for h in ref.values():
        if h[1] in pools:
            depositors.setdefault(h[1], set()).add(h[0])
    assert len(depositors) == 3 and all(len(ws) >= 3 for ws in depositors.values()), depositors
    assert sum(1 for h in ref.values() if h[5] == "mixer link" and h[4] == "followed") >= 5
    for crew, run, links in zip(CREWS[1:], runs[1:], contested[1:], strict=True):
        assert _diff(ref, run) == [], crew
        assert links == contested[0], crew  # every candidate's confidence and amount, not only followed ones


# ------------------------------------------------------------------ a slow node reorders the paths

ETH = 10**18
SEED = "0x" + "5e" * 20
X, Y, Y1, Y2 = "0x" + "a1" * 20, "0x" + "b1" * 20, "0x" + "b2" * 20, "0x" + "b3" * 20
A, B, C = "0x" + "c1" * 20, "0x" + "c2" * 20, "0x" + "c3" * 20
P, M, N = "0x" + "d1" * 20, "0x" + "b0" * 20, "0x" + "d4" * 20  # M sorts before Y1: claimed first


def _pay(sender: str, to: str, eth: int) -> ScenarioTx:
    return ScenarioTx(KIND_NATIVE, sender, to, eth * ETH)


def reordering_chain() -> Chain:
    """SEED -> X -> A is the short path to A (A at depth 2), SEED -> Y -> Y1 -> Y2 -> A the long one
    (depth 4); A -> B -> C goes on. SEED -> P -> M brings M 100 at depth 2, Y1 -> M 50 more from a
    branch processed after M (its address sorts after M's), so M is woken again; M -> N. With
    max_depth 4 and a node slow to answer about X, A is first reached by the long path (depth 4:
    stopped) and only later by the short one."""
    c = Chain(chain_id=1337, genesis_balances={SEED: {"native": 1_000 * ETH}})
    c.append_block([_pay(SEED, X, 100), _pay(SEED, Y, 100), _pay(SEED, P, 100)])
    c.append_block([_pay(X, A, 100), _pay(Y, Y1, 100), _pay(P, M, 100)])
    c.append_block([_pay(Y1, Y2, 50), _pay(Y1, M, 50)])
    c.append_block([_pay(Y2, A, 50)])
    c.append_block([_pay(A, B, 150), _pay(M, N, 150)])
    c.append_block([_pay(B, C, 150)])
    for _ in range(3):
        c.append_block([])
    return c


class SlowFor(DevChainServer):
    """A node that takes `delay` seconds over any request that names one of `slow` addresses."""

    def __init__(self, chain: Chain, slow: tuple[str, ...], delay: float) -> None:
        super().__init__(chain)
        self.slow = tuple(a[2:].encode() for a in slow)
        self.delay = delay

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = (await request.read()).lower()
        if any(a in body for a in self.slow):
            await asyncio.sleep(self.delay)
        return await super()._handle(request)


async def test_a_shorter_path_found_later_lifts_a_max_depth_stop_and_new_money_rewakes(
    db: Database, devchain_factory: Any
) -> None:
    policy = {"max_depth": 4}
    fast = await devchain_factory(reordering_chain())
    slow = SlowFor(reordering_chain(), (X,), 3.0)
    slow_url = await slow.start("127.0.0.1", 0)
    clients = [EvmChain(fast.url, chain="ethereum", expected_chain_id=1337),
               EvmChain(slow_url, chain="ethereum", expected_chain_id=1337,
                        transport=TransportOptions(timeout=20.0))]
    try:
        for client in clients:
            await client.connect()
        ref = await trace_with(db.pool, clients[0], "ethereum", [SEED], policy, workers=1, batch_size=256)
        await db.pool.execute("DELETE FROM address_coverage")  # the slow node must be asked
        late = await trace_with(db.pool, clients[1], "ethereum", [SEED], policy, workers=2, batch_size=1)
    finally:
        for client in clients:
            await client.close()
        await slow.stop()
    ref_hops, late_hops = _key(await hops_of(db.pool, ref)), _key(await hops_of(db.pool, late))

    async def added(trace_id: int, sender: str, to: str) -> int:
        return int(await db.pool.fetchval(
            """SELECT min(id) FROM events WHERE trace_id = $1 AND type = 'hop_added'
               AND payload->>'from' = $2 AND payload->>'to' = $3""", trace_id, sender, to))

    # The slow run really found the long path to A first (the breadth-first one the short path),
    # and M's outflow grew when Y1's money came (in both).
    assert await added(late, Y2, A) < await added(late, X, A)
    assert await added(ref, X, A) < await added(ref, Y2, A)
    for trace_id in (ref, late):
        grew = await db.pool.fetchval(
            """SELECT count(*) FROM events WHERE trace_id = $1 AND type = 'hop_updated'
               AND payload->>'from' = $2 AND payload->>'to' = $3""", trace_id, M, N)
        assert grew >= 1, f"trace {trace_id}: M was not woken again by Y1's money"
    # ...and the two end alike, hop by hop.
    assert _diff(ref_hops, late_hops) == []
    roles = {r[0]: r[1:] for r in await roles_of(db.pool, late)}
    assert roles[A] == ("followed", "flagged funds", 2), roles[A]
    assert roles[C][:2] == ("stopped", "max_depth"), roles[C]
    into_a = [h for h in late_hops.values() if h[1] == A]
    assert sorted((h[3], h[4]) for h in into_a) == [(50 * ETH, "followed"), (100 * ETH, "followed")], into_a
    assert [h[3] for h in late_hops.values() if h[1] == N] == [150 * ETH]  # all of M's flagged money, once Y1's came


# ------------------------------------------------------------------ max_hops: what is guaranteed


async def test_max_hops_keeps_only_true_hops_and_stops_near_the_cap(
    db: Database, served: dict[int, tuple[Scenario, EvmChain]]
) -> None:
    # Which hops survive the cap depends on which addresses the workers expanded before the count
    # reached it. Guaranteed whatever the crew: the trace says it hit the limit, holds at least
    # max_hops hops and at most what the batches in flight when it was reached could add, and
    # every hop it holds is a hop of the uncapped trace (same transfer) carrying no more.
    sc, client = served[12]
    full_id = await trace_with(db.pool, client, sc.chain, sc.seeds, {}, workers=1, batch_size=256)
    full = _key(await hops_of(db.pool, full_id))
    out_degree: dict[str, int] = {}
    for h in full.values():
        out_degree[h[0]] = out_degree.get(h[0], 0) + 1
    cap = 30
    assert len(full) > 3 * cap
    for workers, batch in CREWS:
        tid = await trace_with(db.pool, client, sc.chain, sc.seeds, {"max_hops": cap}, workers=workers,
                               batch_size=batch)
        hops = _key(await hops_of(db.pool, tid))
        assert await db.pool.fetchval("SELECT hop_limit_reached FROM traces WHERE id = $1", tid)
        in_flight = sum(sorted(out_degree.values(), reverse=True)[: workers * batch])
        assert cap <= len(hops) < cap + in_flight, (workers, batch, len(hops))
        assert set(hops) <= set(full)
        for t, h in hops.items():
            assert h[:3] == full[t][:3] and h[3] <= full[t][3], (t, h, full[t])
        # The frontier left when the cap was reached is stopped, and the hops into it say so.
        stopped = {r[0] for r in await roles_of(db.pool, tid) if r[2] == "max_hops"}
        assert stopped and all(h[4] != "followed" for h in hops.values() if h[1] in stopped)
