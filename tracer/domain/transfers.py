"""A movement of value as every layer sees it: the chain clients produce it, the store keeps it, the
engine follows it. Node JSON never reaches this record (tracer.chains maps it)."""

from __future__ import annotations

import re
from collections.abc import Container, Iterable
from dataclasses import dataclass
from enum import StrEnum

NATIVE = "native"
"""The `asset` of a native-coin transfer (ETH on Ethereum); tokens use their contract address."""


class TransferKind(StrEnum):
    NATIVE = "native"  # value of a top-level transaction
    INTERNAL = "internal"  # value moved by a call inside a transaction (traceAddress non-empty)
    TOKEN = "token"  # an ERC-20 Transfer log


@dataclass(frozen=True, slots=True)
class Transfer:
    """One movement of value, normalised from whichever node method found it.

    Addresses and hashes are lowercase 0x-hex. `position` makes the transfer unique inside its
    transaction: "tx" for the top-level value, "call:0.2" for the internal call at traceAddress
    [0, 2], "log:17" for the token log with logIndex 17. `order` sorts transfers of one block in
    execution order (tx index first, then position inside it). `memo` is what the chain says
    about the payment when it says anything (a Bitcoin OP_RETURN, a THORChain outbound's
    `OUT:<inbound tx hash>`): cross-chain continuation matches payouts to deposits by it. It is
    not part of the key and not stored in Postgres.
    """

    chain: str
    block_number: int
    block_time: int
    tx_hash: str
    tx_index: int
    position: str
    from_address: str
    to_address: str
    asset: str
    amount: int
    kind: TransferKind
    decimals: int | None = None
    symbol: str | None = None
    memo: str | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.chain, self.tx_hash, self.position)

    @property
    def order(self) -> tuple[int, int, int, str]:
        return (self.block_number, self.tx_index, _position_rank(self.position), position_key(self.position))


@dataclass(frozen=True, slots=True, init=False)
class TransferQuery:
    """One ask of a chain client for the transfers around some addresses in blocks [from_block,
    to_block]: out of them (`outgoing`), into them (`incoming`) or both.

    One record instead of six parameters, so the clients, the wrappers around them (reorg guard,
    monitor) and the protocols naming them agree on one meaning, and the checks every client
    needs live here once. `times=False` lets a client leave `block_time` at -1 where it would
    have to read a header only for the time: a busy wallet's noise spans thousands of blocks and
    only the transfers that become hops need one (the caller reads those with `block_times`).
    Clients normalise the addresses themselves, by their chain's rules.
    """

    addresses: tuple[str, ...]
    from_block: int
    to_block: int
    outgoing: bool = True
    incoming: bool = False
    times: bool = True

    def __init__(self, addresses: Iterable[str], from_block: int, to_block: int, *, outgoing: bool = True,
                 incoming: bool = False, times: bool = True) -> None:
        if from_block < 0 or to_block < 0:
            raise ValueError(f"block numbers must be >= 0, got {from_block}..{to_block}")
        # Callers pass lists, sets and generators: kept as a tuple so the query is one value.
        object.__setattr__(self, "addresses", tuple(addresses))
        object.__setattr__(self, "from_block", from_block)
        object.__setattr__(self, "to_block", to_block)
        object.__setattr__(self, "outgoing", outgoing)
        object.__setattr__(self, "incoming", incoming)
        object.__setattr__(self, "times", times)

    @property
    def empty(self) -> bool:
        """Nothing can match: no address, no direction, or an empty range."""
        return not self.addresses or not (self.outgoing or self.incoming) or self.from_block > self.to_block

    def wants(self, transfer: Transfer, addresses: Container[str]) -> bool:
        """Whether `transfer` moves in an asked direction relative to `addresses` (the query's own,
        normalised by the client)."""
        return ((self.outgoing and transfer.from_address in addresses)
                or (self.incoming and transfer.to_address in addresses))


def position_key(position: str) -> str:
    """The position with its numbers zero-padded, so text order is execution order: "log:9"
    before "log:17", "call:0.2" before "call:0.10", "io:2:0" before "io:10:0"."""
    return _DIGITS.sub(lambda m: m.group().zfill(10), position)


_DIGITS = re.compile(r"\d+")


def _position_rank(position: str) -> int:
    # Inside one transaction the top-level value moves first, then internal calls, then logs.
    if position == "tx":
        return 0
    if position.startswith("call:"):
        return 1
    return 2


@dataclass(frozen=True, slots=True)
class Movement:
    """One transfer touching an address, reduced to what the taint models and swap detection need
    (`incoming`: into the address whose timeline this is)."""

    transfer_id: int
    order: tuple[int, int, int, str]
    asset: str
    amount: int
    incoming: bool
    counterparty: str
    tx: str = ""  # transaction hash: moves of one transaction may form a swap ("" never does)


@dataclass(frozen=True, slots=True)
class BlockRef:
    number: int
    hash: str
    timestamp: int
