"""Bitcoin outputs: their script types, round amounts, and which output of an ordinary payment is
the payer's change (so a peel chain is followed along its change instead of fanning out over every
payment). Pure functions over decoded transactions; amounts are satoshis."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from tracer.addresses import btc_script_type
from tracer.chains.utxo_records import TxIn, TxOut, UtxoTx

SATS_PER_BTC = 100_000_000
ROUND_UNIT = 10_000

# Confidence of a change guess by its margin over the runner-up (in heuristic points).
_MARGIN_CONFIDENCE = {1: 0.6, 2: 0.8, 3: 0.9}
_REUSE_CONFIDENCE = 0.95


def script_type(address: str | None, node_type: str | None = None) -> str | None:
    """p2pkh | p2sh | p2wpkh | p2wsh | p2tr | witness; the node's name when it gave one (Esplora
    says v0_p2wpkh), else read from the address; None for outputs without an address (OP_RETURN)."""
    if node_type:
        return node_type.split("_", 1)[1] if node_type.startswith(("v0_", "v1_")) else node_type
    if not address:
        return None
    try:
        return btc_script_type(address)
    except (IndexError, ValueError):
        return None


def io_type(io: TxIn | TxOut) -> str | None:
    return script_type(io.address, io.script_type)


def is_round(value: int) -> bool:
    return value > 0 and value % ROUND_UNIT == 0


def fmt_btc(sats: int) -> str:
    return f"{sats / SATS_PER_BTC:.8f}".rstrip("0").rstrip(".") + " BTC"



@dataclass(frozen=True)
class ChangeGuess:
    """The output judged to be the payer's change (None: no output stands out), with the score
    of each output and the reasons behind the winner's."""

    vout: int | None
    confidence: float
    reasons: tuple[str, ...]
    scores: dict[int, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"vout": self.vout, "confidence": round(self.confidence, 4), "reasons": list(self.reasons)}


def detect_change(tx: UtxoTx, seen: Collection[str] = frozenset()) -> ChangeGuess:
    """Guess the change output of an ordinary (non-CoinJoin) transaction.

    `seen` holds addresses known to have appeared before this transaction: change usually goes to
    a fresh address, so an output to a seen address is likely a payment (unless it goes back to
    one of the inputs' own addresses, which is change by address reuse).

    Heuristics (each +1 for the output it points at, reuse +3):
    - address reuse: an output paying an input address is change;
    - script type: the one output of the inputs' script type while the others differ;
    - round amount: the one non-round output while the others are round (payments are round);
    - optimal change: the one output smaller than every input (else an input was unnecessary);
    - fresh address: the one output to an address never seen before, when the others were.
    With two outputs a margin of one point decides; with more, two (batch payments look alike).
    """
    outs = [(i, o) for i, o in enumerate(tx.outputs) if o.address and o.value > 0]
    if len(outs) < 2:
        return ChangeGuess(None, 0.0, ("fewer than two spendable outputs: no change to tell apart",))
    in_addrs = {i.address for i in tx.inputs if i.address}
    in_types = {io_type(i) for i in tx.inputs if i.address}
    in_values = [i.value for i in tx.inputs if i.value > 0]
    scores: dict[int, float] = {i: 0.0 for i, _ in outs}
    why: dict[int, list[str]] = {i: [] for i, _ in outs}

    reused = [i for i, o in outs if o.address in in_addrs]
    for i in reused:
        scores[i] += 3
        why[i].append("address reuse: pays back an input address")

    if len(in_types) == 1:
        (itype,) = in_types
        same = [i for i, o in outs if io_type(o) == itype]
        if len(same) == 1:
            scores[same[0]] += 1
            why[same[0]].append(f"same script type as the inputs ({itype}) while the other outputs differ")

    non_round = [i for i, o in outs if not is_round(o.value)]
    if len(non_round) == 1:
        scores[non_round[0]] += 1
        why[non_round[0]].append("non-round amount while the other outputs are round payments")

    if len(in_values) >= 2:
        smaller = [i for i, o in outs if o.value < min(in_values)]
        if len(smaller) == 1:
            scores[smaller[0]] += 1
            why[smaller[0]].append("optimal change: smaller than every input")

    if seen:
        fresh = [i for i, o in outs if o.address not in seen and o.address not in in_addrs]
        if len(fresh) == 1 and not reused:
            scores[fresh[0]] += 1
            why[fresh[0]].append("the only fresh address: the other outputs pay addresses seen before")

    ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
    (best, top), (_, second) = ranked[0], ranked[1]
    need = 1 if len(outs) == 2 else 2
    margin = top - second
    if top <= 0 or margin < need:
        return ChangeGuess(None, 0.0, (f"no output stands out ({len(outs)} outputs, best margin {margin:g})",),
                           scores)
    reasons = list(why[best])
    if len(outs) == 2:
        reasons.append("two outputs: one payment and one change")
    confidence = _REUSE_CONFIDENCE if best in reused else _MARGIN_CONFIDENCE.get(int(margin), 0.95)
    return ChangeGuess(best, confidence, tuple(reasons), scores)
