"""The block-scan path of the EVM client (Geth, eth-tester, most public endpoints): every block of the
range read in JSON-RPC batches (`eth_getBlockByNumber(n, true)`, receipts for status); internal
calls from `debug_traceBlockByNumber` (whose root frames also give each transaction's status, so no
receipts are fetched) or `debug_traceTransaction` with the callTracer when the node has them (and
reported missing once, in a warning, when it has neither). Scanned blocks are kept in a bounded
LRU because the engine asks overlapping ranges for different address batches."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from tracer.chains.errors import ChainError
from tracer.chains.evm import mappers
from tracer.chains.evm.node import EvmNode
from tracer.chains.evm.records import ScannedBlock
from tracer.domain.transfers import Transfer, TransferQuery

log = logging.getLogger(__name__)


class ScanPath(EvmNode):
    """Native transfers and the senders of transactions, by reading every block of a range."""

    async def _native_by_scan(self, wanted: frozenset[str], query: TransferQuery) -> list[Transfer]:
        if self.debug_method is None and not self._warned_no_internal:
            self._warned_no_internal = True
            log.warning(
                "node at %s has neither trace_filter nor debug tracing: internal native transfers "
                "(ETH forwarded by contracts) cannot be seen; only top-level and token transfers",
                self.name,
            )
        out: list[Transfer] = []

        def pick(block: ScannedBlock) -> None:
            for t in block.transfers:
                if query.wants(t, wanted):
                    out.append(t)

        await self._each_block(query.from_block, query.to_block, pick)
        return out

    async def _scan_senders(
        self, wanted: frozenset[str], from_block: int, to_block: int
    ) -> dict[str, tuple[str, int, str]]:
        """(sender, block, hash) by hash of every transaction `wanted` sent in the range."""
        sent: dict[str, tuple[str, int, str]] = {}

        def pick(block: ScannedBlock) -> None:
            for sender, tx_hash in block.senders:
                if sender in wanted:
                    sent[tx_hash] = (sender, block.number, tx_hash)

        await self._each_block(from_block, to_block, pick)
        return sent

    async def _each_block(self, from_block: int, to_block: int, pick: Callable[[ScannedBlock], None]) -> None:
        """Every block of the range, scanned (or from the LRU), handed to `pick` (in no set order)."""
        # Windows bound memory (a mainnet block with full transactions is ~100 kB of JSON).
        window = max(1, min(self.rpc.batch_size * self.rpc.options.concurrency, 1000))
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

    async def _scan_blocks(self, numbers: list[int]) -> list[ScannedBlock]:
        answers = await self.rpc.batch([("eth_getBlockByNumber", [hex(n), True]) for n in numbers])
        blocks: list[Mapping[str, Any]] = []
        for n, block in zip(numbers, answers, strict=True):
            block = self._expect(block, f"eth_getBlockByNumber({n})")
            if not isinstance(block, Mapping):
                raise ChainError(f"node at {self.name} has no block {n} (beyond head {await self.head()}?)")
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
                if receipt is not None and not mappers.succeeded(receipt):
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
            scanned.append(ScannedBlock(number, ts, tuple(transfers), tuple(senders)))
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
                raise ChainError(f"node at {self.name} has no receipt for {h}")
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
            if _calls_code(tx) and mappers.succeeded(receipts.get(str(tx["hash"]).lower()) or {})
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
                self.name,
            )
        return False


def _frame_outcome(frame: Mapping[str, Any]) -> Mapping[str, Any]:
    """A receipt-like record (status, contractAddress) from a transaction's root callTracer frame."""
    creates = str(frame.get("type", "")).upper().startswith("CREATE")
    return {"status": "0x0" if frame.get("error") else "0x1", "contractAddress": frame.get("to") if creates else None}


def _calls_code(tx: Mapping[str, Any]) -> bool:
    data = tx.get("input", tx.get("data")) or "0x"
    return data not in ("0x", "") or tx.get("to") is None

