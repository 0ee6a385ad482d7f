"""Records only the chain layer speaks of: node JSON never crosses this line.

The transfer records every layer reads (Transfer, TransferKind, NATIVE, BlockRef) live in
tracer.domain.transfers. `FeePaid` and `LogRecord` are the chain layer's own: what the EVM and
Tron clients' `fees_paid` and `logs` return.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

# What `logs` is asked for, as eth_getLogs takes it: one contract, several, or any (None); per topic
# position one topic, any of several (a list), or any (None).
LogAddresses: TypeAlias = str | Sequence[str] | None
LogTopics: TypeAlias = Sequence[str | Sequence[str] | None]


@dataclass(frozen=True, slots=True)
class FeePaid:
    """What one transaction cost its sender beyond the value it moved."""

    address: str  # the sender
    block_number: int
    tx_hash: str
    fee: int  # wei (sun on Tron)


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
