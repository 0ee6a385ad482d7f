"""Every way a protocol names a chain, mapped to tracer's chain names (the `<CHAIN>` of
`TRACER_RPC_URL_<CHAIN>`): the one registry bridges, labels and reports read.

Bridges do not agree on chain numbers. Across, Hop, Celer, Synapse, deBridge, Symbiosis and
Multichain use EVM chain ids (EIP-155); Wormhole has its own 16-bit ids; Stargate speaks in
LayerZero endpoint ids (V1: 101..., V2: 30101...); THORChain and Maya name chains with codes in
memo assets (`BTC.BTC`, `BSC.BNB`). An id nobody listed here comes back as `<space>:<id>`, so a
report still says where the money went even when tracer cannot follow it there.
"""

from __future__ import annotations

from typing import Literal

Space = Literal["evm", "wormhole", "layerzero", "thorchain", "maya", "debridge"]

EVM: dict[int, str] = {
    1: "ethereum", 10: "optimism", 25: "cronos", 56: "bsc", 100: "gnosis", 130: "unichain", 137: "polygon",
    250: "fantom", 288: "boba", 324: "zksync", 480: "worldchain", 1088: "metis", 1101: "polygon-zkevm",
    1135: "lisk", 1284: "moonbeam", 5000: "mantle", 8453: "base", 34443: "mode", 42161: "arbitrum",
    42170: "arbitrum-nova", 42220: "celo", 43114: "avalanche", 57073: "ink", 59144: "linea", 81457: "blast",
    534352: "scroll", 7777777: "zora", 1313161554: "aurora", 1666600000: "harmony",
}
"""EIP-155 chain ids."""

ACROSS_SOLANA = 34268394551451
"""Across names Solana by an id of its own (recipients there are bytes32 keys)."""

DEBRIDGE_SOLANA = 7565164
DEBRIDGE: dict[int, str] = {DEBRIDGE_SOLANA: "solana"}
"""deBridge's internal ids for chains whose EIP-155 id collides or that have none; others are EVM ids."""

WORMHOLE: dict[int, str] = {
    1: "solana", 2: "ethereum", 4: "bsc", 5: "polygon", 6: "avalanche", 10: "fantom", 13: "klaytn", 14: "celo",
    16: "moonbeam", 21: "sui", 22: "aptos", 23: "arbitrum", 24: "optimism", 30: "base", 34: "scroll",
    35: "mantle", 38: "linea", 39: "berachain", 44: "unichain", 45: "worldchain",
}
"""Wormhole chain ids (the token bridge's `toChain`, the core's emitter chain)."""

LAYERZERO: dict[int, str] = {
    101: "ethereum", 102: "bsc", 106: "avalanche", 109: "polygon", 110: "arbitrum", 111: "optimism",
    112: "fantom", 151: "metis", 165: "zksync", 181: "mantle", 183: "linea", 184: "base", 214: "scroll",
    30101: "ethereum", 30102: "bsc", 30106: "avalanche", 30109: "polygon", 30110: "arbitrum", 30111: "optimism",
    30151: "metis", 30165: "zksync", 30181: "mantle", 30183: "linea", 30184: "base", 30214: "scroll",
    30243: "blast", 30260: "mode", 30320: "unichain", 30339: "ink",
}
"""LayerZero endpoint ids: V1 (Stargate V1 pools' `chainId`) and V2 (Stargate V2 `dstEid`)."""

THORCHAIN: dict[str, str] = {
    "BTC": "bitcoin", "ETH": "ethereum", "BCH": "bitcoin-cash", "LTC": "litecoin", "DOGE": "dogecoin",
    "GAIA": "cosmos", "AVAX": "avalanche", "BSC": "bsc", "BASE": "base", "THOR": "thorchain", "TRON": "tron",
    "XRP": "xrp",
}
"""THORChain chain codes of memo assets (`CHAIN.SYMBOL[-CONTRACT]`)."""

MAYA: dict[str, str] = {
    "BTC": "bitcoin", "ETH": "ethereum", "ARB": "arbitrum", "DASH": "dash", "KUJI": "kujira", "THOR": "thorchain",
    "MAYA": "mayachain", "XRD": "radix", "ZEC": "zcash",
}
"""Maya Protocol's chain codes (the same memo grammar as THORChain)."""

GATEWAYS: dict[str, str] = {
    "0x99c9fc46f92e8a1c0dec1b1747d010903e884be1": "optimism",  # Optimism: Gateway (L1StandardBridge)
    "0x3154cf16ccdb4c6d922629664174b904d80f2c35": "base",  # Base: Base Bridge (L1StandardBridge)
    "0x8484ef722627bf18ca5ae6bcf031c23e6e922b30": "polygon",  # Polygon (Matic): Ether Bridge (EtherPredicate)
}
"""Native L2 gateways on Ethereum whose deposit events tracer decodes: each serves one chain, which
the event does not name (Etherscan name tags, brianleect/etherscan-labels@923aba7, MIT)."""

_SPACES: dict[str, dict[int, str]] = {"evm": EVM, "wormhole": WORMHOLE, "layerzero": LAYERZERO}


def chain_name(space: Space, chain_id: int | str) -> str:
    """tracer's name of a chain as `space` numbers (or codes) it; `<space>:<id>` when unknown."""
    if space in ("thorchain", "maya"):
        code = str(chain_id).upper()
        table = THORCHAIN if space == "thorchain" else MAYA
        return table.get(code, code.lower())
    n = int(chain_id)
    if space == "debridge":
        return DEBRIDGE.get(n) or EVM.get(n, f"evm:{n}")
    if space == "evm" and n == ACROSS_SOLANA:
        return "solana"
    return _SPACES[space].get(n, f"{space}:{n}")


def evm_chain_id(name: str) -> int | None:
    """The EIP-155 id of one of tracer's chain names (None: not an EVM chain we list)."""
    for n, chain in EVM.items():
        if chain == name:
            return n
    return None


def wormhole_id(name: str) -> int | None:
    """Wormhole's id of one of tracer's chain names (None: not a chain Wormhole serves, as listed)."""
    for n, chain in WORMHOLE.items():
        if chain == name:
            return n
    return None
