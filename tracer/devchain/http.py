"""What the devchain's HTTP servers share: a lifecycle on 127.0.0.1 and the provider-like knobs.

`KnobServer` is the base of the JSON-RPC devchain (server.py) and the Esplora one (esplora.py).
Before a request reaches its handler, `_misbehave` applies, in this order: the requests/s limit
(HTTP 429 with Retry-After), the per-request latency and one fault drawn from the seeded
`FaultPlan` (a hang, a 5xx, a connection reset). A "malformed" draw is handed back to the caller,
which alone knows how to garble its own body.
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import time
from collections import Counter
from dataclasses import dataclass

from aiohttp import web

#: The faults drawn per HTTP request, in the order one uniform number is split between them.
REQUEST_FAULTS = ("hang", "http_500", "http_502", "http_503", "reset", "malformed")


@dataclass
class FaultPlan:
    """Seeded misbehaviour, as rates in [0, 1] per HTTP request (batch ones per batch).

    At most one of hang / http_5xx / reset / malformed happens to a request (drawn in that order
    from one number); shuffle_batch and partial_batch are drawn per batch, wrong_chain_id per
    eth_chainId call (JSON-RPC only). A hang sleeps `hang_seconds` (past a client's timeout) and
    then answers.
    """

    seed: int = 0
    hang: float = 0.0
    hang_seconds: float = 30.0
    http_500: float = 0.0
    http_502: float = 0.0
    http_503: float = 0.0
    reset: float = 0.0
    malformed: float = 0.0
    shuffle_batch: float = 0.0
    partial_batch: float = 0.0
    wrong_chain_id: float = 0.0


class TokenBucket:
    """`rate` requests per second with a burst of `rate`: steady clients pass, bursts get 429."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def allow(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


def reset_connection(request: web.Request) -> None:
    """Drop the request's connection so that the client sees "connection reset by peer"."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        # SO_LINGER 0: close() sends RST instead of FIN.
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    transport.abort()


class KnobServer:
    """An aiohttp server with latency, a rate limit and seeded faults; subclasses build the app."""

    #: The text of a 429 answer (each server speaks like the provider it imitates).
    TOO_MANY_TEXT = "rate limit exceeded"

    def __init__(self, *, latency: float = 0.0, rate_limit: float | None = None,
                 faults: FaultPlan | None = None) -> None:
        self.latency = latency
        self.rate_limit = rate_limit
        self.faults = faults
        self.request_counts: Counter[str] = Counter()
        self.fault_counts: Counter[str] = Counter()
        self._bucket = TokenBucket(rate_limit) if rate_limit else None
        # One stream for every seeded draw of a server (subclasses draw batch faults from it too),
        # so a seed replays the same misbehaviour.
        self._rng = random.Random(faults.seed if faults else 0)
        self._runner: web.AppRunner | None = None
        self.url = ""

    def _app(self) -> web.Application:
        raise NotImplementedError

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on host:port (0 = any free port) and return the URL."""
        # A short shutdown timeout: hanging (fault-injected) handlers must not hold up stop().
        self._runner = web.AppRunner(self._app(), access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = self._runner.addresses[0]
        self.url = f"http://{host}:{bound[1]}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- knobs -------------------------------------------------------------------------------------
    async def _misbehave(self, request: web.Request) -> tuple[web.StreamResponse | None, str | None]:
        """(an answer to give instead of the handler's, or None; the fault drawn, or None).

        Counts the request under "http" (and a refused one under "http_429"). A reset never
        returns: it raises CancelledError, as there is nothing more to answer on a dead connection.
        """
        self.request_counts["http"] += 1
        if self._bucket is not None and not self._bucket.allow():
            self.request_counts["http_429"] += 1
            return web.Response(status=429, text=self.TOO_MANY_TEXT, headers={"Retry-After": "1"}), None
        if self.latency:
            await asyncio.sleep(self.latency)
        fault = self._draw_fault()
        if fault == "hang":
            await asyncio.sleep(self.faults.hang_seconds if self.faults else 0)
        elif fault in ("http_500", "http_502", "http_503"):
            return web.Response(status=int(fault[-3:]), text="upstream trouble"), fault
        elif fault == "reset":
            reset_connection(request)
            raise asyncio.CancelledError
        return None, fault

    def _draw_fault(self) -> str | None:
        plan = self.faults
        if plan is None:
            return None
        u = self._rng.random()
        for name in REQUEST_FAULTS:
            rate: float = getattr(plan, name)
            if u < rate:
                self.fault_counts[name] += 1
                return name
            u -= rate
        return None
