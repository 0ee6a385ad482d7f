"""Plain records the chain layer hands to the engine: node JSON never crosses this line.

The records themselves live in tracer.domain.transfers (every layer reads them); this module names
them for the chain clients, which build them.
"""

from __future__ import annotations

from tracer.domain.transfers import NATIVE, BlockRef, Transfer, TransferKind, position_key

__all__ = ["NATIVE", "BlockRef", "Transfer", "TransferKind", "position_key"]
