"""ERC-20 transfers and raw logs of the EVM client, from `eth_getLogs`: topic0 = Transfer and a list
of padded addresses in topic1 (outgoing) or topic2 (incoming); a range the node refuses as too big
is split and retried (EvmNode's range queries)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from tracer.addresses import normalize_evm
from tracer.chains.evm import mappers
from tracer.chains.evm.node import EvmNode
from tracer.chains.jsonrpc import gather_or_cancel
from tracer.chains.limits import Direction, RangeQuery
from tracer.chains.records import LogAddresses, LogRecord, LogTopics
from tracer.domain.transfers import Transfer

# Merging the blocks of `logs_in_blocks` into ranges: a request is worth ~200 results more in an
# answer (a provider's rate cap counts requests, not results), and a range expected to return
# more than 2,000 stays clear of the 10,000-result caps. Until answers show a topic set's density
# (per contract, when asked by contract), one log per block is assumed, busy-mainnet-like: ranges
# stay narrow at first.
_GAP_RESULTS = 200
_RANGE_RESULTS = 2_000
_PRIOR_DENSITY = 1.0


class Logs(EvmNode):
    """Token transfers and logs by eth_getLogs."""

    async def _token_transfers(
        self, chunks: list[tuple[str, ...]], directions: list[Direction], from_block: int, to_block: int
    ) -> list[Transfer]:
        queries = [q for d in directions for c in chunks for q in self._log_ranges(from_block, to_block, c, d)]
        found: list[Transfer] = []

        def build(q: RangeQuery) -> tuple[str, list[Any]]:
            padded = [mappers.pad_topic(a) for a in q.addresses]
            topics: list[Any] = (
                [mappers.TRANSFER_TOPIC, padded] if q.direction == "out" else [mappers.TRANSFER_TOPIC, None, padded]
            )
            return "eth_getLogs", [{"fromBlock": hex(q.from_block), "toBlock": hex(q.to_block), "topics": topics}]

        def take(q: RangeQuery, result: Any) -> None:
            for entry in mappers.rows(result):
                t = mappers.log_transfer(self.chain, entry, self._log_time(entry))
                if t is not None:
                    found.append(t)

        await self._run_range_queries(queries, build, take)
        return found

    async def logs(self, address: LogAddresses, topics: LogTopics, from_block: int, to_block: int) -> list[LogRecord]:
        """Logs of one or more contracts (or any, with None) matching `topics` (eth_getLogs
        semantics: a list in a position means OR), with block times; sorted by block and index."""
        self._require_connected()
        if from_block > to_block:
            return []
        rows = await self._raw_logs(_contracts(address), _topic_filter(topics), [(from_block, to_block)])
        return await self._log_records(rows.values())

    async def logs_in_blocks(self, address: LogAddresses, topics: LogTopics, blocks: Iterable[int]) -> list[LogRecord]:
        """The logs `logs` would give in these blocks (no others), from as few eth_getLogs as the
        node's density of such logs allows: blocks far apart are asked in one range when the
        blocks between them are expected to add few results (see `_cover`)."""
        [found] = await self.logs_of_blocks([(address, topics, blocks)])
        return found

    async def logs_of_blocks(self, asks: Sequence[BlockLogAsk]) -> list[list[LogRecord]]:
        """Each ask's logs as `logs_in_blocks` gives them. Asks that filter on topic0 alone may
        share one set of requests (no address filter, their topic0s together, every block), when
        the densities seen so far say it takes fewer requests than one set per ask: the logs an
        address filter kept out are then read and dropped here. The first time, the logs an
        address filter keeps out are taken as dense as the prior (one per block)."""
        self._require_connected()
        parts = [_Ask(_contracts(a), _topic_filter(t), frozenset(b)) for a, t, b in asks]
        live = [p for p in parts if p.blocks]
        if len(live) > 1 and all(p.topic0 is not None for p in live):
            blocks = sorted(frozenset().union(*(p.blocks for p in live)))
            merged = _cover(blocks, sum(self._density(p.topics, None) for p in live))
            alone = sum(len(_cover(sorted(p.blocks), self._density(p.topics, p.contracts))) for p in live)
            if len(merged) < alone:
                topic0 = sorted(frozenset().union(*(p.topic0 or () for p in live)))
                rows = list((await self._raw_logs((), [topic0], merged)).values())
                span = sum(hi - lo + 1 for lo, hi in merged)
                for p in live:
                    mine = [e for e in rows if _topic0(e) in (p.topic0 or ())]
                    self._learn(p.topics, None, len(mine), span)
                    if p.contracts:
                        self._learn(p.topics, p.contracts, sum(1 for e in mine if e.address in p.contracts), span)
                return [await self._log_records(e for e in rows if p.matches(e)) if p.blocks else [] for p in parts]
        return list(await gather_or_cancel(self._ask_alone(p) for p in parts))

    async def _ask_alone(self, p: _Ask) -> list[LogRecord]:
        if not p.blocks:
            return []
        ranges = _cover(sorted(p.blocks), self._density(p.topics, p.contracts))
        rows = await self._raw_logs(p.contracts, p.topics, ranges)
        self._learn(p.topics, p.contracts, len(rows), sum(hi - lo + 1 for lo, hi in ranges))
        return await self._log_records(r for r in rows.values() if r.block_number in p.blocks)

    def _density(self, topics: list[Any], contracts: tuple[str, ...] | None) -> float:
        """Logs per block expected for this filter (`contracts` None: with no address filter)."""
        width = max(1, len(contracts or ()))
        found, spanned = self._log_seen.get((json.dumps(topics), bool(contracts)), (0, 0))
        # One result more than seen: a topic set that never logged is still not taken as free.
        return (found + 1) / spanned * width if spanned else _PRIOR_DENSITY

    def _learn(self, topics: list[Any], contracts: tuple[str, ...] | None, found: int, blocks: int) -> None:
        key = (json.dumps(topics), bool(contracts))
        was_found, was_spanned = self._log_seen.get(key, (0, 0))
        self._log_seen[key] = (was_found + found, was_spanned + blocks * max(1, len(contracts or ())))

    async def _raw_logs(
        self, contracts: tuple[str, ...], topic_filter: list[Any], ranges: Sequence[tuple[int, int]]
    ) -> dict[tuple[str, int], LogRecord]:
        chunked = [
            contracts[i : i + self.addresses_per_request] for i in range(0, len(contracts), self.addresses_per_request)
        ] or [()]
        queries = [q for lo, hi in ranges for c in chunked for q in self._log_ranges(lo, hi, c, "out")]
        rows: dict[tuple[str, int], LogRecord] = {}

        def build(q: RangeQuery) -> tuple[str, list[Any]]:
            params: dict[str, Any] = {
                "fromBlock": hex(q.from_block),
                "toBlock": hex(q.to_block),
                "topics": topic_filter,
            }
            if q.addresses:
                params["address"] = list(q.addresses)
            return "eth_getLogs", [params]

        def take(q: RangeQuery, result: Any) -> None:
            for entry in mappers.rows(result):
                if entry.get("removed"):
                    continue
                record = mappers.log_record(entry)
                rows[(str(entry["blockHash"]).lower(), record.log_index)] = record
                if record.block_time >= 0:
                    self._times.put(record.block_number, record.block_time)

        await self._run_range_queries(queries, build, take)
        return rows

    async def _log_records(self, found: Iterable[LogRecord]) -> list[LogRecord]:
        """Logs sorted by block and index, each with its block's time (headers read for the logs
        whose answer had none)."""
        records = list(found)
        times = await self.block_times({r.block_number for r in records if r.block_time < 0})
        records = [r if r.block_time >= 0 else replace(r, block_time=times[r.block_number]) for r in records]
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
    ) -> list[RangeQuery]:
        # Providers that cap the block span of eth_getLogs refuse wide ranges outright; cutting
        # up front (when configured) saves the refused request and the split.
        step = self.max_log_range or (to_block - from_block + 1)
        return [
            RangeQuery(lo, min(lo + step - 1, to_block), addresses, direction)
            for lo in range(from_block, to_block + 1, step)
        ]


BlockLogAsk = tuple[LogAddresses, LogTopics, Iterable[int]]  # (contracts, topics, blocks) of logs_of_blocks


@dataclass(frozen=True, slots=True)
class _Ask:
    contracts: tuple[str, ...]
    topics: list[Any]
    blocks: frozenset[int]

    @property
    def topic0(self) -> frozenset[str] | None:
        """The topic0s when the filter is on topic0 alone, else None."""
        if len(self.topics) != 1 or self.topics[0] is None:
            return None
        first = self.topics[0]
        return frozenset(t.lower() for t in ([first] if isinstance(first, str) else first))

    def matches(self, record: LogRecord) -> bool:
        return (record.block_number in self.blocks and _topic0(record) in (self.topic0 or ())
                and (not self.contracts or record.address in self.contracts))


def _topic0(record: LogRecord) -> str:
    return record.topics[0] if record.topics else ""


def _contracts(address: LogAddresses) -> tuple[str, ...]:
    if isinstance(address, str):
        return (normalize_evm(address),)
    if address is None:
        return ()
    return tuple(dict.fromkeys(normalize_evm(a) for a in address))


def _topic_filter(topics: LogTopics) -> list[Any]:
    return [t if t is None or isinstance(t, str) else list(t) for t in topics]


def _cover(blocks: Sequence[int], density: float) -> list[tuple[int, int]]:
    """Sorted blocks as few (first, last) ranges: a gap is bridged when the logs expected in it
    (density per block) stay under what another request is worth, and a range grows while the
    logs expected in it stay well under the providers' result caps."""
    out: list[tuple[int, int]] = []
    for b in blocks:
        if out and (b - out[-1][1]) * density <= _GAP_RESULTS and (b - out[-1][0] + 1) * density <= _RANGE_RESULTS:
            out[-1] = (out[-1][0], b)
        else:
            out.append((b, b))
    return out
