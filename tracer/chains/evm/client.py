"""EvmChain: value transfers of many addresses over JSON-RPC, with as few requests as the node allows.

Which node methods are used is decided once, in `connect()`:

- **trace path** (tracer.chains.evm.trace_path: Erigon, Reth, Nethermind, Anvil, the devchain):
  `trace_filter` by lists of addresses, covering top-level and internal native transfers;
- **block-scan path** (tracer.chains.evm.scan_path: Geth, eth-tester, most public endpoints): every
  block of the range in JSON-RPC batches, internal calls from the debug callTracer when the node
  has it.

ERC-20 transfers and raw logs come from `eth_getLogs` (tracer.chains.evm.logs) on either path.
What the paths share (transport, caches, block times, range queries) is tracer.chains.evm.node.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from tracer.addresses import normalize_evm
from tracer.chains.answers import SHAPE_ERRORS
from tracer.chains.errors import RpcError, WrongChain
from tracer.chains.evm import history, mappers
from tracer.chains.evm.logs import Logs
from tracer.chains.evm.scan_path import ScanPath
from tracer.chains.evm.state import StateReads
from tracer.chains.evm.trace_path import TracePath
from tracer.chains.jsonrpc import gather_or_cancel, is_method_missing
from tracer.chains.lifecycle import Connected
from tracer.chains.limits import Direction
from tracer.chains.records import FeePaid
from tracer.domain.transfers import Transfer, TransferQuery

log = logging.getLogger(__name__)

_DECIMALS = "0x313ce567"
_SYMBOL = "0x95d89b41"
_ZERO_HASH = "0x" + "00" * 32


class EvmChain(StateReads, TracePath, ScanPath, Logs, Connected):
    """Read access to one EVM chain through one JSON-RPC node; see the module docstring."""

    # -- lifecycle ----------------------------------------------------------------------------

    async def connect(self) -> None:
        """Check the chain id and find out once which methods the node has."""
        await self.rpc.open()
        self.chain_id = await self.ask_quantity("eth_chainId")
        if self.expected_chain_id is not None and self.chain_id != self.expected_chain_id:
            raise WrongChain(
                f"node at {self.name} serves chain id {self.chain_id}, but chain {self.chain!r} "
                f"expects {self.expected_chain_id}: check the RPC URL"
            )
        head = await self.head()
        self._connect_head = (head, time.monotonic())
        self.supports_trace = self.use_trace_filter and await self._probe_trace_filter(head)
        # Receipts give the fees balances are derived with, on either path.
        self.supports_block_receipts = await self._probe(
            "eth_getBlockReceipts", [hex(head)], lambda r: isinstance(r, list)
        )
        self.state_probe = await history.probe_historical_state(self, head)
        self.historical_state = self.state_probe.historical_state
        if self.state_probe.multicall:
            self.multicall = True
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
            self.name,
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

    async def fees_paid(self, addresses: Iterable[str], from_block: int, to_block: int) -> list[FeePaid]:
        """The fee of every transaction `addresses` sent in [from_block, to_block], failed ones
        and ones that moved no value included: what a balance lost besides its transfers."""
        self._require_connected()
        wanted = frozenset(normalize_evm(a) for a in addresses)
        if not wanted or from_block > to_block:
            return []
        if self.supports_trace:
            sent = await self._trace_senders(wanted, from_block, to_block)
        else:
            sent = await self._scan_senders(wanted, from_block, to_block)
        return await history.sent_fees(self, sent.values())

    async def token_meta(self, tokens: Iterable[str]) -> dict[str, tuple[int | None, str | None]]:
        """(decimals, symbol) per token via eth_call at the latest block (all in one through
        Multicall3 where the node has it); None where it has none."""
        wanted = list(dict.fromkeys(normalize_evm(t) for t in tokens))
        missing = [t for t in wanted if t not in self._token_meta]
        if missing:
            answers = await self.calls_at([(t, sel) for t in missing for sel in (_DECIMALS, _SYMBOL)], "latest")
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
            try:
                present = mappers.code_present(code)
            except SHAPE_ERRORS as exc:
                raise self.malformed("eth_getCode", code, exc) from exc
            if present:
                self._contracts.add(a)
        return {a: a in self._contracts for a in wanted}

    async def gas_prices(self, tx_hashes: Iterable[str]) -> dict[str, int]:
        """Gas price (wei) paid by each transaction, for the mixer linker's unusual-gas-price
        heuristic: `gasPrice` of eth_getTransactionByHash (nodes report the effective price there
        for mined EIP-1559 transactions), else `effectiveGasPrice` when a node puts it there.
        Batched; cached, since a mined transaction's price never changes. Transactions the node
        does not know, or answers for with an error, are left out: the heuristic then sits out
        for them rather than failing the trace."""
        out, missing = self._gas.split(dict.fromkeys(str(h).lower() for h in tx_hashes))
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

    async def transfers(self, query: TransferQuery) -> list[Transfer]:
        """Every value transfer the query asks for: native top-level, native internal and ERC-20;
        failed transactions and calls and zero values left out; deduplicated by `Transfer.key`;
        sorted by `Transfer.order`. Without `query.times`, no header is read for block times the
        answers and the cache do not already hold (`block_time` is then -1)."""
        self._require_connected()
        wanted = frozenset(normalize_evm(a) for a in query.addresses)
        if query.empty:
            return []
        from_block, to_block = query.from_block, query.to_block
        directions: list[Direction] = []
        if query.outgoing:
            directions.append("out")
        if query.incoming:
            directions.append("in")
        ordered = tuple(sorted(wanted))
        chunks = [
            ordered[i : i + self.addresses_per_request] for i in range(0, len(ordered), self.addresses_per_request)
        ]
        if self.supports_trace:
            native_job = self._native_by_trace(chunks, directions, from_block, to_block)
        else:
            native_job = self._native_by_scan(wanted, query)
        native, tokens = await gather_or_cancel(
            [native_job, self._token_transfers(chunks, directions, from_block, to_block)]
        )
        found: dict[tuple[str, str, str], Transfer] = {}
        for transfer in (*native, *tokens):
            found.setdefault(transfer.key, transfer)
        untimed = {t.block_number for t in found.values() if t.block_time < 0}
        known = await self.block_times(untimed) if query.times else self._cached_times(untimed)
        result = [t if t.block_time >= 0 or t.block_number not in known
                  else replace(t, block_time=known[t.block_number]) for t in found.values()]
        result.sort(key=lambda t: t.order)
        return result

