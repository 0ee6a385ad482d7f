"""Chain nodes that were down when the API started: serve anyway, and connect when they come up.

Investigators read finished traces from Postgres; a node being down must not take that away. A
node that cannot be reached at start (not one that serves the wrong chain: that still stops the
server) is "down": /v1/health reports it, new traces and watchlists on its chain get a 503 naming
it, and a background task keeps trying. Once it answers (and serves the chain id the database
records for its name), its client joins the app's chains, and the embedded workers, which read
that same mapping, start claiming its jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tracer.api.context import CTX
from tracer.api.errors import ApiError

log = logging.getLogger("tracer.api")

Connect = Callable[[], Awaitable[Any]]
RETRY_SECONDS = 5.0


@dataclass
class DownNode:
    connect: Connect
    error: str
    since: float = field(default_factory=time.monotonic)
    attempts: int = 1


NODES: web.AppKey[dict[str, DownNode]] = web.AppKey("tracer_down_nodes")


def refuse_if_down(request: web.Request, chain: Any) -> None:
    """503 for a request that needs the node of `chain` while that node is down."""
    down = request.app[NODES].get(chain) if isinstance(chain, str) else None
    if down is not None:
        minutes = (time.monotonic() - down.since) / 60
        raise ApiError(503, "Chain node unavailable",
                       f"the node for chain {chain!r} has been unreachable since this server started "
                       f"({minutes:.0f} min, {down.attempts} tries; last: {down.error}); finished traces can "
                       "still be read, new work on this chain waits for the node", field="chain",
                       headers={"Retry-After": str(int(RETRY_SECONDS * 2))})


async def reconnect_ctx(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: one task per down node, retrying until it connects. Registered before the
    embedded workers', so the clients it adds are closed after the workers have stopped."""
    joined: list[Any] = []
    down: dict[str, DownNode] = app[NODES]
    tasks = [asyncio.create_task(_reconnect(app, name, joined), name=f"tracer-node-{name}") for name in list(down)]
    try:
        yield
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for client in joined:
            with contextlib.suppress(Exception):
                await client.close()


async def _reconnect(app: web.Application, name: str, joined: list[Any]) -> None:
    nodes = app[NODES]
    retry = app[CTX].settings.node_retry_seconds
    while name in nodes:
        node = nodes[name]
        try:
            # At once, then `retry` after each failed attempt: the start gave up on its own clock,
            # and the attempt backs off between its own tries, so a node that comes up just
            # after the server joins within a second instead of after a fixed pause.
            client = await node.connect()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # still down (a wrong chain stays down too, and says so)
            node.attempts += 1
            node.error = type(exc).__name__
            log.warning("event=node_still_down chain=%s attempts=%d error=%r", name, node.attempts, exc)
            await asyncio.sleep(retry)
            continue
        ctx = app[CTX]
        chains: Any = ctx.chains
        chains[name] = client
        joined.append(client)
        del nodes[name]
        log.warning("event=node_up chain=%s after_attempts=%d", name, node.attempts)
