"""New heads pushed by an EVM node over WebSocket (`eth_subscribe ["newHeads"]`), as block numbers.

    watcher = HeadWatcher("ws://127.0.0.1:8545", chain="ethereum")
    async for number in watcher.heads():   # until cancelled; reconnects by itself
        ...

Geth, Reth, Anvil, Nethermind, Erigon and the providers announce each new block (and each block of
a reorg's new chain) as `{"method": "eth_subscription", "params": {"subscription": ID, "result":
{header}}}`; the number is all a caller gets, and it reads everything else over HTTP as before.

A push is only a hint that saves a wait: callers keep polling, which catches a missed or forged
notice. So nothing the node does stops `heads()`: a refused upgrade, an error answer to the
subscription, junk frames (ignored), frames over `max_msg_size`, a connection that drops or stops
answering pings. It logs once per state change (`event=heads_subscribed`, `heads_unavailable`,
`heads_dropped`, the first junk frame of a connection) and retries with exponential backoff.
URLs are logged as scheme://host:port: a provider's key rides in the path.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp

from tracer.chains.urls import checked_ws_url, node_name

log = logging.getLogger("tracer.chains")

SUBSCRIBED, UNAVAILABLE, DROPPED = "subscribed", "unavailable", "dropped"
_QUANTITY = re.compile(r"0x[0-9a-fA-F]{1,16}")  # a block number fits in 64 bits
_SUBSCRIPTION_ID = re.compile(r"[0-9A-Za-z_\-]{1,128}")  # Geth: 0x + 32 hex; others: short ids


@dataclass(frozen=True)
class HeadSettings:
    connect_timeout: float = 10.0  # the upgrade, then the subscription's answer
    heartbeat: float = 30.0  # a ping on a quiet connection; no pong within half of it: dropped
    # A header is under 1 KiB; a frame near 1 MiB is no header, and reading it cannot be free.
    max_msg_size: int = 1 << 20
    backoff: float = 1.0  # first retry after a failure (doubles, jittered)
    backoff_max: float = 60.0
    stable: float = 30.0  # a connection that stayed subscribed this long starts the backoff over


class HeadsUnavailable(Exception):
    """Why a connection gave no heads (said without the URL)."""


class HeadWatcher:
    """Block numbers of new heads from one node's WebSocket; see the module doc."""

    def __init__(self, url: str, *, chain: str = "", settings: HeadSettings | None = None) -> None:
        self.url = checked_ws_url(url)
        self.where = node_name(self.url)
        self.chain = chain or "-"
        self.settings = settings or HeadSettings()
        self.state: str | None = None
        self.latest: int | None = None  # the last number announced
        self.received = 0  # heads yielded
        self.junk = 0  # frames ignored (not JSON, not our subscription's header)
        self.connections = 0  # subscriptions made

    @property
    def subscribed(self) -> bool:
        return self.state == SUBSCRIBED

    async def heads(self) -> AsyncIterator[int]:
        """Every head's number as the node announces it (a reorg may repeat or lower one); runs until
        the caller stops iterating or is cancelled."""
        s = self.settings
        delay = s.backoff
        loop = asyncio.get_running_loop()
        # No total timeout: the session holds one connection for hours.
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=s.connect_timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                since: float | None = None
                try:
                    async with asyncio.timeout(s.connect_timeout):
                        ws = await session.ws_connect(
                            self.url, heartbeat=s.heartbeat, max_msg_size=s.max_msg_size, autoping=True,
                            timeout=aiohttp.ClientWSTimeout(ws_close=5.0))
                    async with ws:
                        async with asyncio.timeout(s.connect_timeout):
                            subscription = await self._subscribe(ws)
                        since = loop.time()
                        self.connections += 1
                        self._enter(SUBSCRIBED)
                        async for number in self._numbers(ws, subscription):
                            self.latest = number
                            self.received += 1
                            yield number
                    reason = self._closed_reason(ws)
                except (HeadsUnavailable, _Closed) as exc:
                    reason = str(exc)
                except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
                    reason = self._reason(exc)
                self._enter(DROPPED if since is not None else UNAVAILABLE, reason)
                if since is not None and loop.time() - since >= s.stable:
                    delay = s.backoff
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, s.backoff_max)

    # -- one connection ------------------------------------------------------------------------
    async def _subscribe(self, ws: aiohttp.ClientWebSocketResponse) -> str:
        """Send eth_subscribe and return the subscription id from the node's answer."""
        await ws.send_str(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe",
                                      "params": ["newHeads"]}))
        for _ in range(16):  # a few stray frames before the answer are tolerated, a stream of them is not
            payload = await self._next(ws)
            if not isinstance(payload, dict) or payload.get("id") != 1:
                continue
            error = payload.get("error")
            if error is not None:
                message = error.get("message") if isinstance(error, dict) else error
                raise HeadsUnavailable(f"eth_subscribe refused: {str(message)[:120]!r}")
            result = payload.get("result")
            if isinstance(result, str) and _SUBSCRIPTION_ID.fullmatch(result):
                return result
            raise HeadsUnavailable("eth_subscribe answered without a subscription id")
        raise HeadsUnavailable("no answer to eth_subscribe among the first frames")

    async def _numbers(self, ws: aiohttp.ClientWebSocketResponse, subscription: str) -> AsyncIterator[int]:
        first_junk = True
        while True:
            payload = await self._next(ws)  # _Closed ends the connection
            number = head_number(payload, subscription)
            if number is None:
                self.junk += 1
                if first_junk:  # once per connection: a chatty or broken node does not flood the log
                    first_junk = False
                    log.warning("event=heads_junk chain=%s url=%s frame=%r: ignored", self.chain, self.where,
                                str(payload)[:120])
                continue
            yield number

    async def _next(self, ws: aiohttp.ClientWebSocketResponse) -> Any:
        """The next frame's JSON (the raw text when it is not JSON); _Closed when the connection ends."""
        msg = await ws.receive()
        if msg.type == aiohttp.WSMsgType.TEXT:
            raw: str | bytes = msg.data
        elif msg.type == aiohttp.WSMsgType.BINARY:
            raw = msg.data
        elif msg.type == aiohttp.WSMsgType.ERROR:
            failure = msg.data if isinstance(msg.data, BaseException) else ws.exception()
            raise _Closed(self._failure(failure) if failure is not None else "protocol error")
        else:  # CLOSE, CLOSING, CLOSED
            raise _Closed(self._closed_reason(ws))
        try:
            return json.loads(raw)
        except ValueError:  # also a UnicodeDecodeError of binary junk
            return raw if isinstance(raw, str) else repr(raw[:120])

    # -- logs ------------------------------------------------------------------------------------
    def _enter(self, state: str, reason: str = "") -> None:
        if state == self.state:
            return
        self.state = state
        if state == SUBSCRIBED:
            log.info("event=heads_subscribed chain=%s url=%s", self.chain, self.where)
        elif state == DROPPED:
            log.warning("event=heads_dropped chain=%s url=%s reason=%r: polling until reconnected",
                        self.chain, self.where, reason)
        else:
            log.warning("event=heads_unavailable chain=%s url=%s reason=%r: falling back to polling",
                        self.chain, self.where, reason)

    def _reason(self, exc: BaseException) -> str:
        if isinstance(exc, aiohttp.WSServerHandshakeError):
            return f"upgrade refused (HTTP {exc.status})"
        if isinstance(exc, aiohttp.ClientResponseError):
            return f"HTTP {exc.status}"
        if isinstance(exc, aiohttp.ClientConnectorError):
            return f"cannot connect: {exc.os_error.strerror or type(exc.os_error).__name__}"
        if isinstance(exc, TimeoutError):
            return "timed out"
        # Other exceptions may quote the URL (and its key): their type says enough.
        return type(exc).__name__

    @classmethod
    def _closed_reason(cls, ws: aiohttp.ClientWebSocketResponse) -> str:
        failure = ws.exception()
        if failure is not None:
            return cls._failure(failure)
        return f"closed by the node (code {ws.close_code})"

    @staticmethod
    def _failure(failure: BaseException) -> str:
        if isinstance(failure, aiohttp.WebSocketError) and failure.code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG:
            return "a frame over max_msg_size"
        if isinstance(failure, aiohttp.ServerTimeoutError | TimeoutError):
            return "no answer to a ping"
        return type(failure).__name__


class _Closed(Exception):
    """The connection ended (its reason in the message)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)


def head_number(payload: Any, subscription: str) -> int | None:
    """The block number of a newHeads notification for `subscription`; None for anything else."""
    if not isinstance(payload, dict) or payload.get("method") != "eth_subscription":
        return None
    params = payload.get("params")
    if not isinstance(params, dict) or params.get("subscription") != subscription:
        return None
    header = params.get("result")
    number = header.get("number") if isinstance(header, dict) else None
    if not isinstance(number, str) or not _QUANTITY.fullmatch(number):
        return None
    return int(number, 16)
