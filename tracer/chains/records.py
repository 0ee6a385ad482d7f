"""Plain records the chain layer hands to the engine: node JSON never crosses this line.

The records themselves live in tracer.domain.transfers (every layer reads them); this module names
them for the chain clients, which build them. `FeePaid` is the chain layer's own: what the EVM and
Tron clients' `fees_paid` return.
"""

from __future__ import annotations

from dataclasses import dataclass

from tracer.domain.transfers import NATIVE, BlockRef, Transfer, TransferKind, position_key

__all__ = ["NATIVE", "BlockRef", "FeePaid", "Transfer", "TransferKind", "position_key"]


@dataclass(frozen=True, slots=True)
class FeePaid:
    """What one transaction cost its sender beyond the value it moved."""

    address: str  # the sender
    block_number: int
    tx_hash: str
    fee: int  # wei (sun on Tron)
