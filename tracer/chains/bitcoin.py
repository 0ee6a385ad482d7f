"""EsploraChain: Bitcoin behind the same seam as EvmChain, over the Esplora REST API.

Esplora is the HTTP API of Blockstream's and mempool.space's explorers and of self-hosted
electrs. The endpoints used:

- `/blocks/tip/height`, `/block-height/:h` (hash), `/block/:hash` (timestamp);
- a transaction's position in its block, which Esplora's tx JSON lacks: `/tx/:txid/merkle-proof`
  (`pos`) for a few transactions of a block, `/block/:hash/txids` for many;
- `/address/:a/txs` (mempool plus the newest confirmed page) then `/address/:a/txs/chain/:last`
  for older pages, newest first: paging stops below the block range asked for;
- `/tx/:txid` and `/tx/:txid/outspends`.

A transaction is flattened into `Transfer`s between every (input address, output address) pair:
amount = in_value * out_value / total_input, in integers, with the remainders placed so that each
input's transfers sum exactly to its share of the outputs and each output receives exactly its
value. The fee is not transferred (it leaves the traced money), and nor is change paid back to an
input's own address (the money did not move). The heuristics that need a transaction's shape
(change outputs, CoinJoin) read `transactions()` instead: `UtxoTx` records.

Transport: bounded concurrency, retries with exponential backoff and jitter on timeouts,
connection errors, HTTP 5xx and malformed bodies; HTTP 429 honours Retry-After (and pauses every
request); 400 and 404 are answers, not failures (ChainError at once, naming the path). After
`retries` tries it raises ChainError. `request_counts` counts HTTP requests per endpoint.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from tracer.addresses import BITCOIN, InvalidAddress, normalize_btc
from tracer.chains.errors import ChainError, WrongChain
from tracer.chains.jsonrpc import gather_or_cancel
from tracer.chains.records import NATIVE, Transfer, TransferKind
from tracer.chains.retry import Retry as _Retry
from tracer.chains.retry import parse_retry_after as _parse_retry_after
from tracer.chains.retry import with_retries
from tracer.chains.utxo_records import Outspend, TxIn, TxOut, UtxoTx

__all__ = [
    "BTC_DECIMALS",
    "NETWORKS",
    "BtcNetwork",
    "ChainError",
    "EsploraChain",
    "InvalidAddress",
    "NotFound",
    "WrongChain",
    "flatten",
    "network_of_genesis",
]

log = logging.getLogger(__name__)

BTC_DECIMALS = 8
BTC_SYMBOL = "BTC"


@dataclass(frozen=True, slots=True)
class BtcNetwork:
    name: str
    genesis_hash: str
    magic: int  # the P2P message start bytes: the network's number, stored as its chain id
    bech32_hrp: str
    p2pkh_version: int
    p2sh_version: int


NETWORKS: dict[str, BtcNetwork] = {
    n.name: n
    for n in (
        BtcNetwork("mainnet", "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f", 0xD9B4BEF9,
                   "bc", 0x00, 0x05),
        BtcNetwork("testnet", "000000000933ea01ad0ee984209779baaec3ced90fa3f408719526f8d77f4943", 0x0709110B,
                   "tb", 0x6F, 0xC4),
        BtcNetwork("testnet4", "00000000da84f2bafbbc53dee25a72ae507ff4914b867c565be350b0da8bf043", 0x283F161C,
                   "tb", 0x6F, 0xC4),
        BtcNetwork("signet", "00000008819873e925422c1ff0f99f7cc9bbb232af63a077a480a3633bee1ef6", 0x40CF030A,
                   "tb", 0x6F, 0xC4),
        BtcNetwork("regtest", "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206", 0xDAB5BFFA,
                   "bcrt", 0x6F, 0xC4),
    )
}


def network_of_genesis(genesis_hash: str) -> BtcNetwork | None:
    for net in NETWORKS.values():
        if net.genesis_hash == genesis_hash.lower():
            return net
    return None


class NotFound(ChainError):
    """The server has no such block, transaction or address page (HTTP 404)."""


_RETRY_STATUS = frozenset({408, 425, 429})
_HASH = re.compile(r"[0-9a-fA-F]{64}")
_HEIGHT = re.compile(r"[0-9]{1,10}")


# Esplora names script types by witness version; the records use the plain names.
_SCRIPT_TYPES = {"v0_p2wpkh": "p2wpkh", "v0_p2wsh": "p2wsh", "v1_p2tr": "p2tr"}


def _script_type(name: Any) -> str | None:
    if not isinstance(name, str):
        return None
    return _SCRIPT_TYPES.get(name, name)


def op_return_data(script_hex: str) -> bytes | None:
    """The pushed bytes of an OP_RETURN output script (all pushes concatenated), or None."""
    try:
        script = bytes.fromhex(script_hex)
    except ValueError:
        return None
    if not script or script[0] != 0x6A:
        return None
    out = bytearray()
    i = 1
    while i < len(script):
        op = script[i]
        i += 1
        if 1 <= op <= 0x4B:
            size = op
        elif op == 0x4C and i < len(script):
            size, i = script[i], i + 1
        elif op == 0x4D and i + 1 < len(script):
            size, i = int.from_bytes(script[i:i + 2], "little"), i + 2
        elif op == 0x4E and i + 3 < len(script):
            size, i = int.from_bytes(script[i:i + 4], "little"), i + 4
        else:
            continue  # OP_0 / small-number opcodes carry no bytes worth reading as a memo
        out += script[i:i + size]
        i += size
    return bytes(out)


def _address(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return normalize_btc(value)
    except InvalidAddress:
        return None


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ChainError(f"malformed Esplora answer: {what} is {value!r}")
    return value


def parse_tx(data: Any, tx_index: int = -1) -> UtxoTx:
    """An Esplora transaction JSON as a UtxoTx (raises ChainError on a malformed one)."""
    if not isinstance(data, Mapping) or not isinstance(data.get("txid"), str):
        raise ChainError(f"malformed Esplora transaction: {str(data)[:120]}")
    vin, vout = data.get("vin"), data.get("vout")
    if not isinstance(vin, list) or not isinstance(vout, list):
        raise ChainError(f"malformed Esplora transaction {data['txid']}: no vin/vout lists")
    inputs: list[TxIn] = []
    for i, inp in enumerate(vin):
        if not isinstance(inp, Mapping):
            raise ChainError(f"malformed input {i} of {data['txid']}")
        if inp.get("is_coinbase"):
            inputs.append(TxIn(i, None, 0, str(inp.get("txid", "00" * 32)).lower(), 0xFFFFFFFF, None, True))
            continue
        prev = inp.get("prevout")
        if not isinstance(prev, Mapping):
            raise ChainError(f"input {i} of {data['txid']} has no prevout (is the server an Esplora?)")
        inputs.append(TxIn(i, _address(prev.get("scriptpubkey_address")), _int(prev.get("value"), "prevout value"),
                           str(inp.get("txid", "")).lower(), _int(inp.get("vout"), "prevout index"),
                           _script_type(prev.get("scriptpubkey_type"))))
    outputs: list[TxOut] = []
    for j, out in enumerate(vout):
        if not isinstance(out, Mapping):
            raise ChainError(f"malformed output {j} of {data['txid']}")
        stype = _script_type(out.get("scriptpubkey_type"))
        memo = op_return_data(str(out.get("scriptpubkey", ""))) if stype == "op_return" else None
        outputs.append(TxOut(j, _address(out.get("scriptpubkey_address")), _int(out.get("value"), "output value"),
                             stype, memo))
    raw_status = data.get("status")
    status: Mapping[str, Any] = raw_status if isinstance(raw_status, Mapping) else {}
    confirmed = bool(status.get("confirmed"))
    height = status.get("block_height") if confirmed else None
    btime = status.get("block_time") if confirmed else None
    fee = data.get("fee")
    return UtxoTx(
        txid=data["txid"].lower(),
        block_number=height if isinstance(height, int) else None,
        block_time=btime if isinstance(btime, int) else None,
        tx_index=tx_index,
        inputs=tuple(inputs),
        outputs=tuple(outputs),
        fee=fee if isinstance(fee, int) and fee >= 0 else max(0, sum(i.value for i in inputs)
                                                               - sum(o.value for o in outputs)),
    )


def _largest_remainder(total: int, weights: Sequence[int]) -> list[int]:
    """Integers proportional to `weights` that sum exactly to `total` (Hamilton's method,
    ties to the lower index, so the result is deterministic)."""
    denom = sum(weights)
    if denom <= 0 or total <= 0:
        return [0] * len(weights)
    shares = [total * w // denom for w in weights]
    rest = total - sum(shares)
    order = sorted(range(len(weights)), key=lambda k: (-(total * weights[k] % denom), k))
    for k in order[:rest]:
        shares[k] += 1
    return shares


def split_amounts(in_values: Sequence[int], out_values: Sequence[int]) -> list[list[int]]:
    """The (input x output) matrix of the proportional flattening.

    Row i sums to input i's share of the outputs (in_i * total_out / total_in, rounded by largest
    remainder), column j to out_j exactly; each cell is the floor of its exact value or one more,
    unless rounding leaves a residue the greedy pass cannot place (then it goes north-west).
    """
    total_out = sum(out_values)
    rows = _largest_remainder(total_out, in_values)
    n, m = len(in_values), len(out_values)
    if total_out <= 0:
        return [[0] * m for _ in range(n)]
    cells = [[rows[i] * out_values[j] // total_out for j in range(m)] for i in range(n)]
    row_left = [rows[i] - sum(cells[i]) for i in range(n)]
    col_left = [out_values[j] - sum(cells[i][j] for i in range(n)) for j in range(m)]
    if any(row_left):
        frac = sorted(((rows[i] * out_values[j] % total_out, i, j) for i in range(n) if row_left[i]
                       for j in range(m) if col_left[j]), key=lambda x: (-x[0], x[1], x[2]))
        for _f, i, j in frac:
            if row_left[i] and col_left[j]:
                cells[i][j] += 1
                row_left[i] -= 1
                col_left[j] -= 1
        i = j = 0
        while i < n and j < m:
            if not row_left[i]:
                i += 1
            elif not col_left[j]:
                j += 1
            else:
                step = min(row_left[i], col_left[j])
                cells[i][j] += step
                row_left[i] -= step
                col_left[j] -= step
    return cells


def flatten(tx: UtxoTx, chain: str = BITCOIN) -> list[Transfer]:
    """Transfers of a confirmed transaction: one per (input address, output address) pair."""
    if tx.block_number is None or tx.is_coinbase:
        return []  # unconfirmed: not in any block range; coinbase: nobody sent it
    outs = [o for o in tx.outputs if o.address is not None and o.value > 0]
    if not outs or tx.total_in <= 0:
        return []
    memo = tx.memo
    # Inputs without an address (bare multisig, p2pk) take their share too; it just goes untraced.
    matrix = split_amounts([i.value for i in tx.inputs], [o.value for o in outs])
    transfers: list[Transfer] = []
    for inp, row in zip(tx.inputs, matrix, strict=True):
        if inp.address is None:
            continue
        for out, amount in zip(outs, row, strict=True):
            if amount <= 0 or out.address == inp.address:
                continue
            assert out.address is not None
            transfers.append(Transfer(
                chain=chain, block_number=tx.block_number, block_time=tx.block_time or 0, tx_hash=tx.txid,
                tx_index=max(tx.tx_index, 0), position=f"io:{inp.index}:{out.index}",
                from_address=inp.address, to_address=out.address, asset=NATIVE, amount=amount,
                kind=TransferKind.NATIVE, decimals=BTC_DECIMALS, symbol=BTC_SYMBOL, memo=memo,
            ))
    return transfers


class _Lru:
    def __init__(self, size: int) -> None:
        self.size = size
        self.data: OrderedDict[Any, Any] = OrderedDict()

    def get(self, key: Any) -> Any:
        value = self.data.get(key)
        if value is not None:
            self.data.move_to_end(key)
        return value

    def put(self, key: Any, value: Any) -> None:
        self.data[key] = value
        self.data.move_to_end(key)
        while len(self.data) > self.size:
            self.data.popitem(last=False)


class EsploraChain:
    """Read access to Bitcoin through one Esplora server; see the module docstring."""

    def __init__(
        self,
        url: str,
        chain: str = BITCOIN,
        network: str | None = "mainnet",
        concurrency: int = 8,
        timeout: float = 20.0,
        retries: int = 6,
        *,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        max_retry_after: float = 120.0,
        page_size: int = 25,
        cache_size: int = 65536,
        block_list_threshold: int = 8,
    ) -> None:
        if concurrency < 1 or retries < 1:
            raise ValueError("concurrency and retries must be at least 1")
        if network is not None and network not in NETWORKS:
            raise ValueError(f"unknown Bitcoin network {network!r}; known: {', '.join(NETWORKS)}")
        self.url = url.rstrip("/")
        self.chain = chain
        self.expected_network = network
        self.network: BtcNetwork | None = None
        self.chain_id: int | None = None
        self.concurrency = concurrency
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_retry_after = max_retry_after
        self.page_size = page_size
        # Transactions of one block from which its whole txid list is cheaper than merkle proofs.
        self.block_list_threshold = max(1, block_list_threshold)
        self.request_counts: Counter[str] = Counter()
        self._semaphore = asyncio.Semaphore(concurrency)
        self._session: aiohttp.ClientSession | None = None
        self._not_before = 0.0
        self._txs = _Lru(cache_size)  # txid -> (block hash, UtxoTx), confirmed ones only
        self._block_index = _Lru(4096)  # block hash -> {txid: position}
        self._times: dict[int, int] = {}
        self._hashes = _Lru(cache_size)  # height -> block hash

    # -- lifecycle ----------------------------------------------------------------------------

    async def connect(self) -> None:
        """Check the network by its genesis block (WrongChain if it is not the one expected)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.concurrency),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            )
        genesis = (await self._get("/block-height/0", "block-height", text=_HASH)).lower()
        net = network_of_genesis(genesis)
        if self.expected_network is not None and (net is None or net.name != self.expected_network):
            seen = net.name if net else f"unknown network (genesis {genesis[:16]}...)"
            raise WrongChain(
                f"Esplora server at {self.url} serves Bitcoin {seen}, but chain {self.chain!r} expects "
                f"{self.expected_network}: check the URL"
            )
        self.network = net
        # The network's magic number stands for it where tracer records a chain id per chain name.
        self.chain_id = net.magic if net else int(genesis[-12:] or "0", 16)
        head = await self.head()
        log.info("chain %s (Bitcoin %s) at %s: head %d, via Esplora", self.chain,
                 net.name if net else "unknown network", self.url, head)

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    async def __aenter__(self) -> EsploraChain:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- transport ----------------------------------------------------------------------------

    async def _get(self, path: str, endpoint: str, *, text: re.Pattern[str] | None = None) -> Any:
        """GET `path`: parsed JSON (or text matching `text`), retried as the module docstring says."""
        if self._session is None:
            raise ChainError("EsploraChain.connect() must be awaited before use")
        return await with_retries(lambda: self._exchange(path, endpoint, text), retries=self.retries,
                                  backoff=self.backoff, max_backoff=self.max_backoff,
                                  max_retry_after=self.max_retry_after, who=f"Esplora server at {self.url}",
                                  what=f"{endpoint} ({path})")

    async def _exchange(self, path: str, endpoint: str, text: re.Pattern[str] | None) -> Any:
        assert self._session is not None
        async with self._semaphore:
            wait = self._not_before - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self.request_counts["http"] += 1
            self.request_counts[endpoint] += 1
            try:
                async with self._session.get(self.url + path) as resp:
                    status = resp.status
                    headers = resp.headers
                    raw = await resp.read()
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                raise _Retry(f"{type(exc).__name__}: {exc or 'timeout'}") from exc
        if status in _RETRY_STATUS:
            after = _parse_retry_after(headers.get("Retry-After"))
            if after:
                # Every request waits, not only this one: the server counts them all.
                self._not_before = max(self._not_before, time.monotonic() + min(after, self.max_retry_after))
            raise _Retry(f"HTTP {status}", after)
        if status >= 500:
            raise _Retry(f"HTTP {status}: {raw[:80]!r}")
        if status == 404:
            raise NotFound(f"Esplora server at {self.url} has no {path}: {raw[:120].decode(errors='replace')}")
        if status >= 400:
            raise ChainError(f"Esplora server at {self.url} refused {path}: HTTP {status} "
                             f"{raw[:200].decode(errors='replace')}")
        if text is not None:
            body = raw.decode(errors="replace").strip()
            if not text.fullmatch(body):
                raise _Retry(f"malformed answer ({len(raw)} bytes): {raw[:80]!r}")
            return body
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise _Retry(f"malformed JSON in answer ({len(raw)} bytes): {raw[:80]!r}") from exc

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
                raise ChainError(f"malformed Esplora block {n}: {str(block)[:120]}")
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
            raise ChainError(f"malformed Esplora txid list of block {block_hash}")
        index = {t.lower(): k for k, t in enumerate(txids)}
        self._block_index.put(block_hash, index)
        return index

    async def _merkle_position(self, txid: str) -> int:
        proof = await self._get(f"/tx/{txid}/merkle-proof", "tx/merkle-proof")
        pos = proof.get("pos") if isinstance(proof, Mapping) else None
        if not isinstance(pos, int) or isinstance(pos, bool) or pos < 0:
            raise ChainError(f"malformed Esplora merkle proof of {txid}: {str(proof)[:120]}")
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
                    raise ChainError(f"transaction {t} is not in the txid list of its block {h}")
                found[t] = index[t]
        found.update(zip(proofs, await gather_or_cancel(self._merkle_position(t) for t in proofs), strict=True))
        return found

    async def _with_positions(self, raw: Sequence[Mapping[str, Any]]) -> list[UtxoTx]:
        """Parse confirmed txs, with their position in the block. A cached parse is reused only
        while the transaction is still in the same block (after a reorg it is read again)."""
        def cached(r: Mapping[str, Any]) -> UtxoTx | None:
            hit = self._txs.get(str(r["txid"]).lower())
            return hit[1] if hit is not None and hit[0] == str(r["status"]["block_hash"]).lower() else None

        positions = await self._positions([r for r in raw if cached(r) is None])
        out: list[UtxoTx] = []
        for r in raw:
            tx = cached(r)
            if tx is None:
                tx = parse_tx(r, positions[str(r["txid"]).lower()])
                self._txs.put(tx.txid, (str(r["status"]["block_hash"]).lower(), tx))
                if tx.block_number is not None and tx.block_time is not None:
                    self._times[tx.block_number] = tx.block_time
            out.append(tx)
        return out

    @staticmethod
    def _confirmed(page: Any, what: str) -> list[Mapping[str, Any]]:
        if not isinstance(page, list):
            raise ChainError(f"malformed Esplora page for {what}: {str(page)[:120]}")
        out = []
        for tx in page:
            if not isinstance(tx, Mapping) or not isinstance(tx.get("txid"), str):
                raise ChainError(f"malformed Esplora transaction in {what}: {str(tx)[:120]}")
            status = tx.get("status")
            if isinstance(status, Mapping) and status.get("confirmed"):
                if not isinstance(status.get("block_height"), int) or not isinstance(status.get("block_hash"), str):
                    raise ChainError(f"malformed status of {tx['txid']} in {what}")
                out.append(tx)
        return out

    async def _history(self, address: str, min_height: int) -> list[Mapping[str, Any]]:
        """Confirmed transactions of `address` at or above `min_height` (and maybe some below),
        newest first, paging until a page ends below `min_height` or runs short."""
        what = f"address {address}"
        page = self._confirmed(await self._get(f"/address/{address}/txs", "address/txs"), what)
        found = list(page)
        while len(page) >= self.page_size and page[-1]["status"]["block_height"] >= min_height:
            last = page[-1]["txid"]
            page = self._confirmed(await self._get(f"/address/{address}/txs/chain/{last}", "address/txs/chain"),
                                   what)
            found.extend(page)
        return found

    async def transfers(
        self,
        addresses: Sequence[str],
        from_block: int,
        to_block: int,
        *,
        outgoing: bool = True,
        incoming: bool = False,
        times: bool = True,
    ) -> list[Transfer]:
        """Transfers from (outgoing) and/or to (incoming) the addresses in blocks
        [from_block, to_block], sorted by .order, one per key (`times` is accepted for the
        worker's interface: an Esplora transaction carries its block time, so it always has one)."""
        wanted = list(dict.fromkeys(normalize_btc(a) for a in addresses))
        if not wanted or (not outgoing and not incoming) or from_block > to_block:
            return []
        pages = await gather_or_cancel(self._history(a, from_block) for a in wanted)
        raw: dict[str, Mapping[str, Any]] = {}
        for page in pages:
            for tx in page:
                if from_block <= tx["status"]["block_height"] <= to_block:
                    raw.setdefault(str(tx["txid"]).lower(), tx)
        parsed = await self._with_positions(list(raw.values()))
        mine = set(wanted)
        seen: set[tuple[str, str, str]] = set()
        out: list[Transfer] = []
        for utx in parsed:
            for t in flatten(utx, self.chain):
                if t.key in seen:
                    continue
                if (outgoing and t.from_address in mine) or (incoming and t.to_address in mine):
                    seen.add(t.key)
                    out.append(t)
        out.sort(key=lambda t: t.order)
        return out

    async def transactions(self, txids: Iterable[str]) -> dict[str, UtxoTx]:
        """The transactions by txid, with inputs, outputs, script types and OP_RETURN data.
        Unconfirmed ones come back with block_number None and tx_index -1."""
        wanted = list(dict.fromkeys(t.lower() for t in txids))
        out: dict[str, UtxoTx] = {}
        missing = []
        for t in wanted:
            cached = self._txs.get(t)
            if cached is not None:
                out[t] = cached[1]
            else:
                missing.append(t)
        raw = await gather_or_cancel(self._get(f"/tx/{t}", "tx") for t in missing)
        confirmed = self._confirmed(raw, "transactions")
        for tx in await self._with_positions(confirmed):
            out[tx.txid] = tx
        for r in raw:
            txid = str(r["txid"]).lower()
            if txid not in out:
                out[txid] = parse_tx(r)
        return {t: out[t] for t in wanted if t in out}

    async def outspends(self, txid: str) -> list[Outspend]:
        """For each output of `txid`: spent or not, and by which input of which transaction."""
        answer = await self._get(f"/tx/{txid.lower()}/outspends", "tx/outspends")
        if not isinstance(answer, list):
            raise ChainError(f"malformed Esplora outspends of {txid}: {str(answer)[:120]}")
        out = []
        for k, item in enumerate(answer):
            if not isinstance(item, Mapping):
                raise ChainError(f"malformed Esplora outspend {k} of {txid}")
            raw_status = item.get("status")
            status: Mapping[str, Any] = raw_status if isinstance(raw_status, Mapping) else {}
            height = status.get("block_height")
            out.append(Outspend(k, bool(item.get("spent")), str(item["txid"]).lower() if item.get("txid") else None,
                                item.get("vin") if isinstance(item.get("vin"), int) else None,
                                height if isinstance(height, int) else None))
        return out

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
        stats = data.get("chain_stats") if isinstance(data, Mapping) else None
        if not isinstance(stats, Mapping):
            raise ChainError(f"malformed Esplora address stats of {address}: {str(data)[:120]}")
        return (_int(stats.get("funded_txo_sum"), "funded_txo_sum"), _int(stats.get("spent_txo_sum"), "spent_txo_sum"),
                _int(stats.get("tx_count"), "tx_count"))

    async def _balances_of(self, address: str, heights: Sequence[int]) -> dict[int, int]:
        what = f"address {address}"
        for _ in range(self.retries):
            first = self._confirmed(await self._get(f"/address/{address}/txs", "address/txs"), what)
            if len(first) < self.page_size:  # the whole confirmed history
                return {h: _net(address, [t for t in first if t["status"]["block_height"] <= h]) for h in heights}
            before = await self._stats(address)
            newer = await self._history(address, min(heights) + 1)
            if await self._stats(address) == before:
                current = before[0] - before[1]
                return {h: current - _net(address, [t for t in newer if t["status"]["block_height"] > h])
                        for h in heights}
        raise ChainError(f"Esplora server at {self.url}: the history of {address} kept changing while its "
                         "balance was read")


def _net(address: str, txs: Iterable[Mapping[str, Any]]) -> int:
    """What the transactions paid to `address` less what they spent from it."""
    total = 0
    for raw in txs:
        tx = parse_tx(raw)
        total += sum(o.value for o in tx.outputs if o.address == address)
        total -= sum(i.value for i in tx.inputs if i.address == address)
    return total
