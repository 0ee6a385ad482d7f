"""Bridges: where flagged money leaves the chain, and where it says it is going.

A deposit into a bridge (a labelled router, spoke pool or token bridge) is a cross-chain exit.
Most protocols publish the destination in an event of the deposit transaction; this module
decodes them from raw logs:

- THORChain router `Deposit(address indexed to, address indexed asset, uint amount, string memo)`:
  the memo names the destination asset and address (`=:BTC.BTC:bc1q...`, `SWAP:ETH.ETH:0x...`).
- Across SpokePool `V3FundsDeposited(...)` (address fields), `FundsDeposited(...)` (bytes32 fields,
  since 2025) and the V2 `FundsDeposited(...)`: destination chain id and recipient.
- Hop `TransferSentToL2(...)` (L1 bridge) and `TransferSent(...)` (L2 bridges): chain id, recipient.
- Wormhole core `LogMessagePublished(...)` carrying a token-bridge transfer payload (ids 1 and 3):
  Wormhole chain id and recipient.
- Stargate V2 `OFTSent(...)`: destination endpoint; the recipient travels in the LayerZero packet,
  not in the event, so it is reported as unknown.
Bridges that publish nothing (the Avalanche bridge's deposit address credits the same address on
Avalanche) are handled by `from_label`.

When the destination chain is configured the trace continues there (`match_payout`): the payout
to the destination address is found among its incoming transfers after the deposit, by memo when
the chain publishes one (THORChain outbounds say `OUT:<inbound tx hash>`; a Bitcoin payout carries
it in an OP_RETURN), else by timing alone, with a confidence that says which.

Pure functions; the worker fetches the logs of the deposit transactions and the payouts.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tracer.chains.records import NATIVE, Transfer
from tracer.engine.mixers import LogLike

THORCHAIN_DEPOSIT = "0xef519b7eb82aaf6ac376a6df2d793843ebfd593de5f1a0601d3cc6ab49ebb395"
"""keccak("Deposit(address,address,uint256,string)")"""
ACROSS_V3_FUNDS_DEPOSITED = "0xa123dc29aebf7d0c3322c8eeb5b999e859f39937950ed31056532713d0de396f"
"""keccak("V3FundsDeposited(address,address,uint256,uint256,uint256,uint32,uint32,uint32,uint32,address,address,
address,bytes)")"""
ACROSS_FUNDS_DEPOSITED = "0x32ed1a409ef04c7b0227189c3a103dc5ac10e775a15b785dcc510201f7c25ad3"
"""keccak("FundsDeposited(bytes32,bytes32,uint256,uint256,uint256,uint256,uint32,uint32,uint32,bytes32,bytes32,
bytes32,bytes)")"""
ACROSS_V2_FUNDS_DEPOSITED = "0xafc4df6845a4ab948b492800d3d8a25d538a102a2bc07cd01f1cfa097fddcff6"
"""keccak("FundsDeposited(uint256,uint256,uint256,int64,uint32,uint32,address,address,address,bytes)")"""
HOP_TRANSFER_SENT_TO_L2 = "0x0a0607688c86ec1775abcdbab7b33a3a35a6c9cde677c9be880150c231cc6b0b"
"""keccak("TransferSentToL2(uint256,address,uint256,uint256,uint256,address,uint256)")"""
HOP_TRANSFER_SENT = "0xe35dddd4ea75d7e9b3fe93af4f4e40e778c3da4074c9d93e7c6536f1e803c1eb"
"""keccak("TransferSent(bytes32,uint256,address,uint256,bytes32,uint256,uint256,uint256,uint256)")"""
WORMHOLE_MESSAGE = "0x6eb224fb001ed210e379b335e35efe88672a8ce935d981a6896b27ffdf52a3b2"
"""keccak("LogMessagePublished(address,uint64,uint32,bytes,uint8)")"""
STARGATE_OFT_SENT = "0x85496b760a4b7f8d66384b9df21b381f5d1b1e79f229a47aaf4c232edc2fe59a"
"""keccak("OFTSent(bytes32,uint32,address,uint256,uint256)")"""

THORCHAIN_TRANSFER_OUT = "0xa9cd03aa3c1b4515114539cd53d22085129d495cb9e9f9af77864526240f1bf7"
"""keccak("TransferOut(address,address,address,uint256,string)"): an outbound (payout) of the
THORChain router on an EVM chain, `vault` and `to` indexed, the memo `OUT:<inbound tx hash>`."""

BRIDGE_TOPICS = (THORCHAIN_DEPOSIT, ACROSS_V3_FUNDS_DEPOSITED, ACROSS_FUNDS_DEPOSITED, ACROSS_V2_FUNDS_DEPOSITED,
                 HOP_TRANSFER_SENT_TO_L2, HOP_TRANSFER_SENT, WORMHOLE_MESSAGE, STARGATE_OFT_SENT)

# EVM chain ids as our chain names (config.rpc_urls keys: TRACER_RPC_URL_<NAME>).
EVM_CHAINS = {1: "ethereum", 10: "optimism", 56: "bsc", 100: "gnosis", 130: "unichain", 137: "polygon",
              324: "zksync", 480: "worldchain", 1135: "lisk", 8453: "base", 34443: "mode", 42161: "arbitrum",
              43114: "avalanche", 57073: "ink", 59144: "linea", 81457: "blast", 534352: "scroll",
              7777777: "zora"}
# Across names chains by EVM chain id, and Solana by an id of its own (recipients there are bytes32 keys).
ACROSS_SOLANA = 34268394551451
# Wormhole's own chain ids.
WORMHOLE_CHAINS = {1: "solana", 2: "ethereum", 4: "bsc", 5: "polygon", 6: "avalanche", 10: "fantom", 13: "klaytn",
                   14: "celo", 16: "moonbeam", 21: "sui", 22: "aptos", 23: "arbitrum", 24: "optimism", 30: "base",
                   34: "scroll"}
# LayerZero V2 endpoint ids (Stargate V2).
LAYERZERO_CHAINS = {30101: "ethereum", 30102: "bsc", 30106: "avalanche", 30109: "polygon", 30110: "arbitrum",
                    30111: "optimism", 30181: "mantle", 30183: "linea", 30184: "base", 30214: "scroll"}
# THORChain chain codes in memo assets.
THORCHAIN_CHAINS = {"BTC": "bitcoin", "ETH": "ethereum", "BCH": "bitcoin-cash", "LTC": "litecoin",
                    "DOGE": "dogecoin", "GAIA": "cosmos", "AVAX": "avalanche", "BSC": "bsc", "BASE": "base",
                    "THOR": "thorchain", "TRON": "tron", "XRP": "xrp"}
# Single-letter assets THORChain accepts in memos.
THORCHAIN_SHORT_ASSETS = {"a": "AVAX.AVAX", "b": "BTC.BTC", "c": "BCH.BCH", "d": "DOGE.DOGE", "e": "ETH.ETH",
                          "g": "GAIA.ATOM", "l": "LTC.LTC", "r": "THOR.RUNE", "s": "BSC.BNB"}
_EVM_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


@dataclass(frozen=True, slots=True)
class BridgeExit:
    """One deposit into a bridge, with the destination the protocol published (None: unknown)."""

    protocol: str
    tx_hash: str
    dest_chain: str | None
    dest_address: str | None
    dest_asset: str | None = None
    amount: int | None = None  # what the bridge event says it took, in the source asset's raw units
    memo: str | None = None
    note: str | None = None

    @property
    def evm_destination(self) -> bool:
        return self.dest_address is not None and bool(_EVM_ADDRESS.match(self.dest_address))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"protocol": self.protocol, "tx_hash": self.tx_hash, "chain": self.dest_chain,
                               "address": self.dest_address}
        if self.dest_asset is not None:
            out["asset"] = self.dest_asset
        if self.amount is not None:
            out["bridged_amount"] = str(self.amount)
        if self.memo is not None:
            out["memo"] = self.memo
        if self.note is not None:
            out["note"] = self.note
        return out


def _words(data: str) -> list[str]:
    raw = data[2:] if data.startswith("0x") else data
    return [raw[i : i + 64] for i in range(0, len(raw) - 63, 64)]


def _bytes_at(data: str, offset_word: str) -> bytes | None:
    """A dynamic `bytes`/`string` value of ABI-encoded data, from the word holding its offset."""
    raw = data[2:] if data.startswith("0x") else data
    try:
        offset = int(offset_word, 16) * 2
        length = int(raw[offset : offset + 64], 16) * 2
        value = raw[offset + 64 : offset + 64 + length]
        if len(value) != length:
            return None
        return bytes.fromhex(value)
    except ValueError:
        return None


def _address32(word: str) -> str:
    """A 32-byte address field: an EVM address when left-padded with zeros, else the raw bytes32."""
    word = word.lower()
    return "0x" + word[24:] if word[:24] == "0" * 24 else "0x" + word


def _base58(raw: bytes) -> str:
    n = int.from_bytes(raw, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = _B58[r] + out
    return "1" * (len(raw) - len(raw.lstrip(b"\0"))) + out


def decode(log: LogLike) -> BridgeExit | None:
    """The destination published by one bridge log; None when the log is no bridge deposit."""
    if not log.topics:
        return None
    t0 = log.topics[0].lower()
    tx = log.tx_hash.lower()
    words = _words(log.data)
    try:
        if t0 == THORCHAIN_DEPOSIT and len(words) >= 2:
            memo_raw = _bytes_at(log.data, words[1])
            memo = memo_raw.decode("utf-8", "replace") if memo_raw is not None else ""
            return thorchain_memo(tx, memo, int(words[0], 16))
        if t0 == ACROSS_V3_FUNDS_DEPOSITED and len(log.topics) >= 2 and len(words) >= 9:
            chain_id = int(log.topics[1], 16)
            return BridgeExit("Across", tx, EVM_CHAINS.get(chain_id, f"evm:{chain_id}"), "0x" + words[7][24:],
                              amount=int(words[2], 16))
        if t0 == ACROSS_FUNDS_DEPOSITED and len(log.topics) >= 2 and len(words) >= 9:
            chain_id = int(log.topics[1], 16)
            if chain_id == ACROSS_SOLANA:
                return BridgeExit("Across", tx, "solana", _base58(bytes.fromhex(words[7])), amount=int(words[2], 16))
            return BridgeExit("Across", tx, EVM_CHAINS.get(chain_id, f"evm:{chain_id}"), _address32(words[7]),
                              amount=int(words[2], 16))
        if t0 == ACROSS_V2_FUNDS_DEPOSITED and len(log.topics) >= 2 and len(words) >= 6:
            chain_id = int(log.topics[1], 16)
            return BridgeExit("Across", tx, EVM_CHAINS.get(chain_id, f"evm:{chain_id}"), "0x" + words[5][24:],
                              amount=int(words[0], 16))
        if t0 == HOP_TRANSFER_SENT_TO_L2 and len(log.topics) >= 3 and words:
            chain_id = int(log.topics[1], 16)
            return BridgeExit("Hop", tx, EVM_CHAINS.get(chain_id, f"evm:{chain_id}"), "0x" + log.topics[2][-40:],
                              amount=int(words[0], 16))
        if t0 == HOP_TRANSFER_SENT and len(log.topics) >= 4 and words:
            chain_id = int(log.topics[2], 16)
            return BridgeExit("Hop", tx, EVM_CHAINS.get(chain_id, f"evm:{chain_id}"), "0x" + log.topics[3][-40:],
                              amount=int(words[0], 16))
        if t0 == WORMHOLE_MESSAGE and len(words) >= 3:
            payload = _bytes_at(log.data, words[2])
            return _wormhole(tx, payload) if payload is not None else None
        if t0 == STARGATE_OFT_SENT and len(words) >= 2:
            eid = int(words[0], 16)
            return BridgeExit("Stargate", tx, LAYERZERO_CHAINS.get(eid, f"layerzero:{eid}"), None,
                              amount=int(words[1], 16),
                              note="the recipient travels in the LayerZero packet, not in the event")
    except ValueError:
        return None
    return None


def _wormhole(tx: str, payload: bytes) -> BridgeExit | None:
    # Token bridge payloads: id(1) amount(32) token(32) tokenChain(2) to(32) toChain(2) ... (1 = transfer,
    # 3 = transfer with payload). Attestations and other apps' messages are no transfer of value.
    if len(payload) < 101 or payload[0] not in (1, 3):
        return None
    amount = int.from_bytes(payload[1:33], "big")
    to = payload[67:99]
    to_chain = int.from_bytes(payload[99:101], "big")
    chain = WORMHOLE_CHAINS.get(to_chain, f"wormhole:{to_chain}")
    if chain == "solana":
        address = _base58(to)
    else:
        address = _address32(to.hex())
    # Wormhole normalises amounts to 8 decimals: say so rather than pretend they are raw units.
    return BridgeExit("Wormhole", tx, chain, address, amount=None,
                      note=f"payload amount {amount} (Wormhole's 8-decimal normalised units)")


def thorchain_memo(tx: str, memo: str, amount: int | None = None) -> BridgeExit:
    """A THORChain deposit memo read as a destination.

    Swaps: `SWAP:ASSET:DEST[:LIMIT[:AFFILIATE:FEE]]`, also spelt `s:` or `=:`; ASSET is
    CHAIN.SYMBOL[-CONTRACT] (`~` trade and `/` synthetic assets stay on THORChain) or a one-letter
    short code. Liquidity adds (`ADD:`, `a:`, `+:`) keep the money in THORChain's pools. Anything else
    is reported with its memo and no destination.
    """
    parts = memo.strip().split(":")
    action = parts[0].strip().lower() if parts else ""
    if action in ("swap", "s", "=") and len(parts) >= 2:
        asset = THORCHAIN_SHORT_ASSETS.get(parts[1], parts[1]).upper()
        dest = parts[2].strip() if len(parts) >= 3 and parts[2].strip() else None
        note: str | None
        if "~" in asset or "/" in asset:
            chain: str | None = "thorchain"
            note = "trade or synthetic asset: the money stays on THORChain"
        else:
            code = asset.split(".", 1)[0]
            chain = THORCHAIN_CHAINS.get(code, code.lower() or None)
            note = None if dest else "no destination address in the memo: THORChain pays the sender's address"
        return BridgeExit("THORChain", tx, chain, dest, asset, amount, memo, note)
    if action in ("add", "a", "+") and len(parts) >= 2:
        asset = THORCHAIN_SHORT_ASSETS.get(parts[1], parts[1]).upper()
        dest = parts[2].strip() if len(parts) >= 3 and parts[2].strip() else None
        return BridgeExit("THORChain", tx, "thorchain", dest, asset, amount, memo,
                          "liquidity added to a THORChain pool")
    return BridgeExit("THORChain", tx, None, None, None, amount, memo, "memo names no destination")


def from_label(entity: str, tx: str, sender: str) -> BridgeExit:
    """A bridge recognised by its label only: what its convention says, else an unknown destination."""
    if "avalanche" in entity.lower() and "bridge" in entity.lower():
        # The Avalanche bridge credits the sending address on the C-chain.
        return BridgeExit(entity, tx, "avalanche", sender, note="the Avalanche bridge credits the same address")
    return BridgeExit(entity, tx, None, None, note="no destination event decoded for this bridge")


# ---------------------------------------------------------------- payouts on the destination chain

PAYOUT_WINDOW = 24 * 3600
"""Seconds after a deposit in which a payout without a memo match is looked for."""
MATCH_MEMO = "memo"  # the payout names the deposit: certain
MATCH_SINGLE = "single candidate"  # the only payment to the destination in the window
MATCH_EARLIEST = "earliest of several"  # several payments: the first one after the deposit
CONFIDENCE = {MATCH_MEMO: 1.0, MATCH_SINGLE: 0.7, MATCH_EARLIEST: 0.5}


@dataclass(frozen=True, slots=True)
class PayoutMatch:
    transfer: Transfer
    method: str
    confidence: float
    candidates: int  # payments to the destination weighed (within the window, of the asset)


def memo_names(memo: str | None, tx_hash: str) -> bool:
    """Whether a payout memo names the deposit: THORChain outbounds carry `OUT:<inbound hash>`,
    the hash in upper case without 0x on THORChain, as the source chain spells it elsewhere."""
    if not memo:
        return False
    parts = memo.strip().split(":")
    if len(parts) < 2 or parts[0].strip().upper() != "OUT":
        return False
    named = parts[1].strip().lower().removeprefix("0x")
    return bool(named) and named == tx_hash.lower().removeprefix("0x")


def payout_asset(ex: BridgeExit) -> str | None:
    """The asset the payout is in, as tracer names assets (`native` or a token contract), when the
    protocol says: THORChain `CHAIN.SYMBOL` is the chain's coin, `CHAIN.SYMBOL-0xCONTRACT` a token.
    None: any asset."""
    if ex.dest_asset is None or "." not in ex.dest_asset:
        return None
    _chain, symbol = ex.dest_asset.split(".", 1)
    if "-" in symbol:
        contract = symbol.split("-", 1)[1].strip().lower()
        return contract if _EVM_ADDRESS.match(contract) else None
    return NATIVE


def match_payout(
    incoming: Sequence[Transfer], ex: BridgeExit, deposit_time: int, *, window: int = PAYOUT_WINDOW
) -> PayoutMatch | None:
    """The payout of a bridge deposit among the destination's incoming transfers (any order).

    A memo naming the deposit wins whenever it came (large outbounds are delayed); otherwise the
    payments of the expected asset within `window` seconds after the deposit: one is taken with
    confidence 0.7, the earliest of several with 0.5. None: nothing arrived."""
    address = (ex.dest_address or "").lower()
    mine = sorted((t for t in incoming if t.to_address.lower() == address and t.from_address.lower() != address
                   and t.block_time >= deposit_time), key=lambda t: t.order)
    for t in mine:
        if memo_names(t.memo, ex.tx_hash):
            return PayoutMatch(t, MATCH_MEMO, CONFIDENCE[MATCH_MEMO], 1)
    asset = payout_asset(ex)
    candidates = [t for t in mine if t.block_time <= deposit_time + window and (asset is None or t.asset == asset)
                  and not (t.memo and t.memo.strip().upper().startswith("OUT:"))]  # another deposit's payout
    if not candidates:
        return None
    method = MATCH_SINGLE if len(candidates) == 1 else MATCH_EARLIEST
    return PayoutMatch(candidates[0], method, CONFIDENCE[method], len(candidates))


def transfer_out_memo(log: LogLike) -> tuple[str, str] | None:
    """(recipient, memo) of a THORChain router TransferOut log; None for any other log."""
    if len(log.topics) < 3 or log.topics[0].lower() != THORCHAIN_TRANSFER_OUT:
        return None
    words = _words(log.data)
    if len(words) < 3:
        return None
    memo = _bytes_at(log.data, words[2])
    if memo is None:
        return None
    return "0x" + log.topics[2].lower()[-40:], memo.decode("utf-8", "replace")


def carried(deposit_flagged: int, deposit_amount: int, payout_amount: int, confidence: float) -> int:
    """Flagged part of a payout: the deposit's flagged share, at the bridge's own rate (whatever
    the payout is worth), scaled by how sure the match is; integer arithmetic where it matters."""
    if deposit_amount <= 0 or deposit_flagged <= 0:
        return 0
    flagged = min(payout_amount, payout_amount * deposit_flagged // deposit_amount)
    return int(flagged * confidence) if confidence < 1.0 else flagged
