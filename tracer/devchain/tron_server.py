"""A java-tron node over a generated Tron history (tracer/devchain/tron.py): the HTTP API's
`/wallet/*` endpoints tracer's Tron adapter uses and the JSON-RPC at `/jsonrpc`, on one port, as
TronGrid serves them (a self-hosted FullNode serves the JSON-RPC on its own port, 8545).

Shapes follow java-tron's documentation with `visible` false: hex addresses with the 41 prefix,
hex-encoded TRC-10 names, `{}` for what the node does not have (an unknown account, a block past
the head), timestamps in milliseconds; the JSON-RPC answers like Ethereum's with 20-byte 0x
addresses (no 41). `solid_lag` keeps the solidified block that many blocks under the head, and
`tip` hides the blocks above it (raising it grows the chain under a live trace). The knobs of
KnobServer (latency, a requests/s limit answered with HTTP 429 and Retry-After, seeded faults)
apply to every request.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from tracer.devchain.http import FaultPlan, KnobServer
from tracer.devchain.tron import CHAIN_ID, SOLID_LAG, TronBlockSpec, TronStory, TronTxn

_TYPE_URL = "type.googleapis.com/protocol."


def _hex41(a: str) -> str:
    return a[2:]  # "0x41..." -> "41..."


class TronServer(KnobServer):
    """Serve a TronStory as a java-tron FullNode with its JSON-RPC on 127.0.0.1."""

    TOO_MANY_TEXT = '{"Error":"rate limit exceeded"}'

    def __init__(self, story: TronStory, *, latency: float = 0.0, rate_limit: float | None = None,
                 faults: FaultPlan | None = None, tip: int | None = None, solid_lag: int = SOLID_LAG) -> None:
        super().__init__(latency=latency, rate_limit=rate_limit, faults=faults)
        self.story = story
        self.tip = tip
        self.solid_lag = solid_lag

    @property
    def head(self) -> int:
        return self.story.head if self.tip is None else min(self.tip, self.story.head)

    @property
    def solid(self) -> int:
        return max(0, self.head - self.solid_lag)

    @property
    def jsonrpc_url(self) -> str:
        return self.url + "/jsonrpc"

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        r = app.router
        for name, handler in {
            "getnodeinfo": self._nodeinfo, "getnowblock": self._nowblock, "getblockbynum": self._block_by_num,
            "getblockbylimitnext": self._blocks_by_limit, "gettransactioninfobyblocknum": self._infos,
            "getaccount": self._account, "triggerconstantcontract": self._constant,
            "getassetissuebyid": self._asset_issue,
        }.items():
            r.add_post(f"/wallet/{name}", handler)
        r.add_post("/jsonrpc", self._jsonrpc)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.request_counts[request.path] += 1
        early, _fault = await self._misbehave(request)
        if early is not None:
            return early
        response: web.StreamResponse = await handler(request)
        return response

    @staticmethod
    def _json(value: Any) -> web.Response:
        return web.Response(body=json.dumps(value, separators=(",", ":")).encode(), content_type="application/json")

    @staticmethod
    async def _body(request: web.Request) -> dict[str, Any]:
        try:
            body = json.loads(await request.read() or b"{}")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            # java-tron's servlets answer a body they cannot parse with an Error object.
            raise web.HTTPOk(body=b'{"Error":"class com.google.protobuf.InvalidProtocolBufferException : '
                                  b'malformed request body"}', content_type="application/json")
        return body

    def _spec(self, number: Any) -> TronBlockSpec | None:
        if isinstance(number, bool) or not isinstance(number, int) or not 0 <= number <= self.head:
            return None
        return self.story.blocks[number]

    # -- HTTP API ----------------------------------------------------------------------------------
    def _ref(self, number: int) -> str:
        return f"Num:{number},ID:{self.story.blocks[number].block_id}"

    async def _nodeinfo(self, request: web.Request) -> web.Response:
        return self._json({"activeConnectCount": 0, "beginSyncNum": self.head, "block": self._ref(self.head),
                           "solidityBlock": self._ref(self.solid), "currentConnectCount": 0,
                           "passiveConnectCount": 0, "totalFlow": 0, "peerList": [],
                           "configNodeInfo": {"codeVersion": "4.7.7", "p2pVersion": "11111", "supportConstant": True}})

    async def _nowblock(self, request: web.Request) -> web.Response:
        return self._json(self._block_json(self.story.blocks[self.head]))

    async def _block_by_num(self, request: web.Request) -> web.Response:
        spec = self._spec((await self._body(request)).get("num"))
        return self._json(self._block_json(spec) if spec is not None else {})

    async def _blocks_by_limit(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        start, end = body.get("startNum"), body.get("endNum")
        if not isinstance(start, int) or not isinstance(end, int) or end <= start or end - start > 100:
            return self._json({"Error": "class java.lang.Exception : startNum and endNum: at most 100 blocks"})
        blocks = [self._block_json(s) for n in range(start, end) if (s := self._spec(n)) is not None]
        return self._json({"block": blocks} if blocks else {})

    def _tx_json(self, tx: TronTxn) -> dict[str, Any]:
        value: dict[str, Any] = {"owner_address": _hex41(tx.owner)}
        if tx.kind == "TransferContract":
            value.update(amount=tx.amount, to_address=_hex41(tx.to))
        elif tx.kind == "TransferAssetContract":
            value.update(amount=tx.amount, asset_name=(tx.token_id or "").encode().hex(), to_address=_hex41(tx.to))
        else:
            value.update(data="a9059cbb" if tx.logs else "", contract_address=_hex41(tx.to))
            if tx.amount:
                value["call_value"] = tx.amount
        raw: dict[str, Any] = {
            "contract": [{"parameter": {"value": value, "type_url": _TYPE_URL + tx.kind}, "type": tx.kind}],
            "ref_block_bytes": tx.txid[:4], "ref_block_hash": tx.txid[4:20], "expiration": 0, "timestamp": 0,
        }
        if tx.kind == "TriggerSmartContract":
            raw["fee_limit"] = 100_000_000
        if tx.memo:
            raw["data"] = tx.memo.encode().hex()  # java-tron shows the note as hex
        return {"ret": [{"contractRet": "SUCCESS"}], "signature": [tx.txid * 2 + "1b"], "txID": tx.txid,
                "raw_data": raw, "raw_data_hex": "0a02" + tx.txid[:8]}

    def _block_json(self, spec: TronBlockSpec) -> dict[str, Any]:
        parent = self.story.blocks[spec.number - 1].block_id if spec.number else "0" * 64
        out: dict[str, Any] = {
            "blockID": spec.block_id,
            "block_header": {
                "raw_data": {"number": spec.number, "txTrieRoot": "0" * 64, "witness_address": "41" + "ab" * 20,
                             "parentHash": parent, "version": 30, "timestamp": spec.timestamp_ms},
                "witness_signature": "00" * 65,
            },
        }
        if spec.number == 0:
            out["block_header"]["raw_data"].pop("number")  # java-tron omits proto3 zero values
        if spec.txs:
            out["transactions"] = [self._tx_json(t) for t in spec.txs]
        return out

    async def _infos(self, request: web.Request) -> web.Response:
        spec = self._spec((await self._body(request)).get("num"))
        if spec is None or not spec.txs:
            return self._json([])
        out = []
        for tx in spec.txs:
            info: dict[str, Any] = {"id": tx.txid, "blockNumber": spec.number, "blockTimeStamp": spec.timestamp_ms,
                                    "contractResult": [""], "receipt": {"net_fee": 345000}}
            if tx.fee:
                info["fee"] = tx.fee
            if tx.kind == "TriggerSmartContract":
                info["contract_address"] = _hex41(tx.to)
                info["receipt"] = {"energy_usage_total": 14_650, "net_usage": 345, "result": "SUCCESS"}
            if tx.logs:
                info["log"] = [{"address": lg.contract[4:], "topics": [t[2:] for t in lg.topics], "data": lg.data[2:]}
                               for lg in tx.logs]
            if tx.internal:
                info["internal_transactions"] = [{
                    "hash": f"{tx.txid[:56]}{i:08x}", "caller_address": _hex41(c.caller),
                    "transferTo_address": _hex41(c.to),
                    "callValueInfo": [{"tokenId": c.token_id, "callValue": c.amount} if c.token_id
                                      else {"callValue": c.amount}],
                    "note": "63616c6c",  # "call"
                } for i, c in enumerate(tx.internal)]
            out.append(info)
        return self._json(out)

    def _address_of(self, body: dict[str, Any], key: str) -> str | None:
        text = body.get(key)
        if not isinstance(text, str) or len(text) != 42 or not text.startswith("41"):
            return None
        return "0x" + text.lower()

    async def _account(self, request: web.Request) -> web.Response:
        a = self._address_of(await self._body(request), "address")
        if a is None:
            return self._json({"Error": "class java.lang.IllegalArgumentException : invalid address"})
        trx = self.story.trx.get(a)
        assets = [{"key": tid, "value": v} for (holder, tid), v in sorted(self.story.trc10.items())
                  if holder == a and v]
        if trx is None and not assets:
            return self._json({})
        out: dict[str, Any] = {"address": a[2:], "create_time": self.story.blocks[1].timestamp_ms}
        if trx:
            out["balance"] = trx  # proto3: a zero balance is left out
        if assets:
            out["assetV2"] = assets
        return self._json(out)

    async def _constant(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        contract, owner = self._address_of(body, "contract_address"), self._address_of(body, "owner_address")
        param = str(body.get("parameter") or "")
        if (contract is None or owner is None or body.get("function_selector") != "balanceOf(address)"
                or len(param) != 64):
            # The message is hex text, as java-tron answers validation errors with visible false.
            return self._json({"result": {"code": "CONTRACT_VALIDATE_ERROR",
                                          "message": b"contract validate error".hex()}})
        holder = "0x41" + param[-40:]
        value = self.story.trc20.get((contract, holder), 0)
        return self._json({"result": {"result": True}, "energy_used": 542, "constant_result": [f"{value:064x}"],
                           "transaction": {"ret": [{}], "visible": False, "txID": "0" * 64, "raw_data": {}}})

    async def _asset_issue(self, request: web.Request) -> web.Response:
        token_id = str((await self._body(request)).get("value") or "")
        meta = self.story.token_meta.get("trc10:" + token_id)
        if meta is None:
            return self._json({})
        return self._json({"owner_address": "41" + "cd" * 20, "name": meta[1].encode().hex(),
                           "abbr": meta[1].encode().hex(), "total_supply": 990_000_000_000_000_000,
                           "precision": meta[0], "id": token_id})

    # -- JSON-RPC ----------------------------------------------------------------------------------
    async def _jsonrpc(self, request: web.Request) -> web.Response:
        try:
            payload = json.loads(await request.read())
        except ValueError:
            return self._json({"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "parse error"}})
        if isinstance(payload, list):
            return self._json([self._rpc_one(p) for p in payload])
        return self._json(self._rpc_one(payload))

    def _rpc_one(self, req: Any) -> dict[str, Any]:
        rid = req.get("id") if isinstance(req, dict) else None
        method = req.get("method") if isinstance(req, dict) else None
        params = req.get("params") or [] if isinstance(req, dict) else []
        self.request_counts[f"rpc:{method}"] += 1
        try:
            result = self._rpc(str(method), params)
        except ValueError as exc:
            return {"jsonrpc": "2.0", "id": rid, "error": {"code": -32602, "message": str(exc)}}
        except LookupError:
            return {"jsonrpc": "2.0", "id": rid, "error": {"code": -32601, "message": f"the method {method} does not "
                                                                                      "exist/is not available"}}
        return {"jsonrpc": "2.0", "id": rid, "result": result}

    def _rpc(self, method: str, params: list[Any]) -> Any:
        if method == "eth_chainId":
            return hex(CHAIN_ID)
        if method == "eth_blockNumber":
            return hex(self.head)
        if method == "eth_getLogs":
            return self._logs(params[0] if params else {})
        if method == "eth_call":
            return self._call(params[0] if params else {})
        raise LookupError(method)

    def _call(self, call: dict[str, Any]) -> str:
        to = "0x41" + str(call.get("to") or "")[-40:].lower()
        meta = self.story.token_meta.get(to)
        data = str(call.get("data") or "")[:10]
        if meta is None:
            return "0x"
        if data == "0x313ce567":
            return "0x" + f"{meta[0]:064x}"
        if data == "0x95d89b41":
            text = meta[1].encode()
            return "0x" + f"{32:064x}{len(text):064x}" + text.hex().ljust(64, "0")
        raise ValueError("REVERT opcode executed")

    def _logs(self, filt: dict[str, Any]) -> list[dict[str, Any]]:
        def block(key: str, default: int) -> int:
            value = filt.get(key)
            if value in (None, "latest"):
                return default
            return int(str(value), 16)

        lo, hi = block("fromBlock", self.head), min(block("toBlock", self.head), self.head)
        if hi - lo > 5000:
            raise ValueError("exceed max block range: 5000")
        addresses = filt.get("address")
        wanted = None if addresses is None else {str(a).lower() for a in ([addresses] if isinstance(addresses, str)
                                                                             else addresses)}
        topics = filt.get("topics") or []
        out = []
        for n in range(max(lo, 0), hi + 1):
            spec = self.story.blocks[n]
            index = 0
            for ti, tx in enumerate(spec.txs):
                for lg in tx.logs:
                    entry = {"address": "0x" + lg.contract[4:], "blockHash": "0x" + spec.block_id,
                             "blockNumber": hex(n), "data": lg.data, "logIndex": hex(index), "removed": False,
                             "topics": list(lg.topics), "transactionHash": "0x" + tx.txid,
                             "transactionIndex": hex(ti)}
                    index += 1
                    if wanted is not None and entry["address"] not in wanted:
                        continue
                    if all(_topic_matches(want, lg.topics[i] if i < len(lg.topics) else None)
                           for i, want in enumerate(topics)):
                        out.append(entry)
        return out


def _topic_matches(want: Any, have: str | None) -> bool:
    if want is None:
        return True
    if have is None:
        return False
    options = [want] if isinstance(want, str) else list(want)
    return have.lower() in {str(o).lower() for o in options}
