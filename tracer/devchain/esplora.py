"""The Esplora REST API (aiohttp) over a generated Bitcoin scenario (tracer/devchain/bitcoin.py).

`EsploraServer` answers the endpoints tracer's Bitcoin adapter uses, shaped like Blockstream's
electrs: `/blocks/tip/height`, `/blocks/tip/hash`, `/block-height/:h`, `/block/:hash`,
`/block/:hash/txids`, `/block/:hash/status`, `/tx/:txid`, `/tx/:txid/status`,
`/tx/:txid/outspends`, `/tx/:txid/merkle-proof`, `/address/:a`, `/address/:a/txs` (the newest `page_size` confirmed;
no mempool here), `/address/:a/txs/chain[/:last_seen_txid]`. Bad input answers 400 with a text
body, unknown objects 404, as electrs does. The knobs are those of the JSON-RPC devchain
(tracer/devchain/server.py): per-request latency, a requests/s limit (HTTP 429 with Retry-After)
and a seeded `FaultPlan` (hangs, 5xx, connection resets, truncated bodies); `tip` hides the blocks
above it, and raising it makes the chain grow under a live trace.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from tracer.addresses import InvalidAddress, btc_script_pubkey, normalize_btc
from tracer.devchain.bitcoin.builder import sha256d
from tracer.devchain.bitcoin.index import BitcoinChainIndex
from tracer.devchain.bitcoin.records import COINBASE_TXID, BitcoinScenario, BtcBlock, BtcOutput, BtcTx
from tracer.devchain.http import FaultPlan, KnobServer

_ESPLORA_TYPES = {"p2wpkh": "v0_p2wpkh", "p2wsh": "v0_p2wsh", "p2tr": "v1_p2tr"}
_HEX64 = frozenset("0123456789abcdef")


def _script_asm(script: bytes, stype: str) -> str:
    if stype == "op_return":
        data = script[2:] if len(script) > 1 else b""
        return f"OP_RETURN OP_PUSHBYTES_{len(data)} {data.hex()}" if data else "OP_RETURN"
    return script.hex()


def _op_return_script(data: bytes) -> bytes:
    if len(data) <= 75:
        return b"\x6a" + bytes([len(data)]) + data
    return b"\x6a\x4c" + bytes([len(data)]) + data  # OP_PUSHDATA1 (memos stay under 256 bytes)


def merkle_branch(txids: list[str], pos: int) -> list[str]:
    """The merkle branch of transaction `pos` (display hex, as electrs answers it)."""
    level = [bytes.fromhex(t)[::-1] for t in txids]
    branch: list[str] = []
    while len(level) > 1:
        if len(level) % 2:
            level.append(level[-1])
        branch.append(level[pos ^ 1][::-1].hex())
        level = [sha256d(level[k] + level[k + 1]) for k in range(0, len(level), 2)]
        pos //= 2
    return branch


def merkle_root(txids: list[str]) -> str:
    level = [bytes.fromhex(t)[::-1] for t in txids]
    while len(level) > 1:
        if len(level) % 2:
            level.append(level[-1])
        level = [sha256d(level[k] + level[k + 1]) for k in range(0, len(level), 2)]
    return level[0][::-1].hex()


class EsploraServer(KnobServer):
    """Serve a BitcoinScenario over the Esplora REST API on 127.0.0.1."""

    TOO_MANY_TEXT = "Too Many Requests"

    def __init__(
        self,
        scenario: BitcoinScenario,
        *,
        latency: float = 0.0,
        rate_limit: float | None = None,
        faults: FaultPlan | None = None,
        page_size: int = 25,
        tip: int | None = None,
    ) -> None:
        super().__init__(latency=latency, rate_limit=rate_limit, faults=faults)
        self.scenario = scenario
        self.tip = tip
        self.index = BitcoinChainIndex(scenario)
        self.page_size = page_size

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        r = app.router
        r.add_get("/blocks/tip/height", self._tip_height)
        r.add_get("/blocks/tip/hash", self._tip_hash)
        r.add_get("/block-height/{height}", self._block_height)
        r.add_get("/block/{hash}", self._block)
        r.add_get("/block/{hash}/txids", self._block_txids)
        r.add_get("/block/{hash}/status", self._block_status)
        r.add_get("/tx/{txid}", self._tx)
        r.add_get("/tx/{txid}/status", self._tx_status)
        r.add_get("/tx/{txid}/outspends", self._outspends)
        r.add_get("/tx/{txid}/merkle-proof", self._merkle_proof)
        r.add_get("/address/{address}", self._address)
        r.add_get("/address/{address}/txs", self._address_txs)
        r.add_get("/address/{address}/txs/chain", self._address_txs_chain)
        r.add_get("/address/{address}/txs/chain/{last}", self._address_txs_chain)
        return app

    # -- knobs -------------------------------------------------------------------------------------
    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        route = request.match_info.route.resource
        self.request_counts[route.canonical if route is not None else request.path] += 1
        early, fault = await self._misbehave(request)
        if early is not None:
            return early
        response: web.StreamResponse = await handler(request)
        if fault == "malformed" and isinstance(response, web.Response) and response.body is not None:
            body = bytes(response.body)  # type: ignore[arg-type]
            return web.Response(body=b"<html>" + body[: max(1, len(body) // 2)], status=response.status,
                                content_type=response.content_type)
        return response

    # -- a chain that grows ------------------------------------------------------------------------
    @property
    def head(self) -> int:
        """The highest block served: `tip` when set (the chain "grows" as a test raises it)."""
        return self.index.head if self.tip is None else min(self.tip, self.index.head)

    def _history(self, address: str) -> list[str]:
        return [t for t in self.index.history(address) if self.index.txs[t][1].height <= self.head]

    # -- helpers -----------------------------------------------------------------------------------
    @staticmethod
    def _json(value: Any) -> web.Response:
        return web.Response(body=json.dumps(value, separators=(",", ":")).encode(), content_type="application/json")

    @staticmethod
    def _bad(text: str) -> web.Response:
        return web.Response(status=400, text=text)

    @staticmethod
    def _missing(text: str) -> web.Response:
        return web.Response(status=404, text=text)

    def _block_of(self, request: web.Request) -> BtcBlock | web.Response:
        h = request.match_info["hash"].lower()
        if len(h) != 64 or not set(h) <= _HEX64:
            return self._bad("Invalid hex string")
        blk = self.index.by_hash.get(h)
        return blk if blk is not None and blk.height <= self.head else self._missing("Block not found")

    def _tx_of(self, request: web.Request) -> tuple[BtcTx, BtcBlock, int] | web.Response:
        t = request.match_info["txid"].lower()
        if len(t) != 64 or not set(t) <= _HEX64:
            return self._bad("Invalid hex string")
        found = self.index.txs.get(t)
        return found if found is not None and found[1].height <= self.head else self._missing("Transaction not found")

    def _address_of(self, request: web.Request) -> str | web.Response:
        try:
            address = normalize_btc(request.match_info["address"])
        except InvalidAddress:
            return self._bad("Invalid Bitcoin address")
        hrp = self.index.network.bech32_hrp
        if address.startswith(("bc1", "tb1", "bcrt1")) and not address.startswith(hrp + "1"):
            return self._bad("Address on invalid network")
        return address

    def _out_json(self, o: BtcOutput) -> dict[str, Any]:
        if o.op_return is not None:
            script = _op_return_script(o.op_return)
            return {"scriptpubkey": script.hex(), "scriptpubkey_asm": _script_asm(script, "op_return"),
                    "scriptpubkey_type": "op_return", "value": o.value}
        assert o.address is not None
        script = btc_script_pubkey(o.address)
        return {"scriptpubkey": script.hex(), "scriptpubkey_asm": _script_asm(script, o.script_type),
                "scriptpubkey_type": _ESPLORA_TYPES.get(o.script_type, o.script_type),
                "scriptpubkey_address": o.address, "value": o.value}

    def _status(self, blk: BtcBlock) -> dict[str, Any]:
        return {"confirmed": True, "block_height": blk.height, "block_hash": blk.hash, "block_time": blk.timestamp}

    def tx_json(self, tx: BtcTx, blk: BtcBlock) -> dict[str, Any]:
        vin: list[dict[str, Any]] = []
        total_in = 0
        for i in tx.inputs:
            if tx.coinbase:
                vin.append({"txid": COINBASE_TXID, "vout": 0xFFFFFFFF, "prevout": None,
                            "scriptsig": "03" + blk.height.to_bytes(3, "little").hex(), "scriptsig_asm": "",
                            "is_coinbase": True, "sequence": 0xFFFFFFFF})
                continue
            prev = self.index.prevout(i)
            total_in += prev.value
            vin.append({"txid": i.txid, "vout": i.vout, "prevout": self._out_json(prev), "scriptsig": "",
                        "scriptsig_asm": "", "witness": ["30" * 36, "02" + "11" * 32], "is_coinbase": False,
                        "sequence": 0xFFFFFFFD})
        vout = [self._out_json(o) for o in tx.outputs]
        total_out = sum(o.value for o in tx.outputs)
        size = 10 + 68 * len(tx.inputs) + 31 * len(tx.outputs)
        return {"txid": tx.txid, "version": 2, "locktime": 0, "vin": vin, "vout": vout, "size": size,
                "weight": size * 4, "fee": 0 if tx.coinbase else total_in - total_out, "status": self._status(blk)}

    # -- handlers ----------------------------------------------------------------------------------
    async def _tip_height(self, request: web.Request) -> web.Response:
        return web.Response(text=str(self.head))

    async def _tip_hash(self, request: web.Request) -> web.Response:
        return web.Response(text=self.index.blocks[self.head].hash)

    async def _block_height(self, request: web.Request) -> web.Response:
        text = request.match_info["height"]
        if not text.isdigit():
            return self._bad("Invalid height")
        h = int(text)
        if h > self.head:
            return self._missing("Block not found")
        return web.Response(text=self.index.blocks[h].hash)

    async def _block(self, request: web.Request) -> web.Response:
        blk = self._block_of(request)
        if isinstance(blk, web.Response):
            return blk
        return self._json({"id": blk.hash, "height": blk.height, "version": 0x20000000, "timestamp": blk.timestamp,
                           "tx_count": len(blk.txs), "size": 1000 * len(blk.txs), "weight": 4000 * len(blk.txs),
                           "merkle_root": merkle_root([t.txid for t in blk.txs]),
                           "previousblockhash": blk.prev_hash if blk.height else None,
                           "mediantime": blk.timestamp - 3000, "nonce": blk.height, "bits": 0x1D00FFFF,
                           "difficulty": 1})

    async def _block_txids(self, request: web.Request) -> web.Response:
        blk = self._block_of(request)
        if isinstance(blk, web.Response):
            return blk
        return self._json([t.txid for t in blk.txs])

    async def _block_status(self, request: web.Request) -> web.Response:
        blk = self._block_of(request)
        if isinstance(blk, web.Response):
            return blk
        nxt = self.index.blocks[blk.height + 1].hash if blk.height < self.head else None
        return self._json({"in_best_chain": True, "height": blk.height, "next_best": nxt})

    async def _tx(self, request: web.Request) -> web.Response:
        found = self._tx_of(request)
        if isinstance(found, web.Response):
            return found
        tx, blk, _pos = found
        return self._json(self.tx_json(tx, blk))

    async def _tx_status(self, request: web.Request) -> web.Response:
        found = self._tx_of(request)
        if isinstance(found, web.Response):
            return found
        return self._json(self._status(found[1]))

    async def _merkle_proof(self, request: web.Request) -> web.Response:
        found = self._tx_of(request)
        if isinstance(found, web.Response):
            return found
        _tx, blk, pos = found
        return self._json({"block_height": blk.height, "merkle": merkle_branch([t.txid for t in blk.txs], pos),
                           "pos": pos})

    async def _outspends(self, request: web.Request) -> web.Response:
        found = self._tx_of(request)
        if isinstance(found, web.Response):
            return found
        tx = found[0]
        out: list[dict[str, Any]] = []
        for k in range(len(tx.outputs)):
            spender = self.index.spent_by.get((tx.txid, k))
            if spender is not None and spender[2] > self.head:
                spender = None  # spent in a block not mined yet
            if spender is None:
                out.append({"spent": False})
            else:
                txid, vin, height = spender
                out.append({"spent": True, "txid": txid, "vin": vin, "status": self._status(self.index.blocks[height])})
        return self._json(out)

    async def _address(self, request: web.Request) -> web.Response:
        address = self._address_of(request)
        if isinstance(address, web.Response):
            return address
        funded = spent = 0
        funded_n = spent_n = 0
        for txid in self._history(address):
            tx = self.index.txs[txid][0]
            for o in tx.outputs:
                if o.address == address:
                    funded, funded_n = funded + o.value, funded_n + 1
            if not tx.coinbase:
                for i in tx.inputs:
                    prev = self.index.prevout(i)
                    if prev.address == address:
                        spent, spent_n = spent + prev.value, spent_n + 1
        zero = {"funded_txo_count": 0, "funded_txo_sum": 0, "spent_txo_count": 0, "spent_txo_sum": 0, "tx_count": 0}
        return self._json({"address": address, "chain_stats": {
            "funded_txo_count": funded_n, "funded_txo_sum": funded, "spent_txo_count": spent_n,
            "spent_txo_sum": spent, "tx_count": len(self._history(address))}, "mempool_stats": zero})

    def _page(self, address: str, last: str | None) -> list[dict[str, Any]] | web.Response:
        txids = self._history(address)
        start = 0
        if last is not None:
            last = last.lower()
            if len(last) != 64 or not set(last) <= _HEX64:
                return self._bad("Invalid hex string")
            if last not in txids:
                return self._json([])
            start = txids.index(last) + 1
        page = txids[start:start + self.page_size]
        return [self.tx_json(self.index.txs[t][0], self.index.txs[t][1]) for t in page]

    async def _address_txs(self, request: web.Request) -> web.Response:
        address = self._address_of(request)
        if isinstance(address, web.Response):
            return address
        page = self._page(address, None)
        return page if isinstance(page, web.Response) else self._json(page)

    async def _address_txs_chain(self, request: web.Request) -> web.Response:
        address = self._address_of(request)
        if isinstance(address, web.Response):
            return address
        page = self._page(address, request.match_info.get("last"))
        return page if isinstance(page, web.Response) else self._json(page)
