"""Pytest fixtures that serve generated scenarios on real dev-chain JSON-RPC servers (127.0.0.1).

- `small_scenario`: a ~300-transfer scenario, generated once per session (seed 7).
- `devchain`: a started server for `small_scenario` (`.url`, `.server`, `.scenario`), per test.
- `devchain_factory`: `await devchain_factory(scenario=None, **server_options)` starts more servers
  (default scenario: `small_scenario`); all are stopped when the module's tests are done. Module
  scope so module-scoped fixtures (a client shared by a test module) can use it.
- `connected(url, scenario, **options)`: an EvmChain connected to it, closed on leaving;
  `proxy(running, rewrite)`: a node in front of a devchain that answers a request `rewrite`
  returns an answer for itself and passes the rest on; `senders(scenario)`: every address value
  leaves from.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web

from tracer.chains.evm import EvmChain
from tracer.devchain.chain import Chain
from tracer.devchain.scenario import KIND_BATCH, Scenario, ScenarioParams, generate
from tracer.devchain.server import DevChainServer

SMALL_SCENARIO_SEED = 7


@dataclass
class RunningDevChain:
    url: str
    server: DevChainServer
    scenario: Scenario | None

    @property
    def chain(self) -> Chain:
        return self.server.chain


DevChainFactory = Callable[..., Awaitable[RunningDevChain]]


@pytest.fixture(scope="session")
def small_scenario() -> Scenario:
    return generate(ScenarioParams.for_size(300, seed=SMALL_SCENARIO_SEED))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def devchain_factory(small_scenario: Scenario) -> AsyncIterator[DevChainFactory]:
    started: list[DevChainServer] = []

    async def start(scenario: Scenario | Chain | None = None, **server_options: Any) -> RunningDevChain:
        source = small_scenario if scenario is None else scenario
        server = DevChainServer(source, **server_options)
        url = await server.start("127.0.0.1", 0)
        started.append(server)
        return RunningDevChain(url, server, source if isinstance(source, Scenario) else None)

    yield start
    for server in started:
        await server.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def devchain(small_scenario: Scenario) -> AsyncIterator[RunningDevChain]:
    server = DevChainServer(small_scenario)
    url = await server.start("127.0.0.1", 0)
    try:
        yield RunningDevChain(url, server, small_scenario)
    finally:
        await server.stop()


@asynccontextmanager
async def serving(handle: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> AsyncIterator[str]:
    """Serve one POST handler on 127.0.0.1 (a free port): a scripted or proxying node. Yields its URL."""
    app = web.Application()
    app.router.add_post("/", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    assert site._server is not None
    try:
        yield f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def connected(url: str, scenario: Scenario, **options: Any) -> AsyncIterator[EvmChain]:
    """An EvmChain for the scenario's chain at `url`, connected; closed on leaving."""
    client = EvmChain(url, chain=scenario.chain, expected_chain_id=scenario.chain_id, **options)
    await client.connect()
    try:
        yield client
    finally:
        await client.close()


def proxy(
    running: RunningDevChain, rewrite: Callable[[dict[str, Any]], dict[str, Any] | None]
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A handler for `serving`: each request of a body (batch or not) goes to `rewrite`, which may
    change it in place or answer it (an answer object); the rest is answered by the devchain."""

    async def handle(request: web.Request) -> web.StreamResponse:
        body = json.loads(await request.read())
        requests = body if isinstance(body, list) else [body]
        answers = [rewrite(req) or running.server.handle_request(req) for req in requests]
        return web.json_response(answers if isinstance(body, list) else answers[0])

    return handle


def senders(sc: Scenario) -> list[str]:
    """Every address value leaves from: transaction senders and the contracts paying out."""
    out: set[str] = set()
    for _, tx in sc.iter_txs():
        out.add(tx.sender)
        if tx.kind == KIND_BATCH:
            out.add(tx.to)
    return sorted(out)
