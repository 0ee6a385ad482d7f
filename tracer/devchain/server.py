"""JSON-RPC 2.0 over HTTP (aiohttp) for a dev `Chain`: the node methods tracer's chain layer uses.

The same URL upgrades to a WebSocket (tracer.devchain.ws): requests over the socket and
`eth_subscribe ["newHeads"]`, pushed as the chain mines.

`DevChainServer` answers eth_* (blocks, transactions, receipts, logs, balances, code, ERC-20 calls),
Parity trace_* and Geth debug_* callTracer methods, single requests and batches. Knobs make it
behave like the providers clients meet: per-request latency, a requests/s limit (HTTP 429 with
Retry-After), a cap on eth_getLogs / trace_filter results (-32005), no trace methods at all
(-32601, so clients take their block-scan fallback) and a seeded `FaultPlan` (hangs, 5xx,
connection resets, malformed bodies, shuffled or partial batch answers, a wrong chain id).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import web

from tracer.devchain import multicall
from tracer.devchain.chain import Block, Chain, word
from tracer.devchain.http import FaultPlan, KnobServer
from tracer.devchain.prices import PricePath, by_feed
from tracer.devchain.rpc_body import answer_body
from tracer.devchain.rpc_json import (
    block_json,
    call_tracer,
    log_json,
    receipt_json,
    receipts_of_block,
    trace_json,
    traces_of_tx,
    tx_json,
)
from tracer.devchain.rpc_params import RpcError, address_set, parse_address, parse_hash, parse_quantity
from tracer.devchain.scenario import Scenario
from tracer.devchain.ws import WsRpc

log = logging.getLogger(__name__)

Json = Any
_TRACE_PREFIXES = ("trace_", "debug_")


class DevChainServer(KnobServer):
    """Serve a Scenario (or an already built Chain) over HTTP JSON-RPC on 127.0.0.1."""

    SAFE_DEPTH = 32  # "safe" and "finalized" block tags lag the head like on mainnet
    FINALIZED_DEPTH = 64

    def __init__(
        self,
        scenario_or_chain: Scenario | Chain,
        *,
        latency: float = 0.0,
        rate_limit: float | None = None,
        max_logs: int | None = None,
        traces: bool = True,
        faults: FaultPlan | None = None,
        keep_states: int | None = None,
        charge_gas: bool = False,
        prices: Iterable[PricePath] = (),
        log_timestamps: bool = True,
        multicall: bool = True,
    ) -> None:
        if isinstance(scenario_or_chain, Chain):
            self.chain = scenario_or_chain
            self.scenario: Scenario | None = None
        else:
            self.scenario = scenario_or_chain
            self.chain = Chain.from_scenario(scenario_or_chain)
        super().__init__(latency=latency, rate_limit=rate_limit, faults=faults)
        self.max_logs = max_logs
        # Logs carry blockTimestamp as on Anvil, Geth 1.16+ and Reth; False: as on older nodes.
        self.log_timestamps = log_timestamps
        self.traces = traces
        # None: every block's state is kept (an archive node). N: only the newest N, and reads of
        # state at older blocks are refused as Anvil refuses them (`--prune-history` keeps 1).
        self.keep_states = keep_states
        # Balances lose the fees their transactions paid (receipts report them either way).
        self.charge_gas = charge_gas
        # Multicall3 at its usual address from genesis, as on most chains (False: a chain without it).
        self.multicall = multicall
        # Chainlink-compatible aggregators answering from a price path (tracer.devchain.prices).
        self.prices = by_feed(prices)
        self.ws = WsRpc(self.chain, self.handle_request, self.request_counts)
        self._methods: dict[str, Callable[[list[Any]], Json]] = {
            "eth_chainId": self._eth_chain_id,
            "net_version": lambda p: str(self.chain.chain_id),
            "net_listening": lambda p: True,
            "web3_clientVersion": lambda p: "tracer-devchain/0.1",
            "eth_syncing": lambda p: False,
            "eth_gasPrice": lambda p: hex(20 * 10**9),
            "eth_blockNumber": lambda p: hex(self.chain.head),
            "eth_getBlockByNumber": self._eth_get_block_by_number,
            "eth_getBlockByHash": self._eth_get_block_by_hash,
            "eth_getBlockTransactionCountByNumber": self._eth_block_tx_count,
            "eth_getTransactionByHash": self._eth_get_transaction_by_hash,
            "eth_getTransactionReceipt": self._eth_get_transaction_receipt,
            "eth_getBlockReceipts": self._eth_get_block_receipts,
            "eth_getCode": self._eth_get_code,
            "eth_getBalance": self._eth_get_balance,
            "eth_getTransactionCount": self._eth_get_transaction_count,
            "eth_call": self._eth_call,
            "eth_getLogs": self._eth_get_logs,
            "trace_filter": self._trace_filter,
            "trace_block": self._trace_block,
            "trace_transaction": self._trace_transaction,
            "debug_traceTransaction": self._debug_trace_transaction,
            "debug_traceBlockByNumber": self._debug_trace_block_by_number,
            "debug_traceBlockByHash": self._debug_trace_block_by_hash,
        }

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=256 * 1024**2)
        app.router.add_post("/", self._handle)
        app.router.add_post("/{tail:.*}", self._handle)
        app.router.add_get("/", self.ws.handle)
        app.router.add_get("/{tail:.*}", self.ws.handle)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        url = await super().start(host, port)
        self.ws.attach()
        return url

    async def stop(self) -> None:
        await self.ws.close()
        await super().stop()

    @property
    def heads_pushed(self) -> int:
        """newHeads notifications sent to WebSocket subscribers so far."""
        return self.ws.notifications

    # -- HTTP --------------------------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        early, fault = await self._misbehave(request)
        if early is not None:
            return early
        body = await request.read()
        answer = self.handle_body(body)
        if fault == "malformed":
            text = json.dumps(answer, separators=(",", ":"))
            return web.Response(body=text[: max(1, len(text) // 2)].encode(), content_type="application/json")
        if answer is None:  # a batch of notifications only
            return web.Response(status=204)
        return web.Response(body=json.dumps(answer, separators=(",", ":")).encode(), content_type="application/json")

    # -- JSON-RPC ----------------------------------------------------------------------------------
    def handle_body(self, body: bytes) -> Json:
        """Answer one HTTP body (a request or a batch); None when nothing is to be answered."""
        return answer_body(body, self.handle_request, self._batch_faults)

    def _batch_faults(self, answers: list[Json]) -> list[Json]:
        """A batch's answers after the seeded partial / shuffled batch faults (HTTP only)."""
        plan = self.faults
        if plan is not None and len(answers) > 1:
            if self._rng.random() < plan.partial_batch:
                self.fault_counts["partial_batch"] += 1
                keep = self._rng.randrange(len(answers))  # drop at least one member
                answers = self._rng.sample(answers, keep)
            if self._rng.random() < plan.shuffle_batch:
                self.fault_counts["shuffle_batch"] += 1
                self._rng.shuffle(answers)
        return answers

    def handle_request(self, req: Any) -> Json:
        """Answer one request object; None for a notification (no id)."""
        if not isinstance(req, dict) or not isinstance(req.get("method"), str):
            return {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "invalid request"}}
        rid = req.get("id")
        method: str = req["method"]
        self.request_counts[method] += 1
        params = req.get("params", [])
        if params is None:
            params = []
        try:
            if not isinstance(params, list):
                raise RpcError(-32602, "params must be an array")
            result = self.call(method, *params)
        except RpcError as e:
            answer: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "error": e.to_json()}
        except Exception as e:  # a bug here must reach the client, not kill the connection
            log.exception("devchain: %s failed", method)
            answer = {"jsonrpc": "2.0", "id": rid, "error": {"code": -32603, "message": f"internal error: {e}"}}
        else:
            answer = {"jsonrpc": "2.0", "id": rid, "result": result}
        return answer if "id" in req else None

    def call(self, method: str, *params: Any) -> Json:
        """Run one method in-process (no HTTP, no faults); raises RpcError."""
        fn = self._methods.get(method)
        if fn is None or (not self.traces and method.startswith(_TRACE_PREFIXES)):
            raise RpcError(-32601, f"the method {method} does not exist/is not available")
        return fn(list(params))

    # -- block selection ------------------------------------------------------------------------
    def _block_number(self, tag: Any, *, strict: bool = True) -> int | None:
        """A block tag or number to a block number; None (or error when strict) past the head."""
        head = self.chain.head
        if isinstance(tag, dict):  # EIP-1898
            if "blockHash" in tag:
                n = self.chain.block_by_hash.get(parse_hash(tag["blockHash"]))
                if n is None:
                    raise RpcError(-32000, "header not found")
                return n
            tag = tag.get("blockNumber", "latest")
        if tag is None or tag in ("latest", "pending"):
            return head
        if tag == "earliest":
            return 0
        if tag == "safe":
            return max(0, head - self.SAFE_DEPTH)
        if tag == "finalized":
            return max(0, head - self.FINALIZED_DEPTH)
        n = parse_quantity(tag, "block")
        if n < 0 or n > head:
            if strict:
                raise RpcError(-32000, "header not found")
            return None
        return n

    def _state_at(self, tag: Any) -> int:
        """The block number of a state read, refused like Anvil when that state is not kept."""
        n = self._block_number(tag)
        assert n is not None
        head = self.chain.head
        if self.keep_states is not None and n <= head - self.keep_states:
            raise RpcError(-32602, f"BlockOutOfRangeError: block height is {head} but requested was {n}")
        return n

    def _block(self, tag: Any) -> Block | None:
        n = self._block_number(tag, strict=False)
        return None if n is None else self.chain.blocks[n]

    def _range(self, flt: dict[str, Any]) -> tuple[int, int] | None:
        """(from, to) of a filter, clamped to the head; None when it starts past the head."""
        head = self.chain.head
        lo = self._block_number(flt.get("fromBlock", "latest"), strict=False)
        hi_tag = flt.get("toBlock", "latest")
        hi = self._block_number(hi_tag, strict=False)
        if hi is None:  # past the head: clamp, as nodes do for ranges reaching into the future
            to = parse_quantity(hi_tag, "toBlock")
            if lo is not None and lo > to:
                raise RpcError(-32602, f"invalid block range: fromBlock {lo} > toBlock {to}")
            hi = head
        if lo is None:  # starts past the head: nothing there yet
            return None
        if lo > hi:
            raise RpcError(-32602, f"invalid block range: fromBlock {lo} > toBlock {hi}")
        return lo, hi

    # -- eth_* -----------------------------------------------------------------------------------
    def _eth_chain_id(self, params: list[Any]) -> str:
        plan = self.faults
        if plan is not None and plan.wrong_chain_id and self._rng.random() < plan.wrong_chain_id:
            self.fault_counts["wrong_chain_id"] += 1
            return hex(self.chain.chain_id + 1)
        return hex(self.chain.chain_id)

    def _eth_get_block_by_number(self, params: list[Any]) -> Json:
        tag = params[0] if params else "latest"
        full = bool(params[1]) if len(params) > 1 else False
        block = self._block(tag)
        return None if block is None else block_json(self.chain, block, full)

    def _eth_get_block_by_hash(self, params: list[Any]) -> Json:
        if not params:
            raise RpcError(-32602, "missing block hash")
        n = self.chain.block_by_hash.get(parse_hash(params[0]))
        full = bool(params[1]) if len(params) > 1 else False
        return None if n is None else block_json(self.chain, self.chain.blocks[n], full)

    def _eth_block_tx_count(self, params: list[Any]) -> Json:
        block = self._block(params[0] if params else "latest")
        return None if block is None else hex(block.n_txs)

    def _tid(self, params: list[Any]) -> int | None:
        if not params:
            raise RpcError(-32602, "missing transaction hash")
        return self.chain.tx_by_hash.get(parse_hash(params[0]))

    def _eth_get_transaction_by_hash(self, params: list[Any]) -> Json:
        tid = self._tid(params)
        return None if tid is None else tx_json(self.chain, tid)

    def _eth_get_transaction_receipt(self, params: list[Any]) -> Json:
        tid = self._tid(params)
        if tid is None:
            return None
        c = self.chain
        block = c.blocks[c.tx_block[tid]]
        cumulative = sum(c.tx_gas(t)[1] for t in range(block.first_tx, tid + 1))
        return receipt_json(self.chain, tid, cumulative)

    def _eth_get_block_receipts(self, params: list[Any]) -> Json:
        tag = params[0] if params else "latest"
        if isinstance(tag, str) and len(tag) == 66:
            n = self.chain.block_by_hash.get(parse_hash(tag))
            block = None if n is None else self.chain.blocks[n]
        else:
            block = self._block(tag)
        return None if block is None else receipts_of_block(self.chain, block)

    def _eth_get_code(self, params: list[Any]) -> Json:
        if not params:
            raise RpcError(-32602, "missing address")
        address = parse_address(params[0])
        self._state_at(params[1] if len(params) > 1 else "latest")
        if address == multicall.ADDRESS and self.multicall:
            return multicall.runtime_code()
        return self.chain.code(address)

    def _eth_get_balance(self, params: list[Any]) -> Json:
        if not params:
            raise RpcError(-32602, "missing address")
        address = parse_address(params[0])
        n = self._state_at(params[1] if len(params) > 1 else "latest")
        return hex(self.chain.native_balance(address, n, charge_gas=self.charge_gas))

    def _eth_get_transaction_count(self, params: list[Any]) -> Json:
        if not params:
            raise RpcError(-32602, "missing address")
        address = parse_address(params[0])
        n = self._state_at(params[1] if len(params) > 1 else "latest")
        return hex(self.chain.nonce(address, n))

    def _eth_call(self, params: list[Any]) -> Json:
        if not params or not isinstance(params[0], dict):
            raise RpcError(-32602, "missing call object")
        call = params[0]
        if "to" not in call:
            raise RpcError(-32602, "missing 'to'")
        to = parse_address(call["to"])
        data = str(call.get("data") or call.get("input") or "0x").lower()
        n = self._state_at(params[1] if len(params) > 1 else "latest")
        return self._call_at(to, data, n)

    def _call_at(self, to: str, data: str, n: int) -> str:
        """The return data of a call to `to` with input `data` at block n; RpcError when it reverts."""
        if to == multicall.ADDRESS and self.multicall:
            return multicall.answer(data, lambda t, d: self._call_at(t, d, n),
                                    lambda a: self.chain.native_balance(a, n, charge_gas=self.charge_gas))
        feed = self.prices.get(to)
        if feed is not None:
            answer = feed.answer_call(data, self.chain.blocks[n].timestamp)
            if answer is None:
                raise RpcError(-32000, "execution reverted")
            return answer
        token = self.chain.tokens.get(to)
        if token is None:
            if self.chain.code(to) == "0x":
                return "0x"  # calling an account without code succeeds and returns nothing
            raise RpcError(-32000, "execution reverted")
        selector = data[:10]
        if selector == "0x70a08231" and len(data) >= 10 + 64:  # balanceOf(address)
            holder = "0x" + data[10 + 24 : 10 + 64]
            return "0x" + word(self.chain.token_balance(to, holder, n))
        if selector == "0x313ce567":  # decimals()
            return "0x" + word(token.decimals)
        if selector in ("0x95d89b41", "0x06fdde03"):  # symbol(), name()
            raw = token.symbol.encode()
            padded = raw.hex().ljust(((len(raw) + 31) // 32) * 64, "0")
            return "0x" + word(32) + word(len(raw)) + padded
        raise RpcError(-32000, "execution reverted")

    def _eth_get_logs(self, params: list[Any]) -> Json:
        flt = params[0] if params else {}
        if not isinstance(flt, dict):
            raise RpcError(-32602, "filter must be an object")
        c = self.chain
        if flt.get("blockHash") is not None:
            if "fromBlock" in flt or "toBlock" in flt:
                raise RpcError(-32602, "blockHash excludes fromBlock/toBlock")
            n = c.block_by_hash.get(parse_hash(flt["blockHash"]))
            if n is None:
                raise RpcError(-32000, "unknown block")
            lo = hi = n
        else:
            span = self._range(flt)
            if span is None:
                return []
            lo, hi = span
        addresses = address_set(flt.get("address"))
        topics: list[set[str] | None] = []
        raw_topics = flt.get("topics") or []
        if not isinstance(raw_topics, list):
            raise RpcError(-32602, "topics must be an array")
        for t in raw_topics:
            if t is None:
                topics.append(None)
            elif isinstance(t, str):
                topics.append({parse_hash(t)})
            elif isinstance(t, list):
                topics.append({parse_hash(x) for x in t} if t else None)
            else:
                raise RpcError(-32602, f"invalid topic {t!r}")
        ids = c.find_logs(lo, hi, addresses, topics)
        if self.max_logs is not None and len(ids) > self.max_logs:
            raise RpcError(-32005, f"query returned more than {self.max_logs} results")
        out = []
        blocks = c.blocks
        for lg in ids:
            tid, entry = c.log(lg)
            out.append(log_json(self.chain, lg, tid, entry, blocks[c.tx_block[tid]], self.log_timestamps))
        return out

    # -- trace_* / debug_* -------------------------------------------------------------------------
    def _trace_filter(self, params: list[Any]) -> Json:
        flt = params[0] if params else {}
        if not isinstance(flt, dict):
            raise RpcError(-32602, "filter must be an object")
        flt = dict(flt)
        flt.setdefault("fromBlock", "earliest")
        span = self._range(flt)
        if span is None:
            return []
        lo, hi = span
        mode = flt.get("mode", "intersection")
        if mode not in ("intersection", "union"):
            raise RpcError(-32602, f"invalid mode {mode!r}")
        ids = self.chain.find_traces(
            lo, hi, address_set(flt.get("fromAddress")), address_set(flt.get("toAddress")), mode=mode
        )
        after = parse_quantity(flt.get("after", 0), "after")
        count = flt.get("count")
        if count is None:
            ids = ids[after:]
            if self.max_logs is not None and len(ids) > self.max_logs:
                raise RpcError(-32005, f"query returned more than {self.max_logs} results")
        else:
            ids = ids[after : after + parse_quantity(count, "count")]
        out = []
        for t in ids:
            tid, frame = self.chain.frame(t)
            out.append(trace_json(self.chain, tid, frame))
        return out

    def _trace_block(self, params: list[Any]) -> Json:
        block = self._block(params[0] if params else "latest")
        if block is None:
            return None
        tids = range(block.first_tx, block.first_tx + block.n_txs)
        return [tr for tid in tids for tr in traces_of_tx(self.chain, tid)]

    def _trace_transaction(self, params: list[Any]) -> Json:
        tid = self._tid(params)
        return None if tid is None else traces_of_tx(self.chain, tid)

    @staticmethod
    def _check_tracer(options: Any) -> None:
        if not isinstance(options, dict) or options.get("tracer") != "callTracer":
            raise RpcError(-32602, "the dev chain supports only {'tracer': 'callTracer'}")

    def _debug_trace_transaction(self, params: list[Any]) -> Json:
        self._check_tracer(params[1] if len(params) > 1 else None)
        tid = self._tid(params)
        if tid is None:
            raise RpcError(-32000, "transaction not found")
        return call_tracer(self.chain, tid)

    def _debug_block(self, block: Block | None) -> Json:
        if block is None:
            raise RpcError(-32000, "block not found")
        return [
            {"txHash": self.chain.tx_hash[tid], "result": call_tracer(self.chain, tid)}
            for tid in range(block.first_tx, block.first_tx + block.n_txs)
        ]

    def _debug_trace_block_by_number(self, params: list[Any]) -> Json:
        self._check_tracer(params[1] if len(params) > 1 else None)
        return self._debug_block(self._block(params[0] if params else "latest"))

    def _debug_trace_block_by_hash(self, params: list[Any]) -> Json:
        self._check_tracer(params[1] if len(params) > 1 else None)
        n = self.chain.block_by_hash.get(parse_hash(params[0])) if params else None
        return self._debug_block(None if n is None else self.chain.blocks[n])
