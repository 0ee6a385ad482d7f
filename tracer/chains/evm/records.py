"""Records of the EVM client: a scanned block."""

from __future__ import annotations

from dataclasses import dataclass

from tracer.domain.transfers import Transfer


@dataclass(frozen=True, slots=True)
class ScannedBlock:
    """What the block-scan path keeps of a block it read (in the client's LRU of blocks)."""

    number: int
    time: int
    transfers: tuple[Transfer, ...]  # every successful native value move in the block
    senders: tuple[tuple[str, str], ...] = ()  # (from, hash) of every transaction, failed ones too
