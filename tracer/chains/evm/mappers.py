"""Node JSON → `Transfer` records. The only place that knows the shapes nodes answer in.

The functions here assume those shapes: an answer in another one makes them raise KeyError,
TypeError, ValueError... which the client that called them turns into a MalformedAnswer of the
method (tracer.chains.answers), so no field is checked twice on the way.

Three sources describe native value moves and must give identical records for the same chain:
- a transaction object (`eth_getBlockByNumber(n, true)`) plus its receipt status: top-level value;
- Parity-style traces (`trace_filter`, `trace_transaction`): one flat record per call, with
  `traceAddress` giving the call's path from the top-level call;
- Geth `callTracer` frames (`debug_trace*`): a tree of calls whose child index path is the same
  path as Parity's `traceAddress`.
ERC-20 transfers come from `Transfer` logs.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from eth_abi import decode as abi_decode
from eth_abi.decoding import ContextFramesBytesIO
from eth_abi.exceptions import DecodingError
from eth_abi.registry import registry as abi_registry

from tracer.chains import events
from tracer.chains.records import LogRecord
from tracer.domain.transfers import NATIVE, Transfer, TransferKind

TRANSFER_TOPIC = events.topic("erc20", "Transfer(address,address,uint256)")
"""topic0 of `Transfer(address indexed from, address indexed to, uint256 value)` (abi/erc20.json)."""
# Token logs are the bulk of what a trace reads: eth_abi's uint256 decoder is fetched once
# (decode() looks it up per call, five times slower).
_UINT256: Any = abi_registry.get_decoder("uint256")
# An indexed address is a uint160 in a 32-byte word: decoding it as one refuses nonzero padding
# like the `address` decoder does, without the checksum that decoder computes (8 of its 9 µs).
_UINT160: Any = abi_registry.get_decoder("uint160")

# Call kinds that move value to their target. DELEGATECALL and CALLCODE run the target's code in
# the caller's context (the value shown is the caller's, nothing moves); STATICCALL moves nothing.
_VALUE_CALLS = frozenset({"call"})
_CREATES = frozenset({"create", "create2"})
_SELFDESTRUCTS = frozenset({"suicide", "selfdestruct"})
_HASH = re.compile(r"0x[0-9a-f]{64}")


def quantity(value: Any) -> int:
    """A JSON-RPC quantity ("0x1a") as int; also accepts ints and decimal strings (lenient nodes)."""
    if isinstance(value, bool):
        raise ValueError("a boolean is no quantity")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text[:2].lower() == "0x":
            return int(text, 16) if len(text) > 2 else 0
        return int(text)
    raise ValueError(f"{'null' if value is None else type(value).__name__} is no quantity")


def hex_quantity(value: int) -> str:
    return hex(value)


def block_hash(block: Mapping[str, Any]) -> str:
    """A block's hash, checked: the reorg guard compares it with the one it recorded, and garbage
    there would read as a reorganisation."""
    value = block["hash"].lower()
    if not _HASH.fullmatch(value):
        raise ValueError(f"hash {value[:80]!r}")
    return str(value)


def code_present(code: Any) -> bool:
    """Whether an eth_getCode answer holds code ("0x", and "0x0" from some nodes, is none)."""
    if not isinstance(code, str):
        raise TypeError()
    if code in ("0x", "0x0", ""):
        return False
    if not code.startswith("0x"):
        raise ValueError("no 0x")
    bytes.fromhex(code[2:])  # ValueError for what is no code
    return True


def rows(result: Any) -> list[Any]:
    """The items of a list answer (trace_filter, eth_getLogs, trace_block, block receipts); null is
    none; anything else is not such an answer (TypeError)."""
    if result is None:
        return []
    if not isinstance(result, list):
        raise TypeError()
    return result


def pad_topic(address: str) -> str:
    """A lowercase 0x address as a 32-byte topic (left-padded with zeros)."""
    return "0x" + "0" * 24 + address[2:]


def topic_address(topic: str) -> str:
    return "0x" + topic[-40:].lower()


def lower(value: Any) -> str | None:
    return value.lower() if isinstance(value, str) else None


def position_of(path: Sequence[int]) -> str:
    return "tx" if not path else "call:" + ".".join(str(i) for i in path)


def _native(chain: str, block_number: int, block_time: int, tx_hash: str, tx_index: int, path: Sequence[int],
            sender: str, target: str, amount: int) -> Transfer:
    """Native value moved by the call at `path` of a transaction, the empty path being its
    top-level value: the one rule by which the three sources give identical records."""
    return Transfer(
        chain=chain,
        block_number=block_number,
        block_time=block_time,
        tx_hash=tx_hash,
        tx_index=tx_index,
        position=position_of(path),
        from_address=sender,
        to_address=target,
        asset=NATIVE,
        amount=amount,
        kind=TransferKind.INTERNAL if path else TransferKind.NATIVE,
    )


@dataclass(frozen=True, slots=True)
class BlockTx:
    """What the block-scan path reads of a transaction of `eth_getBlockByNumber(n, true)`."""

    hash: str
    index: int
    sender: str | None
    to: str | None
    value: int
    runs_code: bool  # it has input data or creates a contract: value may move inside it


@dataclass(frozen=True, slots=True)
class FullBlock:
    number: int
    time: int
    txs: tuple[BlockTx, ...]


def full_block(block: Mapping[str, Any]) -> FullBlock:
    """A block read with its transactions (`eth_getBlockByNumber(n, true)`)."""
    return FullBlock(quantity(block["number"]), quantity(block["timestamp"]),
                     tuple(block_tx(tx) for tx in block.get("transactions") or ()))


def block_tx(tx: Any) -> BlockTx:
    if not isinstance(tx, Mapping):
        raise ValueError("its transactions are hashes, not transactions")
    data = tx.get("input", tx.get("data")) or "0x"
    return BlockTx(str(tx["hash"]).lower(), quantity(tx.get("transactionIndex") or 0), lower(tx.get("from")),
                   lower(tx.get("to")), quantity(tx.get("value") or 0), data not in ("0x", "") or tx.get("to") is None)


class Outcome(NamedTuple):
    """What a receipt (or a root callTracer frame) says of its transaction."""

    succeeded: bool
    created: str | None  # the contract it created


def outcome(receipt: Mapping[str, Any]) -> Outcome:
    return Outcome(succeeded(receipt), lower(receipt.get("contractAddress")))


def tx_transfer(
    chain: str,
    tx: BlockTx,
    block_number: int,
    block_time: int,
    created: str | None = None,
) -> Transfer | None:
    """The top-level value of a successful transaction, or None when it moves nothing.

    `created` is the receipt's contractAddress: a contract creation sends its value there.
    """
    if tx.value <= 0:
        return None
    target = tx.to or (created.lower() if created else None)
    if tx.sender is None or target is None:
        return None
    return _native(chain, block_number, block_time, tx.hash, tx.index, (), tx.sender, target, tx.value)


def parity_trace_transfer(chain: str, trace: Mapping[str, Any], block_time: int) -> Transfer | None:
    """One Parity-style trace as a Transfer; None if it failed, moves nothing or is not a call.

    Only the trace's own `error` is checked here: whether an ancestor call reverted (which undoes
    this one too) needs the whole transaction, see `failed_paths`.
    """
    if trace.get("error") or not trace.get("transactionHash"):
        return None  # failed call, or a block/uncle reward (no transaction)
    kind = str(trace.get("type", "")).lower()
    action = trace.get("action") or {}
    if kind == "call":
        if str(action.get("callType", "call")).lower() not in _VALUE_CALLS:
            return None
        sender, target, value = lower(action.get("from")), lower(action.get("to")), action.get("value")
    elif kind in _CREATES:
        result = trace.get("result") or {}
        sender, target, value = lower(action.get("from")), lower(result.get("address")), action.get("value")
    elif kind in _SELFDESTRUCTS:
        sender = lower(action.get("address"))
        target = lower(action.get("refundAddress"))
        value = action.get("balance")
    else:
        return None
    amount = quantity(value or 0)
    if amount <= 0 or sender is None or target is None:
        return None
    path = [quantity(i) for i in trace.get("traceAddress") or []]
    return _native(chain, quantity(trace["blockNumber"]), block_time, str(trace["transactionHash"]).lower(),
                   quantity(trace.get("transactionPosition") or 0), path, sender, target, amount)


def succeeded(receipt: Mapping[str, Any]) -> bool:
    """Whether a receipt says the transaction succeeded."""
    status = receipt.get("status")
    if status is None:
        # Receipts before Byzantium carry a state root instead of a status: no failure is visible.
        # With neither, it is no receipt.
        if "root" not in receipt:
            raise KeyError("status")
        return True
    return quantity(status) == 1


def trace_path(trace: Mapping[str, Any]) -> tuple[int, ...]:
    return tuple(quantity(i) for i in trace.get("traceAddress") or [])


def failed_paths(traces: Sequence[Mapping[str, Any]]) -> set[tuple[int, ...]]:
    """Paths of the calls that failed in one transaction's full Parity trace."""
    return {trace_path(t) for t in traces if t.get("error")}


def undone_by_ancestor(path: tuple[int, ...], failed: set[tuple[int, ...]]) -> bool:
    """True if the call at `path` or any call above it failed: a revert undoes everything below."""
    return any(path[:depth] in failed for depth in range(len(path) + 1))


def call_frame_transfers(
    chain: str,
    frame: Mapping[str, Any],
    *,
    block_number: int,
    block_time: int,
    tx_hash: str,
    tx_index: int,
) -> list[Transfer]:
    """Internal value moves of one transaction from its Geth `callTracer` tree.

    The root frame is the top-level call, whose value is reported from the transaction itself;
    a frame with `error` reverted, and with it everything it called.
    """
    out: list[Transfer] = []
    if frame.get("error"):
        return out
    for path, child in _walk(frame.get("calls") or [], ()):
        kind = str(child.get("type", "")).lower()
        if kind in _VALUE_CALLS or kind in _CREATES or kind in _SELFDESTRUCTS:
            amount = quantity(child.get("value") or 0)
            sender, target = lower(child.get("from")), lower(child.get("to"))
            if amount > 0 and sender and target:  # a walked frame's path is never empty: INTERNAL
                out.append(_native(chain, block_number, block_time, tx_hash, tx_index, path, sender, target, amount))
    return out


def _walk(
    calls: Sequence[Mapping[str, Any]], prefix: tuple[int, ...]
) -> Iterator[tuple[tuple[int, ...], Mapping[str, Any]]]:
    for index, child in enumerate(calls):
        if child.get("error"):
            continue  # reverted: neither it nor its sub-calls moved anything
        path = (*prefix, index)
        yield path, child
        yield from _walk(child.get("calls") or [], path)


def is_call_frame(value: Any) -> bool:
    """True for a callTracer frame (a tracer that ignored `tracer: callTracer` gives structLogs)."""
    return isinstance(value, Mapping) and "type" in value and "from" in value


def log_transfer(chain: str, entry: Mapping[str, Any], block_time: int) -> Transfer | None:
    """An ERC-20 Transfer log as a Transfer; None for other logs, ERC-721, removed or zero."""
    topics = entry.get("topics") or []
    if len(topics) != 3 or str(topics[0]).lower() != TRANSFER_TOPIC or entry.get("removed"):
        return None  # ERC-721 Transfer indexes tokenId as a fourth topic: not a fungible amount
    try:
        amount = _uint256(str(entry.get("data") or "0x"))
        sender, recipient = _topic_address(str(topics[1])), _topic_address(str(topics[2]))
    except (ValueError, DecodingError):
        return None
    if amount <= 0:
        return None
    return Transfer(
        chain=chain,
        block_number=quantity(entry["blockNumber"]),
        block_time=block_time,
        tx_hash=str(entry["transactionHash"]).lower(),
        tx_index=quantity(entry.get("transactionIndex") or 0),
        position=f"log:{quantity(entry['logIndex'])}",
        from_address=sender,
        to_address=recipient,
        asset=str(entry["address"]).lower(),
        amount=amount,
        kind=TransferKind.TOKEN,
    )


def log_record(entry: Mapping[str, Any]) -> LogRecord:
    """A log of eth_getLogs, with its block time when the node puts it there (`blockTimestamp`:
    newer Geth, Reth, Anvil), -1 otherwise."""
    raw_time = entry.get("blockTimestamp")
    return LogRecord(
        block_number=quantity(entry["blockNumber"]),
        block_time=-1 if raw_time is None else quantity(raw_time),
        tx_hash=str(entry["transactionHash"]).lower(),
        tx_index=quantity(entry.get("transactionIndex") or 0),
        log_index=quantity(entry["logIndex"]),
        address=str(entry["address"]).lower(),
        topics=tuple(str(t).lower() for t in entry.get("topics") or []),
        data=str(entry.get("data") or "0x").lower(),
    )


@functools.lru_cache(maxsize=1 << 16)
def _topic_address(topic: str) -> str:
    """An indexed `address` of an event (a 32-byte topic), decoded by eth_abi (which refuses
    nonzero padding: a foreign event with the same topic is no token transfer). Cached: a batch's
    logs name the same few wallets over and over."""
    raw = bytes.fromhex(topic.removeprefix("0x"))
    if len(raw) != 32:
        raise ValueError("a topic is 32 bytes")
    return f"0x{_UINT160(ContextFramesBytesIO(raw)):040x}"


def _uint256(data: str) -> int:
    """The first uint256 of ABI-encoded hex data (an ERC-20 Transfer's value, a call's result)."""
    raw = bytes.fromhex(data.removeprefix("0x"))
    if len(raw) < 32:
        raise ValueError("shorter than one ABI word")
    return int(_UINT256(ContextFramesBytesIO(raw[:32])))


def returned_uint(result: Any) -> int | None:
    """A call's single uint256 return value; None for empty or short return data (no code at the
    address, not a token). An answer that is no hex string is no call's: TypeError, ValueError."""
    if not isinstance(result, str):
        raise TypeError()
    raw = bytes.fromhex(result.removeprefix("0x"))
    return int.from_bytes(raw[:32], "big") if len(raw) >= 32 else None


def decode_uint(result: Any) -> int | None:
    """`returned_uint`, None for any answer: a token's metadata is cosmetic, worth no failure."""
    try:
        return returned_uint(result)
    except (TypeError, ValueError):
        return None


def decode_symbol(result: Any) -> str | None:
    """ERC-20 `symbol()`: an ABI string, or a bytes32 on old tokens (MKR, SAI)."""
    if not isinstance(result, str) or not result.startswith("0x"):
        return None
    try:
        raw = bytes.fromhex(result[2:])
    except ValueError:
        return None
    if len(raw) == 32:
        text = raw.rstrip(b"\0")
    elif len(raw) >= 64:
        try:
            (text,) = abi_decode(["bytes"], raw)  # a string's layout; its UTF-8 is checked below
        except DecodingError:
            return None
    else:
        return None
    try:
        decoded = bytes(text).decode("utf-8")
    except UnicodeDecodeError:
        return None
    return decoded if decoded.isprintable() else None
