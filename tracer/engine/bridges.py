"""Bridges: where flagged money leaves the chain, and where it says it is going.

A deposit into a bridge (a labelled router, spoke pool or token bridge) is a cross-chain exit.
Most protocols publish the destination in an event of the deposit transaction; the chain layer
decodes the events with web3 from one ABI file per protocol (tracer.chains.events) and this
module reads the records:

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
from dataclasses import dataclass, replace

from tracer.addresses import InvalidAddress, normalize_tron
from tracer.chains import events, networks
from tracer.chains.records import LogRecord
from tracer.domain.transfers import NATIVE, Transfer

THORCHAIN_DEPOSIT = events.topic("thorchain", "Deposit(address,address,uint256,string)")
ACROSS_V3_FUNDS_DEPOSITED = events.topic(
    "across", "V3FundsDeposited(address,address,uint256,uint256,uint256,uint32,uint32,uint32,uint32,address,address,"
    "address,bytes)")
ACROSS_FUNDS_DEPOSITED = events.topic(
    "across", "FundsDeposited(bytes32,bytes32,uint256,uint256,uint256,uint256,uint32,uint32,uint32,bytes32,bytes32,"
    "bytes32,bytes)")
ACROSS_V2_FUNDS_DEPOSITED = events.topic(
    "across", "FundsDeposited(uint256,uint256,uint256,int64,uint32,uint32,address,address,address,bytes)")
HOP_TRANSFER_SENT_TO_L2 = events.topic(
    "hop", "TransferSentToL2(uint256,address,uint256,uint256,uint256,address,uint256)")
HOP_TRANSFER_SENT = events.topic(
    "hop", "TransferSent(bytes32,uint256,address,uint256,bytes32,uint256,uint256,uint256,uint256)")
WORMHOLE_MESSAGE = events.topic("wormhole", "LogMessagePublished(address,uint64,uint32,bytes,uint8)")
STARGATE_OFT_SENT = events.topic("stargate", "OFTSent(bytes32,uint32,address,uint256,uint256)")
THORCHAIN_TRANSFER_OUT = events.topic("thorchain", "TransferOut(address,address,address,uint256,string)")
"""An outbound (payout) of the THORChain router on an EVM chain, `vault` and `to` indexed, the
memo `OUT:<inbound tx hash>`."""

ACROSS_FILLS = (events.topic("across", "FilledV3Relay(address,address,uint256,uint256,uint256,uint256,uint32,uint32,"
                                          "uint32,address,address,address,address,bytes,(address,bytes,uint256,uint8))"),
                events.topic("across", "FilledRelay(bytes32,bytes32,uint256,uint256,uint256,uint256,uint256,uint32,"
                                       "uint32,bytes32,bytes32,bytes32,bytes32,bytes32,(bytes32,bytes32,uint256,uint8))"))
"""Across relayers' fills on the destination chain: origin chain id and deposit id indexed."""
WORMHOLE_REDEEMED = events.topic("wormhole", "TransferRedeemed(uint16,bytes32,uint64)")
"""The Wormhole token bridge paying out a transfer: the source chain, emitter and sequence indexed."""

# Every deposit event of a bridge the chain layer decodes (one ABI file per protocol), and the
# payout events of the far side (THORChain TransferOut, Across fills, Wormhole redeems).
BRIDGE_TOPICS = tuple(t for t in events.topics_of(*events.BRIDGE_PROTOCOLS)
                      if t not in events.topics_of("wormhole") or t == WORMHOLE_MESSAGE)
PAYOUT_TOPICS = (THORCHAIN_TRANSFER_OUT, *(t for t in events.topics_of("across") if t not in BRIDGE_TOPICS),
                 *(t for t in events.topics_of("wormhole") if t != WORMHOLE_MESSAGE))

# Chain numberings live in one registry (tracer.chains.networks); these names stay for readers.
EVM_CHAINS = networks.EVM
ACROSS_SOLANA = networks.ACROSS_SOLANA
WORMHOLE_CHAINS = networks.WORMHOLE
LAYERZERO_CHAINS = networks.LAYERZERO
THORCHAIN_CHAINS = networks.THORCHAIN
# Single-letter assets THORChain accepts in memos.
THORCHAIN_SHORT_ASSETS = {"a": "AVAX.AVAX", "b": "BTC.BTC", "c": "BCH.BCH", "d": "DOGE.DOGE", "e": "ETH.ETH",
                          "g": "GAIA.ATOM", "l": "LTC.LTC", "r": "THOR.RUNE", "s": "BSC.BNB"}
_EVM_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")


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
    deposit_id: int | None = None  # Across deposit id, Wormhole sequence: what the payout repeats
    service: str | None = None  # the contract paid (Wormhole: the token bridge, not the core emitter)
    event: str | None = None  # the event it was decoded from (None: recognised by label only)

    @property
    def evm_destination(self) -> bool:
        return self.dest_address is not None and bool(_EVM_ADDRESS.match(self.dest_address))


def decode(log: LogRecord) -> BridgeExit | None:
    """The destination published by one bridge log; None when the log is no bridge deposit."""
    rec = events.decode(log)
    return from_send(rec) if isinstance(rec, events.BridgeSend) else None


def from_send(rec: events.BridgeSend) -> BridgeExit | None:
    """A decoded bridge deposit as the destination the engine follows (THORChain's memo read here)."""
    if rec.protocol == "THORChain":
        return replace(thorchain_memo(rec.tx_hash, rec.memo or "", rec.amount), service=rec.service, event=rec.event)
    return BridgeExit(rec.protocol, rec.tx_hash, rec.dest_chain, rec.recipient, amount=rec.amount, note=rec.note,
                      deposit_id=rec.deposit_id, service=rec.service, event=rec.event)


def thorchain_memo(tx: str, memo: str, amount: int | None = None, *, maya: bool = False) -> BridgeExit:
    """A THORChain (or, `maya`, Maya Protocol: same router events, same memo grammar, its own chain
    codes) deposit memo read as a destination.

    Swaps: `SWAP:ASSET:DEST[:LIMIT[:AFFILIATE:FEE]]`, also spelt `s:` or `=:`; ASSET is
    CHAIN.SYMBOL[-CONTRACT] (`~` trade and `/` synthetic assets stay on THORChain) or a one-letter
    short code. Liquidity adds (`ADD:`, `a:`, `+:`) keep the money in THORChain's pools. Anything else
    is reported with its memo and no destination.
    """
    parts = memo.strip().split(":")
    action = parts[0].strip().lower() if parts else ""
    protocol, home = ("Maya Protocol", "mayachain") if maya else ("THORChain", "thorchain")
    if action in ("swap", "s", "=") and len(parts) >= 2:
        asset = _asset_code(THORCHAIN_SHORT_ASSETS.get(parts[1], parts[1]))
        dest = parts[2].strip() if len(parts) >= 3 and parts[2].strip() else None
        note: str | None
        if "~" in asset or "/" in asset:
            chain: str | None = home
            note = f"trade or synthetic asset: the money stays on {protocol}"
        else:
            code = asset.split(".", 1)[0]
            chain = networks.chain_name("maya" if maya else "thorchain", code) if code else None
            note = None if dest else f"no destination address in the memo: {protocol} pays the sender's address"
        return BridgeExit(protocol, tx, chain, dest, asset, amount, memo, note)
    if action in ("add", "a", "+") and len(parts) >= 2:
        asset = THORCHAIN_SHORT_ASSETS.get(parts[1], parts[1]).upper()
        dest = parts[2].strip() if len(parts) >= 3 and parts[2].strip() else None
        return BridgeExit(protocol, tx, home, dest, asset, amount, memo, f"liquidity added to a {protocol} pool")
    return BridgeExit(protocol, tx, None, None, None, amount, memo, "memo names no destination")


def as_maya(ex: BridgeExit) -> BridgeExit:
    """A router deposit read as THORChain's, read again with Maya's chain codes (a Maya router,
    known by its label, emits THORChain's events)."""
    if ex.protocol != "THORChain" or ex.memo is None:
        return ex
    return replace(thorchain_memo(ex.tx_hash, ex.memo, ex.amount, maya=True), service=ex.service, event=ex.event)


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
MATCH_ID = "deposit id"  # the payout's event repeats the deposit's id (Across deposit id, Wormhole sequence): certain
MATCH_SINGLE = "single candidate"  # the only payment to the destination in the window
MATCH_EARLIEST = "earliest of several"  # several payments: the first one after the deposit
CONFIDENCE = {MATCH_MEMO: 1.0, MATCH_ID: 1.0, MATCH_SINGLE: 0.7, MATCH_EARLIEST: 0.5}
_REF_PREFIXES = ("OUT:", "ACROSS:", "WORMHOLE:")  # payouts that name a deposit: never another's by timing


@dataclass(frozen=True, slots=True)
class PayoutMatch:
    transfer: Transfer
    method: str
    confidence: float
    candidates: int  # payments to the destination weighed (within the window, of the asset)


def _asset_code(asset: str) -> str:
    """CHAIN.SYMBOL upper-cased as THORChain spells it; a Tron contract (`TRON.USDT-TR7NH...`) keeps
    its case, which base58 needs (EVM contracts are lowercased later anyway)."""
    head, dash, contract = asset.partition("-")
    if dash and head.upper().startswith("TRON.") and contract.strip()[:1] == "T":
        return head.upper() + dash + contract.strip()
    return asset.upper()


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
        contract = symbol.split("-", 1)[1].strip()
        if contract[:1] == "T":  # a TRC-20 named as Tron shows it (TRON.USDT-TR7NH...)
            try:
                return normalize_tron(contract)
            except InvalidAddress:
                return None
        return contract.lower() if _EVM_ADDRESS.match(contract.lower()) else None
    return NATIVE


def match_payout(
    incoming: Sequence[Transfer], ex: BridgeExit, deposit_time: int, *, window: int = PAYOUT_WINDOW,
    ref: str | None = None,
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
        if ref is not None and t.memo == ref:
            return PayoutMatch(t, MATCH_ID, CONFIDENCE[MATCH_ID], 1)
    asset = payout_asset(ex)
    candidates = [t for t in mine if t.block_time <= deposit_time + window and (asset is None or t.asset == asset)
                  and not (t.memo and t.memo.strip().upper().startswith(_REF_PREFIXES))]  # another deposit's payout
    if not candidates:
        return None
    method = MATCH_SINGLE if len(candidates) == 1 else MATCH_EARLIEST
    return PayoutMatch(candidates[0], method, CONFIDENCE[method], len(candidates))


def transfer_out_memo(log: LogRecord) -> tuple[str, str] | None:
    """(recipient, memo) of a THORChain router TransferOut log; None for any other log."""
    rec = events.decode(log)
    if not isinstance(rec, events.BridgePayout) or rec.protocol != "THORChain" or rec.recipient is None:
        return None
    return rec.recipient, rec.memo or ""


def _word(n: int) -> str:
    return "0x" + f"{n:064x}"


def _pad(address: str) -> str:
    return "0x" + "0" * 24 + address.lower().removeprefix("0x")


def deposit_ref(ex: BridgeExit, source_chain: str) -> str | None:
    """What the payout of a deposit repeats on the far chain, as `payout_memo` spells it: Across
    fills name the origin chain and deposit id, Wormhole redeems the emitter chain, emitter
    (the source token bridge) and sequence. None: the protocol names the deposit otherwise (a
    THORChain memo names its hash) or not at all."""
    if ex.deposit_id is None:
        return None
    if ex.protocol == "Across":
        return f"ACROSS:{source_chain}:{ex.deposit_id}"
    if ex.protocol == "Wormhole" and ex.service:
        return f"WORMHOLE:{source_chain}:{_pad(ex.service)}:{ex.deposit_id}"
    return None


def payout_filter(ex: BridgeExit, source_chain: str, address: str) -> list[str | list[str] | None] | None:
    """eth_getLogs topics finding the payout event of a deposit on its destination chain (None:
    the protocol has none tracer reads): THORChain's TransferOut to the recipient, the Across fill
    of this deposit id, the Wormhole redeem of this sequence."""
    if ex.protocol == "THORChain":
        return [THORCHAIN_TRANSFER_OUT, None, _pad(address)] if _EVM_ADDRESS.match(address) else None
    if ex.deposit_id is None:
        return None
    if ex.protocol == "Across" and (cid := networks.evm_chain_id(source_chain)) is not None:
        return [list(ACROSS_FILLS), _word(cid), _word(ex.deposit_id)]
    if ex.protocol == "Wormhole" and ex.service and (wid := networks.wormhole_id(source_chain)) is not None:
        return [WORMHOLE_REDEEMED, _word(wid), _pad(ex.service), _word(ex.deposit_id)]
    return None


def payout_memo(log: LogRecord, address: str) -> tuple[str, str] | None:
    """(payout tx, what it says about the deposit) of a bridge payout event to `address`: the
    THORChain memo, or the reference `deposit_ref` spells. A Wormhole redeem names no recipient
    (its VAA does): the query asked for this deposit's sequence, so the payment in its transaction is it."""
    rec = events.decode(log)
    if not isinstance(rec, events.BridgePayout):
        return None
    if rec.protocol == "THORChain" and rec.recipient == address:
        return rec.tx_hash, rec.memo or ""
    if rec.protocol == "Across" and rec.recipient == address:
        return rec.tx_hash, f"ACROSS:{rec.origin_chain}:{rec.deposit_id}"
    if rec.protocol == "Wormhole":
        return rec.tx_hash, f"WORMHOLE:{rec.origin_chain}:{rec.origin_emitter}:{rec.deposit_id}"
    return None


def carried(deposit_flagged: int, deposit_amount: int, payout_amount: int, confidence: float) -> int:
    """Flagged part of a payout: the deposit's flagged share, at the bridge's own rate (whatever
    the payout is worth), scaled by how sure the match is; integer arithmetic where it matters."""
    if deposit_amount <= 0 or deposit_flagged <= 0:
        return 0
    flagged = min(payout_amount, payout_amount * deposit_flagged // deposit_amount)
    return int(flagged * confidence) if confidence < 1.0 else flagged
