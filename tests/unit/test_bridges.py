"""Bridges: destinations decoded from each protocol's deposit event, and a trace that reports a
THORChain router deposit as a cross-chain exit with the memo's destination.

This file holds the tests that need nothing outside the process; those over a devchain, Postgres
or a subprocess are in tests/integration/test_bridges.py.
"""

from __future__ import annotations

import pytest
from eth_hash.auto import keccak

from tracer.chains.evm import LogRecord
from tracer.engine import bridges

TX = "0x" + "ab" * 32
DEPOSITOR = "0x" + "11" * 20
RECIPIENT = "0x" + "22" * 20




def word(n: int) -> str:
    return f"{n:064x}"


def pad(address: str) -> str:
    return "0" * 24 + address[2:]


def dynamic(raw: bytes) -> str:
    return word(len(raw)) + raw.hex().ljust(((len(raw) + 31) // 32) * 64, "0")


def log(topics: list[str], data: str) -> LogRecord:
    return LogRecord(block_number=1, block_time=0, tx_hash=TX, tx_index=0, log_index=0, address="0x" + "cc" * 20,
                     topics=tuple(topics), data="0x" + data)


@pytest.mark.parametrize(("name", "signature"), [
    ("THORCHAIN_DEPOSIT", "Deposit(address,address,uint256,string)"),
    ("ACROSS_V3_FUNDS_DEPOSITED", "V3FundsDeposited(address,address,uint256,uint256,uint256,uint32,uint32,uint32,"
                                  "uint32,address,address,address,bytes)"),
    ("ACROSS_FUNDS_DEPOSITED", "FundsDeposited(bytes32,bytes32,uint256,uint256,uint256,uint256,uint32,uint32,uint32,"
                               "bytes32,bytes32,bytes32,bytes)"),
    ("ACROSS_V2_FUNDS_DEPOSITED", "FundsDeposited(uint256,uint256,uint256,int64,uint32,uint32,address,address,"
                                  "address,bytes)"),
    ("HOP_TRANSFER_SENT_TO_L2", "TransferSentToL2(uint256,address,uint256,uint256,uint256,address,uint256)"),
    ("HOP_TRANSFER_SENT", "TransferSent(bytes32,uint256,address,uint256,bytes32,uint256,uint256,uint256,uint256)"),
    ("WORMHOLE_MESSAGE", "LogMessagePublished(address,uint64,uint32,bytes,uint8)"),
    ("STARGATE_OFT_SENT", "OFTSent(bytes32,uint32,address,uint256,uint256)"),
])
def test_topics_are_the_keccak_of_the_signatures(name: str, signature: str) -> None:
    assert getattr(bridges, name) == "0x" + keccak(signature.encode()).hex()


@pytest.mark.parametrize(("memo", "chain", "address", "asset"), [
    ("=:BTC.BTC:bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh", "bitcoin", "bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh",
     "BTC.BTC"),
    ("SWAP:ETH.ETH:0x2222222222222222222222222222222222222222:0/1/0", "ethereum",
     "0x2222222222222222222222222222222222222222", "ETH.ETH"),
    ("s:AVAX.USDC-0xB97EF9EF8734C71904D8002F8B6BC66DD9C48A6E:0xabc:1e6:t:30", "avalanche", "0xabc",
     "AVAX.USDC-0XB97EF9EF8734C71904D8002F8B6BC66DD9C48A6E"),
    ("=:b:bc1qaddr", "bitcoin", "bc1qaddr", "BTC.BTC"),
    ("=:ETH~ETH:thor1xyz", "thorchain", "thor1xyz", "ETH~ETH"),
    ("+:ETH.ETH:thor1pair", "thorchain", "thor1pair", "ETH.ETH"),
])
def test_thorchain_memos(memo: str, chain: str, address: str, asset: str) -> None:
    ex = bridges.thorchain_memo(TX, memo, 5)
    assert (ex.dest_chain, ex.dest_address, ex.dest_asset, ex.memo, ex.amount) == (chain, address, asset, memo, 5)


def test_thorchain_memo_without_destination() -> None:
    assert bridges.thorchain_memo(TX, "=:BTC.BTC").dest_address is None
    other = bridges.thorchain_memo(TX, "WITHDRAW:BTC.BTC:10000")
    assert other.dest_chain is None and other.note == "memo names no destination"


def test_thorchain_router_deposit_log() -> None:
    memo = "=:BTC.BTC:bc1qzzz"
    data = word(3 * 10**18) + word(64) + dynamic(memo.encode())
    ex = bridges.decode(log([bridges.THORCHAIN_DEPOSIT, pad(RECIPIENT), word(0)], data))
    assert ex is not None
    assert (ex.protocol, ex.dest_chain, ex.dest_address, ex.amount, ex.tx_hash) == (
        "THORChain", "bitcoin", "bc1qzzz", 3 * 10**18, TX)


def test_across_events() -> None:
    v3 = "".join([pad("0x" + "aa" * 20), pad("0x" + "bb" * 20), word(10**18), word(99 * 10**16), word(1), word(2),
                  word(3), pad(RECIPIENT), pad("0x" + "00" * 20), word(10 * 32), word(0)])
    ex = bridges.decode(log([bridges.ACROSS_V3_FUNDS_DEPOSITED, word(42161), word(7), pad(DEPOSITOR)], v3))
    assert ex is not None and (ex.protocol, ex.dest_chain, ex.dest_address, ex.amount) == (
        "Across", "arbitrum", RECIPIENT, 10**18)
    b32 = v3  # bytes32 fields: addresses left-padded the same way
    ex = bridges.decode(log([bridges.ACROSS_FUNDS_DEPOSITED, word(8453), word(7), pad(DEPOSITOR)], b32))
    assert ex is not None and (ex.dest_chain, ex.dest_address) == ("base", RECIPIENT)
    key = "ff" * 32
    other = "".join([word(1)] * 7) + key + word(0) + word(10 * 32) + word(0)
    ex = bridges.decode(log([bridges.ACROSS_FUNDS_DEPOSITED, word(99999), word(7), pad(DEPOSITOR)], other))
    assert ex is not None and ex.dest_chain == "evm:99999" and ex.dest_address == "0x" + key  # not an address
    ex = bridges.decode(log([bridges.ACROSS_FUNDS_DEPOSITED, word(bridges.ACROSS_SOLANA), word(7), pad(DEPOSITOR)],
                            other))
    assert ex is not None and ex.dest_chain == "solana"
    assert ex.dest_address == "JEKNVnkbo3jma5nREBBJCDoXFVeKkD56V3xKrvRmWxFG"  # base58 of 32 x 0xff
    v2 = "".join([word(5 * 10**18), word(1), word(0), word(1), pad("0x" + "aa" * 20), pad(RECIPIENT), word(7 * 32),
                  word(0)])
    ex = bridges.decode(log([bridges.ACROSS_V2_FUNDS_DEPOSITED, word(10), word(3), pad(DEPOSITOR)], v2))
    assert ex is not None and (ex.dest_chain, ex.dest_address, ex.amount) == ("optimism", RECIPIENT, 5 * 10**18)


def test_hop_events() -> None:
    ex = bridges.decode(log([bridges.HOP_TRANSFER_SENT_TO_L2, word(137), pad(RECIPIENT), pad(DEPOSITOR)],
                            word(10**18) + word(0) + word(0) + word(0)))
    assert ex is not None and (ex.protocol, ex.dest_chain, ex.dest_address, ex.amount) == (
        "Hop", "polygon", RECIPIENT, 10**18)
    ex = bridges.decode(log([bridges.HOP_TRANSFER_SENT, "0x" + "12" * 32, word(1), pad(RECIPIENT)],
                            word(2 * 10**18) + word(0) * 5))
    assert ex is not None and (ex.dest_chain, ex.dest_address, ex.amount) == ("ethereum", RECIPIENT, 2 * 10**18)


def test_wormhole_token_transfer() -> None:
    payload = bytes([1]) + (12345).to_bytes(32, "big") + bytes(32) + (2).to_bytes(2, "big")
    payload += bytes.fromhex(pad(RECIPIENT)) + (23).to_bytes(2, "big") + bytes(32)
    data = word(9) + word(0) + word(4 * 32) + word(1) + dynamic(payload)
    ex = bridges.decode(log([bridges.WORMHOLE_MESSAGE, pad(DEPOSITOR)], data))
    assert ex is not None and (ex.protocol, ex.dest_chain, ex.dest_address) == ("Wormhole", "arbitrum", RECIPIENT)
    # To Solana: the 32-byte recipient in base58.
    sol = payload[:67] + bytes(range(1, 33)) + (1).to_bytes(2, "big") + bytes(32)
    ex = bridges.decode(log([bridges.WORMHOLE_MESSAGE, pad(DEPOSITOR)],
                            word(9) + word(0) + word(4 * 32) + word(1) + dynamic(sol)))
    assert ex is not None and ex.dest_chain == "solana" and ex.dest_address is not None
    assert not ex.evm_destination and len(ex.dest_address) >= 43
    # Attestations and other apps' messages move no value.
    attest = bytes([2]) + bytes(100)
    assert bridges.decode(log([bridges.WORMHOLE_MESSAGE, pad(DEPOSITOR)],
                              word(9) + word(0) + word(4 * 32) + word(1) + dynamic(attest))) is None


def test_stargate_and_label_only_bridges() -> None:
    ex = bridges.decode(log([bridges.STARGATE_OFT_SENT, "0x" + "33" * 32, pad(DEPOSITOR)],
                            word(30110) + word(10**18) + word(99 * 10**16)))
    assert ex is not None and (ex.dest_chain, ex.dest_address) == ("arbitrum", None) and ex.note
    avax = bridges.from_label("Avalanche Bridge", TX, DEPOSITOR)
    assert (avax.dest_chain, avax.dest_address) == ("avalanche", DEPOSITOR)
    unknown = bridges.from_label("Some Bridge", TX, DEPOSITOR)
    assert unknown.dest_chain is None and unknown.note


def test_garbage_is_no_bridge() -> None:
    assert bridges.decode(log([bridges.THORCHAIN_DEPOSIT], "zz")) is None
    assert bridges.decode(log(["0x" + "00" * 32], word(1))) is None
    assert bridges.decode(log([], "")) is None


def test_maya_memos_use_mayas_chain_codes() -> None:
    # Maya's router emits THORChain's events; its label says whose it is, its memo codes differ.
    thor = bridges.thorchain_memo(TX, "=:ARB.ETH:0x" + "22" * 20, 7)
    assert (thor.protocol, thor.dest_chain) == ("THORChain", "arb")  # no ARB chain on THORChain
    maya = bridges.as_maya(thor)
    assert (maya.protocol, maya.dest_chain, maya.dest_address, maya.amount) == (
        "Maya Protocol", "arbitrum", "0x" + "22" * 20, 7)
    assert bridges.thorchain_memo(TX, "=:MAYA.CACAO:maya1xyz", maya=True).dest_chain == "mayachain"
