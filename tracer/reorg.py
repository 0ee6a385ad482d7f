"""Reads held to one chain through reorganisations: `ReorgGuard` wraps the EVM client of a worker,
API or `tracer trace` process.

A read near the head (transfers, logs, balances up to block B) checks the node's hash of B against
the hash first recorded for B (`block_pins`, migration 008), before and after the read. A mismatch
means blocks that traces already read were replaced. Then, in one transaction: what was read past
the fork is retracted (`retract_after`, as the alert monitor does: hops with `hop_retracted`
events, cached transfers and coverage), the traces still in their historical pass on that window
fail with the reason (re-running one traces the new chain), and the read raises
`ChainReorganised`, so the batch that noticed commits nothing. Reads deeper than `GUARD_DEPTH`
under the head are final and cost nothing extra; a checked read costs one header request (two
for the first read up to a block) and one indexed lookup in Postgres.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import asyncpg

from tracer.chains.errors import ChainError
from tracer.chains.evm import EvmChain
from tracer.domain.transfers import TransferQuery
from tracer.store import chains as chain_store
from tracer.store import follow
from tracer.store import traces as trace_store

log = logging.getLogger("tracer.reorg")
T = TypeVar("T")

#: Blocks deeper than this under the head are treated as final (Ethereum finalises in ~64 blocks):
#: reads there are not checked, and their pins are pruned.
GUARD_DEPTH = 128
_HEAD_TTL = 2.0  # seconds a head reading serves the guard's "near the head?" question
_FORK_PROBES = 64  # recorded pins compared with the node to locate a fork


class ChainReorganised(ChainError):
    """Blocks a trace had read were replaced by a reorganisation (the message says which)."""


class ReorgGuard:
    """An EvmChain whose block-bound reads are checked against reorgs; everything else passes
    through to the client unchanged."""

    def __init__(self, client: EvmChain, pool: asyncpg.Pool, chain: str, *, depth: int = GUARD_DEPTH) -> None:
        self._client = client
        self._pool = pool
        self._chain = chain
        self._depth = depth
        self._head = (0, float("-inf"))  # (head, monotonic time read)
        self.reorgs_detected = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    @property
    def client(self) -> EvmChain:
        return self._client

    async def _near_head(self, block: int) -> bool:
        head, when = self._head
        if time.monotonic() - when > _HEAD_TTL:
            head = await self._client.head()
            self._head = (head, time.monotonic())
        return block > head - self._depth

    async def _hash(self, block: int) -> str | None:
        return (await self._client.block_hashes([block])).get(block)

    async def _guarded(self, block: int, read: Callable[[], Awaitable[T]]) -> T:
        if block < 0 or not await self._near_head(block):
            return await read()
        async with self._pool.acquire() as conn:
            pinned = await chain_store.block_pin(conn, self._chain, block)
        if pinned is None:
            # The first read up to this block: record the hash it starts from (concurrent first
            # readers agree on one through the upsert).
            before = await self._hash(block)
            if before is None:  # past the node's head: nothing of it can have been read yet
                return await read()
            async with self._pool.acquire() as conn:
                pinned = await chain_store.pin_block(conn, self._chain, block, before)
            if pinned != before:
                await self._reorganised(block, pinned, before)
        result = await read()
        # One check after the read is enough once a pin exists: a reorg before or during the read
        # leaves the node with another hash for the block than the pin.
        after = await self._hash(block)
        if after != pinned:
            await self._reorganised(block, pinned, after or "(gone)")
        return result

    async def _reorganised(self, block: int, old: str, new: str) -> None:
        """Retract what was read past the fork, fail the traces reading it, raise."""
        self.reorgs_detected += 1
        async with self._pool.acquire() as conn:
            pins = await chain_store.pins_below(conn, self._chain, block, _FORK_PROBES)
        theirs = await self._client.block_hashes([n for n, _ in pins])
        fork = next((n for n, h in pins if theirs.get(n) == h), (pins[-1][0] - 1) if pins else -1)
        fork = max(-1, min(fork, block - 1))
        reason = (f"the chain reorganised under this trace: block {block} of {self._chain!r} is now {new[:18]}…, "
                  f"not {old[:18]}… as read before (fork after block {fork}); the hops read past the fork were "
                  "retracted: start the trace again to follow the new chain")
        async with self._pool.acquire() as conn, conn.transaction():
            failed = await chain_store.traces_reading_past(conn, self._chain, fork)
            retraction = await follow.retract_after(conn, self._chain, fork, old_hash=old, new_hash=new)
            for trace_id in failed:
                await trace_store.fail_trace(conn, trace_id, reason)
            await chain_store.forget_pins_after(conn, self._chain, fork)
            await chain_store.prune_pins(conn, self._chain, self._head[0] - 2 * self._depth)
        log.warning("event=reorg chain=%s block=%d fork=%d old=%s new=%s failed_traces=%s retracted_hops=%d",
                    self._chain, block, fork, old, new, failed, retraction.hops)
        raise ChainReorganised(reason)

    # -- the block-bound reads the engine makes ------------------------------------------------

    async def transfers(self, query: TransferQuery) -> Any:
        return await self._guarded(query.to_block, lambda: self._client.transfers(query))

    async def block_times(self, numbers: Iterable[int]) -> Any:
        # Read apart from the transfers (only for blocks that became hops): a reorg since then
        # can change them, so they are checked like any block-bound read.
        wanted = sorted(set(numbers))
        return await self._guarded(max(wanted, default=-1), lambda: self._client.block_times(wanted))

    async def logs(self, address: Any, topics: Any, from_block: int, to_block: int) -> Any:
        return await self._guarded(to_block, lambda: self._client.logs(address, topics, from_block, to_block))

    async def native_balances(self, queries: Iterable[tuple[str, int]]) -> Any:
        wanted = list(queries)
        top = max((b for _, b in wanted), default=-1)
        return await self._guarded(top, lambda: self._client.native_balances(wanted))

    async def token_balances(self, queries: Iterable[tuple[str, str, int]]) -> Any:
        wanted = list(queries)
        top = max((b for _, _, b in wanted), default=-1)
        return await self._guarded(top, lambda: self._client.token_balances(wanted))


def guard_depth() -> int:
    """`TRACER_REORG_GUARD_DEPTH` (blocks under the head that are checked; 0 turns the guard off),
    default GUARD_DEPTH."""
    text = os.environ.get("TRACER_REORG_GUARD_DEPTH", "").strip()
    if not text:
        return GUARD_DEPTH
    if not text.isdigit():
        # Read at process start-up: a clear line rather than a traceback.
        raise SystemExit(f"tracer: error: TRACER_REORG_GUARD_DEPTH must be a number of blocks (0: off), not {text!r}")
    return int(text)


def guarded(client: Any, pool: asyncpg.Pool, chain: str) -> Any:
    """`client` behind a ReorgGuard when it is an EVM client (the guard reads EVM block hashes)
    and the guard is on."""
    depth = guard_depth()
    return ReorgGuard(client, pool, chain, depth=depth) if isinstance(client, EvmChain) and depth > 0 else client
