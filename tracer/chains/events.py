"""Event logs → typed records, decoded with web3's contract event ABI from one ABI file per
protocol (`tracer/chains/abi/*.json`). The engine reads the records, never a log's words.

Decoding is web3's codec (eth_abi, strict) driven by the ABI files: an event's topic is the keccak
of the signature its ABI spells, the indexed-topic count must match, topics and data are decoded by
the ABI's types (tuples by their component names), so a fork that reuses an event name with other
fields, or a log too short or badly padded for the ABI, is no match rather than garbage. The same
as web3's `ContractEvent.process_log` minus its AttributeDicts: 15-30 µs a log instead of 350, which
matters for a Tornado pool's history of 100,000 logs. What this
module adds is the meaning: which field is the destination chain (and in which numbering,
`tracer.chains.networks`), the recipient, the amount, the reference a payout on the far chain
will repeat.

Which deposit events carry a destination and a recipient: THORChain/Maya (the memo names both),
Across (both, every version), Hop (both), Celer (both), Synapse (both), deBridge DLN (both),
Symbiosis (both), Multichain (both), Wormhole (both, in the token bridge's payload), the OP Stack,
Scroll and Polygon PoS gateways (the recipient; the chain is the one the gateway serves, known from
its address only). Stargate V2's `OFTSent` and V1's `Swap` name the chain but not the recipient
(it travels in the LayerZero packet), Arbitrum's ERC-20 gateway names the recipient but its chain
only by address. Orbiter emits nothing: its makers are plain addresses and the destination is coded
in the amount's last digits, so it is recognised by label only.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from eth_abi.decoding import ContextFramesBytesIO
from eth_utils import event_abi_to_log_topic
from eth_utils.abi import collapse_if_tuple
from web3 import Web3

from tracer.addresses import base58
from tracer.chains.networks import GATEWAYS, chain_name
from tracer.chains.records import LogRecord

ZERO_ADDRESS = "0x" + "00" * 20


# ---------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class PoolDeposit:
    """Tornado-style pool `Deposit(bytes32 indexed commitment, uint32 leafIndex, uint256 timestamp)`."""

    emitter: str
    tx_hash: str
    block_number: int
    block_time: int
    log_index: int
    commitment: str
    leaf_index: int


@dataclass(frozen=True, slots=True)
class PoolWithdrawal:
    """Tornado-style pool `Withdrawal(address to, bytes32 nullifierHash, address indexed relayer, uint256 fee)`."""

    emitter: str
    tx_hash: str
    block_number: int
    block_time: int
    log_index: int
    to: str
    nullifier_hash: str
    relayer: str
    fee: int


@dataclass(frozen=True, slots=True)
class BridgeSend:
    """A deposit into a bridge as its event tells it.

    `service` is the contract the depositor paid: the emitter, except for Wormhole, whose core
    contract emits the message of the token bridge that took the money (its indexed `sender`).
    `dest_chain` is a tracer chain name (None: the event does not say; THORChain's memo is read by
    the engine). `amount` is in the source asset's raw units when the event gives them. `ref`
    is what the payout on the far chain repeats (Across: origin chain id and deposit id;
    Wormhole: emitter chain, emitter and sequence), so the payout is found with certainty."""

    protocol: str
    event: str
    emitter: str
    service: str
    tx_hash: str
    block_number: int
    log_index: int
    dest_chain: str | None
    recipient: str | None
    amount: int | None = None
    token: str | None = None
    memo: str | None = None
    deposit_id: int | None = None
    note: str | None = None


@dataclass(frozen=True, slots=True)
class BridgePayout:
    """A bridge paying out on the destination chain: THORChain/Maya `TransferOut` (memo
    `OUT:<inbound hash>`), an Across fill, a Wormhole `TransferRedeemed` (which names the source
    message, not the recipient: the payment in the same transaction does)."""

    protocol: str
    emitter: str
    tx_hash: str
    recipient: str | None
    amount: int | None
    memo: str | None = None  # THORChain: OUT:<hash>
    origin_chain: str | None = None  # Across: the deposit's chain
    deposit_id: int | None = None  # Across deposit id, Wormhole sequence
    origin_emitter: str | None = None  # Wormhole: the source token bridge (bytes32 as 0x + 64 hex)


@dataclass(frozen=True, slots=True)
class PairSwap:
    """A Uniswap V2 or V3 style pool's `Swap`: the emitter is a DEX pool, `recipient` got the output."""

    protocol: str
    emitter: str
    tx_hash: str
    sender: str
    recipient: str


Decoded = PoolDeposit | PoolWithdrawal | BridgeSend | BridgePayout | PairSwap


# ---------------------------------------------------------------- the ABI files


@dataclass(frozen=True)
class _Event:
    protocol: str
    name: str
    abi: dict[str, Any]
    indexed: tuple[tuple[str, str], ...]  # (name, type) of each indexed input, in topic order
    data: tuple[dict[str, Any], ...]  # the ABI inputs in the data, in order
    types: tuple[str, ...]  # their canonical types, for eth_abi
    lenient: tuple[str, ...]  # the same with `string` read as `bytes` (memos need not be UTF-8)


@cache
def _decoder(types: tuple[str, ...]) -> Any:
    """eth_abi's decoder of a tuple of types, from the registry web3's codec uses (strict: bad
    padding or lengths are refused); built once per event rather than looked up per log."""
    return Web3().codec._registry.get_tuple_decoder(*types)


def _decode(types: tuple[str, ...], raw: bytes) -> tuple[Any, ...]:
    return tuple(_decoder(types)(ContextFramesBytesIO(raw)))


@cache
def _registry() -> dict[str, list[_Event]]:
    by_topic: dict[str, list[_Event]] = defaultdict(list)
    for path in sorted(resources.files("tracer.chains").joinpath("abi").iterdir(), key=lambda p: p.name):
        if not path.name.endswith(".json"):
            continue
        protocol = path.name[:-5]
        for entry in json.loads(path.read_text()):
            if entry.get("type") != "event":
                continue
            topic = "0x" + event_abi_to_log_topic(entry).hex()
            indexed = tuple((i["name"], collapse_if_tuple(i)) for i in entry["inputs"] if i.get("indexed"))
            data = tuple(i for i in entry["inputs"] if not i.get("indexed"))
            types = tuple(collapse_if_tuple(i) for i in data)
            by_topic[topic].append(_Event(protocol, entry["name"], entry, indexed, data, types,
                                          tuple("bytes" if t == "string" else t for t in types)))
    return dict(by_topic)


def topic(protocol: str, signature: str) -> str:
    """topic0 of an event of one ABI file, by its canonical signature (`Deposit(address,...)`)."""
    name = signature.split("(", 1)[0]
    for t, events in _registry().items():
        for e in events:
            if e.protocol == protocol and e.name == name and _signature(e.abi) == signature:
                return t
    raise KeyError(f"{protocol}: no event {signature}")


def _signature(abi: dict[str, Any]) -> str:
    def typ(i: dict[str, Any]) -> str:
        if i["type"].startswith("tuple"):
            return "(" + ",".join(typ(c) for c in i["components"]) + ")" + i["type"][5:]
        return str(i["type"])
    return f"{abi['name']}(" + ",".join(typ(i) for i in abi["inputs"]) + ")"


def topics_of(*protocols: str) -> tuple[str, ...]:
    """Every topic0 of the named ABI files (for eth_getLogs filters)."""
    return tuple(t for t, events in _registry().items() if any(e.protocol in protocols for e in events))


BRIDGE_PROTOCOLS = ("thorchain", "across", "wormhole", "stargate", "hop", "celer", "synapse", "debridge",
                    "symbiosis", "multichain", "l2_gateways")


# ---------------------------------------------------------------- decoding


def _hex(value: Any) -> str:
    return "0x" + bytes(value).hex()


def _addr(value: Any) -> str:
    return str(value).lower()


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes | bytearray) else str(value)


def decode(log: LogRecord) -> Decoded | None:
    """The typed record of one log of a known protocol; None for any other log (or one whose
    topics or data do not fit the ABI its topic0 names)."""
    if not log.topics:
        return None
    candidates = _registry().get(log.topics[0].lower())
    if not candidates:
        return None
    try:
        topics = [bytes.fromhex(t.removeprefix("0x")) for t in log.topics]
        data = bytes.fromhex(log.data.removeprefix("0x"))
    except ValueError:
        return None
    for c in candidates:
        if len(topics) != len(c.indexed) + 1:
            continue
        for types in (c.types, c.lenient):
            try:
                args = {name: _decode((typ,), t)[0] for (name, typ), t in zip(c.indexed, topics[1:], strict=True)}
                values = _decode(types, data)
            except Exception:  # eth_abi: DecodingError, InsufficientDataBytes, NonEmptyPaddingBytes, ...
                continue
            args.update({i["name"]: _named(i, v) for i, v in zip(c.data, values, strict=True)})
            try:
                return _record(c.protocol, c.name, log, args)
            except (KeyError, ValueError, TypeError):
                return None
    return None


def _named(abi_input: dict[str, Any], value: Any) -> Any:
    """A decoded tuple as a dict by its ABI component names (eth_abi returns plain tuples)."""
    if abi_input["type"] == "tuple":
        return {c["name"]: _named(c, v) for c, v in zip(abi_input["components"], value, strict=True)}
    return value


def _record(protocol: str, name: str, log: LogRecord, a: dict[str, Any]) -> Decoded | None:
    emitter = log.address.lower()
    tx = log.tx_hash.lower()

    def send(dest: str | None, recipient: str | None, amount: int | None, token: str | None = None, *,
             memo: str | None = None, deposit_id: int | None = None, note: str | None = None,
             service: str | None = None) -> BridgeSend:
        return BridgeSend(_PROTOCOL_NAMES[protocol], name, emitter, service or emitter, tx, log.block_number,
                          log.log_index, dest, recipient, amount, token, memo, deposit_id, note)

    if protocol == "tornado":
        if name == "Deposit":
            return PoolDeposit(emitter, tx, log.block_number, log.block_time, log.log_index,
                               _hex(a["commitment"]), int(a["leafIndex"]))
        return PoolWithdrawal(emitter, tx, log.block_number, log.block_time, log.log_index, _addr(a["to"]),
                              _hex(a["nullifierHash"]), _addr(a["relayer"]), int(a["fee"]))
    if protocol in ("uniswap_v2", "uniswap_v3"):
        if name != "Swap":
            return None
        return PairSwap(protocol, emitter, tx, _addr(a["sender"]), _addr(a.get("to") or a.get("recipient")))
    if protocol == "thorchain":
        if name == "Deposit":
            return send(None, None, int(a["amount"]), _addr(a["asset"]), memo=_text(a["memo"]))
        return BridgePayout("THORChain", emitter, tx, _addr(a["to"]), int(a["amount"]), memo=_text(a["memo"]))
    if protocol == "across":
        return _across(name, a, send, emitter, tx)
    if protocol == "wormhole":
        if name == "TransferRedeemed":
            return BridgePayout("Wormhole", emitter, tx, None, None, origin_chain=chain_name(
                "wormhole", int(a["emitterChainId"])), deposit_id=int(a["sequence"]),
                origin_emitter=_hex(a["emitterAddress"]))
        return _wormhole(a, send)
    if protocol == "stargate":
        if name == "OFTSent":
            return send(chain_name("layerzero", int(a["dstEid"])), None, int(a["amountSentLD"]),
                        note="the recipient travels in the LayerZero packet, not in the event")
        if name == "Swap":
            return send(chain_name("layerzero", int(a["chainId"])), None, None,
                        note="Stargate V1: the recipient travels in the LayerZero packet; amount in shared decimals")
        return None
    if protocol == "hop":
        return send(chain_name("evm", int(a["chainId"])), _addr(a["recipient"]), int(a["amount"]))
    if protocol == "celer":
        return send(chain_name("evm", int(a["dstChainId"])), _addr(a["receiver"]), int(a["amount"]),
                    _addr(a["token"]))
    if protocol == "synapse":
        to = _address32(_hex(a["to"])) if name == "TokenRedeemV2" else _addr(a["to"])
        return send(chain_name("evm", int(a["chainId"])), to, int(a["amount"]), _addr(a["token"]))
    if protocol == "debridge":
        order = a["order"]
        receiver = bytes(order["receiverDst"])
        dest = chain_name("debridge", int(order["takeChainId"]))
        recipient = "0x" + receiver.hex() if len(receiver) == 20 else base58(receiver) if dest == "solana" else (
            "0x" + receiver.hex())
        give = bytes(order["giveTokenAddress"])
        return send(dest, recipient, int(order["giveAmount"]), "0x" + give.hex() if give else None)
    if protocol == "symbiosis":
        return send(chain_name("evm", int(a["chainID"])), _addr(a["to"]), int(a["amount"]), _addr(a["token"]))
    if protocol == "multichain":
        # The V6 router names the recipient as a string: a Tron or other base58 address keeps its case.
        to = _text(a["to"])
        recipient = to.lower() if _is_evm_address(to) else to
        return send(chain_name("evm", int(a["toChainID"])), recipient, int(a["amount"]), _addr(a["token"]))
    if protocol == "l2_gateways":
        return _gateway(name, a, send, GATEWAYS.get(emitter))
    return None


def _across(name: str, a: dict[str, Any], send: Any, emitter: str, tx: str) -> Decoded:
    if name in ("V3FundsDeposited", "FundsDeposited"):
        dest = chain_name("evm", int(a["destinationChainId"]))
        if "inputAmount" in a:
            raw = a["recipient"]
            recipient = _address32(_hex(raw)) if isinstance(raw, bytes) else _addr(raw)
            if dest == "solana" and isinstance(raw, bytes):
                recipient = base58(bytes(raw))
            token = a["inputToken"]
            token_s = _address32(_hex(token)) if isinstance(token, bytes) else _addr(token)
            return send(dest, recipient, int(a["inputAmount"]), token_s, deposit_id=int(a["depositId"]))
        return send(dest, _addr(a["recipient"]), int(a["amount"]), _addr(a["originToken"]),
                    deposit_id=int(a["depositId"]))
    # FilledV3Relay / FilledRelay: the recipient actually paid is the updated one when set.
    info = a.get("relayExecutionInfo") or {}
    raw = info.get("updatedRecipient") or a["recipient"]
    recipient = _address32(_hex(raw)) if isinstance(raw, bytes) else _addr(raw)
    if recipient == ZERO_ADDRESS:
        recipient = _address32(_hex(a["recipient"])) if isinstance(a["recipient"], bytes) else _addr(a["recipient"])
    amount = int(info.get("updatedOutputAmount") or a["outputAmount"])
    return BridgePayout("Across", emitter, tx, recipient, amount, origin_chain=chain_name(
        "evm", int(a["originChainId"])), deposit_id=int(a["depositId"]))


def _wormhole(a: dict[str, Any], send: Any) -> BridgeSend | None:
    # Token bridge payloads: id(1) amount(32) token(32) tokenChain(2) to(32) toChain(2) ... (1 = transfer,
    # 3 = transfer with payload). Attestations and other apps' messages are no transfer of value.
    payload = bytes(a["payload"])
    if len(payload) < 101 or payload[0] not in (1, 3):
        return None
    amount = int.from_bytes(payload[1:33], "big")
    to = payload[67:99]
    chain = chain_name("wormhole", int.from_bytes(payload[99:101], "big"))
    address = base58(to) if chain == "solana" else _address32("0x" + to.hex())
    # Wormhole normalises amounts to 8 decimals: say so rather than pretend they are raw units.
    return send(chain, address, None, deposit_id=int(a["sequence"]), service=_addr(a["sender"]),
                note=f"payload amount {amount} (Wormhole's 8-decimal normalised units)")


def _gateway(name: str, a: dict[str, Any], send: Any, dest: str | None) -> BridgeSend:
    # A native gateway serves one L2: the event says who gets the money, its address says where.
    note = None if dest else "native L2 gateway: the destination is the chain this gateway serves, unknown here"
    if name in ("LockedEther", "LockedERC20"):
        return send(dest, _addr(a["depositReceiver"]), int(a["amount"]),
                    _addr(a["rootToken"]) if "rootToken" in a else None, note=note)
    if name == "DepositInitiated":
        return send(dest, _addr(a["_to"]), int(a["_amount"]), _addr(a["l1Token"]), note=note)
    token = a.get("l1Token") or a.get("localToken")
    return send(dest, _addr(a["to"]), int(a["amount"]), _addr(token) if token else None, note=note)


_PROTOCOL_NAMES = {"thorchain": "THORChain", "across": "Across", "wormhole": "Wormhole", "stargate": "Stargate",
                   "hop": "Hop", "celer": "Celer cBridge", "synapse": "Synapse", "debridge": "deBridge",
                   "symbiosis": "Symbiosis", "multichain": "Multichain", "l2_gateways": "L2 gateway"}


def _is_evm_address(text: str) -> bool:
    return len(text) == 42 and text[:2] == "0x" and all(ch in "0123456789abcdefABCDEF" for ch in text[2:])


def _address32(word: str) -> str:
    """A 32-byte address field: an EVM address when left-padded with zeros, else the raw bytes32."""
    word = word.lower().removeprefix("0x").rjust(64, "0")
    return "0x" + word[24:] if word[:24] == "0" * 24 else "0x" + word


