"""Records of the EVM client: a log for decoders outside the chain layer, and a scanned block."""

from __future__ import annotations

from dataclasses import dataclass

from tracer.domain.transfers import Transfer


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One log as the node gave it, lowercased, for decoders outside the chain layer (mixers, bridges)."""

    block_number: int
    block_time: int
    tx_hash: str
    tx_index: int
    log_index: int
    address: str
    topics: tuple[str, ...]
    data: str


@dataclass(frozen=True, slots=True)
class ScannedBlock:
    """What the block-scan path keeps of a block it read (in the client's LRU of blocks)."""

    number: int
    time: int
    transfers: tuple[Transfer, ...]  # every successful native value move in the block
    senders: tuple[tuple[str, str], ...] = ()  # (from, hash) of every transaction, failed ones too
