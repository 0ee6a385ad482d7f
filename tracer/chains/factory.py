"""Chain clients by chain name: "bitcoin" is Bitcoin over Esplora, "tron" Tron (JSON-RPC + HTTP API),
every other name an EVM chain.

    client = await connect_chain("bitcoin", "https://blockstream.info/api")   # EsploraChain
    client = await connect_chain("ethereum", "http://localhost:8545")          # EvmChain
    client = await connect_chain("tron", "https://api.trongrid.io/jsonrpc")   # TronChain

Options go to the client's constructor. Bitcoin's network (mainnet, testnet, testnet4, signet,
regtest) is checked against the server's genesis block; `network=` or `TRACER_BITCOIN_NETWORK`
picks it (default mainnet).
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

from tracer.chains.bitcoin import EsploraChain, configured_network
from tracer.chains.errors import ChainError
from tracer.chains.evm import EvmChain
from tracer.chains.tron import TronChain
from tracer.domain.chains import BITCOIN, TRON

# One of the three concrete clients. Not `ChainClient`: that is the API's protocol of what it needs
# of any client (tracer.api.context), and two types of one name were one too many.
AnyChain = EvmChain | EsploraChain | TronChain


def make_chain(name: str, url: str, **options: Any) -> AnyChain:
    """The client for chain `name`, not connected yet (ChainError for a URL no client can reach)."""
    scheme = urlsplit(url).scheme if "://" in url else ""
    if scheme.lower() not in ("http", "https"):
        # Said at once rather than after the transport's retries; the URL itself is not repeated (it
        # may carry an API key), only its scheme.
        raise ChainError(f"a node URL for chain {name} must start with http:// or https:// "
                         f"({'not ' + scheme + '://' if scheme else 'this one has no scheme'})")
    if name == BITCOIN:
        options.setdefault("network", configured_network())
        return EsploraChain(url, chain=name, **options)
    if name == TRON:
        # `url` is the JSON-RPC (TRACER_RPC_URL_TRON); the HTTP API beside it, TRACER_TRON_API_URL.
        options.setdefault("api_url", os.environ.get("TRACER_TRON_API_URL") or None)
        options.setdefault("api_key", os.environ.get("TRACER_TRON_API_KEY") or None)
        return TronChain(url, chain=name, **options)
    return EvmChain(url, chain=name, **options)


async def connect_chain(name: str, url: str, **options: Any) -> AnyChain:
    """A connected client for chain `name` (closed again if connecting fails: wrong chain, no node)."""
    client = make_chain(name, url, **options)
    try:
        await client.connect()
    except BaseException:
        await client.close()
        raise
    return client
