"""Records only the chain layer speaks of: node JSON never crosses this line.

The transfer records every layer reads (Transfer, TransferKind, NATIVE, BlockRef) live in
tracer.domain.transfers. `FeePaid` is the chain layer's own: what the EVM and Tron clients'
`fees_paid` return.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FeePaid:
    """What one transaction cost its sender beyond the value it moved."""

    address: str  # the sender
    block_number: int
    tx_hash: str
    fee: int  # wei (sun on Tron)
