"""How importers read upstream words: category aliases, chain spellings and address forms.

Every importer maps its upstream words onto tracer.domain's vocabulary (Category, the chain names),
so the engine can decide exits and the screening query can ask for "sanctioned" without knowing
which list said so. Pure module: no I/O.
"""

from __future__ import annotations

import re
from typing import Any

from tracer.addresses import InvalidAddress, normalize_btc, normalize_evm, normalize_tron
from tracer.domain.chains import BITCOIN, EVM_CHAINS, TRON
from tracer.domain.labels import CATEGORIES, Category

# Upstream words -> category. Hot and cold wallets fold into "exchange" with a flag, because to a
# trace both are the exchange; the flag (_ALIAS_EVIDENCE) keeps what the source said.
_CATEGORY_WORDS: dict[Category, tuple[str, ...]] = {
    Category.EXCHANGE: ("hot_wallet", "cold_wallet", "cex", "fiat_gateway"),
    Category.DEPOSIT_ADDRESS: ("deposit",),
    Category.OTC: ("otc_desk",),
    Category.PAYMENT_PROCESSOR: ("payments", "payment"),
    Category.MIXER: ("mixing_service", "coinjoin", "ethereum_mixer", "tornado_cash"),
    Category.DEX: ("defi_dex", "dex_aggregator"),
    Category.DEFI: ("defi_lending",),
    Category.BRIDGE: ("defi_bridge",),
    Category.SWAP_SERVICE: ("swap", "instant_exchange"),
    Category.SANCTIONED: ("sanction", "sanctions", "ofac"),
    Category.HACKER: ("service_hack", "hack", "heist", "exploit", "exploiter"),
    Category.SCAM: ("phishing", "phish_hack", "ponzi_scheme", "pyramid_scheme", "investment_fraud", "fraud"),
}
_CATEGORY_ALIASES: dict[str, Category] = {word: c for c, words in _CATEGORY_WORDS.items() for word in words}
_ALIAS_EVIDENCE: dict[str, dict[str, Any]] = {
    "hot_wallet": {"wallet": "hot"},
    "cold_wallet": {"wallet": "cold"},
    "fiat_gateway": {"fiat_gateway": True},
    "coinjoin": {"coinjoin": True},
}


def normalize_category(text: str | None) -> tuple[Category, dict[str, Any]]:
    """Map an upstream category word to the vocabulary; unknown words become "other".

    The extra dict carries what the folding would otherwise lose (e.g. {"wallet": "hot"});
    the original word is kept there too when it was not already a vocabulary word.
    """
    word = re.sub(r"[\s\-]+", "_", (text or "").strip().lower())
    if not word:
        return Category.OTHER, {}
    if word in CATEGORIES:
        return Category(word), {}
    if word in _CATEGORY_ALIASES:
        return _CATEGORY_ALIASES[word], dict(_ALIAS_EVIDENCE.get(word, {}))
    return Category.OTHER, {"upstream_category": word}


# ----------------------------------------------------------------------------------------------
# Chains

# Explorer names (etherscan-family label dumps) and common spellings -> our chain names.
_CHAIN_ALIASES: dict[str, str] = {
    "eth": "ethereum", "etherscan": "ethereum", "mainnet": "ethereum", "ethereum-mainnet": "ethereum",
    "bscscan": "bsc", "bnb-smart-chain": "bsc", "binance-smart-chain": "bsc", "bep20": "bsc",
    "arbiscan": "arbitrum", "arbitrum-one": "arbitrum", "arb": "arbitrum",
    "optimistic-ethereum": "optimism", "op": "optimism",
    "polygonscan": "polygon", "matic": "polygon",
    "basescan": "base",
    "snowtrace": "avalanche", "avax": "avalanche", "avalanche-c": "avalanche",
    "ftmscan": "fantom", "ftm": "fantom",
    "gnosisscan": "gnosis", "xdai": "gnosis",
    "celoscan": "celo",
    "etc": "ethereum-classic",
    "btc": "bitcoin", "xbt": "bitcoin",
    "trx": "tron", "tronscan": "tron",
    "ltc": "litecoin", "bch": "bitcoin-cash", "bsv": "bitcoin-sv", "btg": "bitcoin-gold",
    "zec": "zcash", "xmr": "monero", "xrp": "ripple", "xvg": "verge", "sol": "solana",
    "doge": "dogecoin", "bep2": "bnb-beacon",
}

# Ticker of an OFAC "Digital Currency Address - <ASSET>" feature or a tagpack currency -> chain,
# when the ticker alone decides it. Tokens that live on several chains (USDT, USDC, BNB) are
# decided by the address's shape in chain_for_asset.
_ASSET_CHAINS: dict[str, str] = {
    "XBT": "bitcoin", "BTC": "bitcoin", "ETH": "ethereum", "TRX": "tron", "LTC": "litecoin",
    "BCH": "bitcoin-cash", "BSV": "bitcoin-sv", "BTG": "bitcoin-gold", "DASH": "dash",
    "ZEC": "zcash", "XMR": "monero", "ETC": "ethereum-classic", "XRP": "ripple", "RIPPLE": "ripple",
    "XVG": "verge", "SOL": "solana", "DOGE": "dogecoin", "ARB": "arbitrum", "BSC": "bsc",
    "BEP20": "bsc", "BEP2": "bnb-beacon", "MATIC": "polygon", "AVAX": "avalanche", "FTM": "fantom",
    "KCS": "kcc", "EOS": "eos", "ADA": "cardano", "DOT": "polkadot", "ATOM": "cosmos",
    "ALGO": "algorand", "XLM": "stellar", "XTZ": "tezos", "FIL": "filecoin", "NEO": "neo",
}
# Multi-chain tokens: an 0x address is an EVM token holder; we file it under Ethereum unless the
# list names another chain, as the screening query looks EVM keys up on every EVM chain anyway.
# Shapes only, and case-insensitive on purpose: some upstream lists lowercase base58 addresses
# (which then contain l/o/0 that base58 excludes) and the chain must still be recognised.
_TRON_ADDRESS = re.compile(r"^[Tt][0-9A-Za-z]{33}$")
_BTC_BASE58 = re.compile(r"^[13][0-9A-Za-z]{25,34}$")
_BECH32_PREFIXES = ("bc1", "tb1", "bcrt1", "ltc1", "tltc1", "zs1")
_CASHADDR = re.compile(r"^(bitcoincash:)?[qp][0-9a-z]{41}$", re.IGNORECASE)


def normalize_chain(name: str | None) -> str:
    """Our name of a chain ("ethereum", "bitcoin", "bsc", ...), lowercase, hyphenated."""
    key = re.sub(r"[\s_]+", "-", (name or "").strip().lower())
    return _CHAIN_ALIASES.get(key, key)


def chain_for_asset(asset: str, address: str) -> str:
    """The chain an address listed under an asset ticker lives on ("XBT" -> "bitcoin")."""
    ticker = asset.strip().upper()
    text = address.strip()
    if ticker in {"USDT", "USDC", "BNB", "BUSD", "DAI"}:
        if text[:2].lower() == "0x":
            return "bsc" if ticker == "BNB" else "ethereum"
        if _TRON_ADDRESS.match(text):
            return "tron"
        if ticker == "BNB" and text.lower().startswith("bnb1"):
            return "bnb-beacon"
        if _BTC_BASE58.match(text) or text.lower().startswith("bc1"):
            return "bitcoin"  # Omni USDT lives on Bitcoin addresses
        return ticker.lower()
    if ticker in _ASSET_CHAINS:
        chain = _ASSET_CHAINS[ticker]
        if chain == "bitcoin" and _TRON_ADDRESS.match(text):
            return "tron"  # OFAC lists a Tron address under XBT: the address's shape decides
        # AVAX/MATIC lists may carry non-EVM spellings (X-chain, bech32): keep the ticker's chain
        # only for 0x addresses, else name the chain after the ticker so nothing is mismatched.
        if chain in EVM_CHAINS and text[:2].lower() != "0x":
            return ticker.lower()
        return chain
    return normalize_chain(ticker)


def normalize_address(chain: str, address: str) -> str:
    """The spelling stored and looked up: EVM lowercase (checksum checked), else as given.

    Bitcoin-family base58 is case-sensitive and kept exactly; bech32 and cashaddr are
    case-insensitive by specification and stored lowercase so either spelling matches.
    Raises InvalidAddress for a malformed EVM address or an empty/blank one.
    """
    text = address.strip() if isinstance(address, str) else address
    if not isinstance(text, str) or not text or any(c.isspace() for c in text):
        raise InvalidAddress(address, "empty or contains whitespace")
    if chain in EVM_CHAINS:
        return normalize_evm(text)
    if chain == TRON:
        if visibly_case_lost(chain, text):
            return text  # unusable, but kept for the importers' case-lost path
        return normalize_tron(text)  # hex inside, like the traces that look labels up
    lower = text.lower()
    if chain == BITCOIN and not (text == lower and not lower.startswith(_BECH32_PREFIXES)):
        # Checksums checked, so a typo is reported instead of stored; a lowercased base58 address
        # (some lists publish them) cannot be checked and goes on to the importer's case-lost path.
        return normalize_btc(text)
    if lower.startswith(_BECH32_PREFIXES) or _CASHADDR.match(text):
        return lower
    return text


def visibly_case_lost(chain: str, address: str) -> bool:
    """True for a base58 Tron address someone lowercased: every real one starts with "T", so the
    spelling proves the case is gone even where the list that carries it does not say so."""
    text = address.strip()
    return chain == TRON and text[:1] == "t" and text == text.lower()


def case_insensitive(chain: str, address: str) -> bool:
    """True if letter case carries no information for this address (so a lowercased copy of it,
    as some upstream lists publish, is still exact)."""
    text = address.strip()
    lower = text.lower()
    return (
        chain in EVM_CHAINS
        or lower.startswith("0x")
        or lower.startswith(_BECH32_PREFIXES)
        or bool(_CASHADDR.match(text))
        or text.isdigit()
    )
