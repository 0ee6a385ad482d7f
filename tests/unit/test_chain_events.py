"""Every protocol's events, ABI-encoded with eth_abi as a contract would emit them, decoded into the
typed records the engine reads: destination chain (in tracer's names, from each protocol's own
numbering) and recipient where the event carries them, and what it says when it does not."""

from __future__ import annotations

from typing import Any

import pytest
from eth_abi import encode
from eth_hash.auto import keccak

from tracer.chains import events, networks
from tracer.chains.evm import LogRecord

TX = "0x" + "ab" * 32
POOL = "0x" + "cc" * 20
SENDER = "0x" + "11" * 20
TO = "0x" + "22" * 20
TOKEN = "0x" + "33" * 20


def word(value: Any, typ: str = "uint256") -> str:
    return "0x" + encode([typ], [value]).hex()


def log(signature: str, indexed: list[str], types: list[str], values: list[Any], emitter: str = POOL) -> LogRecord:
    topic0 = "0x" + keccak(signature.encode()).hex()
    return LogRecord(block_number=7, block_time=70, tx_hash=TX, tx_index=0, log_index=3, address=emitter,
                     topics=(topic0, *indexed), data="0x" + encode(types, values).hex())


def test_every_abi_file_is_loaded_and_every_topic_is_its_signature() -> None:
    files = {"erc20", "tornado", "uniswap_v2", "uniswap_v3", "thorchain", "across", "wormhole", "stargate", "hop",
             "celer", "synapse", "debridge", "symbiosis", "multichain", "l2_gateways"}
    for protocol in files:
        assert events.topics_of(protocol), protocol
    assert events.topic("erc20", "Transfer(address,address,uint256)") == (
        "0x" + keccak(b"Transfer(address,address,uint256)").hex())


@pytest.mark.parametrize(("record", "want"), [
    (log("Send(bytes32,address,address,address,uint256,uint64,uint64,uint32)", [],
         ["bytes32", "address", "address", "address", "uint256", "uint64", "uint64", "uint32"],
         [b"\1" * 32, SENDER, TO, TOKEN, 5, 42161, 9, 5000]), ("Celer cBridge", "arbitrum", TO, 5)),
    (log("TokenDeposit(address,uint256,address,uint256)", [word(TO, "address")], ["uint256", "address", "uint256"],
         [56, TOKEN, 6]), ("Synapse", "bsc", TO, 6)),
    (log("TokenRedeemV2(bytes32,uint256,address,uint256)", [word(b"\7" * 32, "bytes32")],
         ["uint256", "address", "uint256"], [1, TOKEN, 7]), ("Synapse", "ethereum", "0x" + "07" * 32, 7)),
    (log("SynthesizeRequest(bytes32,address,uint256,address,address,uint256,address)",
         [word(SENDER, "address"), word(137), word(SENDER, "address")], ["bytes32", "address", "uint256", "address"],
         [b"\2" * 32, TO, 8, TOKEN]), ("Symbiosis", "polygon", TO, 8)),
    (log("LogAnySwapOut(address,address,address,uint256,uint256,uint256)",
         [word(TOKEN, "address"), word(SENDER, "address"), word(TO, "address")], ["uint256", "uint256", "uint256"],
         [9, 1, 250]), ("Multichain", "fantom", TO, 9)),
    (log("LogAnySwapOut(address,address,string,uint256,uint256,uint256)",
         [word(TOKEN, "address"), word(SENDER, "address")], ["string", "uint256", "uint256", "uint256"],
         ["TXyzTronAddress", 10, 1, 728126428]), ("Multichain", "evm:728126428", "TXyzTronAddress", 10)),
    (log("TransferSentToL2(uint256,address,uint256,uint256,uint256,address,uint256)",
         [word(10), word(TO, "address"), word(SENDER, "address")], ["uint256"] * 4, [11, 0, 0, 0]),
     ("Hop", "optimism", TO, 11)),
    (log("OFTSent(bytes32,uint32,address,uint256,uint256)", [word(b"\3" * 32, "bytes32"), word(SENDER, "address")],
         ["uint32", "uint256", "uint256"], [30184, 12, 12]), ("Stargate", "base", None, 12)),
    (log("Swap(uint16,uint256,address,uint256,uint256,uint256,uint256,uint256)", [],
         ["uint16", "uint256", "address", "uint256", "uint256", "uint256", "uint256", "uint256"],
         [110, 1, SENDER, 13, 0, 0, 0, 0]), ("Stargate", "arbitrum", None, None)),
    (log("ETHDepositInitiated(address,address,uint256,bytes)", [word(SENDER, "address"), word(TO, "address")],
         ["uint256", "bytes"], [14, b""], emitter="0x99c9fc46f92e8a1c0dec1b1747d010903e884be1"),
     ("L2 gateway", "optimism", TO, 14)),
    (log("LockedEther(address,address,uint256)", [word(SENDER, "address"), word(TO, "address")], ["uint256"], [15]),
     ("L2 gateway", None, TO, 15)),
])
def test_bridge_deposits_decode_to_destination_and_recipient(record: LogRecord, want: tuple[Any, ...]) -> None:
    rec = events.decode(record)
    assert isinstance(rec, events.BridgeSend), rec
    assert (rec.protocol, rec.dest_chain, rec.recipient, rec.amount) == want
    assert (rec.tx_hash, rec.emitter, rec.block_number) == (TX, record.address, 7)
    if rec.recipient is None or rec.dest_chain is None:
        assert rec.note  # says what the event does not carry


def test_debridge_order_names_chain_and_receiver() -> None:
    order = (1, bytes.fromhex(SENDER[2:]), 1, b"", 10**18, 56, bytes.fromhex(TOKEN[2:]), 990, bytes.fromhex(TO[2:]),
             b"", b"", b"", b"", b"")
    order_type = "(uint64,bytes,uint256,bytes,uint256,uint256,bytes,uint256,bytes,bytes,bytes,bytes,bytes,bytes)"
    sig = f"CreatedOrder({order_type},bytes32,bytes,uint256,uint256,uint32,bytes)"
    rec = events.decode(log(sig, [], [order_type, "bytes32", "bytes", "uint256", "uint256", "uint32", "bytes"],
                            [order, b"\4" * 32, b"", 0, 0, 0, b""]))
    assert isinstance(rec, events.BridgeSend)
    assert (rec.protocol, rec.dest_chain, rec.recipient, rec.amount) == ("deBridge", "bsc", TO, 10**18)
    solana = (*order[:5], networks.DEBRIDGE_SOLANA, *order[6:8], bytes(range(32)), *order[9:])
    rec = events.decode(log(sig, [], [order_type, "bytes32", "bytes", "uint256", "uint256", "uint32", "bytes"],
                            [solana, b"\4" * 32, b"", 0, 0, 0, b""]))
    assert isinstance(rec, events.BridgeSend) and rec.dest_chain == "solana" and not rec.recipient.startswith("0x")


def test_payouts_name_the_deposit_they_pay() -> None:
    info = (TO, b"", 99, 0)
    rec = events.decode(log(
        "FilledV3Relay(address,address,uint256,uint256,uint256,uint256,uint32,uint32,uint32,address,address,address,"
        "address,bytes,(address,bytes,uint256,uint8))", [word(1), word(17), word(SENDER, "address")],
        ["address", "address", "uint256", "uint256", "uint256", "uint32", "uint32", "address", "address", "address",
         "bytes", "(address,bytes,uint256,uint8)"],
        [TOKEN, TOKEN, 100, 99, 10, 0, 0, SENDER, SENDER, TO, b"", info]))
    assert isinstance(rec, events.BridgePayout)
    assert (rec.protocol, rec.recipient, rec.amount, rec.origin_chain, rec.deposit_id) == ("Across", TO, 99,
                                                                                          "ethereum", 17)
    rec = events.decode(log("TransferRedeemed(uint16,bytes32,uint64)",
                            [word(2, "uint16"), word(b"\0" * 12 + bytes.fromhex(POOL[2:]), "bytes32"),
                             word(5, "uint64")], [], []))
    assert isinstance(rec, events.BridgePayout)
    assert (rec.protocol, rec.recipient, rec.origin_chain, rec.deposit_id) == ("Wormhole", None, "ethereum", 5)
    assert rec.origin_emitter == "0x" + "00" * 12 + POOL[2:]
    rec = events.decode(log("TransferOut(address,address,address,uint256,string)",
                            [word(SENDER, "address"), word(TO, "address")], ["address", "uint256", "string"],
                            ["0x" + "00" * 20, 5, "OUT:" + "AB" * 32]))
    assert isinstance(rec, events.BridgePayout) and (rec.recipient, rec.memo) == (TO, "OUT:" + "AB" * 32)


def test_pools_and_pairs() -> None:
    rec = events.decode(log("Withdrawal(address,bytes32,address,uint256)", [word(SENDER, "address")],
                            ["address", "bytes32", "uint256"], [TO, b"\5" * 32, 3]))
    assert isinstance(rec, events.PoolWithdrawal) and (rec.to, rec.relayer, rec.fee) == (TO, SENDER, 3)
    rec = events.decode(log("Swap(address,uint256,uint256,uint256,uint256,address)",
                            [word(SENDER, "address"), word(TO, "address")], ["uint256"] * 4, [1, 0, 0, 2]))
    assert isinstance(rec, events.PairSwap) and (rec.protocol, rec.sender, rec.recipient) == ("uniswap_v2", SENDER, TO)
    rec = events.decode(log("Swap(address,address,int256,int256,uint160,uint128,int24)",
                            [word(SENDER, "address"), word(TO, "address")],
                            ["int256", "int256", "uint160", "uint128", "int24"], [-5, 7, 2**96, 10, -3]))
    assert isinstance(rec, events.PairSwap) and rec.protocol == "uniswap_v3"


def test_logs_that_do_not_fit_their_abi_are_no_match() -> None:
    good = log("TokenDeposit(address,uint256,address,uint256)", [word(TO, "address")],
               ["uint256", "address", "uint256"], [56, TOKEN, 6])
    assert events.decode(good) is not None
    for broken in (
        LogRecord(7, 70, TX, 0, 3, POOL, good.topics, good.data[:-64]),  # a word short
        LogRecord(7, 70, TX, 0, 3, POOL, good.topics[:1], good.data),  # the indexed recipient missing
        LogRecord(7, 70, TX, 0, 3, POOL, (good.topics[0], "0x" + "ff" * 32), good.data),  # not an address
        LogRecord(7, 70, TX, 0, 3, POOL, good.topics, "0xzz"),
    ):
        assert events.decode(broken) is None


def test_one_registry_names_every_numbering() -> None:
    assert networks.chain_name("evm", 56) == "bsc" and networks.chain_name("evm", 999_999) == "evm:999999"
    assert networks.chain_name("wormhole", 4) == "bsc" and networks.wormhole_id("bsc") == 4
    assert networks.chain_name("layerzero", 102) == networks.chain_name("layerzero", 30102) == "bsc"
    assert networks.chain_name("thorchain", "BSC") == "bsc" and networks.chain_name("maya", "ARB") == "arbitrum"
    assert networks.chain_name("evm", networks.ACROSS_SOLANA) == "solana"
    assert networks.evm_chain_id("arbitrum") == 42161
