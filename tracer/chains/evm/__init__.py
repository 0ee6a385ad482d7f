"""The EVM chain client, `EvmChain` (tracer.chains.evm.client), and the records it returns.

    client = EvmChain("http://localhost:8545", chain="ethereum")
    await client.connect()

client.py holds the class users build and the reads every path shares the answers of; node.py
the transport, caches and block-range queries; trace_path.py and scan_path.py the two ways to
find native transfers; logs.py ERC-20 transfers and raw logs.
"""

from tracer.addresses import InvalidAddress
from tracer.chains.errors import ChainError, RpcError, StateUnavailable, WrongChain
from tracer.chains.evm.client import EvmChain
from tracer.chains.limits import is_result_cap
from tracer.chains.records import LogRecord

__all__ = [
    "ChainError",
    "EvmChain",
    "InvalidAddress",
    "LogRecord",
    "RpcError",
    "StateUnavailable",
    "WrongChain",
    "is_result_cap",
]
