"""Live following end to end: a running devchain grows and reorganises under a watching trace.

Real pieces throughout: the devchain over JSON-RPC, Postgres, trace workers, the monitor, a delivery
worker, the API with its SSE stream, and an aiohttp webhook receiver on 127.0.0.1. Blocks appended
to the chain become hops that arrive as webhooks and on the stream once confirmed (not before);
a reorg deeper than the confirmation depth retracts the hops it removed, on both.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from tests.alerts_support import LOOPBACK, Receiver, delivering, receiver, wait_until
from tests.api_support import Api, running_api
from tracer.alerts.monitor import Monitor, MonitorSettings
from tracer.api.context import Settings
from tracer.api.handlers.alerts import ALERTS
from tracer.chains.evm import EvmChain
from tracer.devchain.chain import Chain
from tracer.devchain.scenario import KIND_NATIVE, ScenarioTx
from tracer.domain.labels import Label
from tracer.store import labels as label_store
from tracer.store.db import Database
from tracer.workers.trace import Worker, WorkerSettings

pytestmark = pytest.mark.asyncio(loop_scope="session")

ETH = 10**18
SEED = "0x" + "5e" * 20  # the thief
A, B, C = "0x" + "a1" * 20, "0x" + "b2" * 20, "0x" + "c3" * 20
EXCHANGE = "0x" + "ec" * 20  # a labelled exchange wallet
WATCHED = "0x" + "0f" * 20  # on a sanctions list, quiet so far
CONFIRMATIONS = 2


def pay(sender: str, to: str, eth: float) -> ScenarioTx:
    return ScenarioTx(KIND_NATIVE, sender, to, int(eth * ETH))


@pytest.fixture(scope="module")
def chain() -> Chain:
    c = Chain(chain_id=1337, genesis_balances={SEED: {"native": 100 * ETH}, WATCHED: {"native": 50 * ETH}})
    c.append_block([pay(SEED, A, 10)])  # block 1: the theft moves on
    for _ in range(5):
        c.append_block([])
    return c


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client(chain: Chain, devchain_factory: Any) -> AsyncIterator[EvmChain]:
    server = await devchain_factory(chain)
    c = EvmChain(server.url, chain="ethereum", expected_chain_id=1337)
    await c.connect()
    yield c
    await c.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def live(db: Database, client: EvmChain) -> AsyncIterator[tuple[Api, Receiver, Monitor]]:
    """Everything running: API (with the SSE hub), workers, monitor, delivery worker, receiver."""
    async with db.pool.acquire() as conn:
        await label_store.upsert_labels(conn, [Label("ethereum", EXCHANGE, "Binance", "exchange", "test")])
    stop = asyncio.Event()
    chains = {"ethereum": client}
    workers = [Worker(db.pool, chains, name=f"live-{i}", settings=WorkerSettings(idle_sleep=0.05)) for i in range(2)]
    monitor = Monitor(db.pool, chains, settings=MonitorSettings(poll=0.05))
    tasks = [asyncio.create_task(w.run(stop)) for w in workers] + [asyncio.create_task(monitor.run(stop))]
    async with receiver() as rx, delivering(db), running_api(db, chains, Settings()) as api:
        api.app[ALERTS].url_policy = LOOPBACK
        api.app[ALERTS].poll = 1.0
        try:
            yield api, rx, monitor
        finally:
            stop.set()
            await asyncio.gather(*tasks)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def watching(live: tuple[Api, Receiver, Monitor], db: Database) -> tuple[int, int]:
    """The thief's trace, watching with CONFIRMATIONS blocks, and a webhook subscription to it from
    its start (path /trace): (trace id, subscription id). Module-wide, so each test that follows the
    trace as the chain grows or reorganises also runs on its own."""
    api, rx, _ = live
    _, trace, _ = await api.call("POST", "/v1/traces", json={
        "seeds": [SEED], "policy": {"watch": True, "confirmations": CONFIRMATIONS}}, expect=201)
    tid = trace["id"]
    assert trace["policy"]["watch"] is True
    await wait_until(lambda: _status(db, tid, "watching"), what="the historical pass")
    rx.secrets["/trace"] = "w" * 24
    _, sub, _ = await api.call("POST", "/v1/subscriptions", json={
        "url": rx.url("/trace"), "secret": "w" * 24, "trace_id": tid, "from_start": True}, expect=201)
    return tid, sub["id"]


class SseClient:
    """Reads an SSE stream in the background, as EventSource would."""

    def __init__(self, session: aiohttp.ClientSession, url: str, last_id: int | None = None) -> None:
        self.session, self.url, self.last_id = session, url, last_id
        self.events: list[dict[str, Any]] = []
        self.status: int | None = None
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        headers = {"Accept": "text/event-stream"}
        if self.last_id is not None:
            headers["Last-Event-ID"] = str(self.last_id)
        async with self.session.get(self.url, headers=headers) as resp:
            self.status = resp.status
            assert resp.headers["Content-Type"].startswith("text/event-stream")
            event_id = None
            async for raw in resp.content:
                line = raw.decode().rstrip("\n")
                if line.startswith("id: "):
                    event_id = int(line[4:])
                elif line.startswith("data: "):
                    body = json.loads(line[6:])
                    assert body["id"] == event_id
                    self.events.append(body)
                    self.last_id = event_id

    def of(self, type_: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == type_]

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


def hops_to(events: list[dict[str, Any]], type_: str, to: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == type_ and e["hop"]["to"] == to]


async def confirm(chain: Chain, txs: list[ScenarioTx]) -> int:
    """Mine `txs` in a block, then enough empty blocks to confirm it; returns its number."""
    block = chain.append_block(txs).number
    for _ in range(CONFIRMATIONS):
        chain.append_block([])
    return block


async def test_new_blocks_arrive_as_webhooks_and_on_the_stream_once_confirmed(
    live: tuple[Api, Receiver, Monitor], watching: tuple[int, int], chain: Chain, db: Database
) -> None:
    api, rx, _ = live
    tid, sid = watching
    stream = SseClient(api.session, f"{api.base}/v1/traces/{tid}/events")
    try:
        await wait_until(lambda: hops_to(stream.events, "hop_added", A), what="history on the stream")
        assert stream.of("trace_created") and stream.of("trace_watching")

        # A -> B: mined, but not yet confirmed: nothing may be announced.
        chain.append_block([pay(A, B, 4)])
        chain.append_block([])
        await asyncio.sleep(0.6)
        assert not hops_to(stream.events, "hop_added", B) and not hops_to(_bodies(rx, "/trace"), "hop_added", B)
        chain.append_block([])  # now it has its confirmations
        await wait_until(lambda: hops_to(stream.events, "hop_added", B), what="the new hop on the stream")
        await rx.wait(lambda: bool(hops_to(_bodies(rx, "/trace"), "hop_added", B)), what="the new hop's webhook")
        hop = hops_to(stream.events, "hop_added", B)[0]["hop"]
        assert hop["from"] == A and hop["amount"] == "4" and hop["symbol"] == "ETH" and hop["status"] == "followed"

        # B -> exchange: an exit, announced as a hop into it and as exit_reached.
        block = await confirm(chain, [pay(B, EXCHANGE, 3)])
        await rx.wait(lambda: bool([e for e in _bodies(rx, "/trace") if e["type"] == "exit_reached"]),
                      what="exit_reached")
        into = hops_to(_bodies(rx, "/trace"), "hop_added", EXCHANGE)
        assert into and into[0]["hop"]["status"] == "exit" and into[0]["hop"]["to_entity"] == "Binance"
        assert into[0]["hop"]["block_number"] == block and into[0]["hop"]["to_category"] == "exchange"
        # B was woken at the depth the trace had reached it at, so its hop goes one deeper than A -> B.
        assert into[0]["hop"]["depth"] == hop["depth"] + 1
        await wait_until(lambda: _status(db, tid, "watching"), what="caught up again")
        await wait_until(lambda: len(stream.of("exit_reached")) == 1, what="exit on the stream")

        # Every webhook is signed, in order, and the stream carried the same events.
        await wait_until(lambda: _all_delivered(db, sid), what="the queue")
        ids = [e["id"] for e in _bodies(rx, "/trace")]
        assert ids == sorted(ids) and all(r.valid for r in rx.requests if r.path == "/trace")
        await wait_until(lambda: {e["id"] for e in stream.events} >= set(ids), what="the stream to catch up")
    finally:
        await stream.close()
    # A client that reconnects with Last-Event-ID gets exactly what it missed.
    missed_from = ids[len(ids) // 2]
    resumed = SseClient(api.session, f"{api.base}/v1/traces/{tid}/events", last_id=missed_from)
    try:
        await wait_until(lambda: {e["id"] for e in resumed.events} >= {i for i in ids if i > missed_from},
                         what="the resumed stream")
        assert min(e["id"] for e in resumed.events) > missed_from
    finally:
        await resumed.close()


async def test_a_reorg_deeper_than_the_confirmations_retracts_the_hops_it_removed(
    live: tuple[Api, Receiver, Monitor], watching: tuple[int, int], chain: Chain, db: Database
) -> None:
    api, rx, monitor = live
    tid, _ = watching
    assert await _status(db, tid, "watching")
    stream = SseClient(api.session, f"{api.base}/v1/traces/{tid}/events")
    try:
        block = await confirm(chain, [pay(A, C, 2)])  # A -> C, confirmed and followed
        await wait_until(lambda: hops_to(stream.events, "hop_added", C), what="the hop to C")
        await rx.wait(lambda: bool(hops_to(_bodies(rx, "/trace"), "hop_added", C)), what="its webhook")
        await wait_until(lambda: _status(db, tid, "watching"), what="caught up")
        assert await _hops_into(db, tid, C) == 1

        # Replace the block with A -> C and the ones after it: deeper than the confirmation depth.
        depth = chain.head - block + 1
        assert depth > CONFIRMATIONS
        chain.reorg(depth, [[] for _ in range(depth + 1)])
        await wait_until(lambda: hops_to(stream.events, "hop_retracted", C), what="the retraction on the stream")
        await rx.wait(lambda: bool(hops_to(_bodies(rx, "/trace"), "hop_retracted", C)), what="its webhook")
        await rx.wait(lambda: any(e["type"] == "hops_retracted" for e in _bodies(rx, "/trace")), what="the summary")
        summary = [e for e in _bodies(rx, "/trace") if e["type"] == "hops_retracted"]
        assert summary and summary[-1]["data"]["fork_block"] == block - 1 and summary[-1]["data"]["count"] == 1
        retracted = hops_to(stream.events, "hop_retracted", C)[0]["hop"]
        assert retracted["from"] == A and retracted["amount"] == "2" and retracted["block_number"] == block
        assert await _hops_into(db, tid, C) == 0
        assert monitor.last["ethereum"].head >= chain.head - 1

        # The money moves again on the new chain: followed again, a new hop, no ghost of the old one.
        again = await confirm(chain, [pay(A, C, 2)])
        await wait_until(lambda: [e for e in hops_to(stream.events, "hop_added", C)
                                  if e["hop"]["block_number"] == again], what="the hop on the new chain")
        assert await _hops_into(db, tid, C) == 1
        await wait_until(lambda: _status(db, tid, "watching"), what="caught up")
        ids = [e["id"] for e in _bodies(rx, "/trace")]
        assert ids == sorted(ids)
    finally:
        await stream.close()


async def test_a_watchlist_starts_a_trace_on_the_first_movement(
    live: tuple[Api, Receiver, Monitor], chain: Chain, db: Database
) -> None:
    api, rx, _ = live
    rx.secrets["/watch"] = "v" * 24
    _, sub, _ = await api.call("POST", "/v1/subscriptions", json={
        "url": rx.url("/watch"), "secret": "v" * 24, "addresses": [WATCHED], "confirmations": CONFIRMATIONS,
        "event_types": ["hop_added", "exit_reached"]}, expect=201)
    assert sub["watch"] is True and sub["watch_trace_id"]
    wid = sub["watch_trace_id"]
    _, wtrace, _ = await api.call("GET", f"/v1/traces/{wid}", expect=200)
    assert wtrace["policy"]["watch"] and wtrace["seeds"] == [WATCHED]
    await wait_until(lambda: _status(db, wid, "watching"), what="the watchlist trace")
    assert not _bodies(rx, "/watch"), "nothing moved yet"
    await confirm(chain, [pay(WATCHED, B, 7)])
    await rx.wait(lambda: bool(hops_to(_bodies(rx, "/watch"), "hop_added", B)), what="the first movement")
    await confirm(chain, [pay(B, EXCHANGE, 1)])  # B is on the other trace too: both follow it
    await rx.wait(lambda: any(e["type"] == "exit_reached" for e in _bodies(rx, "/watch")), what="the exit")
    assert {e["trace_id"] for e in _bodies(rx, "/watch")} == {wid}
    # Unsubscribing stops the watch: its trace is cancelled.
    await api.call("DELETE", f"/v1/subscriptions/{sub['id']}", expect=204)
    await wait_until(lambda: _status(db, wid, "cancelled"), what="the cancelled watch")


def _bodies(rx: Receiver, path: str) -> list[dict[str, Any]]:
    return [r.event for r in rx.delivered(path)]


async def _status(db: Database, trace_id: int, status: str) -> bool:
    return bool(await db.pool.fetchval("SELECT status = $2 FROM traces WHERE id = $1", trace_id, status))


async def _hops_into(db: Database, trace_id: int, address: str) -> int:
    return int(await db.pool.fetchval("SELECT count(*) FROM hops WHERE trace_id = $1 AND to_addr = $2",
                                      trace_id, address))


async def _all_delivered(db: Database, sid: int) -> bool:
    return not await db.pool.fetchval(
        """SELECT EXISTS (SELECT 1 FROM events WHERE seq IS NULL)
               OR EXISTS (SELECT 1 FROM deliveries WHERE subscription_id = $1 AND state <> 'delivered')""", sid)
