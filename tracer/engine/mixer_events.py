"""Mixer pools' on-chain events (Tornado Cash and its forks, any EVM chain): the Deposit and
Withdrawal logs decoded into PoolEvent, and which transfer amounts can be a pool's denomination.

A pool holds one asset at one denomination. A deposit emits `Deposit(bytes32 indexed commitment,
uint32 leafIndex, uint256 timestamp)`; a withdrawal pays the recipient (minus a relayer's fee) and
emits `Withdrawal(address to, bytes32 nullifierHash, address indexed relayer, uint256 fee)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tracer.chains import events as chain_events
from tracer.chains.records import LogRecord

DEPOSIT_TOPIC = chain_events.topic("tornado", "Deposit(bytes32,uint32,uint256)")
WITHDRAWAL_TOPIC = chain_events.topic("tornado", "Withdrawal(address,bytes32,address,uint256)")
POOL_TOPICS = (DEPOSIT_TOPIC, WITHDRAWAL_TOPIC)


@dataclass(frozen=True, slots=True)
class PoolEvent:
    """A pool's Deposit or Withdrawal, decoded. `gas_price` comes from the transaction, if known."""

    pool: str
    kind: Literal["deposit", "withdrawal"]
    block_number: int
    log_index: int
    block_time: int
    tx_hash: str
    note: str  # commitment (deposit) or nullifier hash (withdrawal)
    leaf_index: int | None = None
    recipient: str = ""
    relayer: str = ""
    fee: int = 0
    gas_price: int | None = None

    @property
    def position(self) -> tuple[int, int]:
        return (self.block_number, self.log_index)


def decode_pool_log(log: LogRecord) -> PoolEvent | None:
    """A Deposit or Withdrawal log of a Tornado-compatible pool (decoded by the chain layer with
    the pool's ABI); None for anything else, or a log that does not fit the ABI (forks that reuse
    a topic with other fields are not pools)."""
    rec = chain_events.decode(log)
    if isinstance(rec, chain_events.PoolDeposit):
        return PoolEvent(rec.emitter, "deposit", rec.block_number, rec.log_index, rec.block_time, rec.tx_hash,
                         rec.commitment, leaf_index=rec.leaf_index)
    if isinstance(rec, chain_events.PoolWithdrawal):
        return PoolEvent(rec.emitter, "withdrawal", rec.block_number, rec.log_index, rec.block_time, rec.tx_hash,
                         rec.nullifier_hash, recipient=rec.to, relayer=rec.relayer, fee=rec.fee)
    return None


def looks_like_denomination(amount: int, decimals: int | None) -> bool:
    """Pool denominations are round: 10^k or 5 x 10^k units (0.1 ETH .. 5,000,000 cDAI). Only
    transfers of such amounts are worth asking the node whether the recipient is a pool."""
    if decimals is None or amount <= 0:
        return False
    # Tenths are the smallest denomination (0.1 ETH, 0.1 WBTC).
    tenth = 10 ** max(0, decimals - 1)
    if amount % tenth:
        return False
    units = amount // tenth
    while units % 10 == 0:
        units //= 10
    return units in (1, 5)
