"""The devchain's WebSocket side: JSON-RPC over the socket and `eth_subscribe ["newHeads"]`.

A node serves it on the HTTP JSON-RPC URL (an upgrade of GET), as Anvil and Reth do. Requests and
batches are answered like over HTTP (without the HTTP knobs: latency, rate limit and faults
apply to HTTP requests only); `eth_subscribe ["newHeads"]` answers a subscription id, after which
every block the chain mines (`Chain.append_block`, and each block of a `Chain.reorg`'s new chain
once it is complete) comes as

    {"jsonrpc": "2.0", "method": "eth_subscription",
     "params": {"subscription": ID, "result": {"number": "0x..", "hash": .., "parentHash": .., ...}}}

with the header fields of Geth's notifications; `eth_unsubscribe [ID]` ends one. The chain may be
mined from another thread: notices are handed to the server's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import secrets
from collections import Counter
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web

from tracer.devchain.chain import Block, Chain
from tracer.devchain.rpc_body import answer_body
from tracer.devchain.rpc_json import block_json

Json = Any
_NOT_IN_A_HEADER = ("transactions", "uncles", "size", "totalDifficulty")


class _Peer:
    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.subscriptions: set[str] = set()
        self.outbox: asyncio.Queue[str] = asyncio.Queue()

    async def write(self) -> None:
        # One writer per socket: answers and notices go out in the order they were queued.
        while True:
            text = await self.outbox.get()
            await self.ws.send_str(text)


class WsRpc:
    """JSON-RPC over WebSocket for a server whose `answer(request)` answers one request object."""

    def __init__(self, chain: Chain, answer: Callable[[Any], Json], counts: Counter[str]) -> None:
        self.chain = chain
        self.answer = answer
        self.counts = counts
        self.notifications = 0  # eth_subscription messages queued
        self._peers: set[_Peer] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def attach(self) -> None:
        """Follow the chain's new blocks (call on the server's loop, when it starts)."""
        self._loop = asyncio.get_running_loop()
        if self._on_block not in self.chain.head_listeners:
            self.chain.head_listeners.append(self._on_block)

    async def close(self) -> None:
        with contextlib.suppress(ValueError):
            self.chain.head_listeners.remove(self._on_block)
        for peer in list(self._peers):
            with contextlib.suppress(Exception):
                await peer.ws.close(code=1001, message=b"server stopping")
        self._loop = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=16 * 1024**2)
        if not ws.can_prepare(request).ok:
            return web.Response(status=405, text="JSON-RPC is POST, or GET with a WebSocket upgrade",
                                headers={"Allow": "POST, GET"})
        await ws.prepare(request)
        self.counts["ws"] += 1
        peer = _Peer(ws)
        self._peers.add(peer)
        writer = asyncio.create_task(peer.write())
        try:
            async for msg in ws:
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    answer = self._answer_text(peer, msg.data)
                    if answer is not None:
                        peer.outbox.put_nowait(json.dumps(answer, separators=(",", ":")))
        finally:
            self._peers.discard(peer)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        return ws

    # -- requests ----------------------------------------------------------------------------------
    def _answer_text(self, peer: _Peer, text: str | bytes) -> Json:
        # Read as HTTP bodies are (tracer.devchain.rpc_body), so both answer junk and odd batches alike;
        # only the subscription methods are the socket's own (and the batch faults HTTP's).
        return answer_body(text, functools.partial(self._answer_one, peer))

    def _answer_one(self, peer: _Peer, req: Any) -> Json:
        method = req.get("method") if isinstance(req, dict) else None
        if method not in ("eth_subscribe", "eth_unsubscribe"):
            return self.answer(req)
        self.counts[method] += 1
        params = req.get("params")
        params = params if isinstance(params, list) else []
        answer: dict[str, Any] = {"jsonrpc": "2.0", "id": req.get("id")}
        if method == "eth_subscribe":
            if params[:1] != ["newHeads"]:
                answer["error"] = {"code": -32602, "message": "the devchain supports only newHeads subscriptions"}
            else:
                sid = "0x" + secrets.token_hex(16)
                peer.subscriptions.add(sid)
                answer["result"] = sid
        else:
            gone = params[0] if params else None
            answer["result"] = gone in peer.subscriptions
            peer.subscriptions.discard(str(gone))
        return answer if "id" in req else None

    # -- notices -----------------------------------------------------------------------------------
    def _on_block(self, block: Block) -> None:
        """A block was mined (on whatever thread mined it): queue its header for every subscription."""
        loop = self._loop
        listening = [(p, sid) for p in list(self._peers) for sid in list(p.subscriptions)]
        if loop is None or not listening:
            return
        header = {k: v for k, v in block_json(self.chain, block, False).items() if k not in _NOT_IN_A_HEADER}
        for peer, sid in listening:
            text = json.dumps({"jsonrpc": "2.0", "method": "eth_subscription",
                               "params": {"subscription": sid, "result": header}}, separators=(",", ":"))
            try:
                loop.call_soon_threadsafe(peer.outbox.put_nowait, text)
            except RuntimeError:  # the loop is closed: the server is gone, mining goes on
                return
            self.notifications += 1
