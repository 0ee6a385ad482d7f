"""Recognise an exchange deposit address by what it does (pure functions, no I/O).

An exchange gives each customer a deposit address; whatever arrives there is soon swept, nearly
all of it, to the exchange's own wallets. Those wallets are labelled, the deposit addresses almost
never are, and reaching one names a single customer account, so the engine calls `detect_deposit`
on every address a trace reaches and stores a positive verdict as a Label (source "behaviour",
category "deposit_address", the sweep transactions as evidence) via `DepositVerdict.label`.

The test (Victor, "Address clustering heuristics for Ethereum", FC 2020, adapted):

- a sweep is an outflow to a labelled wallet of a sweeping service (exchange, OTC desk, payment
  processor, instant swapper) within `sweep_blocks` of the last inflow of the same asset;
- every sweep goes to one entity (an address paying two exchanges is somebody's wallet);
- of each asset swept, at least `min_swept_share` of what customers sent in left by sweeps;
- the native coin, if customers sent any, is swept too: a wallet that keeps its ETH is not a
  deposit address. Tokens that arrived and never moved at all are ignored (airdropped spam);
- inflows from the same entity are not deposits (exchanges top deposit addresses up with gas);
- at most `max_other_recipients` non-service recipients and `max_other_share` of any asset sent
  elsewhere: an address that also pays many ordinary wallets is a distribution wallet.

One deposit swept once is enough: most deposit addresses are used exactly once.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tracer.domain.labels import SWEEP_TARGET_CATEGORIES, Category, Label
from tracer.domain.transfers import NATIVE, Transfer

BEHAVIOUR_SOURCE = "behaviour"


def entity_key(name: str) -> str:
    """Compare entity names across sources ("Binance", "binance ") case- and space-insensitively."""
    return " ".join(name.split()).casefold()


@dataclass(frozen=True)
class DepositParams:
    sweep_blocks: int = 200  # ~40 min on Ethereum; exchanges sweep in minutes to a few hours
    min_swept_share: float = 0.9  # of what arrived, per swept asset (native sweeps lose only gas)
    max_other_recipients: int = 2  # a refund or a fee payment does not make it a wallet
    max_other_share: float = 0.1  # of any asset's outflow allowed to non-service recipients
    categories: frozenset[str] = field(default=SWEEP_TARGET_CATEGORIES)


@dataclass(frozen=True)
class DepositVerdict:
    entity: str
    sweep_tx_hashes: tuple[str, ...]
    swept_share: float  # the lowest swept/received share over the swept assets, capped at 1
    deposits: int = 0  # inflows from outside the entity
    assets: tuple[str, ...] = ()
    deposit_tx_hashes: tuple[str, ...] = ()
    other_recipients: int = 0
    funded_by_entity: bool = False  # the same exchange topped it up with gas: typical of its sweeps

    @property
    def confidence(self) -> float:
        # One deposit swept once is the common case and already strong; repeated sweeps to the
        # same exchange make coincidence unlikely; payments elsewhere make it less clean.
        score = 0.8 + 0.05 * min(len(self.sweep_tx_hashes) - 1, 3)
        return round(max(0.5, score - 0.1 * self.other_recipients), 2)

    def evidence(self) -> dict[str, Any]:
        return {
            "heuristic": "sweeps to one exchange",
            "sweep_tx_hashes": list(self.sweep_tx_hashes[:50]),
            "sweeps": len(self.sweep_tx_hashes),
            "deposit_tx_hashes": list(self.deposit_tx_hashes[:50]),
            "deposits": self.deposits,
            "swept_share": round(self.swept_share, 4),
            "assets": list(self.assets),
            "other_recipients": self.other_recipients,
            "funded_by_entity": self.funded_by_entity,
        }

    def label(self, chain: str, address: str, *, created_by: str | None = None) -> Label:
        return Label(
            chain=chain, address=address, entity=self.entity, category=Category.DEPOSIT_ADDRESS,
            source=BEHAVIOUR_SOURCE, confidence=self.confidence, evidence=self.evidence(),
            created_by=created_by,
        )


def _sweep_entity(labels: Sequence[Label], categories: frozenset[str]) -> str | None:
    # lookup() returns the strongest label first; a deposit address is not a sweep target itself.
    for lb in labels:
        if lb.category in categories and lb.category != Category.DEPOSIT_ADDRESS:
            return lb.entity
    return None


def detect_deposit(
    address: str,
    transfers: Sequence[Transfer],
    labels: Mapping[str, Sequence[Label]],
    params: DepositParams | None = None,
) -> DepositVerdict | None:
    """Is `address` a deposit address of one exchange? `transfers` are its transfers in both
    directions (any order); `labels` maps counterparties to their labels (others are ignored)."""
    p = params or DepositParams()
    me = address.lower() if address[:2].lower() == "0x" else address
    targets: dict[str, str] = {}  # counterparty -> entity it belongs to, for sweep targets only
    for counterparty, lbs in labels.items():
        entity = _sweep_entity(lbs, p.categories)
        if entity is not None:
            targets[counterparty] = entity

    received: dict[str, int] = defaultdict(int)
    sent: dict[str, int] = defaultdict(int)
    other_sent: dict[str, int] = defaultdict(int)
    swept: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))  # entity key -> asset -> amount
    names: dict[str, str] = {}
    last_in: dict[str, int] = {}
    sweeps: dict[str, list[str]] = defaultdict(list)
    deposits: list[str] = []
    funders: set[str] = set()
    others: set[str] = set()

    for t in sorted(transfers, key=lambda t: t.order):
        incoming = t.to_address == me and t.from_address != me
        outgoing = t.from_address == me and t.to_address != me
        if incoming:
            if t.from_address in targets:
                funders.add(entity_key(targets[t.from_address]))  # gas top-up or a withdrawal
                continue
            received[t.asset] += t.amount
            last_in[t.asset] = t.block_number
            deposits.append(t.tx_hash)
        elif outgoing:
            sent[t.asset] += t.amount
            entity = targets.get(t.to_address)
            arrived = last_in.get(t.asset)
            if entity is not None:
                if arrived is not None and 0 <= t.block_number - arrived <= p.sweep_blocks:
                    key = entity_key(entity)
                    names.setdefault(key, entity)
                    swept[key][t.asset] += t.amount
                    if t.tx_hash not in sweeps[key]:
                        sweeps[key].append(t.tx_hash)
                # A late payment to an exchange is neither a sweep nor a payment elsewhere.
            else:
                others.add(t.to_address)
                other_sent[t.asset] += t.amount

    if len(swept) != 1:
        return None  # never swept, or swept to two services: a customer's own wallet
    (key, by_asset), = swept.items()
    if len(others) > p.max_other_recipients:
        return None
    for asset, amount in sent.items():
        if other_sent[asset] > p.max_other_share * amount:
            return None
    shares: list[float] = []
    for asset, amount in received.items():
        out = by_asset.get(asset, 0)
        if out == 0:
            if asset != NATIVE and sent[asset] == 0:
                continue  # a token that arrived and never moved: spam airdrops land everywhere
            return None  # the coin stayed (or left elsewhere): a wallet that keeps funds
        shares.append(min(1.0, out / amount))
    if not shares or min(shares) < p.min_swept_share:
        return None
    return DepositVerdict(
        entity=names[key],
        sweep_tx_hashes=tuple(sweeps[key]),
        swept_share=min(shares),
        deposits=len(deposits),
        assets=tuple(sorted(by_asset)),
        deposit_tx_hashes=tuple(dict.fromkeys(deposits)),
        other_recipients=len(others),
        funded_by_entity=key in funders,
    )
