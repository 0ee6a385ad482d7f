"""Bitcoin (UTXO) heuristics: change outputs, CoinJoins, links through a CoinJoin, input clustering.

Pure functions over transactions the chain layer decoded (tracer.chains.utxo_records.UtxoTx); no
I/O. Amounts are satoshis. Every answer says why (`reasons`): none of these is proof, they are the
published heuristics an investigator applies by hand (Meiklejohn et al. 2013 "A fistful of
bitcoins"; Androulaki et al. 2013; Kappos et al. 2022 "How to peel a million"; the Wasabi,
Whirlpool and JoinMarket protocol documents for CoinJoins).

- `detect_change` (utxo_change): which output of an ordinary payment goes back to the payer, so a peel chain is
  followed along its change instead of fanning out over every payment.
- `detect_coinjoin` (coinjoins): Wasabi (1.x: ~0.1 BTC base denomination, many inputs, coordinator fee; 2.x:
  many standard denominations), Whirlpool (5 inputs, 5 equal outputs of a pool denomination) and
  JoinMarket (n >= 3 equal outputs plus n - 1 or n change outputs).
- `coinjoin_links` (coinjoins): where a tainted participant's money could have gone: its own change output
  (its inputs minus the denominations it bought minus fees) is nearly certain; each equal output
  is one of `anonymity_set` indistinguishable coins.
- `Clusters`: common-input-ownership (all inputs of one transaction belong to one wallet), never
  over CoinJoins, whose inputs belong to many.
- `plan`, `enter_coinjoin`, `merge_inflows`: what the worker does with them for one batch
  (tracer.engine.step.follow_utxo): a wallet's outflows into a CoinJoin become one entry, reported like a
  mixer deposit, whose links at least `policy.min_link_confidence` sure are followed with the
  output's flagged share times the confidence; an ordinary transaction's change output is marked
  on its hop; a multi-party output is received whole. Every decision reads the transactions and
  the wallet's own history only, never what else shares the batch.

CoinJoins are not written to the mixer-links store (`mixer_deposits`/`mixer_links`): its records
and the API schema behind it describe a pool contract and its withdrawals; the hops and the
depositor's verdict evidence carry the CoinJoin instead.
"""


from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from tracer.chains.utxo_records import UtxoTx
from tracer.domain.transfers import Movement
from tracer.engine.coinjoins import (
    CHANGE_LINK_CONFIDENCE,
    CHANGE_LINK_OTHER_TYPE,
    CHANGE_LINK_SAME_TYPE,
    JOINMARKET_MIN_EQUAL,
    WABISABI_FEE_RATE,
    WASABI_FEE_RATE,
    WHIRLPOOL_DENOMINATIONS,
    WHIRLPOOL_SIZE,
    CoinJoinInfo,
    CoinJoinLink,
    coinjoin_links,
    detect_coinjoin,
    participant_inputs,
)
from tracer.engine.utxo_change import SATS_PER_BTC, ChangeGuess, detect_change, fmt_btc, is_round, script_type

__all__ = [
    "CHANGE_LINK_CONFIDENCE", "CHANGE_LINK_OTHER_TYPE", "CHANGE_LINK_SAME_TYPE", "JOINMARKET_MIN_EQUAL",
    "SATS_PER_BTC", "WABISABI_FEE_RATE", "WASABI_FEE_RATE", "WHIRLPOOL_DENOMINATIONS", "WHIRLPOOL_SIZE",
    "ChangeGuess", "Clusters", "CoinJoinEntry", "CoinJoinInfo", "CoinJoinLink", "Outflow", "OutputTaint", "Plan",
    "cluster", "coinjoin_links", "detect_change", "detect_coinjoin", "enter_coinjoin", "fmt_btc", "is_round",
    "merge_inflows", "participant_inputs", "plan", "script_type", "sibling_inputs",
]




class Clusters:
    """Union-find over addresses: inputs of one non-CoinJoin transaction share an owner."""

    def __init__(self) -> None:
        self._parent: dict[str, str] = {}
        self._size: dict[str, int] = {}
        self.skipped: list[str] = []  # CoinJoin txids left out

    def find(self, address: str) -> str:
        parent = self._parent.setdefault(address, address)
        self._size.setdefault(address, 1)
        if parent == address:
            return address
        root = self.find(parent)
        self._parent[address] = root  # path compression
        return root

    def union(self, a: str, b: str) -> str:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return ra
        if self._size[ra] < self._size[rb]:
            ra, rb = rb, ra
        self._parent[rb] = ra
        self._size[ra] += self._size[rb]
        return ra

    def add(self, tx: UtxoTx) -> bool:
        """Merge the inputs' addresses of `tx`; False (and nothing merged) for a CoinJoin."""
        if tx.is_coinbase:
            return False
        if detect_coinjoin(tx) is not None:
            self.skipped.append(tx.txid)
            return False
        addrs = [i.address for i in tx.inputs if i.address]
        for a in addrs:
            self.find(a)
        for a in addrs[1:]:
            self.union(addrs[0], a)
        return True

    def same(self, a: str, b: str) -> bool:
        return self.find(a) == self.find(b)

    def members(self, address: str) -> set[str]:
        root = self.find(address)
        return {a for a in self._parent if self.find(a) == root}

    def groups(self) -> list[set[str]]:
        out: dict[str, set[str]] = {}
        for a in list(self._parent):
            out.setdefault(self.find(a), set()).add(a)
        return sorted(out.values(), key=lambda g: (-len(g), min(g)))


def cluster(txs: Iterable[UtxoTx]) -> Clusters:
    c = Clusters()
    for tx in txs:
        c.add(tx)
    return c


# ---------------------------------------------------------------- what the worker does with them


@dataclass(frozen=True)
class OutputTaint:
    """Flagged money a participant's CoinJoin entry carries into one output, if followed."""

    vout: int
    address: str | None
    value: int
    kind: str  # change | mixed
    confidence: float
    carried: int  # flagged share of the output, scaled by the confidence
    followed: bool
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class CoinJoinEntry:
    """One traced wallet's flagged money entering one CoinJoin: reported like a mixer deposit."""

    txid: str
    depositor: str
    info: CoinJoinInfo
    flagged: int  # flagged sats the wallet's inputs brought in
    sent: int  # what the wallet's inputs brought in, flagged or not
    outputs: tuple[OutputTaint, ...]  # scored links, best first
    companions: tuple[str, ...] = ()  # other traced wallets scored together with this one

    @property
    def linked(self) -> bool:
        return any(o.followed for o in self.outputs)

    def evidence(self, keep: int = 10) -> dict[str, Any]:
        return {"coinjoin": self.txid, **self.info.to_json(), "depositor": self.depositor,
                "flagged": str(self.flagged), "entered": str(self.sent), "together_with": list(self.companions),
                "summary": f"entered CoinJoin ({self.info.pattern}), {fmt_btc(self.flagged)} flagged, "
                           f"anonymity set {self.info.anonymity_set}",
                "links": [{"vout": o.vout, "address": o.address, "value": str(o.value), "kind": o.kind,
                           "confidence": round(o.confidence, 6), "carried": str(o.carried), "followed": o.followed,
                           "reasons": list(o.reasons)} for o in self.outputs[:keep]]}


def enter_coinjoin(
    tx: UtxoTx, info: CoinJoinInfo, depositor: str, flagged: int, sent: int, min_confidence: float,
    *, companions: Collection[str] = (), together_sent: int | None = None,
) -> CoinJoinEntry:
    """Score where `depositor`'s flagged money went in the CoinJoin `tx`.

    `flagged` of the `sent` sats the depositor's inputs put in were flagged (its taint model
    decided). Each link carries the flagged share of its output times the link's confidence, so a
    followed change output carries what it most likely holds, and equal outputs, each 1/n likely,
    are followed only when the policy's threshold is that low.

    `companions` are other traced wallets whose inputs entered the same CoinJoin: a participant
    registers several coins, often of several addresses, and gets one change for all of them, so
    links are scored for their inputs together (`together_sent` in all) and this wallet's entry
    carries its part of each output.
    """
    share = flagged / (together_sent or sent) if (together_sent or sent) > 0 else 0.0
    outs = []
    for lk in coinjoin_links(tx, info, {depositor, *companions}):
        carried = min(lk.value, int(lk.value * share * lk.confidence))
        outs.append(OutputTaint(lk.vout, lk.address, lk.value, lk.kind, lk.confidence, carried,
                                lk.confidence >= min_confidence and carried > 0 and lk.address is not None,
                                lk.reasons))
    return CoinJoinEntry(tx.txid, depositor, info, flagged, sent, tuple(outs), tuple(sorted(set(companions))))


def sibling_inputs(tx: UtxoTx, info: CoinJoinInfo, owner: str) -> set[str]:
    """Other input addresses of a CoinJoin that are `owner`'s too: coins created by the same
    earlier transaction as one of the owner's coins (a wallet splitting its money before
    registering it). Coins of the round's denomination are left out: outputs of one earlier
    CoinJoin (remixes) belong to different users."""
    parents = {i.prev_txid for i in tx.inputs if i.address == owner}
    return {i.address for i in tx.inputs if i.address and i.address != owner and i.prev_txid in parents
            and i.value != info.denomination}


def merge_inflows(
    moves: Sequence[Movement], flagged_in: Mapping[int, int]
) -> tuple[list[Movement], dict[int, int]]:
    """One incoming movement per transaction and asset, with the flagged amounts of its parts.

    The chain layer splits an output among the transaction's input addresses in proportion, so a
    wallet paid by a multi-party transaction (a CoinJoin change output) receives several
    transfers at the same instant; a link can carry more flagged money into the output than the
    one part attributed to the traced input. The wallet received the whole output: merged, the
    flagged amount is bounded by the output, not by that part. Merged moves keep the id of their
    flagged part (else their first), so hops name the inflow a trace followed.
    """
    groups: dict[tuple[str, str], list[Movement]] = {}
    out: list[Movement] = []
    for m in moves:
        if m.incoming and m.tx:
            key = (m.tx, m.asset)
            if key not in groups:
                groups[key] = []
                out.append(m)  # placeholder: replaced below, keeps the order
            groups[key].append(m)
        else:
            out.append(m)
    flagged = dict(flagged_in)
    merged: dict[tuple[str, str], Movement] = {}
    for key, parts in groups.items():
        if len(parts) == 1:
            merged[key] = parts[0]
            continue
        head = next((m for m in parts if flagged_in.get(m.transfer_id, 0) > 0), parts[0])
        total_flagged = sum(flagged_in.get(m.transfer_id, 0) for m in parts)
        merged[key] = replace(head, amount=sum(m.amount for m in parts))
        for m in parts:
            flagged.pop(m.transfer_id, None)
        if total_flagged:
            flagged[head.transfer_id] = total_flagged
    return [merged[(m.tx, m.asset)] if m.incoming and m.tx else m for m in out], flagged


@dataclass(frozen=True, slots=True)
class Outflow:
    """One flagged outflow of a traced wallet, as its taint model computed it."""

    owner: str
    transfer_id: int
    txid: str
    to_address: str
    flagged: int
    total: int


@dataclass
class Plan:
    """How a batch's Bitcoin outflows are written: CoinJoin entries instead of ordinary hops, and
    the change output of each ordinary transaction marked."""

    entries: list[CoinJoinEntry] = field(default_factory=list)
    inside: set[int] = field(default_factory=set)  # outflow transfer ids into CoinJoins
    change: dict[int, dict[str, Any]] = field(default_factory=dict)  # transfer id -> hop evidence
    transfer_of: dict[tuple[str, str, str], int] = field(default_factory=dict)  # (owner, txid, to) -> id
    # Addresses whose inputs a traced wallet spent together with its own (common-input ownership,
    # CoinJoins excluded): the same owner's other wallets, worth naming to an investigator.
    cospent: dict[str, list[str]] = field(default_factory=dict)


def plan(
    outflows: Sequence[Outflow],
    txs: Mapping[str, UtxoTx],
    history: Mapping[str, Sequence[tuple[int, str]]],
    known: Collection[str],
    min_confidence: float,
) -> Plan:
    """Decide, per traced wallet and transaction, what the batch writes.

    `history` lists each owner's (block, counterparty) pairs: counterparties before a transaction
    are addresses seen before it (with `known`, other addresses the caller knows were used), so
    an output to one of them is not fresh change. Every decision reads only the transactions and
    the owner's own history, never which other wallets happen to share the batch, so a trace
    comes out the same whatever the number of workers.
    """
    out = Plan()
    groups: dict[tuple[str, str], list[Outflow]] = {}
    for f in outflows:
        groups.setdefault((f.owner, f.txid), []).append(f)
        out.transfer_of.setdefault((f.owner, f.txid, f.to_address), f.transfer_id)
    # One cluster per owner, over its own transactions: another wallet sharing the batch must not
    # join two owners' clusters (the answer would depend on how jobs were batched).
    owners: dict[str, Clusters] = {}
    for (owner, txid), flows in sorted(groups.items()):
        tx = txs.get(txid)
        if tx is None:
            continue
        owners.setdefault(owner, Clusters()).add(tx)
        info = detect_coinjoin(tx)
        if info is not None:
            sent = sum(f.total for f in flows)
            companions = sibling_inputs(tx, info, owner)
            # The companions' coins, traced or not, are the same participant's: their part of the
            # outputs dilutes this wallet's share of each output it may own.
            share_out = tx.total_out / tx.total_in if tx.total_in else 1.0
            together = sent + int(sum(i.value for i in tx.inputs if i.address in companions) * share_out)
            out.entries.append(enter_coinjoin(tx, info, owner, sum(f.flagged for f in flows), sent, min_confidence,
                                              companions=companions, together_sent=together))
            out.inside.update(f.transfer_id for f in flows)
            continue
        block = tx.block_number if tx.block_number is not None else 1 << 62
        seen = {c for b, c in history.get(owner, ()) if b < block} | set(known)
        guess = detect_change(tx, seen)
        if guess.vout is None:
            continue
        address = tx.outputs[guess.vout].address
        for f in flows:
            if f.to_address == address:
                out.change[f.transfer_id] = {"change": True, "txid": txid, **guess.to_json()}
    for owner, clusters in sorted(owners.items()):
        others = sorted(clusters.members(owner) - {owner})
        if others:
            out.cospent[owner] = others
    return out
