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

from tracer.chains.answers import SHAPE_ERRORS
from tracer.chains.errors import ChainError
from tracer.chains.evm import mappers
from tracer.chains.evm.node import EvmNode
from tracer.chains.evm.records import ScannedBlock
from tracer.domain.transfers import Transfer, TransferQuery

log = logging.getLogger(__name__)

# A transaction without a receipt here is traced: only a known failure spares the call.
_UNKNOWN = mappers.Outcome(succeeded=True, created=None)


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
        blocks: list[mappers.FullBlock] = []
        for n, answer in zip(numbers, answers, strict=True):
            answer = self._expect(answer, f"eth_getBlockByNumber({n})")
            if answer is None:
                raise ChainError(f"node at {self.name} has no block {n} (eth_getBlockByNumber answered null; beyond "
                                 f"head {await self.head()}?)")
            try:
                block = mappers.full_block(answer)
            except SHAPE_ERRORS as exc:
                raise self.malformed("eth_getBlockByNumber", answer, exc) from exc
            blocks.append(block)
            self._times.put(n, block.time)
        del answers

        if self.debug_method == "debug_traceBlockByNumber":
            # The root callTracer frame tells whether the transaction failed (`error`) and which
            # contract it created (`to`): receipts are needed only where a frame is missing.
            traced = await self._block_call_traces(blocks)
            outcomes = {h: _frame_outcome(f) for h, f in traced.items()}
            unknown = [b for b in blocks if any(tx.hash not in outcomes and self._outcome_matters(tx) for tx in b.txs)]
            receipts = {**await self._receipts(unknown), **outcomes}
        else:
            receipts = await self._receipts(blocks)
            traced = await self._tx_call_traces(blocks, receipts)

        scanned = []
        for block in blocks:
            transfers: list[Transfer] = []
            for tx in block.txs:
                receipt = receipts.get(tx.hash)
                if receipt is not None and not receipt.succeeded:
                    continue  # a failed transaction moves nothing, not even its top-level value
                created = receipt.created if receipt else None
                top = mappers.tx_transfer(self.chain, tx, block.number, block.time, created)
                if top is not None:
                    transfers.append(top)
                frame = traced.get(tx.hash)
                if frame is not None:
                    try:
                        transfers.extend(mappers.call_frame_transfers(
                            self.chain, frame, block_number=block.number, block_time=block.time, tx_hash=tx.hash,
                            tx_index=tx.index))
                    except SHAPE_ERRORS as exc:
                        raise self.malformed(str(self.debug_method), frame, exc, expected="a callTracer frame") from exc
            senders = tuple((tx.sender, tx.hash) for tx in block.txs if tx.sender is not None)
            scanned.append(ScannedBlock(block.number, block.time, tuple(transfers), senders))
        return scanned

    async def _receipts(self, blocks: list[mappers.FullBlock]) -> dict[str, mappers.Outcome]:
        """Outcomes (status and created contract) of the transactions whose outcome matters: those
        that carry value or may move value inside (contract calls, when we can trace them)."""
        out: dict[str, mappers.Outcome] = {}
        if self.supports_block_receipts:
            with_txs = [b for b in blocks if b.txs]
            answers = await self.rpc.batch([("eth_getBlockReceipts", [hex(b.number)]) for b in with_txs])
            for block, rows in zip(with_txs, answers, strict=True):
                rows = self._expect(rows, f"eth_getBlockReceipts({block.number})")
                try:
                    for r in rows:  # null too is no answer for a block that has transactions
                        out[str(r["transactionHash"]).lower()] = mappers.outcome(r)
                except SHAPE_ERRORS as exc:
                    raise self.malformed("eth_getBlockReceipts", rows, exc) from exc
            return out
        hashes = [tx.hash for b in blocks for tx in b.txs if self._outcome_matters(tx)]
        answers = await self.rpc.batch([("eth_getTransactionReceipt", [h]) for h in hashes])
        for h, r in zip(hashes, answers, strict=True):
            r = self._expect(r, f"eth_getTransactionReceipt({h})")
            if r is None:
                raise ChainError(f"node at {self.name} has no receipt for {h} (eth_getTransactionReceipt: null)")
            try:
                out[h] = mappers.outcome(r)
            except SHAPE_ERRORS as exc:
                raise self.malformed("eth_getTransactionReceipt", r, exc) from exc
        return out

    def _outcome_matters(self, tx: mappers.BlockTx) -> bool:
        return tx.value > 0 or (self.debug_method is not None and tx.runs_code)

    async def _block_call_traces(self, blocks: list[mappers.FullBlock]) -> dict[str, Mapping[str, Any]]:
        """callTracer root frames by transaction hash, one debug_traceBlockByNumber per block."""
        chosen = [b for b in blocks if b.txs]
        answers = await self.rpc.batch(
            [("debug_traceBlockByNumber", [hex(b.number), {"tracer": "callTracer"}]) for b in chosen]
        )
        out: dict[str, Mapping[str, Any]] = {}
        for block, rows in zip(chosen, answers, strict=True):
            rows = self._expect(rows, f"debug_traceBlockByNumber({block.number})")
            mine = {tx.hash for tx in block.txs}
            try:
                for i, row in enumerate(mappers.rows(rows)):
                    # Geth gives {"txHash", "result"}; older versions only {"result"}, in block order.
                    h = str(row.get("txHash") or (block.txs[i].hash if i < len(block.txs) else "")).lower()
                    if h not in mine:
                        raise ValueError(f"a trace of {h[:80]!r}, no transaction of block {block.number}")
                    frame = row.get("result")
                    if self._usable_frame(frame):
                        out[h] = frame
            except SHAPE_ERRORS as exc:
                raise self.malformed("debug_traceBlockByNumber", rows, exc) from exc
        return out

    async def _tx_call_traces(
        self, blocks: list[mappers.FullBlock], receipts: Mapping[str, mappers.Outcome]
    ) -> dict[str, Mapping[str, Any]]:
        """callTracer root frames, one debug_traceTransaction per successful transaction that runs
        code (a plain value transfer to a contract whose receive() forwards it is not traced)."""
        if self.debug_method != "debug_traceTransaction":
            return {}
        hashes = [tx.hash for b in blocks for tx in b.txs if tx.runs_code and receipts.get(tx.hash, _UNKNOWN).succeeded]
        answers = await self.rpc.batch([("debug_traceTransaction", [h, {"tracer": "callTracer"}]) for h in hashes])
        out: dict[str, Mapping[str, Any]] = {}
        for h, frame in zip(hashes, answers, strict=True):
            frame = self._expect(frame, f"debug_traceTransaction({h})")
            if frame is None:
                raise self.malformed("debug_traceTransaction", frame)
            try:
                usable = self._usable_frame(frame)
            except SHAPE_ERRORS as exc:
                raise self.malformed("debug_traceTransaction", frame, exc) from exc
            if usable:
                out[h] = frame
        return out

    def _usable_frame(self, frame: Any) -> bool:
        """Whether `frame` is a callTracer frame. A node that ignored `tracer: callTracer` (it gives
        structLogs) or traced nothing (null) is warned of once; anything else is garbage."""
        if mappers.is_call_frame(frame):
            return True
        if frame is not None and not (isinstance(frame, Mapping) and "structLogs" in frame):
            raise TypeError()
        if not self._warned_no_internal:
            self._warned_no_internal = True
            log.warning(
                "%s at %s does not answer with callTracer frames: internal native transfers cannot be seen",
                self.debug_method,
                self.name,
            )
        return False


def _frame_outcome(frame: Mapping[str, Any]) -> mappers.Outcome:
    """The outcome (succeeded, created contract) of a transaction from its root callTracer frame."""
    creates = str(frame.get("type", "")).upper().startswith("CREATE")
    return mappers.Outcome(not frame.get("error"), mappers.lower(frame.get("to")) if creates else None)
