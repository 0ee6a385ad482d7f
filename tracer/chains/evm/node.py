"""EvmNode: what every path of the EVM client shares: the JSON-RPC transport, what was learnt of the
node in `connect()`, the caches, block times, and the runner of block-range queries (split when
the node refuses them as too big, paged when a page comes back full)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from web3 import AsyncWeb3

from tracer.chains.answers import SHAPE_ERRORS, malformed
from tracer.chains.cache import Lru
from tracer.chains.errors import ChainError, MalformedAnswer, RpcError
from tracer.chains.evm import history, mappers
from tracer.chains.evm.records import ScannedBlock
from tracer.chains.jsonrpc import JsonRpcTransport, gather_or_cancel
from tracer.chains.limits import RangeQuery, is_result_cap, smaller
from tracer.chains.retry import TransportOptions
from tracer.chains.urls import node_name

log = logging.getLogger(__name__)

# HTTP batches of bulky answers (block traces while looking for reverted calls, block headers
# for timestamps) in flight at once, per client: one trace_block answer holds every call of its
# block (up to ~1 MB decoded), so a few batches at a time bound what a busy wallet costs.
_HEAVY_BATCHES = 2
# How long the head read at connect() may stand in for the next head() (a block is ~12 s on
# Ethereum, 2 s on the fastest L2s: a trace window that ends a block early is no loss).
_HEAD_REUSE_SECONDS = 2.0


class EvmNode:
    """The state and shared reads of `tracer.chains.evm.EvmChain` (the class users build)."""

    def __init__(
        self,
        url: str,
        chain: str = "ethereum",
        expected_chain_id: int | None = None,
        *,
        transport: TransportOptions = TransportOptions(),
        batch_size: int = 100,
        use_trace_filter: bool = True,
        debug_method: str | None = None,
        addresses_per_request: int = 500,
        trace_page_size: int = 1000,
        block_cache_size: int = 4096,
        max_log_range: int | None = None,
    ) -> None:
        self.url = url
        self.name = node_name(url)  # in errors and logs: an RPC URL often carries a provider key
        self.chain = chain
        self.expected_chain_id = expected_chain_id
        self.use_trace_filter = use_trace_filter
        # With use_trace_filter=False: this debug method without probing (a node may have both).
        self.forced_debug_method = debug_method
        self.addresses_per_request = max(1, addresses_per_request)
        self.trace_page_size = max(1, trace_page_size)
        self.max_log_range = max_log_range
        self.rpc = JsonRpcTransport(url, transport, batch_size=batch_size)
        self.request_counts: Counter[str] = self.rpc.request_counts
        self.chain_id: int | None = None
        self.supports_trace = False
        # trace_block / trace_transaction: learnt on first use (only the trace path needs them).
        self.supports_trace_block = True
        self.supports_trace_transaction = True
        self.supports_block_receipts = False
        # Whether trace_filter honours mode "union" (one query for both directions): None until
        # an answer shows it (tracer.chains.evm.trace_path).
        self.trace_union: bool | None = None
        # Whether the node answers balances at old blocks (an archive node); probed in connect().
        self.historical_state: bool | None = None
        self.state_probe: history.StateProbe | None = None
        self.debug_method: str | None = None  # "debug_traceBlockByNumber" | "debug_traceTransaction"
        self._connected = False
        self._connect_head: tuple[int, float] | None = None  # (head, monotonic time) read at connect()
        self._warned_no_internal = False
        self._blocks: Lru[int, ScannedBlock] = Lru(block_cache_size)
        self._times: Lru[int, int] = Lru(max(block_cache_size * 16, 65536))
        self._token_meta: dict[str, tuple[int | None, str | None]] = {}
        self._contracts: set[str] = set()
        self._gas: Lru[str, int] = Lru(max(block_cache_size * 4, 16384))
        # (topic filter, by contract?) -> (logs found, blocks x contracts asked) by logs_in_blocks:
        # how densely such logs come, which sets how far apart blocks can share one eth_getLogs.
        self._log_seen: dict[tuple[str, bool], tuple[int, int]] = {}
        self._heavy = asyncio.Semaphore(_HEAVY_BATCHES)
        # Balances at past blocks and Multicall3's presence (tracer.chains.evm.state).
        self._balances: Lru[tuple[str, str, int], int] = Lru(max(block_cache_size * 16, 65536))
        self.multicall: bool | None = None  # Multicall3 code at the latest block, asked on first need
        self._multicall_absent_to = -1  # blocks up to this one answered aggregate3 without its code

    @property
    def w3(self) -> AsyncWeb3:
        """The web3.py client under the transport, for callers that want web3's own API."""
        return self.rpc.w3

    @property
    def path(self) -> str:
        """Which node methods find native transfers (for logs and reports)."""
        if self.supports_trace:
            return "trace_filter"
        if self.debug_method:
            return f"block-scan+{self.debug_method}"
        return "block-scan (no internal calls)"

    def _require_connected(self) -> None:
        if not self._connected:
            raise ChainError("EvmChain.connect() must be awaited before use")

    async def head(self) -> int:
        """The node's latest block number. The head connect() read is handed out once more if it
        is only a few seconds old: a client connected to start a trace needs no second ask."""
        fresh, self._connect_head = self._connect_head, None
        if fresh is not None and time.monotonic() - fresh[1] < _HEAD_REUSE_SECONDS:
            return fresh[0]
        return await self.ask_quantity("eth_blockNumber")

    async def ask_quantity(self, method: str) -> int:
        """The node's answer to a parameterless `method` that answers a quantity (eth_chainId,
        eth_blockNumber); MalformedAnswer if it is none (what answered is no such node)."""
        answer = await self.rpc.call(method)
        try:
            return mappers.quantity(answer)
        except ValueError:
            raise MalformedAnswer(f"node at {self.name} answered {method} with {str(answer)[:80]!r}, "
                                  "not a number: is the URL an EVM node's JSON-RPC?",
                                  node=f"node at {self.name}", method=method) from None

    async def block_times(self, numbers: Iterable[int]) -> dict[int, int]:
        """Timestamps of blocks (cached; missing ones fetched in batches of header-only blocks)."""
        out, missing = self._times.split(sorted(set(numbers)))
        if missing:

            def take(i: int, block: Any) -> None:
                n = missing[i]
                block = self._expect(block, f"eth_getBlockByNumber({n})")
                if block is None:
                    raise ChainError(f"node at {self.name} has no block {n} (eth_getBlockByNumber answered null)")
                ts = mappers.quantity(block["timestamp"])
                self._times.put(n, ts)
                out[n] = ts

            # A header carries its block's transaction hashes (100+ on a busy chain) and only the
            # timestamp is wanted: thousands of blocks are read a few batches at a time.
            await self._in_slices([("eth_getBlockByNumber", [hex(n), False]) for n in missing], take)
        return out

    def _cached_times(self, numbers: Iterable[int]) -> dict[int, int]:
        return {n: ts for n in numbers if (ts := self._times.get(n)) is not None}

    async def block_hashes(self, numbers: Iterable[int]) -> dict[int, str]:
        """Current hashes of blocks, read fresh in one batch of header-only eth_getBlockByNumber
        (never cached: the live monitor and the reorg guard compare them with the hashes they
        recorded); blocks the node does not have yet (null, or an error) are left out."""
        wanted = sorted(set(numbers))
        answers = await self.rpc.batch([("eth_getBlockByNumber", [hex(n), False]) for n in wanted])
        out: dict[int, str] = {}
        for n, block in zip(wanted, answers, strict=True):
            if block is not None and not isinstance(block, RpcError):  # some nodes refuse blocks past their head
                try:
                    out[n] = mappers.block_hash(block)
                except SHAPE_ERRORS as exc:
                    raise self.malformed("eth_getBlockByNumber", block, exc) from exc
        return out

    async def _in_slices(
        self, calls: Sequence[tuple[str, Sequence[Any]]], take: Callable[[int, Any], None]
    ) -> None:
        """Send `calls` one HTTP batch at a time, at most `_HEAVY_BATCHES` in flight for the whole
        client, and hand each answer to `take(index of its call, answer)` as soon as its batch
        arrives: answers too big to hold all at once (block traces, headers of thousands of blocks)
        never are, however many callers run at the same time. An answer `take` cannot map is a
        MalformedAnswer of its call's method."""
        step = max(1, self.rpc.batch_size)

        async def one(offset: int) -> None:
            async with self._heavy:
                answers = await self.rpc.batch(calls[offset : offset + step])
            for i, answer in enumerate(answers, offset):
                try:
                    take(i, answer)
                except SHAPE_ERRORS as exc:
                    raise self.malformed(calls[i][0], answer, exc) from exc

        await gather_or_cancel(one(i) for i in range(0, len(calls), step))

    async def _run_range_queries(
        self,
        queries: list[RangeQuery],
        build: Callable[[RangeQuery], tuple[str, list[Any]]],
        take: Callable[[RangeQuery, Any], RangeQuery | None],
    ) -> None:
        """Run queries in rounds of batches; split the ones refused as too big, follow pages.

        `build(q)` gives (method, params); `take(q, result)` consumes an answer and may return
        the next page's query; an answer it cannot map is a MalformedAnswer of the method.
        """
        pending = queries
        while pending:
            calls = [build(q) for q in pending]
            answers = await self.rpc.batch(calls)
            following: list[RangeQuery] = []
            for q, (method, _), ans in zip(pending, calls, answers, strict=True):
                if isinstance(ans, RpcError):
                    if not is_result_cap(ans):
                        raise ChainError(
                            f"node at {self.name} refused {method} for blocks "
                            f"{q.from_block}..{q.to_block}: {ans.message}"
                        )
                    parts = self._smaller(q, method, ans)
                    if parts is None:
                        raise ChainError(
                            f"node at {self.name} refuses {method} even for one block ({q.from_block}) "
                            f"and one address: {ans.message}"
                        )
                    log.debug("%s %d..%d refused (%s), splitting", method, q.from_block, q.to_block, ans.message)
                    following.extend(parts)
                    continue
                try:
                    nxt = take(q, ans)
                except SHAPE_ERRORS as exc:
                    raise self.malformed(method, ans, exc) from exc
                if nxt is not None:
                    following.append(nxt)
            pending = following

    def _smaller(self, q: RangeQuery, method: str, err: RpcError) -> Sequence[RangeQuery] | None:
        """What to ask instead of a query refused for its size (tracer.chains.limits.smaller); a
        block-span cap the node states holds for every later eth_getLogs too."""
        parts, span = smaller(q, err)
        if span is not None and method == "eth_getLogs" and (self.max_log_range is None or span < self.max_log_range):
            log.info("node at %s caps eth_getLogs at %d blocks: cutting every query to that", self.name, span)
            self.max_log_range = span
        return parts

    def malformed(self, method: str, answer: Any, exc: BaseException | None = None, *,
                  expected: str | None = None) -> MalformedAnswer:
        """The error for an answer to `method` in the wrong shape (tracer.chains.answers)."""
        return malformed(f"node at {self.name}", method, answer, exc, expected=expected)

    def _expect(self, answer: Any, what: str) -> Any:
        """An answer that must not be a JSON-RPC error."""
        if isinstance(answer, RpcError):
            raise ChainError(f"node at {self.name} failed {what}: {answer.message} (code {answer.code})")
        return answer

