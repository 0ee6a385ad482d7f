"""The records of a devchain scenario: its transactions and blocks, tokens, labels, pools, and the
ground-truth records saying where the flagged money ended.

Plain dataclasses with no behaviour beyond `ScenarioTx.transfers()`; the generator (generator.py),
the codec (history.py) and the served chain (tracer.devchain.chain) all read them.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from tracer.domain.transfers import NATIVE

__all__ = [
    "ETHER", "GWEI", "KINDS", "KIND_BATCH", "KIND_BRIDGE", "KIND_MIXER", "KIND_NATIVE", "KIND_SWAP", "KIND_TOKEN",
    "KIND_WITHDRAW", "USD6", "BridgeTruth", "ExitTruth", "HubTruth", "MixerLinkTruth", "MixerPool", "MixerTruth",
    "OfframpKind", "OfframpTruth", "ScenarioBlock", "ScenarioLabel", "ScenarioTx", "SwapTruth", "Token", "Truth",
    "gc_paused",
]

ETHER = 10**18
GWEI = 10**9
USD6 = 10**6

# Kinds of ScenarioTx. Plain ints rather than an Enum: a million of them are compared in hot loops.
KIND_NATIVE = 0  # sender -> to, `value` wei as the transaction value
KIND_TOKEN = 1  # sender calls token.transfer(to, value): one Transfer log, tx.value = 0
KIND_BATCH = 2  # sender calls batch contract `to` with `value` wei; it forwards `payouts` in internal calls
KIND_MIXER = 3  # sender calls mixer pool `to` with `value` wei (the pool's denomination): a Deposit log
# Kinds below only appear when a scenario turns its mixer/swap/bridge knobs on.
KIND_WITHDRAW = 4  # sender (relayer or recipient) calls pool `to`; it pays `payouts` (recipient, then relayer fee)
KIND_SWAP = 5  # sender pays `value` of `token` into DEX pair `to`; it pays `payouts` in native (a V2 Swap log)
KIND_BRIDGE = 6  # sender pays `value` wei into bridge router `to` with `memo`; it forwards `payouts` to the vault
# All of them in the order of their values: the modules that dispatch on every kind (builder, the served
# chain, the Anvil plan) take them in one name and unpack them into module globals, as fast as these.
KINDS = (KIND_NATIVE, KIND_TOKEN, KIND_BATCH, KIND_MIXER, KIND_WITHDRAW, KIND_SWAP, KIND_BRIDGE)


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building millions of acyclic objects.

    Every few thousand allocations the collector walks all live objects; with a million
    transactions that walk, not the work itself, takes most of the time. Afterwards the survivors
    are frozen (moved out of the collector's sight): a server holding a million-transfer chain
    would otherwise rescan all of it during requests. They are acyclic, so reference counting
    still frees them when dropped.
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was:
            gc.enable()


OfframpKind = Literal["deposit_address", "hot_wallet"]


@dataclass(slots=True)
class ScenarioTx:
    """One transaction, in the compact form the generator writes and the chain expands.

    `to` is the recipient of the value for KIND_NATIVE and KIND_TOKEN (for tokens the chain's
    transaction goes to `token`), the batch contract for KIND_BATCH, the pool for KIND_MIXER and
    KIND_WITHDRAW, the DEX pair for KIND_SWAP and the bridge router for KIND_BRIDGE. Contracts pay
    `payouts` out of their own balance in internal calls. A failed transaction (`ok=False`) moves
    nothing and emits no log.
    """

    kind: int
    sender: str
    to: str
    value: int
    token: str = ""
    payouts: tuple[tuple[str, int], ...] = ()
    ok: bool = True
    gas_price: int = 20 * GWEI
    memo: str = ""  # KIND_BRIDGE: the THORChain-style memo naming the destination

    def transfers(self) -> list[tuple[str, str, str, int]]:
        """(from, to, asset, amount) value movements in execution order; empty for a failed tx."""
        if not self.ok:
            return []
        kind = self.kind
        if kind == KIND_TOKEN:
            return [(self.sender, self.to, self.token, self.value)] if self.value else []
        if kind == KIND_WITHDRAW:
            return [(self.to, who, NATIVE, amount) for who, amount in self.payouts if amount]
        if kind == KIND_SWAP:
            moved = [(self.sender, self.to, self.token, self.value)] if self.value else []
        else:
            moved = [(self.sender, self.to, NATIVE, self.value)] if self.value else []
        if kind == KIND_BATCH or kind >= KIND_SWAP:
            moved.extend((self.to, who, NATIVE, amount) for who, amount in self.payouts if amount)
        return moved


@dataclass(slots=True)
class ScenarioBlock:
    number: int
    timestamp: int
    txs: list[ScenarioTx]


@dataclass(frozen=True, slots=True)
class Token:
    address: str
    symbol: str
    decimals: int


@dataclass(frozen=True, slots=True)
class ScenarioLabel:
    address: str
    entity: str
    category: str  # exchange | mixer | dex | bridge | token | victim | ...


@dataclass(frozen=True, slots=True)
class MixerPool:
    address: str
    asset: str
    denomination: int


@dataclass(frozen=True, slots=True)
class OfframpTruth:
    address: str
    entity: str
    asset: str
    amount: int  # flagged raw units received here (haircut model)
    kind: OfframpKind


@dataclass(frozen=True, slots=True)
class MixerTruth:
    address: str  # the pool
    asset: str
    amount: int
    deposits: int  # deposits that carried flagged money


@dataclass(frozen=True, slots=True)
class HubTruth:
    address: str
    asset: str
    amount: int


@dataclass(frozen=True, slots=True)
class ExitTruth:
    """Flagged money that stopped at some other labelled service or terminal (bridges in replays)."""

    address: str
    entity: str
    category: str
    asset: str
    amount: int


@dataclass(frozen=True, slots=True)
class MixerLinkTruth:
    """One laundering note through a mixer pool: who deposited it and who withdrew it.

    `clue` names what the withdrawal gives away (address | gas_price | counterparty |
    multi_denomination); `flagged` is the flagged part of the deposit (haircut), so a certain link
    carries min(flagged, denomination - fee) to the recipient.
    """

    pool: str
    denomination: int
    depositor: str
    deposit_block: int
    recipient: str
    withdrawal_block: int
    relayer: str  # "" when the recipient sent the withdrawal itself
    fee: int
    clue: str
    flagged: int


@dataclass(frozen=True, slots=True)
class SwapTruth:
    """A laundering swap on the DEX pair: the wallet pays `asset_in` and gets `asset_out` back."""

    wallet: str
    block: int
    asset_in: str
    amount_in: int
    flagged_in: int
    asset_out: str
    amount_out: int
    flagged_out: int  # flagged_in converted at the swap's own rate


@dataclass(frozen=True, slots=True)
class BridgeTruth:
    """A laundering deposit into a bridge router and where its memo sends the money."""

    router: str
    sender: str
    block: int
    asset: str
    amount: int
    flagged: int
    memo: str
    dest_chain: str
    dest_address: str


@dataclass(slots=True)
class Truth:
    offramps: list[OfframpTruth] = field(default_factory=list)
    noise_offramps: list[str] = field(default_factory=list)  # unrelated customers' deposit addresses
    hubs: list[str] = field(default_factory=list)  # unlabelled hubs where flagged money stopped
    mixer_deposits: list[MixerTruth] = field(default_factory=list)
    stolen: dict[str, int] = field(default_factory=dict)
    hub_receipts: list[HubTruth] = field(default_factory=list)
    other_exits: list[ExitTruth] = field(default_factory=list)
    deposit_addresses: dict[str, str] = field(default_factory=dict)  # every deposit address -> exchange
    launderers: list[str] = field(default_factory=list)  # intermediate wallets of the laundering
    # With the mixer/swap/bridge knobs on: what following money through them should find. Kept apart
    # from `offramps` (which stop at every service), so uncertain links never blur those amounts.
    mixer_links: list[MixerLinkTruth] = field(default_factory=list)
    swaps: list[SwapTruth] = field(default_factory=list)
    bridges: list[BridgeTruth] = field(default_factory=list)
    through_offramps: list[OfframpTruth] = field(default_factory=list)  # reached only through a mixer or swap

    def stopped_total(self, asset: str) -> int:
        """Flagged amount of `asset` that reached any stop (off-ramps, mixers, hubs, other exits)."""
        parts: list[Iterable[Any]] = [self.offramps, self.mixer_deposits, self.hub_receipts, self.other_exits]
        return sum(item.amount for part in parts for item in part if item.asset == asset)
