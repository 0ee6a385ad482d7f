"""Pushed new heads (issue 22): the head watcher (tracer/chains/evm/heads.py) against the devchain's
WebSocket and against hostile servers, and the monitor stepping on a pushed head instead of its poll.

The monitors here poll every 30 s, so a trace extended within a few seconds of its confirming block
was extended because the node pushed the head; one whose node refuses the upgrade polls fast and
still follows. (The same watcher against Anvil: tests/acceptance/test_anvil_heads.py.)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import WSMsgType, web

from tests.alerts_support import wait_until
from tests.fixtures_chain import DevChainFactory, proxy, serving
from tracer.alerts.monitor import Monitor, MonitorSettings
from tracer.chains.evm import EvmChain
from tracer.chains.evm.heads import SUBSCRIBED, UNAVAILABLE, HeadSettings, HeadWatcher
from tracer.chains.urls import ws_url_for
from tracer.devchain.chain import Chain
from tracer.devchain.scenario import KIND_NATIVE, ScenarioTx
from tracer.engine.service import create_trace
from tracer.store import follow
from tracer.store.db import Database
from tracer.workers.trace import Worker, WorkerSettings

pytestmark = pytest.mark.asyncio(loop_scope="session")

ETH = 10**18
SEED, A, B, C = "0x" + "5e" * 20, "0x" + "a1" * 20, "0x" + "b2" * 20, "0x" + "c3" * 20
CONFIRMATIONS = 2
LONG_POLL = 30.0  # longer than every liveness bound below: only a pushed head can explain a step
FAST = HeadSettings(connect_timeout=1.0, backoff=0.05, backoff_max=0.2, heartbeat=5.0)


def pay(sender: str, to: str, eth: int) -> ScenarioTx:
    return ScenarioTx(KIND_NATIVE, sender, to, eth * ETH)


def fresh_chain() -> Chain:
    c = Chain(chain_id=1337, genesis_balances={SEED: {"native": 100 * ETH}})
    c.append_block([pay(SEED, A, 10)])
    for _ in range(CONFIRMATIONS + 2):
        c.append_block([])
    return c


class Collected:
    """A watcher's heads collected in the background."""

    def __init__(self, watcher: HeadWatcher) -> None:
        self.watcher = watcher
        self.numbers: list[int] = []
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for n in self.watcher.heads():
            self.numbers.append(n)

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


@contextlib.asynccontextmanager
async def collecting(url: str, settings: HeadSettings = FAST) -> AsyncIterator[Collected]:
    c = Collected(HeadWatcher(url, chain="ethereum", settings=settings))
    try:
        yield c
    finally:
        await c.close()


async def test_mined_blocks_arrive_as_numbers_in_order(devchain_factory: DevChainFactory) -> None:
    chain = fresh_chain()
    node = await devchain_factory(chain)
    ws_url = ws_url_for(node.url)
    assert ws_url is not None and ws_url.startswith("ws://")
    async with collecting(ws_url) as heads:
        await wait_until(lambda: heads.watcher.subscribed, timeout=10, what="the subscription")
        first = chain.head + 1
        for _ in range(5):
            chain.append_block([])
        await wait_until(lambda: len(heads.numbers) >= 5, timeout=10, what="five heads")
        assert heads.numbers == list(range(first, first + 5))
        # A reorg: the replacement chain's blocks come once it is complete, in order.
        chain.reorg(2, [[], [], []])
        await wait_until(lambda: len(heads.numbers) >= 8, timeout=10, what="the new chain's heads")
        assert heads.numbers[5:] == [first + 3, first + 4, first + 5] and heads.watcher.latest == chain.head
        assert heads.watcher.junk == 0 and node.server.heads_pushed == 8


async def test_the_devchain_answers_json_rpc_and_unsubscribes_over_the_socket(
        devchain_factory: DevChainFactory) -> None:
    import aiohttp

    chain = fresh_chain()
    node = await devchain_factory(chain)
    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url_for(node.url) or "") as ws:
        await ws.send_json([{"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber"},
                            {"jsonrpc": "2.0", "id": 2, "method": "eth_subscribe", "params": ["newHeads"]},
                            {"jsonrpc": "2.0", "id": 3, "method": "eth_subscribe", "params": ["logs", {}]}])
        answers = {a["id"]: a for a in await ws.receive_json(timeout=5)}
        assert answers[1]["result"] == hex(chain.head) and "error" in answers[3]
        sid = answers[2]["result"]
        chain.append_block([pay(A, B, 1)])
        note = await ws.receive_json(timeout=5)
        header = note["params"]["result"]
        assert note["method"] == "eth_subscription" and note["params"]["subscription"] == sid
        block = chain.blocks[chain.head]
        assert (header["number"], header["hash"], header["parentHash"], header["timestamp"]) == (
            hex(block.number), block.hash, block.parent_hash, hex(block.timestamp))
        await ws.send_json({"jsonrpc": "2.0", "id": 4, "method": "eth_unsubscribe", "params": [sid]})
        assert (await ws.receive_json(timeout=5))["result"] is True
        chain.append_block([])
        await ws.send_json({"jsonrpc": "2.0", "id": 5, "method": "eth_blockNumber"})
        assert (await ws.receive_json(timeout=5)) == {"jsonrpc": "2.0", "id": 5, "result": hex(chain.head)}


# ------------------------------------------------------------------------------ hostile servers

WsScript = Callable[[web.WebSocketResponse, int], Awaitable[None]]


@contextlib.asynccontextmanager
async def ws_server(script: WsScript, *, autoping: bool = True) -> AsyncIterator[tuple[str, list[int]]]:
    """A WebSocket server on 127.0.0.1 that runs `script(ws, connection_number)` per connection."""
    connections: list[int] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=autoping)
        await ws.prepare(request)
        connections.append(len(connections))
        with contextlib.suppress(Exception):
            await script(ws, len(connections) - 1)
        return ws

    app = web.Application()
    app.router.add_get("/", handle)
    runner = web.AppRunner(app, shutdown_timeout=0.2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    assert site._server is not None
    try:
        yield f"ws://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/", connections
    finally:
        await runner.cleanup()


async def _subscribed(ws: web.WebSocketResponse, sid: str = "0xabc") -> None:
    msg = await ws.receive()
    assert msg.type == WSMsgType.TEXT and json.loads(msg.data)["method"] == "eth_subscribe"
    await ws.send_str(json.dumps({"jsonrpc": "2.0", "id": 1, "result": sid}))


def _head(n: Any, sid: str = "0xabc") -> str:
    return json.dumps({"jsonrpc": "2.0", "method": "eth_subscription",
                       "params": {"subscription": sid, "result": {"number": n}}})


async def test_junk_and_a_huge_frame_do_not_stop_the_watcher(caplog: pytest.LogCaptureFixture) -> None:
    async def script(ws: web.WebSocketResponse, k: int) -> None:
        await _subscribed(ws)
        if k == 0:
            for junk in ("not json", "[1, 2", "null", "[]", json.dumps({"method": "eth_subscription"}),
                         json.dumps({"method": "eth_subscription", "params": []}),
                         _head("0x7", sid="0xother"), _head(7), _head("7"), _head("0x"), _head("0x" + "f" * 40),
                         _head(None), json.dumps({"jsonrpc": "2.0", "id": 9, "result": "0x1"})):
                await ws.send_str(junk)
            await ws.send_bytes(b"\xff\xfe binary junk")
            await ws.send_str(_head("0x10"))
            await ws.send_str("x" * (2 * 1024 * 1024))  # over max_msg_size: the watcher drops this connection
            await asyncio.sleep(10)
        else:
            await ws.send_str(_head("0x11"))
            await asyncio.sleep(10)

    caplog.set_level(logging.INFO, logger="tracer.chains")
    async with ws_server(script) as (url, connections), collecting(url) as heads:
        await wait_until(lambda: heads.numbers == [16, 17], timeout=10, what="the two good heads")
        assert len(connections) == 2 and heads.watcher.junk == 14 and heads.watcher.subscribed
    events = [r.getMessage() for r in caplog.records if r.name == "tracer.chains"]
    assert sum("event=heads_junk" in e for e in events) == 1  # once per connection, not per frame
    [dropped] = [e for e in events if "event=heads_dropped" in e]
    assert "max_msg_size" in dropped


async def test_a_refused_subscription_and_a_silent_server_are_logged_once(
        caplog: pytest.LogCaptureFixture) -> None:
    async def refuse(ws: web.WebSocketResponse, k: int) -> None:
        await ws.receive()
        await ws.send_str(json.dumps({"jsonrpc": "2.0", "id": 1, "error": {"code": -32601, "message": "nope"}}))
        async for _ in ws:  # until the watcher gives this connection up
            pass

    async def silent(ws: web.WebSocketResponse, k: int) -> None:
        async for _ in ws:  # reads the subscription and never answers, until the watcher gives up
            pass

    caplog.set_level(logging.INFO, logger="tracer.chains")
    for script, reason in ((refuse, "eth_subscribe refused: 'nope'"), (silent, "timed out")):
        caplog.clear()
        async with ws_server(script) as (url, connections), collecting(url) as heads:
            await wait_until(lambda: len(connections) >= 3, timeout=15, what="retries")
            assert heads.watcher.state == UNAVAILABLE and heads.numbers == []
        events = [r.getMessage() for r in caplog.records if "event=heads_" in r.getMessage()]
        assert len(events) == 1 and "event=heads_unavailable" in events[0] and reason in events[0], events
        assert "falling back to polling" in events[0]


async def test_a_connection_that_stops_answering_pings_is_dropped_and_renewed(
        caplog: pytest.LogCaptureFixture) -> None:
    async def script(ws: web.WebSocketResponse, k: int) -> None:
        await _subscribed(ws)
        await ws.send_str(_head(hex(100 + k)))
        if k == 0:
            await asyncio.sleep(30)  # neither heads nor pongs (autoping is off on this server)
        else:
            async for msg in ws:  # answers pings again
                if msg.type == WSMsgType.PING:
                    await ws.pong(msg.data)

    caplog.set_level(logging.INFO, logger="tracer.chains")
    async with ws_server(script, autoping=False) as (url, _), \
            collecting(url, HeadSettings(connect_timeout=1.0, backoff=0.05, heartbeat=0.5)) as heads:
        await wait_until(lambda: heads.numbers == [100, 101], timeout=15, what="a head from each connection")
    [dropped] = [r.getMessage() for r in caplog.records if "event=heads_dropped" in r.getMessage()]
    assert "ping" in dropped, dropped


# ------------------------------------------------------------------------------ the monitor


@contextlib.asynccontextmanager
async def watching(db: Database, client: EvmChain) -> AsyncIterator[int]:
    """A watching trace from SEED, and a worker that follows what the monitor wakes."""
    stop = asyncio.Event()
    worker = Worker(db.pool, {client.chain: client}, name=f"heads-{client.chain}",
                    settings=WorkerSettings(idle_sleep=0.05))
    task = asyncio.create_task(worker.run(stop))
    try:
        tid = await create_trace(db.pool, client, chain=client.chain, seeds=[SEED], created_by="test",
                                 policy={"watch": True, "confirmations": CONFIRMATIONS})
        await wait_until(lambda: _status_is(db, tid, "watching"), timeout=60, what="the historical pass")
        yield tid
    finally:
        stop.set()
        await task


async def _status_is(db: Database, tid: int, status: str) -> bool:
    return await db.pool.fetchval("SELECT status FROM traces WHERE id = $1", tid) == status


async def _to_block(db: Database, tid: int) -> int:
    return int(await db.pool.fetchval("SELECT to_block FROM traces WHERE id = $1", tid))


@contextlib.asynccontextmanager
async def monitoring(db: Database, client: EvmChain, poll: float, heads: dict[str, HeadWatcher]
                     ) -> AsyncIterator[Monitor]:
    stop = asyncio.Event()
    monitor = Monitor(db.pool, {client.chain: client}, settings=MonitorSettings(poll=poll), heads=heads)
    task = asyncio.create_task(monitor.run(stop))
    try:
        await wait_until(lambda: monitor.steps >= 1, timeout=30, what="the first poll")
        yield monitor
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_a_pushed_head_steps_a_monitor_that_polls_every_30_s(
        db: Database, devchain_factory: DevChainFactory) -> None:
    chain = fresh_chain()
    node = await devchain_factory(chain)
    # A chain name of its own per test: recorded block hashes and cached transfers are per name.
    client = EvmChain(node.url, chain="optimism", expected_chain_id=1337)
    await client.connect()
    try:
        watcher = HeadWatcher(ws_url_for(node.url) or "", chain="optimism", settings=FAST)
        async with watching(db, client) as tid, monitoring(db, client, LONG_POLL, {"optimism": watcher}) as monitor:
            await wait_until(lambda: watcher.state == SUBSCRIBED, timeout=10, what="the subscription")
            polls = monitor.steps
            block = chain.append_block([pay(A, B, 1)]).number
            for _ in range(CONFIRMATIONS):
                chain.append_block([])
            # Liveness, not speed: far inside the 30 s poll, so only the push explains it.
            await wait_until(lambda: _extended_past(db, tid, block), timeout=5, what="the push-driven extension")
            assert monitor.pushed["optimism"] >= CONFIRMATIONS + 1 and monitor.steps > polls
            await wait_until(lambda: _status_is(db, tid, "watching"), timeout=30, what="the worker's step")
            # A flood of heads is coalesced: steps do not queue up one per head.
            before_steps, before_heads = monitor.steps, monitor.pushed["optimism"]
            for _ in range(200):
                chain.append_block([])
            await wait_until(lambda: monitor.pushed["optimism"] >= before_heads + 200, timeout=10, what="the flood")
            await wait_until(lambda: _extended_past(db, tid, chain.head - CONFIRMATIONS), timeout=10,
                             what="the flood's last block")
            assert monitor.steps - before_steps < 200
            # A reorg deeper than the confirmations: its new heads wake the monitor, which finds the
            # fork and follows the new chain (its hashes recorded), again without waiting for a poll.
            await wait_until(lambda: _status_is(db, tid, "watching"), timeout=30, what="caught up")
            chain.reorg(CONFIRMATIONS + 2, [[] for _ in range(CONFIRMATIONS + 3)])
            confirmed = chain.head - CONFIRMATIONS
            await wait_until(lambda: _recorded(db, "optimism", confirmed, chain.blocks[confirmed].hash), timeout=5,
                             what="the new chain followed")
    finally:
        await client.close()


async def _recorded(db: Database, chain: str, number: int, block_hash: str) -> bool:
    """Whether the monitor recorded `block_hash` as block `number` of `chain` (followed it)."""
    async with db.pool.acquire() as conn:
        return dict(await follow.recorded_blocks(conn, chain, 256)).get(number) == block_hash


async def _extended_past(db: Database, tid: int, block: int) -> bool:
    return await _to_block(db, tid) >= block


async def test_a_node_that_refuses_the_upgrade_is_polled(db: Database, devchain_factory: DevChainFactory,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    chain = fresh_chain()
    node = await devchain_factory(chain)
    # A node that serves JSON-RPC over HTTP POST only: its WebSocket upgrade gets 405.
    async with serving(proxy(node, lambda req: None)) as url:
        client = EvmChain(url, chain="base", expected_chain_id=1337)
        await client.connect()
        caplog.set_level(logging.INFO, logger="tracer.chains")
        try:
            watcher = HeadWatcher(ws_url_for(url) or "", chain="base", settings=FAST)
            async with watching(db, client) as tid, monitoring(db, client, 0.2, {"base": watcher}) as monitor:
                await wait_until(lambda: watcher.state == UNAVAILABLE, timeout=10, what="the refusal")
                block = chain.append_block([pay(A, C, 1)]).number
                for _ in range(CONFIRMATIONS):
                    chain.append_block([])
                await wait_until(lambda: _extended_past(db, tid, block), timeout=30, what="the polled extension")
                assert monitor.pushed["base"] == 0
        finally:
            await client.close()
    [refused] = [r.getMessage() for r in caplog.records if "event=heads_" in r.getMessage()]
    assert "event=heads_unavailable" in refused and "HTTP 405" in refused and "falling back to polling" in refused
