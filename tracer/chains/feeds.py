"""Chainlink-compatible USD price feeds the tracer knows, and the stablecoins it may value at par.

A feed is read on its own chain (`feed_chain`) with `eth_call` at a block; an asset can be priced
by a feed on another chain (Bitcoin's BTC by Ethereum's BTC/USD feed, read at the Ethereum block
of the hop's time). Addresses are the feeds' public proxy contracts; each entry names where it was
checked (a public repository listing it, file path), so an investigator can verify it.
"""

from __future__ import annotations

from dataclasses import dataclass

from tracer.domain.transfers import NATIVE


@dataclass(frozen=True, slots=True)
class Feed:
    chain: str  # the chain of the priced asset
    asset: str  # "native" or a token address (lowercase)
    feed_chain: str  # the chain the aggregator lives on
    feed: str  # aggregator (proxy) address, lowercase
    pair: str  # e.g. "ETH / USD"
    provenance: str  # where the address was checked, or who registered it


_ETH_USD = "0x5f4ec3df9cbd43714fe2740f5e3616155c5b8419"
_BTC_USD = "0xf4030086522a5beea4988f8ca5b36dbc97bee88c"
_USDT_USD = "0x3e7d1eab13ad0104d2750b8863b489d65364e32d"
_USDC_USD = "0x8fffffd4afb6115b954bd326cbe7b4ba576818f6"
USDT = "0xdac17f958d2ee523a2206206994597c13d831ec7"
USDC = "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48"
DAI = "0x6b175474e89094c44da98b954eedeac495271d0f"

_GSHEET = "github.com/jeonghoyeo7/Web3Library_for_GoogleSheet src/Chainlink/ChainlinkAddress.js"
_REFI = "github.com/ReFiMedellin/WebSite constants/chainLinkContracts.ts"

KNOWN_FEEDS: tuple[Feed, ...] = (
    Feed("ethereum", NATIVE, "ethereum", _ETH_USD, "ETH / USD",
         "github.com/pcaversaccio/chainlink-price-feed README.md; " + _GSHEET),
    Feed("bitcoin", NATIVE, "ethereum", _BTC_USD, "BTC / USD", _GSHEET + "; " + _REFI),
    Feed("ethereum", USDT, "ethereum", _USDT_USD, "USDT / USD", _GSHEET + "; " + _REFI),
    Feed("ethereum", USDC, "ethereum", _USDC_USD, "USDC / USD", _GSHEET + "; " + _REFI),
    Feed("avalanche", NATIVE, "avalanche", "0x0a77230d17318075983913bc2145db16c7366156", "AVAX / USD",
         "github.com/quantum-coders/burrito-bot-api assets/web3/chainlinkFeeds.js"),
    Feed("bsc", NATIVE, "bsc", "0x0567f2323251f0aab15c8dfb1967e4e8a7d42aee", "BNB / USD",
         "github.com/IlyaPrigogine/learn-gambit-contracts scripts/core/tokens.js"),
    Feed("polygon", NATIVE, "polygon", "0xab594600376ec9fd91f8e885dadf0ce036862de0", "MATIC / USD",
         "github.com/DefiLens/Interface utils/data/ConstantInfo/priceFeed.ts; " + _REFI),
    Feed("base", NATIVE, "base", "0x71041dddad3595f9ced3dccfbe3d1f4b0a16bb70", "ETH / USD",
         "github.com/DefiLens/Interface utils/data/ConstantInfo/priceFeed.ts (8453 WETH)"),
)

# Tokens worth one dollar by design, valued at par (flagged "par") when no feed answers. Only real
# contract addresses: a token calling itself USDT proves nothing.
STABLECOINS: dict[tuple[str, str], str] = {
    ("ethereum", USDT): "USDT", ("ethereum", USDC): "USDC", ("ethereum", DAI): "DAI",
}


def known_feed(chain: str, asset: str) -> Feed | None:
    for f in KNOWN_FEEDS:
        if f.chain == chain and f.asset == asset:
            return f
    return None
