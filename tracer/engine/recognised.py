"""Services recognised by what they emit, not only by their labels.

A flagged transfer into a contract that, in the same transaction, emits a known bridge deposit
event (THORChain `Deposit` with a memo, Across `FundsDeposited`, Wormhole `LogMessagePublished`
of its token bridge, Hop, Celer, Synapse, deBridge, Symbiosis, Multichain, Stargate, the native L2
gateways: every protocol of tracer/chains/abi) is a bridge deposit, labelled or not. A Tornado-style
pool is recognised by its `Deposit(bytes32,uint32,uint256)`, a Uniswap V2/V3-style pool by its
`Swap`. The verdict then says "recognised by event" and names the event.

Why the emitter has to be the contract paid: an unrelated recipient in a transaction that also
bridges something (an aggregator's fee wallet) is not the bridge. A labelled bridge keeps the
looser rule (any bridge event of the transaction describes its deposit), since routers of
aggregators call the bridge contract on the depositor's behalf.

Cost: the logs are asked only for the transactions that need them (flagged outflows above the
threshold into unlabelled recipients, or into labelled mixers and bridges), one eth_getLogs per
cluster of nearby blocks filtered by the protocols' topics, plus one filtered by the recipients'
addresses for DEX pool swaps (their topic is everywhere on a real chain). This happens in the
payer's batch, before the recipient could ever be judged a hub: a bridge router that receives from
everyone is recognised before anything is followed into it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tracer.chains import events
from tracer.chains.records import LogRecord
from tracer.domain.transfers import Transfer
from tracer.engine import bridges, mixer_events

RECOGNISED_BY_EVENT = "event"
RECOGNISED_BY_LABEL = "label"
SWAP_TOPICS = events.topics_of("uniswap_v2", "uniswap_v3")
"""Swap and Sync of V2 pairs, Swap of V3 pools: asked only of the recipients' own addresses."""
SERVICE_TOPICS = (mixer_events.DEPOSIT_TOPIC, *bridges.BRIDGE_TOPICS)
"""Pool deposits and bridge deposits: rare enough to ask for a whole block range at once."""


@dataclass
class ServiceLogs:
    """What the deposit transactions of one batch emitted, by transaction."""

    pools_of: dict[str, list[str]] = field(default_factory=dict)  # tx -> pools that logged a Deposit in it
    bridge_exits: dict[str, list[bridges.BridgeExit]] = field(default_factory=dict)  # tx -> destinations
    swaps_of: dict[str, dict[str, str]] = field(default_factory=dict)  # tx -> {DEX pool: swap recipient}

    def add(self, log: LogRecord) -> None:
        rec = events.decode(log)
        if isinstance(rec, events.PoolDeposit):
            pools = self.pools_of.setdefault(rec.tx_hash, [])
            if rec.emitter not in pools:
                pools.append(rec.emitter)
        elif isinstance(rec, events.BridgeSend):
            ex = bridges.from_send(rec)
            if ex is not None:
                self.bridge_exits.setdefault(rec.tx_hash, []).append(ex)
        elif isinstance(rec, events.PairSwap):
            self.swaps_of.setdefault(rec.tx_hash, {})[rec.emitter] = rec.recipient

    def pool_for(self, t: Transfer) -> str | None:
        """The pool a transfer paid into: the recipient itself when it logged the Deposit, else
        (a mixer router forwarding into its pool) the pool that did; None for any other transfer."""
        pools = self.pools_of.get(t.tx_hash)
        if not pools:
            return None
        return t.to_address if t.to_address in pools else pools[0]

    def bridge_for(self, t: Transfer, *, labelled: bool) -> list[bridges.BridgeExit]:
        """The bridge deposits a transfer made: for a labelled bridge every bridge event of its
        transaction, for any other recipient only those of the contract it paid (recognised by event)."""
        found = self.bridge_exits.get(t.tx_hash, [])
        if labelled:
            return found
        return [ex for ex in found if ex.service == t.to_address]

    def swapped_in(self, t: Transfer) -> bool:
        """Whether the recipient is a DEX pool that swapped in the transfer's transaction."""
        return t.to_address in self.swaps_of.get(t.tx_hash, ())

    def swap_recipient(self, t: Transfer) -> str | None:
        return self.swaps_of.get(t.tx_hash, {}).get(t.to_address)


def recognised_evidence(exits: list[bridges.BridgeExit]) -> dict[str, Any]:
    """What a verdict says about a bridge recognised by its events."""
    return {"recognised_by": RECOGNISED_BY_EVENT,
            "events": sorted({f"{ex.protocol} {ex.event}" if ex.event else ex.protocol for ex in exits})}


def dex_evidence(t: Transfer, recipient: str | None) -> dict[str, Any]:
    """A DEX pool recognised by its Swap: the trace stops there (the output went to `recipient`,
    not back to the payer, so no same-transaction swap carries the taint on)."""
    return {"recognised_by": RECOGNISED_BY_EVENT, "events": ["Swap"], "tx_hash": t.tx_hash,
            "swap_recipient": recipient}
