"""EvmChain: value transfers of many addresses over JSON-RPC, with as few requests as the node allows.

Which node methods are used is decided once, in `connect()`:

- **trace path** (Erigon, Reth, Nethermind, Anvil, the devchain): `trace_filter` with a list of
  `fromAddress` (outgoing) or `toAddress` (incoming) per request, paginated with after/count;
  covers top-level and internal native transfers. Calls below a reverted call carry no `error`
  of their own, so transactions with internal transfers are checked with `trace_block` (blocks
  holding several of them) or `trace_transaction`.
- **block-scan path** (Geth, eth-tester, most public endpoints): every block of the range is read
  in JSON-RPC batches (`eth_getBlockByNumber(n, true)`, receipts for status), internal calls come
  from `debug_traceBlockByNumber` (whose root frames also give each transaction's status, so no
  receipts are fetched) or `debug_traceTransaction` with the callTracer when the node has them
  (and are reported missing once, in a warning, when it has neither). Scanned blocks are kept in
  a bounded LRU because the engine asks overlapping ranges for different address batches.

ERC-20 transfers come from `eth_getLogs` with topic0 = Transfer and a list of padded addresses in
topic1 (outgoing) or topic2 (incoming); a range the node refuses as too big is split and retried.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

from web3 import AsyncWeb3

from tracer.addresses import InvalidAddress, normalize_evm
from tracer.chains import history, mappers
from tracer.chains.errors import ChainError, RpcError, StateUnavailable, WrongChain
from tracer.chains.jsonrpc import JsonRpcTransport, gather_or_cancel, is_method_missing
from tracer.chains.limits import Direction, is_result_cap, smaller
from tracer.chains.limits import RangeQuery as _RangeQuery
from tracer.chains.records import Transfer

__all__ = [
    "ChainError",
    "EvmChain",
    "InvalidAddress",
    "LogRecord",
    "RpcError",
    "StateUnavailable",
    "WrongChain",
    "is_result_cap",
]

log = logging.getLogger(__name__)

# HTTP batches of bulky answers (block traces while looking for reverted calls, block headers
# for timestamps) in flight at once, per client: one trace_block answer holds every call of its
# block (up to ~1 MB decoded), so a few batches at a time bound what a busy wallet costs.
_HEAVY_BATCHES = 2
_BALANCE_OF = "0x70a08231"
_DECIMALS = "0x313ce567"
_SYMBOL = "0x95d89b41"
_ZERO_HASH = "0x" + "00" * 32


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One log as the node gave it, lowercased, for decoders outside the chain layer (mixers, bridges)."""

    block_number: int
    block_time: int
    tx_hash: str
    tx_index: int
    log_index: int
    address: str
    topics: tuple[str, ...]
    data: str


@dataclass(frozen=True, slots=True)
class _ScannedBlock:
    number: int
    time: int
    transfers: tuple[Transfer, ...]  # every successful native value move in the block
    senders: tuple[tuple[str, str], ...] = ()  # (from, hash) of every transaction, failed ones too


K = TypeVar("K")
V = TypeVar("V")


class _Lru(Generic[K, V]):
    """A small bounded mapping that forgets the least recently used entry first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._data: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self.size:
            self._data.popitem(last=False)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)


class EvmChain:
    """Read access to one EVM chain through one JSON-RPC node; see the module docstring."""

    def __init__(
        self,
        url: str,
        chain: str = "ethereum",
        expected_chain_id: int | None = None,
        concurrency: int = 8,
        batch_size: int = 100,
        timeout: float = 20.0,
        retries: int = 6,
        *,
        use_trace_filter: bool = True,
        debug_method: str | None = None,
        addresses_per_request: int = 500,
        trace_page_size: int = 1000,
        block_cache_size: int = 4096,
        max_log_range: int | None = None,
        backoff: float = 0.5,
    ) -> None:
        self.url = url
        self.chain = chain
        self.expected_chain_id = expected_chain_id
        self.use_trace_filter = use_trace_filter
        # With use_trace_filter=False: this debug method without probing (a node may have both).
        self.forced_debug_method = debug_method
        self.addresses_per_request = max(1, addresses_per_request)
        self.trace_page_size = max(1, trace_page_size)
        self.max_log_range = max_log_range
        self.rpc = JsonRpcTransport(
            url,
            concurrency=concurrency,
            batch_size=batch_size,
            timeout=timeout,
            retries=retries,
            backoff=backoff,
        )
        self.request_counts: Counter[str] = self.rpc.request_counts
        self.chain_id: int | None = None
        self.supports_trace = False
        # trace_block / trace_transaction: learnt on first use (only the trace path needs them).
        self.supports_trace_block = True
        self.supports_trace_transaction = True
        self.supports_block_receipts = False
        # Whether the node answers balances at old blocks (an archive node); probed in connect().
        self.historical_state: bool | None = None
        self.state_probe: history.StateProbe | None = None
        self.debug_method: str | None = None  # "debug_traceBlockByNumber" | "debug_traceTransaction"
        self._connected = False
        self._warned_no_internal = False
        self._blocks: _Lru[int, _ScannedBlock] = _Lru(block_cache_size)
        self._times: _Lru[int, int] = _Lru(max(block_cache_size * 16, 65536))
        self._token_meta: dict[str, tuple[int | None, str | None]] = {}
        self._contracts: set[str] = set()
        self._gas: _Lru[str, int] = _Lru(max(block_cache_size * 4, 16384))
        self._heavy = asyncio.Semaphore(_HEAVY_BATCHES)

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

    # -- lifecycle ----------------------------------------------------------------------------

    async def connect(self) -> None:
        """Check the chain id and find out once which methods the node has."""
        await self.rpc.open()
        self.chain_id = mappers.quantity(await self.rpc.call("eth_chainId"))
        if self.expected_chain_id is not None and self.chain_id != self.expected_chain_id:
            raise WrongChain(
                f"node at {self.url} serves chain id {self.chain_id}, but chain {self.chain!r} "
                f"expects {self.expected_chain_id}: check the RPC URL"
            )
        head = await self.head()
        self.supports_trace = self.use_trace_filter and await self._probe_trace_filter(head)
        # Receipts give the fees balances are derived with, on either path.
        self.supports_block_receipts = await self._probe(
            "eth_getBlockReceipts", [hex(head)], lambda r: isinstance(r, list)
        )
        self.state_probe = await history.probe_historical_state(self, head)
        self.historical_state = self.state_probe.historical_state
        if not self.supports_trace:
            if self.forced_debug_method:
                self.debug_method = self.forced_debug_method
            elif await self._probe(
                "debug_traceBlockByNumber",
                [hex(head), {"tracer": "callTracer"}],
                lambda r: isinstance(r, list),
            ):
                self.debug_method = "debug_traceBlockByNumber"
            elif await self._probe("debug_traceTransaction", [_ZERO_HASH, {"tracer": "callTracer"}], lambda r: True):
                self.debug_method = "debug_traceTransaction"
        self._connected = True
        receipts = "eth_getBlockReceipts" if self.supports_block_receipts else "eth_getTransactionReceipt"
        log.info(
            "chain %s (id %d) at %s: head %d, native transfers via %s, receipts via %s, %s",
            self.chain,
            self.chain_id,
            self.url,
            head,
            self.path,
            receipts,
            "archive state (balances at old blocks)" if self.historical_state else "no historical state",
        )
        if self.state_probe is not None and not self.state_probe.historical_state:
            # Not an error, but it changes how taint is computed: operators should see it.
            log.warning(
                "chain %s: %s; prior balances will be derived from history (README, 'Which nodes')",
                self.chain,
                self.state_probe.describe(),
            )

    async def close(self) -> None:
        await self.rpc.close()

    async def __aenter__(self) -> EvmChain:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _probe_trace_filter(self, head: int) -> bool:
        params = {"fromBlock": hex(head), "toBlock": hex(head), "fromAddress": ["0x" + "00" * 20], "count": 1}
        return await self._probe("trace_filter", [params], lambda r: r is None or isinstance(r, list))

    async def _probe(self, method: str, params: list[Any], accept: Any) -> bool:
        """True if the node has `method`. An error other than "no such method" still means it has it
        (e.g. Geth refusing to trace the genesis block), unless the answer has the wrong shape."""
        try:
            result = await self.rpc.call(method, params)
        except RpcError as err:
            if is_method_missing(err):
                log.debug("node has no %s: %s", method, err.message)
                return False
            log.debug("probe %s answered an error, taking the method as present: %s", method, err.message)
            return True
        return bool(accept(result))

    def _require_connected(self) -> None:
        if not self._connected:
            raise ChainError("EvmChain.connect() must be awaited before use")

    # -- simple reads -------------------------------------------------------------------------

    async def head(self) -> int:
        return mappers.quantity(await self.rpc.call("eth_blockNumber"))

    async def block_times(self, numbers: Iterable[int]) -> dict[int, int]:
        """Timestamps of blocks (cached; missing ones fetched in batches of header-only blocks)."""
        wanted = sorted(set(numbers))
        out: dict[int, int] = {}
        missing: list[int] = []
        for n in wanted:
            cached = self._times.get(n)
            if cached is None:
                missing.append(n)
            else:
                out[n] = cached
        if missing:

            def take(offset: int, answers: list[Any]) -> None:
                for n, block in zip(missing[offset : offset + len(answers)], answers, strict=True):
                    block = self._expect(block, f"eth_getBlockByNumber({n})")
                    if not isinstance(block, Mapping):
                        raise ChainError(f"node at {self.url} has no block {n}")
                    ts = mappers.quantity(block["timestamp"])
                    self._times.put(n, ts)
                    out[n] = ts

            # A header carries its block's transaction hashes (100+ on a busy chain) and only the
            # timestamp is wanted: thousands of blocks are read a few batches at a time.
            await self._in_slices([("eth_getBlockByNumber", [hex(n), False]) for n in missing], take)
        return out

    def _cached_times(self, numbers: Iterable[int]) -> dict[int, int]:
        return {n: ts for n in numbers if (ts := self._times.get(n)) is not None}

    async def native_balances(self, queries: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """Balances at blocks; raises StateUnavailable when the node keeps no state at one of them."""
        keys = list(dict.fromkeys((normalize_evm(a), int(b)) for a, b in queries))
        answers = await self.rpc.batch([("eth_getBalance", [a, hex(b)]) for a, b in keys])
        self._state_missing(answers, [b for _, b in keys])
        return {
            key: mappers.quantity(self._expect(ans, f"eth_getBalance{key}"))
            for key, ans in zip(keys, answers, strict=True)
        }

    async def token_balances(self, queries: Iterable[tuple[str, str, int]]) -> dict[tuple[str, str, int], int]:
        """`balanceOf(address)` of tokens at blocks. Calls that revert or return no uint are left
        out of the result (not a token, or the token did not exist yet at that block); a node that
        keeps no state at a block raises StateUnavailable."""
        keys = list(dict.fromkeys((normalize_evm(a), normalize_evm(t), int(b)) for a, t, b in queries))
        calls = [("eth_call", [{"to": t, "data": _BALANCE_OF + mappers.pad_topic(a)[2:]}, hex(b)]) for a, t, b in keys]
        out: dict[tuple[str, str, int], int] = {}
        answers = await self.rpc.batch(calls)
        self._state_missing(answers, [b for _, _, b in keys])
        for key, ans in zip(keys, answers, strict=True):
            if isinstance(ans, RpcError):
                log.debug("balanceOf%s failed: %s", key, ans.message)
                continue
            value = mappers.decode_uint(ans)
            if value is not None:
                out[key] = value
        return out

    def _state_missing(self, answers: Sequence[Any], blocks: Sequence[int]) -> None:
        for ans, block in zip(answers, blocks, strict=True):
            if isinstance(ans, RpcError) and history.is_state_missing(ans):
                if self.historical_state:
                    log.warning("node at %s keeps no state at block %d after all: %s", self.url, block, ans.message)
                raise StateUnavailable(
                    f"node at {self.url} keeps no state at block {block}: {ans.message} (code {ans.code})", block
                )

    async def fees_paid(self, addresses: Iterable[str], from_block: int, to_block: int) -> list[history.FeePaid]:
        """The fee of every transaction `addresses` sent in [from_block, to_block], failed ones
        and ones that moved no value included: what a balance lost besides its transfers."""
        self._require_connected()
        wanted = frozenset(normalize_evm(a) for a in addresses)
        if not wanted or from_block > to_block:
            return []
        sent: dict[str, tuple[str, int, str]] = {}
        if self.supports_trace:
            ordered = tuple(sorted(wanted))
            page = self.trace_page_size
            step = self.addresses_per_request
            chunks = [ordered[i : i + step] for i in range(0, len(ordered), step)]

            def take(q: _RangeQuery, result: Any) -> _RangeQuery | None:
                rows = result or []
                for row in rows:
                    found = history.top_level_sender(row)
                    if found is not None and found[0] in wanted:
                        sent[found[2]] = found
                return replace(q, after=q.after + len(rows)) if len(rows) >= page else None

            queries = [_RangeQuery(from_block, to_block, c) for c in chunks]
            await self._run_range_queries(queries, self._trace_filter_request, take)
        else:

            def pick(block: _ScannedBlock) -> None:
                for sender, tx_hash in block.senders:
                    if sender in wanted:
                        sent[tx_hash] = (sender, block.number, tx_hash)

            await self._each_block(from_block, to_block, pick)
        return await history.sent_fees(self, sent.values())

    async def token_meta(self, tokens: Iterable[str]) -> dict[str, tuple[int | None, str | None]]:
        """(decimals, symbol) per token via eth_call at the latest block; None where it has none."""
        wanted = list(dict.fromkeys(normalize_evm(t) for t in tokens))
        missing = [t for t in wanted if t not in self._token_meta]
        if missing:
            calls: list[tuple[str, Sequence[Any]]] = []
            for t in missing:
                calls.append(("eth_call", [{"to": t, "data": _DECIMALS}, "latest"]))
                calls.append(("eth_call", [{"to": t, "data": _SYMBOL}, "latest"]))
            answers = await self.rpc.batch(calls)
            for i, t in enumerate(missing):
                dec_raw, sym_raw = answers[2 * i], answers[2 * i + 1]
                decimals = None if isinstance(dec_raw, RpcError) else mappers.decode_uint(dec_raw)
                if decimals is not None and decimals > 255:
                    decimals = None  # not a uint8: not what ERC-20 decimals() returns
                symbol = None if isinstance(sym_raw, RpcError) else mappers.decode_symbol(sym_raw)
                self._token_meta[t] = (decimals, symbol)
        return {t: self._token_meta[t] for t in wanted}

    async def is_contract(self, addresses: Iterable[str]) -> dict[str, bool]:
        """True for addresses with code at the latest block. Only "yes" is cached: an empty address
        can still get code later (CREATE2 to a precomputed address)."""
        wanted = list(dict.fromkeys(normalize_evm(a) for a in addresses))
        missing = [a for a in wanted if a not in self._contracts]
        answers = await self.rpc.batch([("eth_getCode", [a, "latest"]) for a in missing])
        for a, code in zip(missing, answers, strict=True):
            code = self._expect(code, f"eth_getCode({a})")
            if isinstance(code, str) and code not in ("0x", "0x0", ""):
                self._contracts.add(a)
        return {a: a in self._contracts for a in wanted}

    async def gas_prices(self, tx_hashes: Iterable[str]) -> dict[str, int]:
        """Gas price (wei) paid by each transaction, for the mixer linker's unusual-gas-price
        heuristic: `gasPrice` of eth_getTransactionByHash (nodes report the effective price there
        for mined EIP-1559 transactions), else `effectiveGasPrice` when a node puts it there.
        Batched; cached, since a mined transaction's price never changes. Transactions the node
        does not know, or answers for with an error, are left out: the heuristic then sits out
        for them rather than failing the trace."""
        wanted = list(dict.fromkeys(str(h).lower() for h in tx_hashes))
        out: dict[str, int] = {}
        missing: list[str] = []
        for h in wanted:
            cached = self._gas.get(h)
            if cached is None:
                missing.append(h)
            else:
                out[h] = cached
        if not missing:
            return out
        answers = await self.rpc.batch([("eth_getTransactionByHash", [h]) for h in missing])
        for h, tx in zip(missing, answers, strict=True):
            if isinstance(tx, RpcError):
                log.debug("eth_getTransactionByHash(%s) failed: %s", h, tx.message)
                continue
            if not isinstance(tx, Mapping):
                continue  # unknown transaction (null)
            raw = tx.get("gasPrice")
            if raw is None:
                raw = tx.get("effectiveGasPrice")
            if raw is None:
                continue
            try:
                price = mappers.quantity(raw)
            except (TypeError, ValueError):
                log.debug("eth_getTransactionByHash(%s): unreadable gas price %r", h, raw)
                continue
            self._gas.put(h, price)
            out[h] = price
        return out

    # -- transfers ----------------------------------------------------------------------------

    async def transfers(
        self,
        addresses: Iterable[str],
        from_block: int,
        to_block: int,
        outgoing: bool = True,
        incoming: bool = False,
        times: bool = True,
    ) -> list[Transfer]:
        """Every value transfer out of (and, if asked, into) `addresses` in [from_block, to_block].

        Native top-level, native internal and ERC-20; failed transactions and calls and zero
        values left out; deduplicated by `Transfer.key`; sorted by `Transfer.order`.

        `times=False`: no header is read for block times the answers and the cache do not already
        hold (`block_time` is then -1). A busy wallet's noise spans thousands of blocks, and only
        the few transfers that become hops need a time: the caller reads those with
        `block_times`, one batch for the blocks it keeps.
        """
        self._require_connected()
        wanted = frozenset(normalize_evm(a) for a in addresses)
        if from_block < 0 or to_block < 0:
            raise ValueError(f"block numbers must be >= 0, got {from_block}..{to_block}")
        if not wanted or from_block > to_block or not (outgoing or incoming):
            return []
        directions: list[Direction] = []
        if outgoing:
            directions.append("out")
        if incoming:
            directions.append("in")
        ordered = tuple(sorted(wanted))
        chunks = [
            ordered[i : i + self.addresses_per_request] for i in range(0, len(ordered), self.addresses_per_request)
        ]
        if self.supports_trace:
            native_job = self._native_by_trace(chunks, directions, from_block, to_block)
        else:
            native_job = self._native_by_scan(wanted, outgoing, incoming, from_block, to_block)
        native, tokens = await gather_or_cancel(
            [native_job, self._token_transfers(chunks, directions, from_block, to_block)]
        )
        found: dict[tuple[str, str, str], Transfer] = {}
        for transfer in (*native, *tokens):
            found.setdefault(transfer.key, transfer)
        untimed = {t.block_number for t in found.values() if t.block_time < 0}
        known = await self.block_times(untimed) if times else self._cached_times(untimed)
        result = [t if t.block_time >= 0 or t.block_number not in known
                  else replace(t, block_time=known[t.block_number]) for t in found.values()]
        result.sort(key=lambda t: t.order)
        return result

    # trace path ---------------------------------------------------------------------------------

    async def _native_by_trace(
        self, chunks: list[tuple[str, ...]], directions: list[Direction], from_block: int, to_block: int
    ) -> list[Transfer]:
        page = self.trace_page_size
        queries = [_RangeQuery(from_block, to_block, c, d) for d in directions for c in chunks]
        transfers: list[Transfer] = []

        def take(q: _RangeQuery, result: Any) -> _RangeQuery | None:
            rows = result or []
            if not isinstance(rows, list):
                raise ChainError(f"trace_filter answered {type(rows).__name__}, expected a list")
            # Mapped as each page arrives: the raw trace dicts (several times a Transfer's size)
            # of a busy address's whole history are never held at once.
            transfers.extend(t for t in (mappers.parity_trace_transfer(self.chain, tr, -1) for tr in rows) if t)
            # A full page means there may be more: ask for the next one.
            return replace(q, after=q.after + len(rows)) if len(rows) >= page else None

        await self._run_range_queries(queries, self._trace_filter_request, take)
        return await self._drop_reverted_internal(transfers)

    def _trace_filter_request(self, q: _RangeQuery) -> tuple[str, list[Any]]:
        # Block numbers always in hex: Anvil refuses tags ("latest") in trace_filter.
        params: dict[str, Any] = {
            "fromBlock": hex(q.from_block),
            "toBlock": hex(q.to_block),
            "fromAddress" if q.direction == "out" else "toAddress": list(q.addresses),
            "count": self.trace_page_size,
        }
        if q.after:
            params["after"] = q.after
        return "trace_filter", [params]

    async def _drop_reverted_internal(self, transfers: list[Transfer]) -> list[Transfer]:
        """Drop internal transfers undone by a reverting ancestor call.

        A trace_filter answer holds only the matching calls; a call whose parent reverted has no
        `error` of its own, so the whole transaction's trace is needed to know it moved nothing.
        """
        by_block: dict[int, set[str]] = {}
        for t in transfers:
            if t.position != "tx":
                by_block.setdefault(t.block_number, set()).add(t.tx_hash)
        if not by_block:
            return transfers
        undone = await self._failed_calls(by_block)
        return [
            t
            for t in transfers
            if t.position == "tx" or not mappers.undone_by_ancestor(_path_of(t.position), undone.get(t.tx_hash, set()))
        ]

    async def _failed_calls(self, by_block: dict[int, set[str]]) -> dict[str, set[tuple[int, ...]]]:
        """Paths of the failed calls of transactions, grouped by block.

        `trace_block` answers for every transaction of a block in one request, so it is used where
        a block holds several of them; `trace_transaction` otherwise. A node without either gets
        asked for receipts: that catches a failed transaction, not a reverted intermediate call.
        """
        undone: dict[str, set[tuple[int, ...]]] = {}
        pending = by_block
        while pending:
            calls: list[tuple[str, list[Any]]] = []
            wants: list[tuple[int, set[str]]] = []
            for block, hashes in sorted(pending.items()):
                if len(hashes) > 1 and self.supports_trace_block:
                    calls.append(("trace_block", [hex(block)]))
                    wants.append((block, hashes))
                elif self.supports_trace_transaction:
                    calls.extend(("trace_transaction", [h]) for h in sorted(hashes))
                    wants.extend((block, {h}) for h in sorted(hashes))
                else:
                    calls.extend(("eth_getTransactionReceipt", [h]) for h in sorted(hashes))
                    wants.extend((block, {h}) for h in sorted(hashes))
            again: dict[int, set[str]] = {}
            # A busy address's internal transfers can span thousands of blocks, and a trace_block
            # answer holds every call of its block: asking for all of them in one go held them
            # all at once (hundreds of MB for one wallet). Each HTTP batch is reduced to failed-
            # call paths as soon as it arrives, and only a few are in flight at a time.
            await self._in_slices(calls, functools.partial(self._take_failed, calls, wants, undone, again))
            pending = again
        return undone

    def _take_failed(
        self,
        calls: list[tuple[str, list[Any]]],
        wants: list[tuple[int, set[str]]],
        undone: dict[str, set[tuple[int, ...]]],
        again: dict[int, set[str]],
        offset: int,
        answers: list[Any],
    ) -> None:
        """One HTTP batch of `_failed_calls` answered: failed-call paths into `undone`, and the
        blocks to ask again another way (the node lacks the method) into `again`."""
        end = offset + len(answers)
        for (method, _), (block, hashes), ans in zip(calls[offset:end], wants[offset:end], answers, strict=True):
            if isinstance(ans, RpcError) and is_method_missing(ans) and method != "eth_getTransactionReceipt":
                self._lacks(method)
                again.setdefault(block, set()).update(hashes)
                continue
            ans = self._expect(ans, f"{method}({block if method == 'trace_block' else next(iter(hashes))})")
            if method == "eth_getTransactionReceipt":
                if isinstance(ans, Mapping) and not _succeeded(ans):
                    undone[next(iter(hashes))] = {()}
                continue
            per_tx: dict[str, list[Mapping[str, Any]]] = {}
            for trace in ans or []:
                h = str(trace.get("transactionHash", "")).lower()
                if h in hashes:  # the block's other transactions do not matter here
                    per_tx.setdefault(h, []).append(trace)
            for h in hashes:
                undone[h] = mappers.failed_paths(per_tx.get(h, []))

    async def _in_slices(
        self, calls: Sequence[tuple[str, Sequence[Any]]], take: Callable[[int, list[Any]], None]
    ) -> None:
        """Send `calls` one HTTP batch at a time, at most `_HEAVY_BATCHES` in flight for the whole
        client, and hand each batch's answers to `take(offset, answers)` as soon as they arrive:
        answers too big to hold all at once (block traces, headers of thousands of blocks) never
        are, however many callers run at the same time."""
        step = max(1, self.rpc.batch_size)

        async def one(offset: int) -> None:
            async with self._heavy:
                answers = await self.rpc.batch(calls[offset : offset + step])
            take(offset, answers)

        await gather_or_cancel(one(i) for i in range(0, len(calls), step))

    def _lacks(self, method: str) -> None:
        if method == "trace_block":
            self.supports_trace_block = False
        elif method == "trace_transaction":
            self.supports_trace_transaction = False
            log.warning(
                "node at %s has trace_filter but no trace_transaction: reverts of parent calls are "
                "checked by receipt status only",
                self.url,
            )

    # block-scan path --------------------------------------------------------------------------

    async def _native_by_scan(
        self, wanted: frozenset[str], outgoing: bool, incoming: bool, from_block: int, to_block: int
    ) -> list[Transfer]:
        if self.debug_method is None and not self._warned_no_internal:
            self._warned_no_internal = True
            log.warning(
                "node at %s has neither trace_filter nor debug tracing: internal native transfers "
                "(ETH forwarded by contracts) cannot be seen; only top-level and token transfers",
                self.url,
            )
        out: list[Transfer] = []

        def pick(block: _ScannedBlock) -> None:
            for t in block.transfers:
                if (outgoing and t.from_address in wanted) or (incoming and t.to_address in wanted):
                    out.append(t)

        await self._each_block(from_block, to_block, pick)
        return out

    async def _each_block(self, from_block: int, to_block: int, pick: Callable[[_ScannedBlock], None]) -> None:
        """Every block of the range, scanned (or from the LRU), handed to `pick` (in no set order)."""
        # Windows bound memory (a mainnet block with full transactions is ~100 kB of JSON).
        window = max(1, min(self.rpc.batch_size * self.rpc.concurrency, 1000))
        missing: list[int] = []
        for n in range(from_block, to_block + 1):
            cached = self._blocks.get(n)
            if cached is None:
                missing.append(n)
            else:
                pick(cached)
        for start in range(0, len(missing), window):
            for block in await self._scan_blocks(missing[start : start + window]):
                self._blocks.put(block.number, block)
                pick(block)

    async def _scan_blocks(self, numbers: list[int]) -> list[_ScannedBlock]:
        answers = await self.rpc.batch([("eth_getBlockByNumber", [hex(n), True]) for n in numbers])
        blocks: list[Mapping[str, Any]] = []
        for n, block in zip(numbers, answers, strict=True):
            block = self._expect(block, f"eth_getBlockByNumber({n})")
            if not isinstance(block, Mapping):
                raise ChainError(f"node at {self.url} has no block {n} (beyond head {await self.head()}?)")
            blocks.append(block)
            self._times.put(n, mappers.quantity(block["timestamp"]))

        if self.debug_method == "debug_traceBlockByNumber":
            # The root callTracer frame tells whether the transaction failed (`error`) and which
            # contract it created (`to`): receipts are needed only where a frame is missing.
            traced = await self._block_call_traces(blocks)
            outcomes = {h: _frame_outcome(f) for h, f in traced.items()}
            unknown = [
                b
                for b in blocks
                if any(
                    isinstance(tx, Mapping) and str(tx["hash"]).lower() not in outcomes and self._outcome_matters(tx)
                    for tx in b.get("transactions") or []
                )
            ]
            receipts = {**await self._receipts(unknown), **outcomes}
        else:
            receipts = await self._receipts(blocks)
            traced = await self._tx_call_traces(blocks, receipts)

        scanned = []
        for block in blocks:
            number, ts = mappers.quantity(block["number"]), mappers.quantity(block["timestamp"])
            transfers: list[Transfer] = []
            senders: list[tuple[str, str]] = []
            for tx in block.get("transactions") or []:
                if not isinstance(tx, Mapping):
                    raise ChainError("eth_getBlockByNumber(n, true) returned hashes, not transactions")
                tx_hash = str(tx["hash"]).lower()
                sender = mappers.lower(tx.get("from"))
                if sender is not None:
                    senders.append((sender, tx_hash))
                receipt = receipts.get(tx_hash)
                if receipt is not None and not _succeeded(receipt):
                    continue  # a failed transaction moves nothing, not even its top-level value
                created = mappers.lower(receipt.get("contractAddress")) if receipt else None
                top = mappers.tx_transfer(self.chain, tx, number, ts, created)
                if top is not None:
                    transfers.append(top)
                frame = traced.get(tx_hash)
                if frame is not None:
                    transfers.extend(
                        mappers.call_frame_transfers(
                            self.chain,
                            frame,
                            block_number=number,
                            block_time=ts,
                            tx_hash=tx_hash,
                            tx_index=mappers.quantity(tx.get("transactionIndex") or 0),
                        )
                    )
            scanned.append(_ScannedBlock(number, ts, tuple(transfers), tuple(senders)))
        return scanned

    async def _receipts(self, blocks: list[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
        """Receipts (for status and created contract) of the transactions whose outcome matters:
        those that carry value or may move value inside (contract calls, when we can trace them)."""
        out: dict[str, Mapping[str, Any]] = {}
        if self.supports_block_receipts:
            with_txs = [b for b in blocks if b.get("transactions")]
            answers = await self.rpc.batch([("eth_getBlockReceipts", [b["number"]]) for b in with_txs])
            for block, rows in zip(with_txs, answers, strict=True):
                rows = self._expect(rows, f"eth_getBlockReceipts({block['number']})")
                for r in rows or []:
                    out[str(r["transactionHash"]).lower()] = r
            return out
        hashes = [
            str(tx["hash"]).lower()
            for b in blocks
            for tx in b.get("transactions") or []
            if isinstance(tx, Mapping) and self._outcome_matters(tx)
        ]
        answers = await self.rpc.batch([("eth_getTransactionReceipt", [h]) for h in hashes])
        for h, r in zip(hashes, answers, strict=True):
            r = self._expect(r, f"eth_getTransactionReceipt({h})")
            if not isinstance(r, Mapping):
                raise ChainError(f"node at {self.url} has no receipt for {h}")
            out[h] = r
        return out

    def _outcome_matters(self, tx: Mapping[str, Any]) -> bool:
        if mappers.quantity(tx.get("value") or 0) > 0:
            return True
        return self.debug_method is not None and _calls_code(tx)

    async def _block_call_traces(self, blocks: list[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
        """callTracer root frames by transaction hash, one debug_traceBlockByNumber per block."""
        chosen = [b for b in blocks if b.get("transactions")]
        answers = await self.rpc.batch(
            [("debug_traceBlockByNumber", [b["number"], {"tracer": "callTracer"}]) for b in chosen]
        )
        out: dict[str, Mapping[str, Any]] = {}
        for block, rows in zip(chosen, answers, strict=True):
            rows = self._expect(rows, f"debug_traceBlockByNumber({block['number']})")
            txs = block.get("transactions") or []
            for i, row in enumerate(rows or []):
                # Geth gives {"txHash", "result"}; older versions only {"result"}, in block order.
                h = row.get("txHash") or (txs[i]["hash"] if i < len(txs) else None)
                frame = row.get("result")
                if h and self._usable_frame(frame):
                    out[str(h).lower()] = frame
        return out

    async def _tx_call_traces(
        self, blocks: list[Mapping[str, Any]], receipts: Mapping[str, Mapping[str, Any]]
    ) -> dict[str, Mapping[str, Any]]:
        """callTracer root frames, one debug_traceTransaction per successful transaction that runs
        code (a plain value transfer to a contract whose receive() forwards it is not traced)."""
        if self.debug_method != "debug_traceTransaction":
            return {}
        hashes = [
            str(tx["hash"]).lower()
            for b in blocks
            for tx in b.get("transactions") or []
            if _calls_code(tx) and _succeeded(receipts.get(str(tx["hash"]).lower()) or {})
        ]
        answers = await self.rpc.batch([("debug_traceTransaction", [h, {"tracer": "callTracer"}]) for h in hashes])
        out: dict[str, Mapping[str, Any]] = {}
        for h, frame in zip(hashes, answers, strict=True):
            frame = self._expect(frame, f"debug_traceTransaction({h})")
            if self._usable_frame(frame):
                out[h] = frame
        return out

    def _usable_frame(self, frame: Any) -> bool:
        if mappers.is_call_frame(frame):
            return True
        if not self._warned_no_internal:
            self._warned_no_internal = True
            log.warning(
                "%s at %s does not answer with callTracer frames: internal native transfers cannot be seen",
                self.debug_method,
                self.url,
            )
        return False

    # ERC-20 and raw logs --------------------------------------------------------------------

    async def _token_transfers(
        self, chunks: list[tuple[str, ...]], directions: list[Direction], from_block: int, to_block: int
    ) -> list[Transfer]:
        queries = [q for d in directions for c in chunks for q in self._log_ranges(from_block, to_block, c, d)]
        found: list[Transfer] = []

        def build(q: _RangeQuery) -> tuple[str, list[Any]]:
            padded = [mappers.pad_topic(a) for a in q.addresses]
            topics: list[Any] = (
                [mappers.TRANSFER_TOPIC, padded] if q.direction == "out" else [mappers.TRANSFER_TOPIC, None, padded]
            )
            return "eth_getLogs", [{"fromBlock": hex(q.from_block), "toBlock": hex(q.to_block), "topics": topics}]

        def take(q: _RangeQuery, result: Any) -> None:
            for entry in result or []:
                t = mappers.log_transfer(self.chain, entry, self._log_time(entry))
                if t is not None:
                    found.append(t)

        await self._run_range_queries(queries, build, take)
        return found

    async def logs(
        self,
        address: str | Sequence[str] | None,
        topics: Sequence[str | Sequence[str] | None],
        from_block: int,
        to_block: int,
    ) -> list[LogRecord]:
        """Logs of one or more contracts (or any, with None) matching `topics` (eth_getLogs
        semantics: a list in a position means OR), with block times; sorted by block and index."""
        self._require_connected()
        if isinstance(address, str):
            contracts: tuple[str, ...] = (normalize_evm(address),)
        elif address is None:
            contracts = ()
        else:
            contracts = tuple(dict.fromkeys(normalize_evm(a) for a in address))
        topic_filter = [t if t is None or isinstance(t, str) else list(t) for t in topics]
        if from_block > to_block:
            return []
        chunked = [
            contracts[i : i + self.addresses_per_request] for i in range(0, len(contracts), self.addresses_per_request)
        ] or [()]
        queries = [q for c in chunked for q in self._log_ranges(from_block, to_block, c, "out")]
        rows: dict[tuple[str, int], Mapping[str, Any]] = {}

        def build(q: _RangeQuery) -> tuple[str, list[Any]]:
            params: dict[str, Any] = {
                "fromBlock": hex(q.from_block),
                "toBlock": hex(q.to_block),
                "topics": topic_filter,
            }
            if q.addresses:
                params["address"] = list(q.addresses)
            return "eth_getLogs", [params]

        def take(q: _RangeQuery, result: Any) -> None:
            for entry in result or []:
                if entry.get("removed"):
                    continue
                rows[(str(entry["blockHash"]).lower(), mappers.quantity(entry["logIndex"]))] = entry

        await self._run_range_queries(queries, build, take)
        times = await self.block_times(
            {mappers.quantity(e["blockNumber"]) for e in rows.values() if self._log_time(e) < 0}
        )
        for e in rows.values():
            if self._log_time(e) >= 0:
                times[mappers.quantity(e["blockNumber"])] = self._log_time(e)
        records = [
            LogRecord(
                block_number=mappers.quantity(e["blockNumber"]),
                block_time=times[mappers.quantity(e["blockNumber"])],
                tx_hash=str(e["transactionHash"]).lower(),
                tx_index=mappers.quantity(e.get("transactionIndex") or 0),
                log_index=mappers.quantity(e["logIndex"]),
                address=str(e["address"]).lower(),
                topics=tuple(str(t).lower() for t in e.get("topics") or []),
                data=str(e.get("data") or "0x").lower(),
            )
            for e in rows.values()
        ]
        records.sort(key=lambda r: (r.block_number, r.log_index))
        return records

    def _log_time(self, entry: Mapping[str, Any]) -> int:
        """The log's block time when the node puts it in the log (`blockTimestamp`: newer Geth,
        Reth, Anvil), which saves a header request for its block; -1 otherwise."""
        raw = entry.get("blockTimestamp")
        if raw is None:
            return -1
        ts = mappers.quantity(raw)
        self._times.put(mappers.quantity(entry["blockNumber"]), ts)
        return ts

    def _log_ranges(
        self, from_block: int, to_block: int, addresses: tuple[str, ...], direction: Direction
    ) -> list[_RangeQuery]:
        # Providers that cap the block span of eth_getLogs refuse wide ranges outright; cutting
        # up front (when configured) saves the refused request and the split.
        step = self.max_log_range or (to_block - from_block + 1)
        return [
            _RangeQuery(lo, min(lo + step - 1, to_block), addresses, direction)
            for lo in range(from_block, to_block + 1, step)
        ]

    async def _run_range_queries(
        self,
        queries: list[_RangeQuery],
        build: Callable[[_RangeQuery], tuple[str, list[Any]]],
        take: Callable[[_RangeQuery, Any], _RangeQuery | None],
    ) -> None:
        """Run queries in rounds of batches; split the ones refused as too big, follow pages.

        `build(q)` gives (method, params); `take(q, result)` consumes an answer and may return
        the next page's query.
        """
        pending = queries
        while pending:
            calls = [build(q) for q in pending]
            answers = await self.rpc.batch(calls)
            following: list[_RangeQuery] = []
            for q, (method, _), ans in zip(pending, calls, answers, strict=True):
                if isinstance(ans, RpcError):
                    if not is_result_cap(ans):
                        raise ChainError(
                            f"node at {self.url} refused {method} for blocks "
                            f"{q.from_block}..{q.to_block}: {ans.message}"
                        )
                    parts = self._smaller(q, method, ans)
                    if parts is None:
                        raise ChainError(
                            f"node at {self.url} refuses {method} even for one block ({q.from_block}) "
                            f"and one address: {ans.message}"
                        )
                    log.debug("%s %d..%d refused (%s), splitting", method, q.from_block, q.to_block, ans.message)
                    following.extend(parts)
                    continue
                nxt = take(q, ans)
                if nxt is not None:
                    following.append(nxt)
            pending = following

    def _smaller(self, q: _RangeQuery, method: str, err: RpcError) -> Sequence[_RangeQuery] | None:
        """What to ask instead of a query refused for its size (tracer.chains.limits.smaller); a
        block-span cap the node states holds for every later eth_getLogs too."""
        parts, span = smaller(q, err)
        if span is not None and method == "eth_getLogs" and (self.max_log_range is None or span < self.max_log_range):
            log.info("node at %s caps eth_getLogs at %d blocks: cutting every query to that", self.url, span)
            self.max_log_range = span
        return parts

    def _expect(self, answer: Any, what: str) -> Any:
        """An answer that must not be a JSON-RPC error."""
        if isinstance(answer, RpcError):
            raise ChainError(f"node at {self.url} failed {what}: {answer.message} (code {answer.code})")
        return answer


def _succeeded(receipt: Mapping[str, Any]) -> bool:
    status = receipt.get("status")
    # Receipts before Byzantium carry a state root instead of a status: no failure is visible.
    return status is None or mappers.quantity(status) == 1


def _frame_outcome(frame: Mapping[str, Any]) -> Mapping[str, Any]:
    """A receipt-like record (status, contractAddress) from a transaction's root callTracer frame."""
    creates = str(frame.get("type", "")).upper().startswith("CREATE")
    return {"status": "0x0" if frame.get("error") else "0x1", "contractAddress": frame.get("to") if creates else None}


def _calls_code(tx: Mapping[str, Any]) -> bool:
    data = tx.get("input", tx.get("data")) or "0x"
    return data not in ("0x", "") or tx.get("to") is None


def _path_of(position: str) -> tuple[int, ...]:
    if not position.startswith("call:"):
        return ()
    return tuple(int(p) for p in position[5:].split("."))
