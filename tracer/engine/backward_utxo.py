"""CoinJoins in a backward trace (issue 20): an output of a CoinJoin goes back to the participants
the forward trace would link to it, not to every input pro rata.

A transaction's transfers are its inputs -> outputs pro rata (chains/bitcoin/mappers.flatten), and
for an ordinary payment that is the forward rule. A CoinJoin is read differently forward
(utxo.enter_coinjoin): a participant p's flagged money reaches an output o it is linked to (its own
change, or an equal output when the policy takes 1-in-n links) as value(o) * confidence *
flagged(p) / together(p), where flagged(p) is the flagged part of everything p's inputs put in and
together(p) what they and p's sibling coins put in. That is linear in each of p's transfers into
the transaction, so run backward every unit p paid into it reaches the seeds with
value(o) * confidence * f(o) / together(p), summed over p's followed links. The whole of it is put
on p's transfer into o (a hop from p to o; its weight may pass 1: the pro-rata transfer is smaller
than what the link carries), and a CoinJoin's transfers from participants not linked to the walked
output carry nothing: those inputs are no senders and the walk does not go behind them. Where the
heuristic ties one output to several participants, their confidences are scaled to sum to 1 at
most (as links into one mixer withdrawal), so the output is never carried back more than once.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence, Set

from tracer.chains.utxo_records import UtxoTx
from tracer.domain.transfers import Transfer
from tracer.engine import utxo


def linked(tx: UtxoTx, info: utxo.CoinJoinInfo, min_confidence: float
           ) -> dict[tuple[str, str], tuple[float, int, int]]:
    """(participant, output address) -> (confidence, output value, what its sibling coins put in)
    for every link at least `min_confidence` sure, scored as the forward trace scores an entry."""
    share_out = tx.total_out / tx.total_in if tx.total_in else 1.0
    out: dict[tuple[str, str], tuple[float, int, int]] = {}
    for p in sorted({i.address for i in tx.inputs if i.address}):
        companions = utxo.sibling_inputs(tx, info, p)
        siblings = int(sum(i.value for i in tx.inputs if i.address in companions) * share_out)
        for lk in utxo.coinjoin_links(tx, info, {p, *companions}):
            if lk.address is not None and lk.confidence >= min_confidence:
                old = out.get((p, lk.address))
                value = lk.value + (old[1] if old else 0)
                out[(p, lk.address)] = (lk.confidence, value, siblings)
    # Two participants whose coins both fit one change (the heuristic cannot tell them apart) would
    # together carry more than the output holds: as mixer links into one withdrawal, the links into
    # one output are scaled to carry it at most once.
    into: dict[str, float] = defaultdict(float)
    for (_, address), (confidence, _, _) in out.items():
        into[address] += confidence
    return {(p, a): (c / max(1.0, into[a]), v, s) for (p, a), (c, v, s) in out.items()}


def coinjoins(txs: Mapping[str, UtxoTx]) -> dict[str, tuple[UtxoTx, utxo.CoinJoinInfo]]:
    out = {}
    for txid, tx in txs.items():
        info = utxo.detect_coinjoin(tx)
        if info is not None:
            out[txid] = (tx, info)
    return out


def weights(transfers: Sequence[Transfer], walked: Set[str], joins: Mapping[str, tuple[UtxoTx, utxo.CoinJoinInfo]],
            min_confidence: float, scale: int) -> tuple[dict[int, int], dict[int, float]]:
    """Index of a CoinJoin's transfer into a walked wallet -> the fixed-point factor on what that
    wallet's coins reach the seeds with (0: a participant no link ties to the output), and the
    followed links' confidences by the same index (their hops say it)."""
    by_tx: dict[str, list[int]] = defaultdict(list)
    for i, t in enumerate(transfers):
        if t.tx_hash in joins:
            by_tx[t.tx_hash].append(i)
    out: dict[int, int] = {}
    sure: dict[int, float] = {}
    for txid, idx in by_tx.items():
        tx, info = joins[txid]
        links = linked(tx, info, min_confidence)
        paid: dict[str, int] = defaultdict(int)  # participant -> its transfers into the transaction
        for i in idx:
            paid[transfers[i].from_address] += transfers[i].amount
        for i in idx:
            t = transfers[i]
            if t.to_address not in walked:
                continue
            lk = links.get((t.from_address, t.to_address))
            if lk is None or t.amount <= 0:
                out[i] = 0
                continue
            confidence, value, siblings = lk
            sent = paid[t.from_address]
            out[i] = int(confidence * scale) * value * sent // ((sent + siblings) * t.amount)
            sure[i] = confidence
    return out, sure


def unlinked_senders(transfers: Sequence[Transfer], walked: Set[str],
                     joins: Mapping[str, tuple[UtxoTx, utxo.CoinJoinInfo]], min_confidence: float
                     ) -> set[tuple[str, str, str]]:
    """(tx, sender, walked recipient) of CoinJoin transfers no link explains: not walked back."""
    links = {txid: linked(tx, info, min_confidence) for txid, (tx, info) in joins.items()}
    return {(t.tx_hash, t.from_address, t.to_address) for t in transfers
            if t.tx_hash in links and t.to_address in walked and (t.from_address, t.to_address) not in links[t.tx_hash]}
