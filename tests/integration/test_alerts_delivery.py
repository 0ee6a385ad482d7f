"""Webhook delivery end to end: real Postgres, real workers, a real aiohttp receiver on 127.0.0.1.

Every event delivered once a receiver accepts it, signed, in order per trace, across two competing
delivery workers; a receiver that is down for a while gets everything when it is back; one that
answers 500 forever ends in dead-letter, and replays through the API; a slow receiver does not
hold up the others; a dead worker's lease is taken over.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tests.alerts_support import LOOPBACK, delivering, quick_settings, receiver, wait_until
from tests.api_support import running_api
from tracer.alerts import subscriptions as subs
from tracer.api.handlers.alerts import ALERTS
from tracer.api.openapi import validator
from tracer.chains.evm import EvmChain
from tracer.demo import load_scenario_labels
from tracer.devchain.scenario import Scenario
from tracer.engine.service import create_trace
from tracer.store import deliveries, outbox, subscriptions
from tracer.store import traces as trace_store
from tracer.store.db import Database
from tracer.workers.trace import Worker, WorkerSettings

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client(small_scenario: Scenario, devchain_factory: Any) -> AsyncIterator[EvmChain]:
    chain = await devchain_factory(small_scenario)
    c = EvmChain(chain.url, chain=small_scenario.chain, expected_chain_id=small_scenario.chain_id)
    await c.connect()
    await c.close()
    c = EvmChain(chain.url, chain=small_scenario.chain, expected_chain_id=small_scenario.chain_id)
    await c.connect()
    yield c
    await c.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def labelled(db: Database, small_scenario: Scenario) -> Database:
    await load_scenario_labels(db.pool, small_scenario)
    return db


@pytest_asyncio.fixture(autouse=True, loop_scope="session")
async def _fresh_subscriptions(db: Database) -> AsyncIterator[None]:
    """Each test's receivers live only as long as the test: so do its subscriptions."""
    yield
    await db.pool.execute("DELETE FROM subscriptions")


async def _subscribe(db: Database, url: str, secret: str, **body: Any) -> int:
    created = await subs.create(db.pool, {}, {"url": url, "secret": secret, **body}, url_policy=LOOPBACK)
    return created.id


async def _synthetic_trace(db: Database) -> int:
    """A trace row to hang events on (cancelled at once, so no worker ever picks it up)."""
    async with db.pool.acquire() as conn:
        tid = await trace_store.insert_trace(conn, chain="ethereum", seeds=["0x" + "aa" * 20], policy={},
                                             label="synthetic", from_block=0, to_block=0)
        await trace_store.cancel_trace(conn, tid)
        while await outbox.sequence_round(conn):  # numbered now: subscriptions made next start after
            pass
    return tid


def _hop(i: int) -> dict[str, Any]:
    return {"transfer_id": i, "tx_hash": "0x" + f"{i:064x}", "position": "tx", "block_number": 100 + i,
            "block_time": 1_700_000_000 + 12 * i, "from": "0x" + "11" * 20, "to": "0x" + f"{i:040x}",
            "asset": "native", "amount": str(10**18 + i), "transfer_amount": str(2 * 10**18), "symbol": None,
            "decimals": None, "depth": 1, "kind": "native", "status": "followed", "reason": "flagged funds",
            "share": 0.5, "to_entity": None, "to_category": None}


async def _emit(db: Database, trace_id: int, n: int, start: int = 0) -> None:
    """n hop events, committed one transaction each, as workers would."""
    for i in range(start, start + n):
        async with db.pool.acquire() as conn, conn.transaction():
            await trace_store.insert_events(conn, [(trace_id, "hop_added", _hop(i))])


async def _expected(db: Database, trace_id: int | None, after: int) -> list[int]:
    """Event ids (seqs) of a trace (None: all) after `after`, once every event is numbered."""
    await wait_until(lambda: _all_numbered(db), what="the sequencer")
    rows = await db.pool.fetch(
        "SELECT seq FROM events WHERE ($1::bigint IS NULL OR trace_id = $1) AND seq > $2 ORDER BY seq",
        trace_id, after)
    return [r["seq"] for r in rows]


async def _all_numbered(db: Database) -> bool:
    return not await db.pool.fetchval("SELECT EXISTS (SELECT 1 FROM events WHERE seq IS NULL)")


async def _start_seq(db: Database, sid: int) -> int:
    return int(await db.pool.fetchval("SELECT start_seq FROM subscriptions WHERE id = $1", sid))


async def _counts(db: Database, sid: int) -> dict[str, int]:
    async with db.pool.acquire() as conn:
        return (await subscriptions.delivery_counts(conn, [sid]))[sid]


async def test_every_event_is_delivered_signed_and_in_order_per_trace(
    labelled: Database, client: EvmChain, small_scenario: Scenario
) -> None:
    db = labelled
    async with receiver() as rx, delivering(db, count=2):  # two workers compete for the queues
        rx.secrets = {"/all": "s" * 20, "/one": "t" * 20, "/exits": "u" * 20}
        all_sid = await _subscribe(db, rx.url("/all"), "s" * 20)
        exits_sid = await _subscribe(db, rx.url("/exits"), "u" * 20, event_types=["exit_reached", "hop_added"],
                                     categories=["exchange", "deposit_address", "hot_wallet"])
        t1 = await create_trace(db.pool, client, chain=small_scenario.chain, seeds=small_scenario.seeds, policy={})
        t2 = await create_trace(db.pool, client, chain=small_scenario.chain, seeds=small_scenario.seeds,
                                policy={"max_depth": 3, "taint_model": "poison"})
        await _subscribe(db, rx.url("/one"), "t" * 20, trace_id=t1, from_start=True)
        stop = asyncio.Event()
        quick = WorkerSettings(idle_sleep=0.05)
        workers = [Worker(db.pool, {small_scenario.chain: client}, name=f"w{i}", settings=quick) for i in range(2)]
        tasks = [asyncio.create_task(w.run(stop)) for w in workers]
        try:
            for t in (t1, t2):
                await wait_until(lambda t=t: _status_in(db, t, ("done", "failed")), timeout=120, what=f"trace {t}")
        finally:
            stop.set()
            await asyncio.gather(*tasks)
        expected_all = await _expected(db, None, await _start_seq(db, all_sid))
        expected_one = await _expected(db, t1, 0)
        await rx.wait(lambda: set(rx.ids("/all")) >= set(expected_all) and set(rx.ids("/one")) >= set(expected_one),
                      timeout=60, what="every event")
        await wait_until(lambda: _nothing_pending(db, exits_sid), what="the filtered queue")

    assert await _status_in(db, t1, ("done",)) and await _status_in(db, t2, ("done",))
    assert sorted(rx.ids("/all")) == expected_all, "each event exactly once (no failures, so no retries)"
    assert sorted(rx.ids("/one")) == expected_one
    types = {r.event["type"] for r in rx.delivered("/one")}
    assert {"trace_created", "trace_started", "hop_added", "trace_finished"} <= types
    assert all(r.valid for r in rx.requests), "every signature verifies"
    schema = validator("webhook_event")
    per_trace: dict[int, list[int]] = defaultdict(list)
    for r in rx.delivered("/all"):
        body = r.event
        assert not list(schema.iter_errors(body))
        assert r.headers["X-Tracer-Event-Id"] == str(body["id"]) and r.headers["X-Tracer-Event-Type"] == body["type"]
        assert body["subscription_id"] == all_sid
        per_trace[body["trace_id"]].append(body["id"])
    assert set(per_trace) == {t1, t2}
    for ids in per_trace.values():
        assert ids == sorted(ids), "order per trace preserved"
    # The filtered subscription got exactly the events its filter matches.
    exits = [r.event for r in rx.delivered("/exits")]
    assert exits and all(e["type"] in ("exit_reached", "hop_added") for e in exits)
    assert all((e.get("data") or {}).get("category") in ("exchange", "deposit_address", "hot_wallet")
               or (e.get("hop") or {}).get("to_category") in ("exchange", "deposit_address", "hot_wallet")
               for e in exits)
    assert any(e["type"] == "exit_reached" for e in exits) and any(e["type"] == "hop_added" for e in exits)
    # Replaying the hop events rebuilds the trace's hops and amounts exactly.
    last: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rx.delivered("/one"):
        if r.event["type"] in ("hop_added", "hop_updated"):
            last[(r.event["hop"]["tx_hash"], r.event["hop"]["position"])] = r.event["hop"]
    rows = await db.pool.fetch(
        """SELECT t.tx_hash, t.position, h.amount FROM hops h JOIN transfers t ON t.id = h.transfer_id
           WHERE h.trace_id = $1 AND h.reason <> 'below_threshold'""", t1)
    hops = {(r["tx_hash"], r["position"]): str(r["amount"]) for r in rows}
    assert {k: h["amount_raw"] for k, h in last.items()} == hops


async def _status_in(db: Database, trace_id: int, statuses: tuple[str, ...]) -> bool:
    return await db.pool.fetchval("SELECT status FROM traces WHERE id = $1", trace_id) in statuses


async def _nothing_pending(db: Database, sid: int) -> bool:
    return await _all_numbered(db) and (await _counts(db, sid))["pending"] == 0


async def test_a_receiver_down_for_a_while_gets_everything_when_back(db: Database) -> None:
    tid = await _synthetic_trace(db)
    async with receiver() as rx:
        rx.secrets["/late"] = "l" * 20
        sid = await _subscribe(db, rx.url("/late"), "l" * 20, trace_id=tid)
        await rx.stop()  # the receiver goes down before anything is sent
        async with delivering(db, quick_settings(backoff_max=0.3)) as (worker,):
            await asyncio.gather(_emit(db, tid, 15), _emit(db, tid, 15, start=100))  # two writers at once
            await wait_until(lambda: worker.stats.failed >= 5, what="failed attempts")
            await asyncio.sleep(1.0)  # down for a while
            await rx.start()  # back, on the same port
            expected = await _expected(db, tid, await _start_seq(db, sid))
            await rx.wait(lambda: set(rx.ids("/late")) >= set(expected), what="the backlog")
            await wait_until(lambda: _nothing_pending(db, sid), what="an empty queue")
    ids = rx.ids("/late")
    assert sorted(set(ids)) == expected and len(expected) == 30
    assert ids == sorted(ids), "the backlog arrives in order"
    assert all(r.valid for r in rx.requests)
    assert worker.stats.dead == 0


async def test_a_receiver_failing_forever_ends_in_dead_letter_and_replays(db: Database) -> None:
    tid = await _synthetic_trace(db)
    async with receiver() as rx, running_api(db) as api, delivering(db, quick_settings(max_attempts=3)) as (worker,):
        api.app[ALERTS].url_policy = LOOPBACK
        rx.behaviour["/dead"] = "fail"
        rx.secrets["/dead"] = "d" * 20
        _, sub, _ = await api.call("POST", "/v1/subscriptions", json={
            "url": rx.url("/dead"), "secret": "d" * 20, "trace_id": tid, "name": "always 500"}, expect=201)
        assert "secret" in sub and sub["delivery"] == "webhook"
        sid = sub["id"]
        await _emit(db, tid, 6)
        expected = await _expected(db, tid, sub["start_after"])

        async def all_dead() -> bool:
            _, body, _ = await api.call("GET", f"/v1/subscriptions/{sid}", expect=200)
            return bool(body["deliveries"] == {"pending": 0, "delivered": 0, "dead": 6})

        await wait_until(all_dead, what="dead-letter")
        _, page, _ = await api.call("GET", f"/v1/subscriptions/{sid}/deliveries?state=dead", expect=200)
        assert [d["event_id"] for d in page["items"]] == expected
        assert page["items"][0]["attempts"] == 3 and page["items"][0]["last_status"] == 500
        assert "queued behind" in page["items"][1]["last_error"]  # the rest of the queue moved with it
        tries = [r for r in rx.requests if r.path == "/dead"]
        assert len(tries) == 3 and {r.event["id"] for r in tries} == {expected[0]}  # order: nothing overtook it
        _, sub_now, _ = await api.call("GET", f"/v1/subscriptions/{sid}", expect=200)
        assert sub_now["last_error"] == "HTTP 500" and sub_now["last_failure_at"]

        rx.behaviour["/dead"] = "ok"  # the receiver is fixed
        _, replayed, _ = await api.call("POST", f"/v1/subscriptions/{sid}/replay", expect=200)
        assert replayed == {"replayed": 6}
        await rx.wait(lambda: rx.ids("/dead") == expected, what="the replay")
        await wait_until(lambda: _nothing_pending(db, sid), what="an empty queue")
        _, again, _ = await api.call("POST", f"/v1/subscriptions/{sid}/replay", expect=200)
        assert again == {"replayed": 0}
        _, audit, _ = await api.call("GET", "/v1/audit?action=subscription.replay", expect=200)
        assert audit["items"][0]["target"] == f"subscription:{sid}"
    assert worker.stats.dead == 1


async def test_a_slow_receiver_does_not_hold_up_the_others(db: Database) -> None:
    tid = await _synthetic_trace(db)
    async with receiver() as rx:
        rx.behaviour["/slow"] = 5.0  # answers after the 1 s timeout, every time
        slow = await _subscribe(db, rx.url("/slow"), "x" * 20, trace_id=tid)
        fast = [await _subscribe(db, rx.url(f"/fast{i}"), "y" * 20, trace_id=tid) for i in range(3)]
        async with delivering(db, quick_settings(concurrency=4, request_timeout=1.0)):
            started = time.monotonic()
            await _emit(db, tid, 20)
            expected = await _expected(db, tid, await _start_seq(db, fast[0]))
            await rx.wait(lambda: all(rx.ids(f"/fast{i}") == expected for i in range(3)), timeout=15,
                          what="the fast receivers")
            took = time.monotonic() - started
            assert (await _counts(db, slow))["delivered"] == 0
            async with db.pool.acquire() as conn:
                await subscriptions.delete_subscription(conn, slow)  # stop retrying it
    assert took < 8, f"fast receivers waited {took:.1f}s behind a slow one"


async def test_a_dead_workers_lease_is_taken_over(db: Database) -> None:
    tid = await _synthetic_trace(db)
    async with receiver() as rx:
        sid = await _subscribe(db, rx.url("/orphan"), "z" * 20, trace_id=tid)
        await _emit(db, tid, 3)
        async with db.pool.acquire() as conn:  # a worker claims the queue, then dies without a word
            await outbox.sequence_round(conn)
            claimed = await deliveries.claim_subscriptions(conn, "doomed-worker", 100, 1.5)
        expected = await _expected(db, tid, await _start_seq(db, sid))
        assert [c.id for c in claimed] == [sid]
        async with delivering(db):
            await asyncio.sleep(0.5)
            assert rx.ids("/orphan") == [], "nobody touches a leased queue"
            await rx.wait(lambda: rx.ids("/orphan") == expected, what="the takeover")


async def test_subscriptions_held_past_half_their_lease_are_given_back_untouched(db: Database) -> None:
    """A worker leases more subscriptions than it has slots (claims are rare and large); one that
    waits for a slot past half its lease is given back without a request, so no request can run
    past the lease, and the next claim delivers it: each event exactly once per subscription."""
    tid = await _synthetic_trace(db)
    async with receiver() as rx:
        paths = [f"/held{i}" for i in range(5)]
        for p in paths:
            rx.behaviour[p] = 0.6  # five in a row on one slot take 3 s: longer than half the lease
        sids = [await _subscribe(db, rx.url(p), "h" * 20, trace_id=tid) for p in paths]
        settings = quick_settings(concurrency=1, held=10, claim_max=10, lease_seconds=3.0, request_timeout=1.0)
        async with delivering(db, settings) as (worker,):
            await _emit(db, tid, 1)
            expected = await _expected(db, tid, await _start_seq(db, sids[0]))
            await rx.wait(lambda: all(rx.ids(p) == expected for p in paths), timeout=20, what="every subscription")
            assert worker.stats.claims > len(sids), "some were given back and claimed again"
            assert worker.stats.attempts == len(sids) and worker.stats.failed == 0
    assert all(len(rx.delivered(p)) == 1 for p in paths)


async def test_a_backlog_does_not_keep_a_slot_from_the_others(db: Database) -> None:
    """One slot, one subscription with a backlog of four events and one with a single event,
    both leased by one claim: slots go one delivery at a time, first come first served, so the
    single event is not sent after the whole backlog (a block's event reaches every subscription
    before anyone's next ones); each queue stays in order."""
    backlog, single = await _synthetic_trace(db), await _synthetic_trace(db)
    async with receiver() as rx:
        a = await _subscribe(db, rx.url("/backlog"), "b" * 20, trace_id=backlog)
        b = await _subscribe(db, rx.url("/single"), "s" * 20, trace_id=single)
        await _emit(db, backlog, 4)
        await _emit(db, single, 1, start=4)
        async with db.pool.acquire() as conn:  # numbered and fanned out before any worker runs
            while await outbox.sequence_round(conn):
                pass
        expected_a = await _expected(db, backlog, await _start_seq(db, a))
        expected_b = await _expected(db, single, await _start_seq(db, b))
        settings = quick_settings(concurrency=1, held=10, claim_max=10)
        async with delivering(db, settings):
            await rx.wait(lambda: rx.ids("/backlog") == expected_a and rx.ids("/single") == expected_b,
                          what="both queues")
    order = [r.path for r in rx.requests]
    assert order.index("/single") < len(order) - 1 - order[::-1].index("/backlog"), order
