"""Tron through a node's two faces: its JSON-RPC (TRC-20 `Transfer` logs by `eth_getLogs`, token
metadata by `eth_call`) and its HTTP API (blocks, execution results, accounts), as a java-tron
FullNode and TronGrid serve them.

    client = TronChain("https://api.trongrid.io/jsonrpc", api_url="https://api.trongrid.io")

Addresses come in and go out as tracer stores them, `0x41` + 20 bytes hex (tracer.addresses shows
them as `T...`); the JSON-RPC speaks 20-byte 0x addresses and is converted at this edge.

- TRC-20: `eth_getLogs` with the Transfer topic and the addresses in topic 1 (outgoing) or 2
  (incoming), ranges of `log_span` blocks and `addresses_per_request` addresses, one JSON-RPC batch.
- TRX, TRC-10 and internal transactions: no node indexes them by address, so the range's blocks are
  read (`/wallet/getblockbylimitnext`, 100 a request) and, for blocks where a contract was called,
  their execution results (`/wallet/gettransactioninfobyblocknum`, whose `internal_transactions`
  a node records when `vm.saveInternalTx` is on, as TronGrid's do). Blocks are cached: the worker
  reads the same windows for many addresses.
- Confirmation: `head()` is the solidified block (`/wallet/getnodeinfo`), which Tron's consensus
  never reverts: every read is at or below it, so no reorg guard is needed.
- Balances: a Tron node keeps only the current state (`historical_state` False): TRX by
  `/wallet/getaccount`, TRC-20 by `balanceOf` through `/wallet/triggerconstantcontract`; earlier
  balances are derived from history by tracer.engine.balances.
- The chain id is the JSON-RPC's `eth_chainId`, which Tron takes from the genesis block's id: the
  HTTP API's genesis must end with it, or the two URLs serve different chains (WrongChain).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from tracer.addresses import normalize_tron, tron_evm
from tracer.chains import tron_mappers as tm
from tracer.chains.answers import SHAPE_ERRORS, malformed
from tracer.chains.cache import Lru
from tracer.chains.errors import ChainError, MalformedAnswer, RpcError, StateUnavailable, WrongChain
from tracer.chains.jsonrpc import JsonRpcTransport
from tracer.chains.lifecycle import Connected
from tracer.chains.records import FeePaid, LogAddresses, LogRecord, LogTopics
from tracer.chains.retry import TransportOptions
from tracer.chains.tron_http import TronHttp
from tracer.chains.urls import node_name
from tracer.domain.transfers import NATIVE, Transfer, TransferQuery

log = logging.getLogger(__name__)

T = TypeVar("T")

TRON = "tron"
_BLOCKS_PER_REQUEST = 100  # getblockbylimitnext's cap
_DECIMALS = "0x313ce567"
_SYMBOL = "0x95d89b41"


def api_url_for(rpc_url: str) -> str:
    """The HTTP API beside a JSON-RPC URL where none is configured: TronGrid and java-tron serve
    the JSON-RPC under `/jsonrpc` of the same host (java-tron on its own port, 8545, by default:
    configure TRACER_TRON_API_URL then)."""
    url = rpc_url.rstrip("/")
    return url[: -len("/jsonrpc")] if url.endswith("/jsonrpc") else url


class TronChain(Connected):
    """Read access to Tron; see the module docstring."""

    historical_state: bool | None = False
    state_probe = None

    def __init__(
        self,
        url: str,
        chain: str = TRON,
        *,
        transport: TransportOptions = TransportOptions(),
        api_url: str | None = None,
        api_key: str | None = None,
        rate: float | None = None,
        log_span: int = 5000,
        addresses_per_request: int = 100,
        cache_blocks: int = 20_000,
    ) -> None:
        self.url = url
        self.name = node_name(url)  # in errors and logs: the URL may carry a key
        self.chain = chain
        self.chain_id: int | None = None
        self.path = "tron (eth_getLogs + HTTP API blocks)"
        # The API key, and with it TronGrid's per-key rate, go with the HTTP API: `rate` paces that one only.
        self.rpc = JsonRpcTransport(url, transport)
        self.api = TronHttp(api_url or api_url_for(url), transport, api_key=api_key, rate=rate)
        self.log_span = max(1, log_span)
        self.addresses_per_request = max(1, addresses_per_request)
        self._blocks: Lru[int, tm.TronBlock] = Lru(cache_blocks)
        self._infos: Lru[int, tuple[tm.TxInfo, ...]] = Lru(cache_blocks)
        self._meta: dict[str, tuple[int | None, str | None]] = {}

    @property
    def request_counts(self) -> dict[str, int]:
        return {**self.rpc.request_counts, **{f"api:{k}": v for k, v in self.api.request_counts.items()}}

    # -- lifecycle ----------------------------------------------------------------------------

    async def connect(self) -> None:
        await self.rpc.open()
        await self.api.open()
        answer = await self.rpc.call("eth_chainId", [])
        try:
            self.chain_id = int(str(answer), 16)
        except ValueError:
            raise MalformedAnswer(f"node at {self.name} answered eth_chainId with {str(answer)[:80]!r}, not a number: "
                                  "is the URL a Tron node's JSON-RPC (…/jsonrpc)?", node=f"node at {self.name}",
                                  method="eth_chainId") from None
        genesis = await self._api("/wallet/getblockbynum", {"num": 0}, tm.parse_block)
        if genesis is None or int(genesis.ref.hash[-8:], 16) != self.chain_id:
            seen = genesis.ref.hash if genesis else "no genesis block"
            raise WrongChain(f"the Tron HTTP API at {self.api.name} serves another chain ({seen}) than the JSON-RPC at "
                             f"{self.name} (chain id {self.chain_id}): check TRACER_TRON_API_URL")
        log.info("chain %s (Tron, chain id %d) at %s: solidified head %d", self.chain, self.chain_id, self.name,
                 await self.head())

    async def close(self) -> None:
        await self.rpc.close()
        await self.api.close()

    def malformed(self, method: str, answer: Any, exc: BaseException | None = None) -> MalformedAnswer:
        """The error for an answer in the wrong shape (tracer.chains.answers): `method` a JSON-RPC
        method, or a path of the HTTP API."""
        who = f"Tron node at {self.api.name}" if method.startswith("/") else f"Tron JSON-RPC at {self.name}"
        return malformed(who, method, answer, exc)

    async def _api(self, path: str, body: dict[str, Any], read: Callable[[Any], T]) -> T:
        """`read` (a mapper of tracer.chains.tron_mappers) of the HTTP API's answer to `path`."""
        answer = await self.api.post(path, body)
        try:
            return read(answer)
        except SHAPE_ERRORS as exc:
            raise self.malformed(path, answer, exc) from exc

    # -- blocks -------------------------------------------------------------------------------

    async def head(self) -> int:
        """The solidified block: Tron's confirmation (irreversible once 2/3 of the SRs built on it)."""
        return await self._api("/wallet/getnodeinfo", {}, tm.solidified)

    async def _read_blocks(self, numbers: Iterable[int], *, every: bool = False) -> dict[int, tm.TronBlock]:
        """The blocks the node has of `numbers` (cached); `every`: all of them, or ChainError (they
        are at or below the solidified head, which the node has)."""
        wanted = sorted(set(numbers))
        found, missing = self._blocks.split(wanted)
        runs: list[tuple[int, int]] = []  # [start, end) of at most 100 consecutive missing blocks
        for n in missing:
            if runs and runs[-1][1] == n and n - runs[-1][0] < _BLOCKS_PER_REQUEST:
                runs[-1] = (runs[-1][0], n + 1)
            else:
                runs.append((n, n + 1))

        async def run(start: int, end: int) -> None:
            blocks = await self._api("/wallet/getblockbylimitnext", {"startNum": start, "endNum": end},
                                     lambda answer: [tm.parse_block(raw) for raw in (answer or {}).get("block") or ()])
            for block in blocks:
                if block is not None:
                    self._blocks.put(block.number, block)
                    found[block.number] = block

        await asyncio.gather(*(run(s, e) for s, e in runs))
        if every and len(found) < len(wanted):
            gap = next(n for n in wanted if n not in found)
            who = f"Tron node at {self.api.name}"
            raise MalformedAnswer(f"{who} answered /wallet/getblockbylimitnext without block {gap}", node=who,
                                  method="/wallet/getblockbylimitnext")
        return {n: found[n] for n in wanted if n in found}

    async def block_times(self, numbers: Iterable[int]) -> dict[int, int]:
        return {n: b.ref.timestamp for n, b in (await self._read_blocks(numbers)).items()}

    async def block_hashes(self, numbers: Iterable[int]) -> dict[int, str]:
        return {n: b.ref.hash for n, b in (await self._read_blocks(numbers)).items()}

    async def _infos_of(self, numbers: Iterable[int]) -> dict[int, tuple[tm.TxInfo, ...]]:
        wanted = sorted(set(numbers))

        async def one(n: int) -> None:
            if n not in self._infos:
                self._infos.put(n, await self._api("/wallet/gettransactioninfobyblocknum", {"num": n}, tm.parse_infos))

        await asyncio.gather(*(one(n) for n in wanted))
        return {n: i for n in wanted if (i := self._infos.get(n)) is not None}

    # -- transfers ----------------------------------------------------------------------------

    async def transfers(self, query: TransferQuery) -> list[Transfer]:
        """Every TRX, TRC-10 and TRC-20 movement the query asks for (`query.times` changes
        nothing: blocks read here carry their time, so all have one)."""
        wanted = {normalize_tron(a) for a in query.addresses}
        if query.empty:
            return []
        tokens, native = await asyncio.gather(
            self._token_transfers(sorted(wanted), query),
            self._block_transfers(wanted, query),
        )
        found = {t.key: t for t in [*tokens, *native]}
        return sorted(found.values(), key=lambda t: t.order)

    async def _block_transfers(self, wanted: set[str], query: TransferQuery) -> list[Transfer]:
        blocks = await self._read_blocks(range(query.from_block, query.to_block + 1), every=True)
        infos = await self._infos_of(n for n, b in blocks.items() if b.calls_contracts())
        out = []
        for n, block in blocks.items():
            moved = tm.block_transfers(self.chain, block)
            if n in infos:
                moved += tm.internal_transfers(self.chain, block, infos[n])
            out += [t for t in moved if query.wants(t, wanted)]
        return out

    def _log_queries(self, addresses: Sequence[str], topic: int, from_block: int, to_block: int,
                     contracts: Sequence[str] = ()) -> list[tuple[str, list[Any]]]:
        padded = ["0x" + "0" * 24 + a[4:] for a in addresses]
        calls: list[tuple[str, list[Any]]] = []
        for i in range(0, len(padded) or 1, self.addresses_per_request):
            chunk = padded[i : i + self.addresses_per_request] or None
            topics: list[Any] = [tm.TRANSFER_TOPIC, None, None]
            topics[topic] = chunk
            for lo in range(from_block, to_block + 1, self.log_span):
                params: dict[str, Any] = {"fromBlock": hex(lo), "toBlock": hex(min(to_block, lo + self.log_span - 1)),
                                          "topics": topics}
                if contracts:
                    params["address"] = [tron_evm(c) for c in contracts]
                calls.append(("eth_getLogs", [params]))
        return calls

    async def _get_logs(self, calls: Sequence[tuple[str, list[Any]]]) -> list[LogRecord]:
        """The logs of eth_getLogs `calls`, once each, with block time 0 (the caller reads blocks)."""
        found: dict[tuple[str, int], LogRecord] = {}
        for answer in await self.rpc.batch(calls):
            if isinstance(answer, RpcError):
                raise ChainError(f"Tron JSON-RPC at {self.name} refused eth_getLogs: {answer.message}")
            try:
                for entry in answer if answer is not None else ():
                    if not entry.get("removed"):
                        record = tm.log_record(entry)
                        found[(record.tx_hash, record.log_index)] = record
            except SHAPE_ERRORS as exc:
                raise self.malformed("eth_getLogs", answer, exc) from exc
        return list(found.values())

    async def _token_transfers(self, wanted: Sequence[str], query: TransferQuery) -> list[Transfer]:
        calls = []
        if query.outgoing:
            calls += self._log_queries(wanted, 1, query.from_block, query.to_block)
        if query.incoming:
            calls += self._log_queries(wanted, 2, query.from_block, query.to_block)
        found = await self._get_logs(calls)
        times = await self.block_times({r.block_number for r in found})
        out = []
        for r in found:
            try:
                t = tm.log_transfer(self.chain, r, times.get(r.block_number, 0))
            except SHAPE_ERRORS as exc:
                raise self.malformed("eth_getLogs", r, exc) from exc
            if t is not None:
                out.append(t)
        return out

    async def logs(self, address: LogAddresses, topics: LogTopics, from_block: int, to_block: int) -> list[LogRecord]:
        """Logs of contracts (any, with None) matching `topics`, contract addresses in tracer's form."""
        if from_block > to_block:
            return []
        contracts = [address] if isinstance(address, str) else list(address or ())
        filt = [t if t is None or isinstance(t, str) else list(t) for t in topics]
        calls = []
        for i in range(0, len(contracts) or 1, self.addresses_per_request):
            chunk = [tron_evm(normalize_tron(c)) for c in contracts[i : i + self.addresses_per_request]]
            for lo in range(from_block, to_block + 1, self.log_span):
                params: dict[str, Any] = {"fromBlock": hex(lo), "toBlock": hex(min(to_block, lo + self.log_span - 1)),
                                          "topics": filt}
                if chunk:
                    params["address"] = chunk
                calls.append(("eth_getLogs", [params]))
        found = await self._get_logs(calls)
        times = await self.block_times({r.block_number for r in found})
        records = [replace(r, block_time=times.get(r.block_number, 0)) for r in found]
        return sorted(records, key=lambda r: (r.block_number, r.log_index))

    async def freezes(self, addresses: Iterable[str], from_block: int, to_block: int) -> dict[str, tm.Freeze]:
        """Issuer freezes (USDT's AddedBlackList) of `addresses` in the range, the first of each."""
        wanted = {normalize_tron(a) for a in addresses}
        if not wanted or from_block > to_block:
            return {}
        contracts = [tron_evm(c) for c in sorted(tm.FREEZING_ISSUERS)]
        calls = [("eth_getLogs", [{"fromBlock": hex(lo), "toBlock": hex(min(to_block, lo + self.log_span - 1)),
                                   "address": contracts, "topics": [tm.ADDED_BLACKLIST]}])
                 for lo in range(from_block, to_block + 1, self.log_span)]
        found: dict[str, tm.Freeze] = {}
        for record in await self._get_logs(calls):
            try:
                f = tm.freeze_of(record)
            except SHAPE_ERRORS as exc:
                raise self.malformed("eth_getLogs", record, exc) from exc
            if f is not None and f.address in wanted and (
                    f.address not in found or f.block_number < found[f.address].block_number):
                found[f.address] = f
        return found

    async def fees_paid(self, addresses: Iterable[str], from_block: int, to_block: int) -> list[FeePaid]:
        """TRX each address's own transactions burnt for energy and bandwidth (their `fee`)."""
        wanted = {normalize_tron(a) for a in addresses}
        blocks = await self._read_blocks(range(from_block, to_block + 1), every=True)
        owned = {n: [t for t in b.txs if t.owner in wanted] for n, b in blocks.items()}
        infos = await self._infos_of(n for n, txs in owned.items() if txs)
        out = []
        for n, txs in owned.items():
            paid = tm.fees(infos.get(n, ()))
            out += [FeePaid(t.owner or "", n, t.tx_hash, paid[t.tx_hash]) for t in txs if paid.get(t.tx_hash)]
        return out

    # -- state --------------------------------------------------------------------------------

    async def _current(self, blocks: Iterable[int]) -> None:
        head = await self.head()
        old = [b for b in blocks if b < head]
        if old:
            raise StateUnavailable(f"a Tron node keeps only the current state, not block {min(old)}", min(old))

    async def native_balances(self, queries: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int]:
        wanted = list(queries)
        await self._current(b for _, b in wanted)

        accounts = await self._accounts(a for a, _ in wanted)
        return {(a, b): accounts[a][0] for a, b in wanted}

    async def _accounts(self, addresses: Iterable[str]) -> dict[str, tuple[int, dict[str, int]]]:
        """(TRX, TRC-10 holdings) of accounts (tron_mappers.account)."""
        wanted = sorted(set(addresses))

        async def one(address: str) -> tuple[int, dict[str, int]]:
            return await self._api("/wallet/getaccount", {"address": address[2:], "visible": False}, tm.account)

        return dict(zip(wanted, await asyncio.gather(*(one(a) for a in wanted)), strict=True))

    async def token_balances(self, queries: Iterable[tuple[str, str, int]]) -> dict[tuple[str, str, int], int]:
        wanted = list(queries)
        await self._current(b for _, _, b in wanted)

        async def one(address: str, token: str) -> int:
            value = await self._api("/wallet/triggerconstantcontract", {
                "owner_address": address[2:], "contract_address": token[2:], "function_selector": "balanceOf(address)",
                "parameter": "0" * 24 + address[4:], "visible": False,
            }, tm.constant_uint)
            if value is None:
                raise ChainError(f"Tron node at {self.api.name} failed balanceOf({address}) on TRC-20 {token} "
                                 "(/wallet/triggerconstantcontract)")
            return value

        trc20 = [q for q in wanted if not q[1].startswith(tm.TRC10_PREFIX)]
        values = await asyncio.gather(*(one(a, t) for a, t, _ in trc20))
        out = dict(zip(trc20, values, strict=True))
        # TRC-10 balances are part of the account (`assetV2`: token id -> amount).
        trc10 = [q for q in wanted if q[1].startswith(tm.TRC10_PREFIX)]
        accounts = await self._accounts(a for a, _, _ in trc10) if trc10 else {}
        for a, t, b in trc10:
            out[(a, t, b)] = accounts[a][1].get(t[len(tm.TRC10_PREFIX):], 0)
        return out

    async def token_meta(self, tokens: Iterable[str]) -> dict[str, tuple[int | None, str | None]]:
        """(decimals, symbol) of TRC-20 contracts (`eth_call`) and TRC-10 ids (`getassetissuebyid`)."""
        wanted = [t for t in dict.fromkeys(tokens) if t != NATIVE and t not in self._meta]
        trc20 = [t for t in wanted if not t.startswith(tm.TRC10_PREFIX)]
        if trc20:
            answers = await self.rpc.batch([("eth_call", [{"to": tron_evm(t), "data": sel}, "latest"])
                                            for t in trc20 for sel in (_DECIMALS, _SYMBOL)])
            for i, token in enumerate(trc20):
                self._meta[token] = (tm_decimals(answers[2 * i]), tm_symbol(answers[2 * i + 1]))
        for token in (t for t in wanted if t.startswith(tm.TRC10_PREFIX)):
            self._meta[token] = await self._api("/wallet/getassetissuebyid", {"value": token[len(tm.TRC10_PREFIX):]},
                                                tm.asset_issue)
        return {t: self._meta.get(t, (None, None)) for t in tokens if t != NATIVE}


# A token's metadata is cosmetic: an answer that is none (or garbage) leaves it unknown, as on EVM chains.


def tm_decimals(answer: Any) -> int | None:
    if not isinstance(answer, str) or len(answer) < 3:
        return None
    try:
        value = int(answer[2:66], 16)
    except ValueError:
        return None
    return value if value <= 255 else None


def tm_symbol(answer: Any) -> str | None:
    if not isinstance(answer, str) or len(answer) < 130:
        return None
    try:
        raw = bytes.fromhex(answer[2:])
    except ValueError:
        return None
    size = int.from_bytes(raw[32:64], "big")
    text = raw[64 : 64 + size].decode("utf-8", errors="replace")
    return text[:32] or None
