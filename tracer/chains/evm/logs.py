"""ERC-20 transfers and raw logs of the EVM client, from `eth_getLogs`: topic0 = Transfer and a list
of padded addresses in topic1 (outgoing) or topic2 (incoming); a range the node refuses as too big
is split and retried (EvmNode's range queries)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tracer.addresses import normalize_evm
from tracer.chains.evm import mappers
from tracer.chains.evm.node import EvmNode
from tracer.chains.limits import Direction, RangeQuery
from tracer.chains.records import LogAddresses, LogRecord, LogTopics
from tracer.domain.transfers import Transfer


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
    ) -> list[RangeQuery]:
        # Providers that cap the block span of eth_getLogs refuse wide ranges outright; cutting
        # up front (when configured) saves the refused request and the split.
        step = self.max_log_range or (to_block - from_block + 1)
        return [
            RangeQuery(lo, min(lo + step - 1, to_block), addresses, direction)
            for lo in range(from_block, to_block + 1, step)
        ]
