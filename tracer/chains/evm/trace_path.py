"""The trace path of the EVM client (Erigon, Reth, Nethermind, Anvil, the devchain): native transfers
from `trace_filter` with a list of `fromAddress` (outgoing) or `toAddress` (incoming) per request,
paginated with after/count, covering top-level and internal transfers. Calls below a reverted call
carry no `error` of their own, so an internal transfer is checked against its ancestor calls: where
the trace_filter answers already held every one of them (a contract wallet called straight from an
EOA: the call into it is in the incoming answer), their `error` fields decide; the other
transactions are read whole with `trace_block` (blocks holding several of them) or
`trace_transaction`."""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from tracer.chains.errors import ChainError, MalformedAnswer, RpcError
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
        if len(directions) == 2 and self.trace_union is not False:
            # Both directions in one query per chunk (mode "union": from in the list OR to in it).
            # Until an answer proves the node honours the mode (a row with only one end among
            # the addresses, which an intersection could not hold), the two one-sided queries
            # are asked too and taken instead; a node they show to ignore it, or that refuses the
            # mode (a filter type without the field), is not asked again.
            try:
                union = await self._trace_rows(chunks, ["both"], from_block, to_block)
            except MalformedAnswer:
                raise  # garbage is no refusal of the mode
            except ChainError as err:
                if self.trace_union is not None:
                    raise
                self.trace_union = False
                log.info("node at %s refused trace_filter mode=union (%s): one query per direction", self.name, err)
                union = _Rows()
            if not self.trace_union:
                separate = await self._trace_rows(chunks, directions, from_block, to_block)
                if separate.seen - union.seen:
                    self.trace_union = False
                    log.info("node at %s ignores trace_filter mode=union: one query per direction", self.name)
                union = separate
        else:
            union = await self._trace_rows(chunks, directions, from_block, to_block)
        return await self._drop_reverted_internal(union.transfers, union.parents)

    async def _trace_rows(
        self, chunks: list[tuple[str, ...]], directions: list[Direction], from_block: int, to_block: int
    ) -> _Rows:
        page = self.trace_page_size
        queries = [RangeQuery(from_block, to_block, c, d) for d in directions for c in chunks]
        found = _Rows()
        proving = self.trace_union is None

        def take(q: RangeQuery, result: Any) -> RangeQuery | None:
            rows = mappers.rows(result)
            # Mapped as each page arrives: the raw trace dicts (several times a Transfer's size)
            # of a busy address's whole history are never held at once.
            found.transfers.extend(t for t in (mappers.parity_trace_transfer(self.chain, tr, -1) for tr in rows) if t)
            for tr in rows:
                if tr.get("subtraces") and tr.get("transactionHash"):
                    found.parents[(str(tr["transactionHash"]).lower(), mappers.trace_path(tr))] = bool(tr.get("error"))
            if proving:
                found.seen.update(_identity(tr) for tr in rows)
                if q.direction == "both" and any(not _ends(tr) <= set(q.addresses) for tr in rows):
                    self.trace_union = True
            # A full page means there may be more: ask for the next one.
            return replace(q, after=q.after + len(rows)) if len(rows) >= page else None

        await self._run_range_queries(queries, self._trace_filter_request, take)
        return found

    def _trace_filter_request(self, q: RangeQuery) -> tuple[str, list[Any]]:
        # Block numbers always in hex: Anvil refuses tags ("latest") in trace_filter.
        params: dict[str, Any] = {
            "fromBlock": hex(q.from_block),
            "toBlock": hex(q.to_block),
            "count": self.trace_page_size,
        }
        if q.direction in ("out", "both"):
            params["fromAddress"] = list(q.addresses)
        if q.direction in ("in", "both"):
            params["toAddress"] = list(q.addresses)
        if q.direction == "both":
            params["mode"] = "union"
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
            rows = mappers.rows(result)
            for row in rows:
                found = history.top_level_sender(row)
                if found is not None and found[0] in wanted:
                    sent[found[2]] = found
            return replace(q, after=q.after + len(rows)) if len(rows) >= page else None

        queries = [RangeQuery(from_block, to_block, c) for c in chunks]
        await self._run_range_queries(queries, self._trace_filter_request, take)
        return sent

    async def _drop_reverted_internal(
        self, transfers: list[Transfer], parents: dict[tuple[str, tuple[int, ...]], bool]
    ) -> list[Transfer]:
        """Drop internal transfers undone by a reverting ancestor call.

        A trace_filter answer holds only the matching calls; a call whose parent reverted has no
        `error` of its own. `parents` are the calls with subcalls the answers held: where every
        ancestor of a transfer is among them it is decided here, otherwise the whole
        transaction's trace is read to know whether it moved anything.
        """
        by_block: dict[int, set[str]] = {}
        for t in transfers:
            if t.position != "tx" and not _ancestors_known(t, parents):
                by_block.setdefault(t.block_number, set()).add(t.tx_hash)
        undone = await self._failed_calls(by_block) if by_block else {}
        read_whole = set(undone)
        for (tx, path), failed in parents.items():
            if failed and tx not in read_whole:
                undone.setdefault(tx, set()).add(path)
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
        i: int,
        ans: Any,
    ) -> None:
        """One answer of `_failed_calls` (the one to `calls[i]`): failed-call paths into `undone`,
        or the blocks to ask again another way (the node lacks the method) into `again`."""
        method, (block, hashes) = calls[i][0], wants[i]
        if isinstance(ans, RpcError) and is_method_missing(ans) and method != "eth_getTransactionReceipt":
            self._lacks(method)
            again.setdefault(block, set()).update(hashes)
            return
        ans = self._expect(ans, f"{method}({block if method == 'trace_block' else next(iter(hashes))})")
        if method == "eth_getTransactionReceipt":
            if ans is not None and not mappers.succeeded(ans):
                undone[next(iter(hashes))] = {()}
            return
        per_tx: dict[str, list[Mapping[str, Any]]] = {}
        for trace in mappers.rows(ans):
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
                self.name,
            )


@dataclass
class _Rows:
    """What trace_filter answers held: transfers, the calls that made calls (whether each
    failed), and, while the union mode is unproven, every row's identity."""

    transfers: list[Transfer] = field(default_factory=list)
    parents: dict[tuple[str, tuple[int, ...]], bool] = field(default_factory=dict)
    seen: set[tuple[Any, ...]] = field(default_factory=set)


def _identity(row: Mapping[str, Any]) -> tuple[Any, ...]:
    return (str(row.get("blockNumber")), str(row.get("transactionHash")).lower(), tuple(row.get("traceAddress") or ()),
            str(row.get("type")), *sorted(_ends(row)))


def _ends(row: Mapping[str, Any]) -> set[str]:
    """The addresses a trace_filter address list matches a row by: sender and receiver (the
    created contract, the selfdestruct's beneficiary)."""
    action = row.get("action") or {}
    result = row.get("result") or {}
    ends = {action.get("from"), action.get("to"), action.get("address"), action.get("refundAddress"),
            result.get("address") if isinstance(result, Mapping) else None, action.get("author")}
    return {str(e).lower() for e in ends if e}


def _ancestors_known(t: Transfer, parents: dict[tuple[str, tuple[int, ...]], bool]) -> bool:
    path = _path_of(t.position)
    return all((t.tx_hash, path[:depth]) in parents for depth in range(len(path)))


def _path_of(position: str) -> tuple[int, ...]:
    if not position.startswith("call:"):
        return ()
    return tuple(int(p) for p in position[5:].split("."))
