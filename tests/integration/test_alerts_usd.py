"""Subscriptions' `min_usd` over real HTTP: hop events are priced when their hops are committed
(engine/event_usd.py, feeds read by the worker while a subscription filters on dollars), the fan-out
keeps those below the threshold from the subscription, and those whose price is unknown (a token
with no feed) are delivered all the same, with usd null."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal, localcontext
from typing import Any

import pytest
import pytest_asyncio

from tests.alerts_support import LOOPBACK, Receiver, delivering, receiver, wait_until
from tests.api_support import Api, conforms, running_api
from tracer.api.context import Settings
from tracer.api.handlers.alerts import ALERTS
from tracer.chains import feeds
from tracer.chains.evm import EvmChain
from tracer.demo import load_scenario_labels
from tracer.devchain.prices import PricePath, paths_for
from tracer.devchain.scenario import Scenario, ScenarioParams, generate
from tracer.domain.transfers import NATIVE
from tracer.engine.dollars import trace_dollars
from tracer.store import prices as price_store
from tracer.store.db import Database

pytestmark = pytest.mark.asyncio(loop_scope="session")

HOP_TYPES = ("hop_added", "hop_updated")


@pytest.fixture(scope="module")
def case() -> Scenario:
    return generate(ScenarioParams.for_size(400, seed=11, services=True))


@pytest.fixture(scope="module")
def paths(case: Scenario) -> list[PricePath]:
    ts = [case.genesis_time] + [b.timestamp for b in case.blocks]
    return paths_for(case.chain, ts[0], ts[-1], seed=11, tokens=[t.address for t in case.tokens])


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def api(db: Database, case: Scenario, paths: list[PricePath], devchain_factory: Any) -> AsyncIterator[Api]:
    node = await devchain_factory(case, prices=paths)
    client = EvmChain(node.url, chain=case.chain, expected_chain_id=case.chain_id)
    await client.connect()
    # Tokens keep no feed (the devchain's are at made-up addresses, so not at par either): their
    # hops have no price, and still reach every subscription. ETH is read from its feed.
    priced = [p for p in paths if p.asset == NATIVE]
    await load_scenario_labels(db.pool, case)
    async with db.pool.acquire() as conn:
        for p in priced:
            await price_store.register_feed(conn, feeds.Feed(p.chain, p.asset, p.feed_chain, p.feed, p.pair,
                                                             "test: devchain price path"))
    try:
        async with running_api(db, {case.chain: client}, Settings(workers=2, worker_lease_seconds=10.0)) as a:
            a.app[ALERTS].url_policy = LOOPBACK
            yield a
    finally:
        await client.close()


async def _stream(api: Api, sid: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    after = 0
    while True:
        _, page, _ = await api.call("GET", f"/v1/subscriptions/{sid}/events?after={after}&limit=500", expect=200)
        conforms("event-page", page)
        items += page["items"]
        if page["next_after"] == after:
            return items
        after = page["next_after"]


THRESHOLDS = ("0", "1000", "50000", "1000000.50")
WEBHOOK_MIN = "50000"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def rx() -> AsyncIterator[Receiver]:
    async with receiver() as r:
        yield r


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def traced(api: Api, db: Database, case: Scenario, rx: Receiver) -> dict[str, Any]:
    """The case traced with subscriptions made before it: one per threshold, one without, and a
    webhook over the middle threshold (fanned out by the sequencer, posted by a delivery worker)."""
    rx.secrets["/rich"] = "r" * 24
    _, hook, _ = await api.call("POST", "/v1/subscriptions", expect=201, json={
        "url": rx.url("/rich"), "secret": "r" * 24, "min_usd": WEBHOOK_MIN})
    subs = {}
    for t in THRESHOLDS:
        _, sub, _ = await api.call("POST", "/v1/subscriptions", expect=201,
                                   json={"delivery": "stream", "min_usd": t, "name": f"over {t}"})
        conforms("subscription", sub)
        assert sub["min_usd"] == f"{Decimal(t):.2f}"
        subs[t] = sub["id"]
    _, everything, _ = await api.call("POST", "/v1/subscriptions", expect=201, json={"delivery": "stream"})
    assert everything["min_usd"] is None
    async with delivering(db):
        done = await api.run_trace({"chain": case.chain, "seeds": case.seeds, "policy": {"max_depth": 8}},
                                   tries=1200)
        await wait_until(lambda: _all_delivered(db, hook["id"]), what="the webhooks")
    return {"trace": done, "subs": subs, "everything": everything, "hook": hook}


async def _all_delivered(db: Database, sid: int) -> bool:
    return not await db.pool.fetchval(
        """SELECT EXISTS (SELECT 1 FROM events WHERE seq IS NULL)
               OR EXISTS (SELECT 1 FROM deliveries WHERE subscription_id = $1 AND state <> 'delivered')""", sid)


async def test_min_usd_keeps_hop_events_below_it_and_delivers_unpriced_ones(
        api: Api, db: Database, traced: dict[str, Any], rx: Receiver) -> None:
    done, subs, everything = traced["trace"], traced["subs"], traced["everything"]
    async with db.pool.acquire() as conn:
        rows = await conn.fetch("SELECT seq, type, payload->>'usd' AS usd FROM events "
                                "WHERE trace_id = $1 AND seq IS NOT NULL", done["id"])
    hops = {int(r["seq"]): (Decimal(r["usd"]) if r["usd"] is not None else None) for r in rows
            if r["type"] in HOP_TYPES}
    others = {int(r["seq"]) for r in rows if r["type"] not in HOP_TYPES}
    priced = [v for v in hops.values() if v is not None]
    # The worker priced the events at commit (feeds read first), except the token without a feed.
    assert len(priced) > 10 and any(v is None for v in hops.values())
    all_seqs = {e["id"] for e in await _stream(api, everything["id"]) if e["trace_id"] == done["id"]}
    assert all_seqs == set(hops) | others
    cut_both_ways = False
    for t, sid in subs.items():
        got = await _stream(api, sid)
        seqs = {e["id"] for e in got if e["trace_id"] == done["id"]}
        want = {s for s, v in hops.items() if v is None or v >= Decimal(t)}
        assert seqs == want | others, t
        for e in got:
            if e["type"] in HOP_TYPES and e["trace_id"] == done["id"]:
                conforms("webhook_event", e)
                v = hops[e["id"]]
                assert (e["hop"]["usd"] is None) == (v is None) or v is None  # unknown at commit: priced since, or not
                if v is not None:
                    assert Decimal(e["hop"]["usd"]) == v
        cut_both_ways |= any(v is not None and v < Decimal(t) for v in hops.values()) and any(
            v is not None and v >= Decimal(t) for v in hops.values())
    assert cut_both_ways  # some threshold kept events from its subscription and let others through
    # The webhook: the sequencer's fan-out applied the same rule, and the receiver got exactly those.
    posted = [r.event for r in rx.delivered("/rich")]
    assert all(r.valid for r in rx.requests if r.path == "/rich")
    want = {s for s, v in hops.items() if v is None or v >= Decimal(WEBHOOK_MIN)} | others
    assert {e["id"] for e in posted if e["trace_id"] == done["id"]} == want
    assert any(v is not None and v < Decimal(WEBHOOK_MIN) for v in hops.values())


async def test_tokens_without_a_feed_take_the_rate_of_the_swaps_the_trace_saw(
        db: Database, case: Scenario, paths: list[PricePath], traced: dict[str, Any]) -> None:
    tid = traced["trace"]["id"]
    eth = next(p for p in paths if p.asset == NATIVE)
    d = await trace_dollars(db.pool, tid)
    async with db.pool.acquire() as conn:
        hops = await conn.fetch(
            """SELECT h.transfer_id, h.asset, h.amount, h.reason, h.from_addr, h.to_addr, t.tx_hash, t.chain,
                      t.block_number, t.block_time, t.decimals
               FROM hops h JOIN transfers t ON t.id = h.transfer_id WHERE h.trace_id = $1""", tid)
        # By hand, from the chain's own transfers and the generator's ETH prices: each swap of
        # tokens for ETH (or back) sets the token's price at its block.
        rates: dict[tuple[str, int], Decimal] = {}
        for h in hops:
            if h["reason"] != "swap":
                continue
            for wallet in (h["from_addr"], h["to_addr"]):
                legs = await conn.fetch("""SELECT from_addr, to_addr, asset, amount FROM transfers
                                           WHERE chain = $1 AND tx_hash = $2""", h["chain"], h["tx_hash"])
                paid = [r for r in legs if r["from_addr"] == wallet]
                got = [r for r in legs if r["to_addr"] == wallet and r["asset"] not in {p["asset"] for p in paid}]
                tokens = {r["asset"] for r in paid + got} - {NATIVE}
                eth_legs = [r for r in paid + got if r["asset"] == NATIVE]
                if not paid or not got or len(tokens) != 1 or not eth_legs:
                    continue
                token = tokens.pop()
                with localcontext(prec=100):
                    usd = sum(Decimal(int(r["amount"])).scaleb(-18) for r in eth_legs) * eth.usd_at(h["block_time"])
                    units = sum(Decimal(int(r["amount"])).scaleb(-case.token(token).decimals)
                                for r in paid + got if r["asset"] == token)
                    rates[(token, int(h["block_number"]))] = usd / units
    assert rates, "the scenario swaps tokens for ETH"
    swapped = [h for h in hops if d.values[h["transfer_id"]].source == "swap"]
    assert swapped and all(h["asset"] != NATIVE for h in swapped)
    for h in swapped:
        v = d.values[h["transfer_id"]]
        at = (h["asset"], int(h["block_number"]))
        if at in rates:  # a hop at its swap's block: that swap's rate exactly
            assert v.price == rates[at] and f"block {h['block_number']}" in v.detail
        else:  # elsewhere: the rate of one of the swaps the trace saw of that token
            assert v.price in {r for (a, _), r in rates.items() if a == h["asset"]}
        with localcontext(prec=100):
            assert v.usd == Decimal(int(h["amount"])).scaleb(-case.token(h["asset"]).decimals) * v.price
    # Swapped tokens, not swapped ones, got a rate: hops of other tokens stay unknown, never 0.
    swapped_tokens = {a for a, _ in rates}
    for h in hops:
        v = d.values[h["transfer_id"]]
        if h["asset"] != NATIVE and h["asset"] not in swapped_tokens:
            assert v.usd is None


@pytest.mark.parametrize("bad", ["-1", "abc", "1e3", True, [], {"usd": 1}, "1.234", "10000000000000000", -5])
async def test_min_usd_is_checked(api: Api, bad: Any) -> None:
    status, body, _ = await api.call("POST", "/v1/subscriptions", json={"delivery": "stream", "min_usd": bad})
    assert status == 400 and body["field"] == "min_usd", body
