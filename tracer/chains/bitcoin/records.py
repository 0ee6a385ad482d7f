"""Bitcoin's networks (which one a server serves is told by its genesis block) and the native unit."""

from __future__ import annotations

import os
from dataclasses import dataclass

BTC_DECIMALS = 8
BTC_SYMBOL = "BTC"


@dataclass(frozen=True, slots=True)
class BtcNetwork:
    name: str
    genesis_hash: str
    magic: int  # the P2P message start bytes: the network's number, stored as its chain id
    bech32_hrp: str
    p2pkh_version: int
    p2sh_version: int


NETWORKS: dict[str, BtcNetwork] = {
    n.name: n
    for n in (
        BtcNetwork("mainnet", "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f", 0xD9B4BEF9,
                   "bc", 0x00, 0x05),
        BtcNetwork("testnet", "000000000933ea01ad0ee984209779baaec3ced90fa3f408719526f8d77f4943", 0x0709110B,
                   "tb", 0x6F, 0xC4),
        BtcNetwork("testnet4", "00000000da84f2bafbbc53dee25a72ae507ff4914b867c565be350b0da8bf043", 0x283F161C,
                   "tb", 0x6F, 0xC4),
        BtcNetwork("signet", "00000008819873e925422c1ff0f99f7cc9bbb232af63a077a480a3633bee1ef6", 0x40CF030A,
                   "tb", 0x6F, 0xC4),
        BtcNetwork("regtest", "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206", 0xDAB5BFFA,
                   "bcrt", 0x6F, 0xC4),
    )
}


def network_of_genesis(genesis_hash: str) -> BtcNetwork | None:
    for net in NETWORKS.values():
        if net.genesis_hash == genesis_hash.lower():
            return net
    return None



def configured_network() -> str:
    """The network this process reads where no client says otherwise: TRACER_BITCOIN_NETWORK
    (default mainnet). The one place the variable is read."""
    return os.environ.get("TRACER_BITCOIN_NETWORK") or "mainnet"
