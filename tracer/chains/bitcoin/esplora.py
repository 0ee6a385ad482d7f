"""EsploraChain: Bitcoin behind the same seam as EvmChain, over the Esplora REST API.

Esplora is the HTTP API of Blockstream's and mempool.space's explorers and of self-hosted
electrs. The endpoints used:

- `/blocks/tip/height`, `/block-height/:h` (hash), `/block/:hash` (timestamp);
- a transaction's position in its block, which Esplora's tx JSON lacks: `/tx/:txid/merkle-proof`
  (`pos`) for a few transactions of a block, `/block/:hash/txids` for many;
- `/address/:a/txs` (mempool plus the newest confirmed page) then `/address/:a/txs/chain/:last`
  for older pages, newest first: paging stops below the block range asked for;
- `/tx/:txid` and `/tx/:txid/outspends`.

Transactions become `Transfer`s and `UtxoTx` records in tracer.chains.bitcoin.mappers.

Transport: tracer.chains.http (bounded concurrency, retries with exponential backoff and jitter on
timeouts, connection errors, HTTP 5xx and malformed bodies; HTTP 429 honours Retry-After and pauses
every request); 400 and 404 are answers, not failures (ChainError at once, naming the path). After
`retries` tries it raises ChainError. `request_counts` counts HTTP requests per endpoint.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tracer.addresses import normalize_btc
from tracer.chains.answers import SHAPE_ERRORS, malformed
from tracer.chains.bitcoin.mappers import (
    coinbase_transfers,
    confirmed_txs,
    flatten,
    net_paid,
    outspend,
    parse_tx,
    uint,
)
from tracer.chains.bitcoin.records import NETWORKS, BtcNetwork, network_of_genesis
from tracer.chains.cache import Lru
from tracer.chains.errors import ChainError, MalformedAnswer, WrongChain
from tracer.chains.http import HttpTransport
from tracer.chains.jsonrpc import gather_or_cancel
from tracer.chains.lifecycle import Connected
from tracer.chains.retry import Retry, TransportOptions
from tracer.chains.urls import node_name
from tracer.chains.utxo_records import Outspend, UtxoTx
from tracer.domain.chains import BITCOIN
from tracer.domain.errors import UserError
from tracer.domain.transfers import Transfer, TransferQuery

log = logging.getLogger(__name__)


class UnknownNetwork(UserError, ValueError):
    """A Bitcoin network name that is none of NETWORKS."""


class NotFound(ChainError):
    """The server has no such block, transaction or address page (HTTP 404)."""


_HASH = re.compile(r"[0-9a-fA-F]{64}")
_HEIGHT = re.compile(r"[0-9]{1,10}")


class EsploraChain(Connected):
    """Read access to Bitcoin through one Esplora server; see the module docstring."""

    def __init__(
        self,
        url: str,
        chain: str = BITCOIN,
        network: str | None = "mainnet",
        *,
        transport: TransportOptions = TransportOptions(),
        page_size: int = 25,
        cache_size: int = 65536,
        block_list_threshold: int = 8,
    ) -> None:
        if network is not None and network not in NETWORKS:
            # Named by TRACER_BITCOIN_NETWORK where no caller chose: the user's to fix.
            raise UnknownNetwork(f"unknown Bitcoin network {network!r} (TRACER_BITCOIN_NETWORK); known: "
                                 f"{', '.join(NETWORKS)}")
        self.url = url.rstrip("/")
        self.name = node_name(self.url)  # for errors and logs: the URL may carry a key
        self.chain = chain
        self.expected_network = network
        self.network: BtcNetwork | None = None
        self.chain_id: int | None = None
        self.page_size = page_size
        # Transactions of one block from which its whole txid list is cheaper than merkle proofs.
        self.block_list_threshold = max(1, block_list_threshold)
        self.http = HttpTransport(self.url, f"Esplora server at {self.name}", transport)
        self.request_counts: Counter[str] = self.http.request_counts
        self._txs: Lru[str, tuple[str, UtxoTx]] = Lru(cache_size)  # txid -> (block hash, tx), confirmed ones
        self._block_index: Lru[str, dict[str, int]] = Lru(4096)  # block hash -> {txid: position}
        self._times: dict[int, int] = {}
        self._hashes: Lru[int, str] = Lru(cache_size)  # height -> block hash

    # -- lifecycle ----------------------------------------------------------------------------

    async def connect(self) -> None:
        """Check the network by its genesis block (WrongChain if it is not the one expected)."""
        await self.http.open()
        genesis = (await self._get("/block-height/0", "block-height", text=_HASH)).lower()
        net = network_of_genesis(genesis)
        if self.expected_network is not None and (net is None or net.name != self.expected_network):
            seen = net.name if net else f"unknown network (genesis {genesis[:16]}...)"
            raise WrongChain(
                f"Esplora server at {self.name} serves Bitcoin {seen}, but chain {self.chain!r} expects "
                f"{self.expected_network}: check the URL"
            )
        self.network = net
        # The network's magic number stands for it where tracer records a chain id per chain name.
        self.chain_id = net.magic if net else int(genesis[-12:] or "0", 16)
        head = await self.head()
        log.info("chain %s (Bitcoin %s) at %s: head %d, via Esplora", self.chain,
                 net.name if net else "unknown network", self.name, head)

    async def close(self) -> None:
        await self.http.close()

    def malformed(self, endpoint: str, answer: Any, exc: BaseException | None = None) -> MalformedAnswer:
        """The error for an answer of `endpoint` ("tx", "address/txs") in the wrong shape."""
        return malformed(f"Esplora server at {self.name}", endpoint, answer, exc)

    # -- transport ----------------------------------------------------------------------------

    async def _get(self, path: str, endpoint: str, *, text: re.Pattern[str] | None = None) -> Any:
        """GET `path`: parsed JSON (or text matching `text`), retried as the module docstring says."""
        if not self.http.is_open:
            raise ChainError("EsploraChain.connect() must be awaited before use")

        def read(status: int, raw: bytes) -> Any:
            if status == 404:
                raise NotFound(f"Esplora server at {self.name} has no {path}: {raw[:120].decode(errors='replace')}")
            if status >= 400:
                raise ChainError(f"Esplora server at {self.name} refused {path}: HTTP {status} "
                                 f"{raw[:200].decode(errors='replace')}")
            if text is not None:
                body = raw.decode(errors="replace").strip()
                if not text.fullmatch(body):
                    raise Retry(f"malformed answer ({len(raw)} bytes): {raw[:80]!r}")
                return body
            try:
                return json.loads(raw)
            except ValueError as exc:
                raise Retry(f"malformed JSON in answer ({len(raw)} bytes): {raw[:80]!r}") from exc

        return await self.http.request("GET", path, endpoint=endpoint, what=f"{endpoint} ({path})", read=read)

    # -- simple reads -------------------------------------------------------------------------

    async def head(self) -> int:
        return int(await self._get("/blocks/tip/height", "blocks/tip/height", text=_HEIGHT))

    async def block_hash(self, height: int) -> str:
        cached = self._hashes.get(height)
        if cached is not None:
            return str(cached)
        value = str(await self._get(f"/block-height/{int(height)}", "block-height", text=_HASH)).lower()
        self._hashes.put(height, value)
        return value

    async def block_hashes(self, numbers: Iterable[int]) -> dict[int, str]:
        """Current hashes of blocks (read fresh, never cached: the live monitor compares them to find
        reorgs); heights the server does not have yet are left out."""
        wanted = sorted(set(int(n) for n in numbers))

        async def one(n: int) -> str | None:
            try:
                return str(await self._get(f"/block-height/{n}", "block-height", text=_HASH)).lower()
            except NotFound:
                return None

        found = await gather_or_cancel(one(n) for n in wanted)
        return {n: h for n, h in zip(wanted, found, strict=True) if h is not None}

    async def block_times(self, numbers: Iterable[int]) -> dict[int, int]:
        wanted = sorted(set(int(n) for n in numbers))
        missing = [n for n in wanted if n not in self._times]

        async def one(n: int) -> None:
            block = await self._get(f"/block/{await self.block_hash(n)}", "block")
            if not isinstance(block, Mapping) or not isinstance(block.get("timestamp"), int):
                raise self.malformed("block", block)
            self._times[n] = block["timestamp"]

        await gather_or_cancel(one(n) for n in missing)
        return {n: self._times[n] for n in wanted}

    async def is_contract(self, addresses: Iterable[str]) -> dict[str, bool]:
        return {a: False for a in addresses}

    async def token_balances(self, queries: Iterable[tuple[str, str, int]]) -> dict[tuple[str, str, int], int]:
        return {}

    async def token_meta(self, tokens: Iterable[str]) -> dict[str, tuple[int | None, str | None]]:
        return {}

    async def logs(self, address: Any, topics: Any, from_block: int, to_block: int) -> list[Any]:
        return []

    # -- transactions -------------------------------------------------------------------------

    async def _block_positions(self, block_hash: str) -> dict[str, int]:
        cached = self._block_index.get(block_hash)
        if cached is not None:
            return dict(cached)
        txids = await self._get(f"/block/{block_hash}/txids", "block/txids")
        if not isinstance(txids, list) or not all(isinstance(t, str) for t in txids):
            raise self.malformed("block/txids", txids)
        index = {t.lower(): k for k, t in enumerate(txids)}
        self._block_index.put(block_hash, index)
        return index

    async def _merkle_position(self, txid: str) -> int:
        proof = await self._get(f"/tx/{txid}/merkle-proof", "tx/merkle-proof")
        pos = proof.get("pos") if isinstance(proof, Mapping) else None
        if not isinstance(pos, int) or isinstance(pos, bool) or pos < 0:
            raise self.malformed("tx/merkle-proof", proof)
        return pos

    async def _positions(self, raw: Sequence[Mapping[str, Any]]) -> dict[str, int]:
        """Each transaction's position in its block, which Esplora's tx JSON leaves out. A block
        holding many of them: its txid list (one request, but ~200 kB for a full mainnet block);
        a few: their merkle proofs (~1 kB each), whose `pos` is the position."""
        by_block: dict[str, list[str]] = {}
        for r in raw:
            by_block.setdefault(str(r["status"]["block_hash"]).lower(), []).append(str(r["txid"]).lower())
        lists = [h for h, txids in by_block.items()
                 if len(txids) >= self.block_list_threshold or self._block_index.get(h) is not None]
        proofs = [t for h, txids in by_block.items() if h not in lists for t in txids]
        found: dict[str, int] = {}
        for h, index in zip(lists, await gather_or_cancel(self._block_positions(h) for h in lists), strict=True):
            for t in by_block[h]:
                if t not in index:
                    raise ChainError(f"Esplora server at {self.name}: transaction {t} is not in the txid list of its "
                                     f"block {h}")
                found[t] = index[t]
        found.update(zip(proofs, await gather_or_cancel(self._merkle_position(t) for t in proofs), strict=True))
        return found

    async def _with_positions(self, raw: Sequence[Mapping[str, Any]], endpoint: str) -> list[UtxoTx]:
        """Parse confirmed txs (answers of `endpoint`), with their position in the block. A cached
        parse is reused only while the transaction is still in the same block (after a reorg it is
        read again)."""
        def cached(r: Mapping[str, Any]) -> UtxoTx | None:
            hit = self._txs.get(str(r["txid"]).lower())
            return hit[1] if hit is not None and hit[0] == str(r["status"]["block_hash"]).lower() else None

        positions = await self._positions([r for r in raw if cached(r) is None])
        out: list[UtxoTx] = []
        for r in raw:
            tx = cached(r)
            if tx is None:
                try:
                    tx = parse_tx(r, positions[str(r["txid"]).lower()])
                except SHAPE_ERRORS as exc:
                    raise self.malformed(endpoint, r, exc) from exc
                self._txs.put(tx.txid, (str(r["status"]["block_hash"]).lower(), tx))
                if tx.block_number is not None and tx.block_time is not None:
                    self._times[tx.block_number] = tx.block_time
            out.append(tx)
        return out

    async def _page(self, path: str, endpoint: str) -> list[Mapping[str, Any]]:
        """The confirmed transactions of a list answered at `path` (mappers.confirmed_txs)."""
        page = await self._get(path, endpoint)
        try:
            return confirmed_txs(page)
        except SHAPE_ERRORS as exc:
            raise self.malformed(endpoint, page, exc) from exc

    async def _history(self, address: str, min_height: int) -> list[Mapping[str, Any]]:
        """Confirmed transactions of `address` at or above `min_height` (and maybe some below),
        newest first, paging until a page ends below `min_height` or runs short."""
        page = await self._page(f"/address/{address}/txs", "address/txs")
        found = list(page)
        while len(page) >= self.page_size and page[-1]["status"]["block_height"] >= min_height:
            last = page[-1]["txid"]
            page = await self._page(f"/address/{address}/txs/chain/{last}", "address/txs/chain")
            found.extend(page)
        return found

    async def transfers(self, query: TransferQuery) -> list[Transfer]:
        """The transfers the query asks for, sorted by .order, one per key (`query.times` changes
        nothing: an Esplora transaction carries its block time, so it always has one)."""
        wanted = list(dict.fromkeys(normalize_btc(a) for a in query.addresses))
        if query.empty:
            return []
        from_block, to_block = query.from_block, query.to_block
        pages = await gather_or_cancel(self._history(a, from_block) for a in wanted)
        raw: dict[str, Mapping[str, Any]] = {}
        for page in pages:
            for tx in page:
                if from_block <= tx["status"]["block_height"] <= to_block:
                    raw.setdefault(str(tx["txid"]).lower(), tx)
        parsed = await self._with_positions(list(raw.values()), "address/txs")
        mine = set(wanted)
        seen: set[tuple[str, str, str]] = set()
        out: list[Transfer] = []
        for utx in parsed:
            for t in flatten(utx, self.chain):
                if t.key in seen:
                    continue
                if query.wants(t, mine):
                    seen.add(t.key)
                    out.append(t)
        out.sort(key=lambda t: t.order)
        return out

    async def coinbase_rewards(self, addresses: Sequence[str], from_block: int, to_block: int) -> list[Transfer]:
        """What coinbase transactions in blocks [from_block, to_block] paid the addresses, as
        transfers from COINBASE, sorted by .order (the address histories `transfers` reads)."""
        wanted = list(dict.fromkeys(normalize_btc(a) for a in addresses))
        if not wanted or from_block > to_block:
            return []
        pages = await gather_or_cancel(self._history(a, from_block) for a in wanted)
        raw: dict[str, Mapping[str, Any]] = {}
        for page in pages:
            for tx in page:
                vin = tx.get("vin")
                if from_block <= tx["status"]["block_height"] <= to_block and isinstance(vin, list) and vin \
                        and isinstance(vin[0], Mapping) and vin[0].get("is_coinbase"):
                    raw.setdefault(str(tx["txid"]).lower(), tx)
        mine = set(wanted)
        out = [t for utx in await self._with_positions(list(raw.values()), "address/txs")
               for t in coinbase_transfers(utx, self.chain) if t.to_address in mine]
        out.sort(key=lambda t: t.order)
        return out

    async def transactions(self, txids: Iterable[str]) -> dict[str, UtxoTx]:
        """The transactions by txid, with inputs, outputs, script types and OP_RETURN data.
        Unconfirmed ones come back with block_number None and tx_index -1."""
        wanted = list(dict.fromkeys(t.lower() for t in txids))
        cached, missing = self._txs.split(wanted)
        out = {t: tx for t, (_block, tx) in cached.items()}
        raw = await gather_or_cancel(self._get(f"/tx/{t}", "tx") for t in missing)
        confirmed: list[Mapping[str, Any]] = []
        for r in raw:
            try:
                confirmed += confirmed_txs([r])
            except SHAPE_ERRORS as exc:
                raise self.malformed("tx", r, exc) from exc
        for tx in await self._with_positions(confirmed, "tx"):
            out[tx.txid] = tx
        for r in raw:
            txid = str(r["txid"]).lower()
            if txid not in out:
                try:
                    out[txid] = parse_tx(r)
                except SHAPE_ERRORS as exc:
                    raise self.malformed("tx", r, exc) from exc
        return {t: out[t] for t in wanted if t in out}

    async def outspends(self, txid: str) -> list[Outspend]:
        """For each output of `txid`: spent or not, and by which input of which transaction."""
        answer = await self._get(f"/tx/{txid.lower()}/outspends", "tx/outspends")
        try:
            return [outspend(k, item) for k, item in enumerate(answer)]
        except SHAPE_ERRORS as exc:
            raise self.malformed("tx/outspends", answer, exc) from exc

    async def native_balances(self, queries: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """Confirmed balance of each address at the end of each block.

        A short history (one page) is summed directly. A long one is not read to its start: the
        balance now (`/address/:a` chain stats) less what the transactions after the block moved,
        so an old wallet costs the pages since the block only. The stats are read before and after
        those pages and must agree, or a block mined in between would be counted half.
        """
        keys = list(dict.fromkeys((normalize_btc(a), int(b)) for a, b in queries))
        heights: dict[str, list[int]] = {}
        for a, b in keys:
            heights.setdefault(a, []).append(b)
        found = await gather_or_cancel(self._balances_of(a, hs) for a, hs in heights.items())
        by_address = dict(zip(heights, found, strict=True))
        return {(a, b): by_address[a][b] for a, b in keys}

    async def _stats(self, address: str) -> tuple[int, int, int]:
        data = await self._get(f"/address/{address}", "address")
        try:
            stats = data["chain_stats"]
            return (uint(stats.get("funded_txo_sum"), "funded_txo_sum"),
                    uint(stats.get("spent_txo_sum"), "spent_txo_sum"), uint(stats.get("tx_count"), "tx_count"))
        except SHAPE_ERRORS as exc:
            raise self.malformed("address", data, exc) from exc

    async def _balances_of(self, address: str, heights: Sequence[int]) -> dict[int, int]:
        for _ in range(self.http.options.policy.retries):
            first = await self._page(f"/address/{address}/txs", "address/txs")
            if len(first) < self.page_size:  # the whole confirmed history
                return {h: self._net_paid(address, [t for t in first if t["status"]["block_height"] <= h])
                        for h in heights}
            before = await self._stats(address)
            newer = await self._history(address, min(heights) + 1)
            if await self._stats(address) == before:
                current = before[0] - before[1]
                return {h: current - self._net_paid(address, [t for t in newer if t["status"]["block_height"] > h])
                        for h in heights}
        raise ChainError(f"Esplora server at {self.name}: the history of {address} kept changing while its "
                         "balance was read")

    def _net_paid(self, address: str, txs: list[Mapping[str, Any]]) -> int:
        try:
            return net_paid(address, txs)
        except SHAPE_ERRORS as exc:
            raise self.malformed("address/txs", txs, exc) from exc
