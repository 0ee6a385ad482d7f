"""The dev chain's storage: blocks, transactions, call frames and logs by global id, and their search.

Every call frame and every log gets a global id in execution order, so a block range is an id
range and per-address / per-topic postings (sorted id lists) answer trace_filter and eth_getLogs by
bisection, also over millions of transfers. `append_block()` and `reorg()` change the chain while a
server runs (the alerting tests need new blocks and replaced ones).
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from eth_hash.auto import keccak

from tracer.devchain.evm_abi import (
    DEPOSIT_TOPIC,
    SWAP_TOPIC,
    THOR_DEPOSIT_TOPIC,
    TRANSFER_TOPIC,
    WITHDRAWAL_TOPIC,
    ZERO_ADDRESS,
    ZERO_HASH,
    pad_address,
)
from tracer.devchain.scenario import (
    KIND_BATCH,
    KIND_BRIDGE,
    KIND_MIXER,
    KIND_SWAP,
    KIND_TOKEN,
    KIND_WITHDRAW,
    ScenarioTx,
    Token,
)

# Kinds whose contract pays `payouts` in internal calls.
PAYING = frozenset({KIND_BATCH, KIND_WITHDRAW, KIND_SWAP, KIND_BRIDGE})


@dataclass(slots=True)
class Block:
    number: int
    hash: str
    parent_hash: str
    timestamp: int
    first_tx: int  # global ids of its first transaction, call frame and log
    n_txs: int
    first_trace: int
    n_traces: int
    first_log: int
    n_logs: int


class ChainIndex:
    """An append-only (but reorg-able) EVM chain held in memory: its records by global id and the
    postings that search them. `Chain` adds what a node derives from them (inputs, frames, logs, balances)."""

    def __init__(
        self,
        *,
        chain_id: int = 1337,
        name: str = "ethereum",
        genesis_time: int = 0,
        genesis_balances: dict[str, dict[str, int]] | None = None,
        tokens: Iterable[Token] = (),
        contracts: dict[str, str] | None = None,
    ) -> None:
        self.chain_id = chain_id
        self.name = name
        self.genesis_balances = genesis_balances or {}
        self.tokens: dict[str, Token] = {t.address: t for t in tokens}
        self.contracts = dict(contracts or {})
        for t in self.tokens:
            self.contracts.setdefault(t, "token")
        self.blocks: list[Block] = []
        self.block_by_hash: dict[str, int] = {}
        # transactions, by global id
        self.txs: list[ScenarioTx] = []
        self.tx_hash: list[str] = []
        self.tx_block: list[int] = []
        self.tx_nonce: list[int] = []
        self.tx_first_trace: list[int] = []
        self.tx_first_log: list[int] = []
        self.tx_by_hash: dict[str, int] = {}
        self._nonces: dict[str, int] = {}
        self._leaf: dict[int, int] = {}  # tx id of a mixer deposit -> its leaf index in the pool
        self._pool_leaves: dict[str, int] = {}
        # call frames, by global id
        self.trace_tx: list[int] = []
        self.trace_from: list[str] = []
        self.trace_to: list[str] = []
        # Postings grow by `index[key].append(id)`: the loop that fills them is the devchain's hot
        # path, and a defaultdict's append is its cheapest form; readers use .get(), which adds no key.
        self.traces_from: dict[str, list[int]] = defaultdict(list)
        self.traces_to: dict[str, list[int]] = defaultdict(list)
        # logs, by global id
        self.log_tx: list[int] = []
        self.log_address: list[str] = []
        self.log_topics: list[tuple[str, ...]] = []
        self.logs_by_address: dict[str, list[int]] = defaultdict(list)
        self.logs_by_topic: tuple[dict[str, list[int]], ...] = tuple(defaultdict(list) for _ in range(4))
        self._pad: dict[str, str] = {}
        # balance timelines, built on first use: address -> (sorted ids, running sums)
        self._native_cache: dict[str, tuple[list[int], list[int]]] = {}
        self._fee_cache: dict[str, tuple[list[int], list[int]]] = {}
        self._token_cache: dict[tuple[str, str], tuple[list[int], list[int]]] = {}
        self._reorgs = 0
        # Called with each block append_block() and reorg() mine, in order (servers push new heads).
        self.head_listeners: list[Callable[[Block], None]] = []
        self._add_block([], genesis_time)

    # -- growing and reorganising ------------------------------------------------------------
    @property
    def head(self) -> int:
        return len(self.blocks) - 1

    def append_block(self, txs: Sequence[ScenarioTx], timestamp: int | None = None) -> Block:
        """Mine a block on top of the head (timestamp defaults to 12 s after the head's)."""
        ts = self.blocks[-1].timestamp + 12 if timestamp is None else timestamp
        block = self._add_block(txs, ts)
        self._announce([block])
        return block

    def reorg(self, depth: int, replacement_blocks: Sequence[Sequence[ScenarioTx]]) -> list[Block]:
        """Drop the top `depth` blocks and mine `replacement_blocks` in their place.

        Replacements get new hashes even with identical content (a reorg counter is hashed in),
        as on a real chain where another miner's block replaces ours.
        """
        if not 0 < depth <= self.head:
            raise ValueError(f"reorg depth {depth} outside 1..{self.head}")
        cut = len(self.blocks) - depth
        removed = self.blocks[cut:]
        ts = [b.timestamp for b in removed]
        self._truncate(removed[0])
        self._reorgs += 1
        out = []
        for k, txs in enumerate(replacement_blocks):
            stamp = ts[k] if k < len(ts) else self.blocks[-1].timestamp + 12
            out.append(self._add_block(txs, stamp))
        # After the whole replacement, as a node switches to the new chain in one step.
        self._announce(out)
        return out

    def _announce(self, blocks: Sequence[Block]) -> None:
        for listener in list(self.head_listeners):
            for block in blocks:
                listener(block)

    def _truncate(self, first: Block) -> None:
        for b in self.blocks[first.number :]:
            del self.block_by_hash[b.hash]
        del self.blocks[first.number :]
        t0, tr0, l0 = first.first_tx, first.first_trace, first.first_log
        touched: set[str] = set()
        for tid in range(t0, len(self.txs)):
            tx = self.txs[tid]
            touched.add(tx.sender)
            touched.add(tx.to)
            self._nonces[tx.sender] -= 1
            del self.tx_by_hash[self.tx_hash[tid]]
            if tid in self._leaf:
                del self._leaf[tid]
                self._pool_leaves[tx.to] -= 1
        for t in range(tr0, len(self.trace_tx)):
            for index, key in ((self.traces_from, self.trace_from[t]), (self.traces_to, self.trace_to[t])):
                postings = index[key]
                while postings and postings[-1] >= tr0:
                    postings.pop()
            touched.add(self.trace_from[t])
            touched.add(self.trace_to[t])
        for lg in range(l0, len(self.log_tx)):
            postings = self.logs_by_address[self.log_address[lg]]
            while postings and postings[-1] >= l0:
                postings.pop()
            for pos, topic in enumerate(self.log_topics[lg]):
                postings = self.logs_by_topic[pos][topic]
                while postings and postings[-1] >= l0:
                    postings.pop()
        for arr in (self.txs, self.tx_hash, self.tx_block, self.tx_nonce, self.tx_first_trace, self.tx_first_log):
            del arr[t0:]
        for arr2 in (self.trace_tx, self.trace_from, self.trace_to):
            del arr2[tr0:]
        for arr3 in (self.log_tx, self.log_address, self.log_topics):
            del arr3[l0:]
        self._forget_balances(touched)

    def _forget_balances(self, addresses: set[str]) -> None:
        # Charged balances fund every fee up to the head: any new block changes them all.
        self._fee_cache.clear()
        for a in addresses:
            self._native_cache.pop(a, None)
        if self._token_cache:
            for key in [k for k in self._token_cache if k[1] in addresses]:
                del self._token_cache[key]

    def _add_block(self, txs: Sequence[ScenarioTx], timestamp: int) -> Block:
        number = len(self.blocks)
        parent = self.blocks[-1].hash if self.blocks else ZERO_HASH
        first_tx, first_trace, first_log = len(self.txs), len(self.trace_tx), len(self.log_tx)
        # Local names and bound methods: this loop runs once per transaction of a million-transfer
        # scenario, and attribute lookups are a good part of its cost.
        nonces = self._nonces
        chain_id = self.chain_id
        tx_by_hash = self.tx_by_hash
        add_tx, add_hash, add_block_no = self.txs.append, self.tx_hash.append, self.tx_block.append
        add_nonce, add_first_trace, add_first_log = (
            self.tx_nonce.append,
            self.tx_first_trace.append,
            self.tx_first_log.append,
        )
        add_trace_tx, add_trace_from, add_trace_to = (
            self.trace_tx.append,
            self.trace_from.append,
            self.trace_to.append,
        )
        traces_from, traces_to = self.traces_from, self.traces_to
        add_log_tx, add_log_address, add_log_topics = (
            self.log_tx.append,
            self.log_address.append,
            self.log_topics.append,
        )
        logs_by_address = self.logs_by_address
        topic0, topic1, topic2, _ = self.logs_by_topic
        pad = self._pad
        sha3 = hashlib.sha3_256
        track = bool(self._native_cache or self._token_cache or self._fee_cache)
        touched: set[str] = set()
        t = first_trace
        lg = first_log
        tid = first_tx
        for tx in txs:
            sender = tx.sender
            kind = tx.kind
            nonce = nonces.get(sender, 0)
            nonces[sender] = nonce + 1
            # A real node hashes the signed RLP; any deterministic content hash serves here, and
            # hashlib's SHA3 costs a seventh of keccak through pycryptodome per call.
            seed = f"{chain_id}|{sender}|{nonce}|{kind}|{tx.to}|{tx.value}|{tx.token}|{tx.ok}|{tx.payouts}"
            h = "0x" + sha3(seed.encode()).hexdigest()
            add_hash(h)
            tx_by_hash[h] = tid
            add_tx(tx)
            add_block_no(number)
            add_nonce(nonce)
            add_first_trace(t)
            add_first_log(lg)
            target = tx.token if kind == KIND_TOKEN else tx.to
            frames = [(sender, target)]
            if kind in PAYING and tx.ok:
                frames.extend((tx.to, who) for who, _ in tx.payouts)
            for frm, to in frames:
                add_trace_tx(tid)
                add_trace_from(frm)
                add_trace_to(to)
                traces_from[frm].append(t)
                traces_to[to].append(t)
                t += 1
            if track:
                touched.update(frm for frm, _ in frames)
                touched.update(to for _, to in frames)
                touched.add(tx.to)  # a token recipient is in no call frame
            if tx.ok and kind == KIND_TOKEN:
                p1 = pad.get(sender)
                if p1 is None:
                    p1 = pad[sender] = pad_address(sender)
                p2 = pad.get(tx.to)
                if p2 is None:
                    p2 = pad[tx.to] = pad_address(tx.to)
                add_log_tx(tid)
                add_log_address(target)
                add_log_topics((TRANSFER_TOPIC, p1, p2))
                logs_by_address[target].append(lg)
                topic0[TRANSFER_TOPIC].append(lg)
                topic1[p1].append(lg)
                topic2[p2].append(lg)
                lg += 1
            elif tx.ok and kind == KIND_MIXER:
                leaf = self._pool_leaves.get(target, 0)
                self._pool_leaves[target] = leaf + 1
                self._leaf[tid] = leaf
                commitment = self.commitment(tid)
                add_log_tx(tid)
                add_log_address(target)
                add_log_topics((DEPOSIT_TOPIC, commitment))
                logs_by_address[target].append(lg)
                topic0[DEPOSIT_TOPIC].append(lg)
                topic1[commitment].append(lg)
                lg += 1
            elif tx.ok and kind > KIND_MIXER:
                for address, topics in self._service_logs(tx):
                    add_log_tx(tid)
                    add_log_address(address)
                    add_log_topics(topics)
                    logs_by_address[address].append(lg)
                    for pos, topic in enumerate(topics):
                        self.logs_by_topic[pos][topic].append(lg)
                    lg += 1
            tid += 1
        tx_hash = self.tx_hash
        if touched:
            self._forget_balances(touched)
        n_txs = len(self.txs) - first_tx
        body = sha3("".join(tx_hash[first_tx:]).encode()).hexdigest()
        header = f"{chain_id}|{number}|{parent}|{timestamp}|{self._reorgs}|{body}"
        block = Block(
            number=number,
            hash="0x" + keccak(header.encode()).hex(),
            parent_hash=parent,
            timestamp=timestamp,
            first_tx=first_tx,
            n_txs=n_txs,
            first_trace=first_trace,
            n_traces=t - first_trace,
            first_log=first_log,
            n_logs=lg - first_log,
        )
        self.blocks.append(block)
        self.block_by_hash[block.hash] = number
        return block

    def _service_logs(self, tx: ScenarioTx) -> list[tuple[str, tuple[str, ...]]]:
        """(emitting contract, topics) of a withdrawal, swap or bridge deposit, in emission order."""
        if tx.kind == KIND_WITHDRAW:
            return [(tx.to, (WITHDRAWAL_TOPIC, pad_address(self._relayer(tx))))]
        if tx.kind == KIND_SWAP:
            # The pair pulls the token first (a Transfer from the trader), then reports the swap.
            recipient = tx.payouts[0][0]
            return [(tx.token, (TRANSFER_TOPIC, pad_address(tx.sender), pad_address(tx.to))),
                    (tx.to, (SWAP_TOPIC, pad_address(tx.sender), pad_address(recipient)))]
        if tx.kind == KIND_BRIDGE:
            vault = tx.payouts[0][0] if tx.payouts else ZERO_ADDRESS
            return [(tx.to, (THOR_DEPOSIT_TOPIC, pad_address(vault), pad_address(ZERO_ADDRESS)))]
        return []

    @staticmethod
    def _relayer(tx: ScenarioTx) -> str:
        # Tornado pays the fee to the relayer named in the proof; a self-sent withdrawal names none.
        return tx.payouts[1][0] if len(tx.payouts) > 1 else ZERO_ADDRESS

    # -- mixer notes: derived from the transaction hash, so deterministic ----------------------
    def commitment(self, tid: int) -> str:
        """The bytes32 a mixer deposit commits to: derived from its tx hash, so deterministic."""
        return "0x" + hashlib.sha3_256(("commitment" + self.tx_hash[tid]).encode()).hexdigest()

    def nullifier(self, tid: int) -> str:
        """The nullifier hash a withdrawal reveals (unlinkable to any commitment, as in Tornado)."""
        return "0x" + hashlib.sha3_256(("nullifier" + self.tx_hash[tid]).encode()).hexdigest()

    # -- searching -----------------------------------------------------------------------------
    def trace_range(self, from_block: int, to_block: int) -> tuple[int, int]:
        lo, hi = self.blocks[from_block], self.blocks[to_block]
        return lo.first_trace, hi.first_trace + hi.n_traces

    def log_range(self, from_block: int, to_block: int) -> tuple[int, int]:
        lo, hi = self.blocks[from_block], self.blocks[to_block]
        return lo.first_log, hi.first_log + hi.n_logs

    @staticmethod
    def _postings(index: dict[str, list[int]], keys: Iterable[str], lo: int, hi: int) -> list[int]:
        out: list[int] = []
        parts = 0
        for key in keys:
            postings = index.get(key)
            if not postings:
                continue
            i, j = bisect_left(postings, lo), bisect_left(postings, hi)
            if i < j:
                out.extend(postings[i:j])
                parts += 1
        if parts > 1:
            out.sort()
        return out

    @staticmethod
    def _count(index: dict[str, list[int]], keys: Iterable[str], lo: int, hi: int) -> int:
        n = 0
        for key in keys:
            postings = index.get(key)
            if postings:
                n += bisect_left(postings, hi) - bisect_left(postings, lo)
        return n

    def find_traces(
        self,
        from_block: int,
        to_block: int,
        from_addresses: set[str] | None = None,
        to_addresses: set[str] | None = None,
        *,
        mode: str = "intersection",
    ) -> list[int]:
        """Ids of call frames in the block range matching the address filters, in order.

        With both lists, "intersection" (OpenEthereum) needs a frame to match both, "union" either.
        """
        lo, hi = self.trace_range(from_block, to_block)
        if from_addresses and to_addresses:
            if mode == "union":
                both = set(self._postings(self.traces_from, from_addresses, lo, hi))
                both.update(self._postings(self.traces_to, to_addresses, lo, hi))
                return sorted(both)
            # Walk the smaller side, check the other end of each frame.
            if self._count(self.traces_from, from_addresses, lo, hi) <= self._count(
                self.traces_to, to_addresses, lo, hi
            ):
                ids = self._postings(self.traces_from, from_addresses, lo, hi)
                return [t for t in ids if self.trace_to[t] in to_addresses]
            ids = self._postings(self.traces_to, to_addresses, lo, hi)
            return [t for t in ids if self.trace_from[t] in from_addresses]
        if from_addresses:
            return self._postings(self.traces_from, from_addresses, lo, hi)
        if to_addresses:
            return self._postings(self.traces_to, to_addresses, lo, hi)
        return list(range(lo, hi))

    def find_logs(
        self,
        from_block: int,
        to_block: int,
        addresses: set[str] | None = None,
        topics: Sequence[set[str] | None] = (),
    ) -> list[int]:
        """Ids of logs in the block range matching eth_getLogs filters (topic sets are ORs)."""
        lo, hi = self.log_range(from_block, to_block)
        if lo >= hi:
            return []
        # Start from the most selective index, then check every other condition per log.
        best: tuple[int, dict[str, list[int]], set[str]] | None = None
        if addresses is not None:
            best = (self._count(self.logs_by_address, addresses, lo, hi), self.logs_by_address, addresses)
        for pos, wanted in enumerate(topics[:4]):
            if wanted is None:
                continue
            n = self._count(self.logs_by_topic[pos], wanted, lo, hi)
            if best is None or n < best[0]:
                best = (n, self.logs_by_topic[pos], wanted)
        ids: Iterable[int] = range(lo, hi) if best is None else self._postings(best[1], best[2], lo, hi)
        out = []
        log_address, log_topics = self.log_address, self.log_topics
        for lg in ids:
            if addresses is not None and log_address[lg] not in addresses:
                continue
            have = log_topics[lg]
            ok = True
            for pos, wanted in enumerate(topics):
                if wanted is not None and (pos >= len(have) or have[pos] not in wanted):
                    ok = False
                    break
            if ok:
                out.append(lg)
        return out
