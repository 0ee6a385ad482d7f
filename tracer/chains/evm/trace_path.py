"""The trace path of the EVM client (Erigon, Reth, Nethermind, Anvil, the devchain): native transfers
from `trace_filter` with a list of `fromAddress` (outgoing) or `toAddress` (incoming) per request,
paginated with after/count, covering top-level and internal transfers. Calls below a reverted call
carry no `error` of their own, so transactions with internal transfers are checked with
`trace_block` (blocks holding several of them) or `trace_transaction`."""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from tracer.chains.errors import ChainError, RpcError
from tracer.chains.evm import history, mappers
from tracer.chains.evm.node import EvmNode
from tracer.chains.jsonrpc import is_method_missing
from tracer.chains.limits import Direction, RangeQuery
from tracer.domain.transfers import Transfer

log = logging.getLogger(__name__)


class TracePath(EvmNode):
    """Native transfers and the senders of transactions, by trace_filter."""

    async def _native_by_trace(
        self, chunks: list[tuple[str, ...]], directions: list[Direction], from_block: int, to_block: int
    ) -> list[Transfer]:
        page = self.trace_page_size
        queries = [RangeQuery(from_block, to_block, c, d) for d in directions for c in chunks]
        transfers: list[Transfer] = []

        def take(q: RangeQuery, result: Any) -> RangeQuery | None:
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

    def _trace_filter_request(self, q: RangeQuery) -> tuple[str, list[Any]]:
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

    async def _trace_senders(
        self, wanted: frozenset[str], from_block: int, to_block: int
    ) -> dict[str, tuple[str, int, str]]:
        """(sender, block, hash) by hash of every top-level transaction `wanted` sent in the range."""
        sent: dict[str, tuple[str, int, str]] = {}
        ordered = tuple(sorted(wanted))
        page = self.trace_page_size
        step = self.addresses_per_request
        chunks = [ordered[i : i + step] for i in range(0, len(ordered), step)]

        def take(q: RangeQuery, result: Any) -> RangeQuery | None:
            rows = result or []
            for row in rows:
                found = history.top_level_sender(row)
                if found is not None and found[0] in wanted:
                    sent[found[2]] = found
            return replace(q, after=q.after + len(rows)) if len(rows) >= page else None

        queries = [RangeQuery(from_block, to_block, c) for c in chunks]
        await self._run_range_queries(queries, self._trace_filter_request, take)
        return sent

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
                if isinstance(ans, Mapping) and not mappers.succeeded(ans):
                    undone[next(iter(hashes))] = {()}
                continue
            per_tx: dict[str, list[Mapping[str, Any]]] = {}
            for trace in ans or []:
                h = str(trace.get("transactionHash", "")).lower()
                if h in hashes:  # the block's other transactions do not matter here
                    per_tx.setdefault(h, []).append(trace)
            for h in hashes:
                undone[h] = mappers.failed_paths(per_tx.get(h, []))

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


def _path_of(position: str) -> tuple[int, ...]:
    if not position.startswith("call:"):
        return ()
    return tuple(int(p) for p in position[5:].split("."))
