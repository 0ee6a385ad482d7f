"""How the dev chain spells EVM things: event topics, function selectors, ABI words and strings.

The same constants the real contracts (tracer.devchain.anvil) and tracer's decoders use, so the
in-memory chain's logs and call inputs read like a node's.
"""

from __future__ import annotations

import hashlib

from eth_hash.auto import keccak


def _topic(signature: str) -> str:
    return "0x" + keccak(signature.encode()).hex()


def _selector(signature: str) -> str:
    return _topic(signature)[:10]


TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
DEPOSIT_TOPIC = _topic("Deposit(bytes32,uint32,uint256)")  # Tornado Cash pools
WITHDRAWAL_TOPIC = _topic("Withdrawal(address,bytes32,address,uint256)")  # Tornado Cash pools
SWAP_TOPIC = _topic("Swap(address,uint256,uint256,uint256,uint256,address)")  # Uniswap V2 pairs
THOR_DEPOSIT_TOPIC = _topic("Deposit(address,address,uint256,string)")  # THORChain router
SEL_TRANSFER = "0xa9059cbb"  # transfer(address,uint256)
SEL_DISPERSE = "0xe63d38ed"  # disperseEther(address[],uint256[])
SEL_DEPOSIT = "0xb214faa5"  # deposit(bytes32)
SEL_WITHDRAW = _selector("withdraw(bytes,bytes32,bytes32,address,address,uint256,uint256)")
SEL_SWAP = _selector("swapExactTokensForETH(uint256,uint256,address[],address,uint256)")
SEL_THOR_DEPOSIT = _selector("deposit(address,address,uint256,string)")
ZERO_HASH = "0x" + "0" * 64
ZERO_ADDRESS = "0x" + "0" * 40
WETH = "0xc02aaa39b223fe8d0a0e5c4f27ead9083c756cc2"  # the pair's other token, as on mainnet


def pad_address(address: str) -> str:
    """An address as a 32-byte topic / ABI word: 0x + 24 zeros + 40 hex."""
    return "0x000000000000000000000000" + address[2:]


def word(n: int) -> str:
    return f"{n:064x}"


def abi_string(text: str) -> str:
    """The tail of an ABI-encoded string: length word, then the UTF-8 bytes padded to 32."""
    raw = text.encode()
    return word(len(raw)) + raw.hex().ljust(((len(raw) + 31) // 32) * 64, "0")


def filler(tid: int, tag: str) -> str:
    # 32 bytes of deterministic filler (a Merkle root, a proof nobody verifies).
    return hashlib.sha3_256(f"{tag}{tid}".encode()).hexdigest()
