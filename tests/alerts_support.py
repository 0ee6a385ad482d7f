"""Helpers for the alerting tests: a real webhook receiver on 127.0.0.1 and background services."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tracer.alerts import signing
from tracer.alerts.deliver import Deliverer, DeliverySettings
from tracer.alerts.guard import UrlPolicy
from tracer.store.db import Database
from tracer.store.listen import connector

#: The receivers of these tests listen on 127.0.0.1: allowed by explicit configuration only.
LOOPBACK = UrlPolicy(allow=frozenset({"127.0.0.1"}))


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    at: float
    valid: bool  # signature checked with the path's secret

    @property
    def event(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


@dataclass
class Receiver:
    """An aiohttp webhook receiver. Per path: the secret to check and how to answer
    ("ok", "fail" = 500, or a float = seconds to sleep before answering 200)."""

    secrets: dict[str, str] = field(default_factory=dict)
    behaviour: dict[str, Any] = field(default_factory=dict)
    requests: list[Received] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        mode = self.behaviour.get(request.path, "ok")
        if isinstance(mode, int | float):
            await asyncio.sleep(mode)
        status = 500 if mode == "fail" else 200
        secret = self.secrets.get(request.path, "")
        valid = signing.verify(secret, body, request.headers.get(signing.TIMESTAMP_HEADER),
                               request.headers.get(signing.SIGNATURE_HEADER))
        self.requests.append(Received(request.path, dict(request.headers), body, status, time.monotonic(), valid))
        self._changed.set()
        return web.Response(status=status, text="ok" if status == 200 else "nope")

    def delivered(self, path: str) -> list[Received]:
        """Requests to `path` we answered 200, in arrival order."""
        return [r for r in self.requests if r.path == path and r.status == 200]

    def ids(self, path: str) -> list[int]:
        return [r.event["id"] for r in self.delivered(path)]

    async def wait(self, done: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {what or 'the receiver'}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 0.2))


@asynccontextmanager
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    try:
        yield r
    finally:
        await r.stop()


def quick_settings(**overrides: Any) -> DeliverySettings:
    """Test timings: retries in tens of milliseconds instead of seconds."""
    values: dict[str, Any] = {"poll": 0.05, "backoff_base": 0.05, "backoff_max": 0.4, "max_attempts": 100,
                              "request_timeout": 2.0, "lease_seconds": 10.0, "concurrency": 8}
    values.update(overrides)
    return DeliverySettings(**values)


@asynccontextmanager
async def delivering(db: Database, settings: DeliverySettings | None = None, *,
                     count: int = 1) -> AsyncIterator[list[Deliverer]]:
    """`count` delivery workers (each with its sequencer and LISTEN connection) until the block ends."""
    stop = asyncio.Event()
    workers = [Deliverer(db.pool, connect=connector(db.url), settings=settings or quick_settings(),
                         url_policy=LOOPBACK, name=f"test-deliver-{i}", seed=i) for i in range(count)]
    tasks = [asyncio.create_task(w.run(stop)) for w in workers]
    try:
        yield workers
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)
        for t in tasks:
            if t.exception() is not None:
                raise t.exception()  # type: ignore[misc]


async def wait_until(check: Callable[[], Any], timeout: float = 30.0, what: str = "", every: float = 0.05) -> Any:
    """Poll an async (or plain) check until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(every)
