"""The chains tracer names, which family each belongs to, and their native coins' units.

Bridges number chains in many ways (tracer.chains.networks maps those ids to these names); this is
what the rest of tracer says once a chain is named.
"""

from __future__ import annotations

ETHEREUM = "ethereum"
BITCOIN = "bitcoin"
TRON = "tron"

EVM_CHAINS: frozenset[str] = frozenset(
    {
        "ethereum", "bsc", "arbitrum", "optimism", "polygon", "base", "avalanche", "fantom",
        "gnosis", "celo", "ethereum-classic", "kcc", "linea", "scroll", "zksync", "blast",
    }
)
"""Chains whose addresses are EVM keys: one key is the same holder on each of them (label lookups
and sanctions screening treat them as one)."""

NATIVE_DECIMALS = 18
"""Wei: the native coin's decimals on every EVM chain."""

NATIVE_DECIMALS_OF: dict[str, int] = {BITCOIN: 8, TRON: 6}
"""Native coins without 18 decimals (satoshis, sun); a trace can continue onto them through a bridge."""

NATIVE_SYMBOL: dict[str, str] = {
    "ethereum": "ETH", "arbitrum": "ETH", "optimism": "ETH", "base": "ETH", "linea": "ETH", "scroll": "ETH",
    "zksync": "ETH", "blast": "ETH", "unichain": "ETH", "worldchain": "ETH", "lisk": "ETH", "mode": "ETH",
    "ink": "ETH", "zora": "ETH", "avalanche": "AVAX", "bsc": "BNB", "polygon": "POL", "gnosis": "xDAI",
    BITCOIN: "BTC", TRON: "TRX",
}
"""The native coin of each chain a trace can start on or continue into."""


def native_decimals(chain: str) -> int:
    return NATIVE_DECIMALS_OF.get(chain, NATIVE_DECIMALS)


def native_unit(chain: str) -> tuple[str, int]:
    """(symbol, decimals) of the chain's native coin; "native" for a chain not listed."""
    return NATIVE_SYMBOL.get(chain, "native"), native_decimals(chain)
