"""Bitcoin over Esplora: the client `EsploraChain` (esplora.py), the networks (records.py) and the
Esplora JSON -> records mapping and transaction flattening (mappers.py)."""

from tracer.addresses import InvalidAddress
from tracer.chains.bitcoin.esplora import EsploraChain, NotFound
from tracer.chains.bitcoin.mappers import flatten, op_return_data, parse_tx, split_amounts
from tracer.chains.bitcoin.records import (
    BTC_DECIMALS,
    BTC_SYMBOL,
    NETWORKS,
    BtcNetwork,
    configured_network,
    network_of_genesis,
)
from tracer.chains.errors import ChainError, WrongChain

__all__ = [
    "BTC_DECIMALS",
    "BTC_SYMBOL",
    "NETWORKS",
    "BtcNetwork",
    "ChainError",
    "EsploraChain",
    "InvalidAddress",
    "NotFound",
    "WrongChain",
    "configured_network",
    "flatten",
    "network_of_genesis",
    "op_return_data",
    "parse_tx",
    "split_amounts",
]
