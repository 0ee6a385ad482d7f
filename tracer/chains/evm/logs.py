"""ERC-20 transfers and raw logs of the EVM client, from `eth_getLogs`: topic0 = Transfer and a list
of padded addresses in topic1 (outgoing) or topic2 (incoming); a range the node refuses as too big
is split and retried (EvmNode's range queries)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tracer.addresses import normalize_evm
from tracer.chains.evm import mappers
from tracer.chains.evm.node import EvmNode
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
            for entry in result or []:
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
        self._require_connected()
        wanted = sorted(set(blocks))
        if not wanted:
            return []
        contracts, topic_filter = _contracts(address), _topic_filter(topics)
        key = (json.dumps(topic_filter), bool(contracts))
        width = max(1, len(contracts))
        found, spanned = self._log_seen.get(key, (0, 0))
        # One result more than seen: a topic set that never logged is still not taken as free.
        density = (found + 1) / spanned * width if spanned else _PRIOR_DENSITY
        ranges = _cover(wanted, density)
        rows = await self._raw_logs(contracts, topic_filter, ranges)
        self._log_seen[key] = (found + len(rows), spanned + width * sum(hi - lo + 1 for lo, hi in ranges))
        keep = set(wanted)
        return await self._log_records(e for e in rows.values() if mappers.quantity(e["blockNumber"]) in keep)

    async def _raw_logs(
        self, contracts: tuple[str, ...], topic_filter: list[Any], ranges: Sequence[tuple[int, int]]
    ) -> dict[tuple[str, int], Mapping[str, Any]]:
        chunked = [
            contracts[i : i + self.addresses_per_request] for i in range(0, len(contracts), self.addresses_per_request)
        ] or [()]
        queries = [q for lo, hi in ranges for c in chunked for q in self._log_ranges(lo, hi, c, "out")]
        rows: dict[tuple[str, int], Mapping[str, Any]] = {}

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
            for entry in result or []:
                if entry.get("removed"):
                    continue
                rows[(str(entry["blockHash"]).lower(), mappers.quantity(entry["logIndex"]))] = entry

        await self._run_range_queries(queries, build, take)
        return rows

    async def _log_records(self, entries: Iterable[Mapping[str, Any]]) -> list[LogRecord]:
        rows = list(entries)
        times = await self.block_times(
            {mappers.quantity(e["blockNumber"]) for e in rows if self._log_time(e) < 0}
        )
        for e in rows:
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
            for e in rows
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
    ) -> list[RangeQuery]:
        # Providers that cap the block span of eth_getLogs refuse wide ranges outright; cutting
        # up front (when configured) saves the refused request and the split.
        step = self.max_log_range or (to_block - from_block + 1)
        return [
            RangeQuery(lo, min(lo + step - 1, to_block), addresses, direction)
            for lo in range(from_block, to_block + 1, step)
        ]


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
