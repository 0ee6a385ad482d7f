"""Bitcoin (UTXO) heuristics: change outputs, CoinJoins, links through a CoinJoin, input clustering.

Pure functions over transactions the chain layer decoded (tracer.chains.utxo_records.UtxoTx); no
I/O. Amounts are satoshis. Every answer says why (`reasons`): none of these is proof, they are the
published heuristics an investigator applies by hand (Meiklejohn et al. 2013 "A fistful of
bitcoins"; Androulaki et al. 2013; Kappos et al. 2022 "How to peel a million"; the Wasabi,
Whirlpool and JoinMarket protocol documents for CoinJoins).

- `detect_change`: which output of an ordinary payment goes back to the payer, so a peel chain is
  followed along its change instead of fanning out over every payment.
- `detect_coinjoin`: Wasabi (1.x: ~0.1 BTC base denomination, many inputs, coordinator fee; 2.x:
  many standard denominations), Whirlpool (5 inputs, 5 equal outputs of a pool denomination) and
  JoinMarket (n >= 3 equal outputs plus n - 1 or n change outputs).
- `coinjoin_links`: where a tainted participant's money could have gone: its own change output
  (its inputs minus the denominations it bought minus fees) is nearly certain; each equal output
  is one of `anonymity_set` indistinguishable coins.
- `Clusters`: common-input-ownership (all inputs of one transaction belong to one wallet), never
  over CoinJoins, whose inputs belong to many.
- `plan`, `enter_coinjoin`, `merge_inflows`: what the worker does with them for one batch
  (tracer.engine.worker): a wallet's outflows into a CoinJoin become one entry, reported like a
  mixer deposit, whose links at least `policy.min_link_confidence` sure are followed with the
  output's flagged share times the confidence; an ordinary transaction's change output is marked
  on its hop; a multi-party output is received whole. Every decision reads the transactions and
  the wallet's own history only, never what else shares the batch.

CoinJoins are not written to the mixer-links store (`mixer_deposits`/`mixer_links`): its records
and the API schema behind it describe a pool contract and its withdrawals; the hops and the
depositor's verdict evidence carry the CoinJoin instead.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from tracer.addresses import btc_script_type
from tracer.chains.utxo_records import TxIn, TxOut, UtxoTx
from tracer.engine.taint import Movement

SATS_PER_BTC = 100_000_000
# Whirlpool pools (Samourai): 0.001, 0.01, 0.05 and 0.5 BTC; every mix is 5 inputs x 5 outputs.
WHIRLPOOL_DENOMINATIONS = (100_000, 1_000_000, 5_000_000, 50_000_000)
WHIRLPOOL_SIZE = 5
# Wasabi 1.x mixed around a 0.1 BTC base denomination (it drifted with the fee, e.g. 0.0999xxxx),
# with rounds of 50-100 participants; the band is generous on purpose.
WASABI_BASE_BAND = (5_000_000, 20_000_000)
WASABI_MIN_EQUAL = 10
WASABI_MIN_PARTICIPANTS = 5
WASABI_FEE_RATE = 0.00003  # Wasabi 1.x coordinator fee per participant: 0.003% x anonymity set x denomination
WABISABI_FEE_RATE = 0.003  # Wasabi 2.x coordinator fee: 0.3% of the amount mixed
# Wasabi 2 (WabiSabi) rounds: hundreds of inputs, outputs in many standard denominations.
WASABI2_MIN_INPUTS = 50
JOINMARKET_MIN_EQUAL = 3
# A round payment: a whole multiple of 0.0001 BTC (10,000 sats); change is what is left over.
ROUND_UNIT = 10_000

# Confidence of a change guess by its margin over the runner-up (in heuristic points).
_MARGIN_CONFIDENCE = {1: 0.6, 2: 0.8, 3: 0.9}
_REUSE_CONFIDENCE = 0.95
# A participant's own CoinJoin change: how sure when exactly one output fits its inputs.
CHANGE_LINK_CONFIDENCE = 0.9
CHANGE_LINK_SAME_TYPE = 0.95
CHANGE_LINK_OTHER_TYPE = 0.75
# Fees a participant pays out of its change: mining fee share plus coordinator fee.
_FEE_SLACK_SATS = 100_000
_FEE_SLACK_SHARE = 0.005
_MAKER_FEE_SATS = 10_000
_MAKER_FEE_SHARE = 0.001


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


def _type(io: TxIn | TxOut) -> str | None:
    return script_type(io.address, io.script_type)


def is_round(value: int) -> bool:
    return value > 0 and value % ROUND_UNIT == 0


def fmt_btc(sats: int) -> str:
    return f"{sats / SATS_PER_BTC:.8f}".rstrip("0").rstrip(".") + " BTC"


# ---------------------------------------------------------------- change outputs


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
    in_types = {_type(i) for i in tx.inputs if i.address}
    in_values = [i.value for i in tx.inputs if i.value > 0]
    scores: dict[int, float] = {i: 0.0 for i, _ in outs}
    why: dict[int, list[str]] = {i: [] for i, _ in outs}

    reused = [i for i, o in outs if o.address in in_addrs]
    for i in reused:
        scores[i] += 3
        why[i].append("address reuse: pays back an input address")

    if len(in_types) == 1:
        (itype,) = in_types
        same = [i for i, o in outs if _type(o) == itype]
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


# ---------------------------------------------------------------- CoinJoins


@dataclass(frozen=True)
class CoinJoinInfo:
    pattern: str  # wasabi | wasabi2 | whirlpool | joinmarket
    denomination: int  # sats of the equal outputs
    anonymity_set: int  # equal outputs a participant's coin hides among
    equal_vouts: tuple[int, ...]
    change_vouts: tuple[int, ...]
    coordinator_vout: int | None = None
    reasons: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"pattern": self.pattern, "denomination": str(self.denomination),
                "anonymity_set": self.anonymity_set, "equal_vouts": list(self.equal_vouts),
                "change_vouts": list(self.change_vouts), "coordinator_vout": self.coordinator_vout,
                "reasons": list(self.reasons)}


def detect_coinjoin(tx: UtxoTx) -> CoinJoinInfo | None:
    """The CoinJoin pattern of a transaction, or None for an ordinary one.

    Equal outputs alone are not enough (an exchange's batch payout can pay several customers the
    same amount): every pattern also needs as many inputs, from distinct addresses, as it has
    participants.
    """
    values = [(i, o.value) for i, o in enumerate(tx.outputs) if o.value > 0]
    if len(values) < 2:
        return None
    counts = Counter(v for _, v in values)
    denom, n = max(counts.items(), key=lambda kv: (kv[1], kv[0]))
    if n < 2:
        return None
    n_in = len(tx.inputs)
    in_addrs = {i.address for i in tx.inputs if i.address}
    equal = tuple(i for i, v in values if v == denom)
    rest = [i for i, v in values if v != denom]

    if (n_in == WHIRLPOOL_SIZE and len(values) == WHIRLPOOL_SIZE and n == WHIRLPOOL_SIZE
            and denom in WHIRLPOOL_DENOMINATIONS):
        return CoinJoinInfo("whirlpool", denom, n, equal, (), None, (
            f"Whirlpool: 5 inputs, 5 outputs of the {fmt_btc(denom)} pool denomination",))

    # A Wasabi participant may take several equal outputs (WabiSabi lets it), so inputs need not
    # outnumber them; many distinct input addresses still set a round apart from a batch payout.
    if (n >= WASABI_MIN_EQUAL and len(in_addrs) >= max(WASABI_MIN_PARTICIPANTS, n // 3)
            and WASABI_BASE_BAND[0] <= denom <= WASABI_BASE_BAND[1]):
        # Mixing levels: equal groups at about 2, 4, 8... times the base denomination.
        levels = {v for v, c in counts.items() if c >= 2 and v != denom and _near_power_of_two(v, denom)}
        level_vouts = tuple(i for i, v in values if v in levels)
        targets = (WASABI_FEE_RATE * n * n * denom, WABISABI_FEE_RATE * n * denom)
        coordinator = None
        others = [i for i in rest if tx.outputs[i].value not in levels]
        near = [i for i in others if any(t / 3 <= tx.outputs[i].value <= t * 3 for t in targets)]
        if near:
            coordinator = min(near, key=lambda i: min(abs(math.log(tx.outputs[i].value / t)) for t in targets))
        reasons = [f"Wasabi: {n} equal outputs of {fmt_btc(denom)} (base denomination ~0.1 BTC), {n_in} inputs"]
        if levels:
            reasons.append(f"{len(level_vouts)} outputs at higher mixing levels")
        if coordinator is not None:
            reasons.append(f"coordinator fee output {coordinator} ({fmt_btc(tx.outputs[coordinator].value)})")
        change = tuple(i for i in others if i != coordinator)
        return CoinJoinInfo("wasabi", denom, n, equal + level_vouts, change, coordinator, tuple(reasons))

    grouped = [i for i, v in values if counts[v] >= 2]
    if n_in >= WASABI2_MIN_INPUTS and len(grouped) * 2 >= len(values) and len(in_addrs) >= WASABI2_MIN_INPUTS // 2:
        change = tuple(i for i, v in values if counts[v] < 2)
        groups = sum(1 for c in counts.values() if c >= 2)
        return CoinJoinInfo("wasabi2", denom, n, tuple(grouped), change, None, (
            f"WabiSabi round: {n_in} inputs, {len(grouped)} of {len(values)} outputs in {groups} equal "
            f"denominations (largest group {n} x {fmt_btc(denom)})",))

    # Every JoinMarket maker gets change (the taker may sweep without): n - 1 or n change outputs.
    # An exchange paying a few equal withdrawals out of swept deposits has one change, not n - 1.
    if n >= JOINMARKET_MIN_EQUAL and n - 1 <= len(rest) <= n and n_in >= n and len(in_addrs) >= n:
        return CoinJoinInfo("joinmarket", denom, n, equal, tuple(rest), None, (
            f"JoinMarket: {n} equal outputs of {fmt_btc(denom)} and {len(rest)} change outputs "
            f"from {len(in_addrs)} input addresses",))
    return None


def _fees(paid: int) -> str:
    return f"{fmt_btc(paid)} fees" if paid >= 0 else f"{fmt_btc(-paid)} fee income"


def _near_power_of_two(value: int, base: int) -> bool:
    ratio = value / base
    k = 2.0
    while k <= 64:
        if abs(ratio - k) <= 0.02 * k:
            return True
        k *= 2
    return False


@dataclass(frozen=True)
class CoinJoinLink:
    """One output a tainted participant's money may have gone to."""

    vout: int
    address: str | None
    value: int
    kind: str  # change | mixed
    confidence: float
    reasons: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"vout": self.vout, "address": self.address, "value": str(self.value), "kind": self.kind,
                "confidence": round(self.confidence, 6), "reasons": list(self.reasons)}


def participant_inputs(tx: UtxoTx, tainted: Collection[str]) -> list[int]:
    return [i for i, inp in enumerate(tx.inputs) if inp.address in tainted]


def coinjoin_links(tx: UtxoTx, info: CoinJoinInfo, tainted: Collection[str]) -> list[CoinJoinLink]:
    """Score where the inputs of the `tainted` addresses went in a CoinJoin: best first.

    The participant bought k equal outputs and got back what remained less fees (plus, for a
    JoinMarket maker, a small fee income) as change. JoinMarket participants buy one; a Wasabi
    participant mixes as much as it chooses, and the largest k (below the anonymity set) with a
    fitting change output wins. A change
    output that fits is the participant's own, with high confidence when it is the only one; each
    equal output is theirs with probability k / anonymity set.
    """
    mine = participant_inputs(tx, tainted)
    total = sum(tx.inputs[i].value for i in mine)
    if total <= 0 or info.denomination <= 0:
        return []
    in_types = {_type(tx.inputs[i]) for i in mine}
    # Nobody holds every equal output of a round (there would be nobody to mix with); bounding k
    # also keeps a whale's change (inputs far above the denomination) from matching by chance.
    k_max = 1 if info.pattern == "joinmarket" else max(1, min(total // info.denomination, info.anonymity_set - 1))
    fits: list[int] = []
    k_bought = k_max
    for k in range(k_max, 0, -1):
        expected = total - k * info.denomination
        slack = max(_FEE_SLACK_SATS, int(_FEE_SLACK_SHARE * k * info.denomination))
        # A JoinMarket maker is paid a fee by the taker: its change can exceed the remainder.
        income = max(_MAKER_FEE_SATS, int(_MAKER_FEE_SHARE * k * info.denomination))
        fits = [v for v in info.change_vouts if expected - slack <= tx.outputs[v].value <= expected + income]
        if fits:
            k_bought = k
            break
    out: list[CoinJoinLink] = []
    for v in fits:
        o = tx.outputs[v]
        otype = _type(o)
        if otype in in_types and len(in_types) == 1:
            base, type_reason = CHANGE_LINK_SAME_TYPE, f"same script type as the tainted inputs ({otype})"
        elif len(in_types) == 1:
            base, type_reason = CHANGE_LINK_OTHER_TYPE, f"script type {otype} differs from the inputs'"
        else:
            base, type_reason = CHANGE_LINK_CONFIDENCE, "inputs of several script types"
        paid = total - k_bought * info.denomination - o.value
        reasons = [f"change of the tainted inputs: {fmt_btc(total)} in, {k_bought} x {fmt_btc(info.denomination)}"
                   f" mixed, {fmt_btc(o.value)} back ({_fees(paid)})", type_reason]
        if len(fits) > 1:
            reasons.append(f"{len(fits)} change outputs fit equally: confidence shared")
        out.append(CoinJoinLink(v, o.address, o.value, "change", base / len(fits), tuple(reasons)))
    per_output = min(1.0, k_bought / info.anonymity_set) if info.anonymity_set else 0.0
    for v in info.equal_vouts:
        o = tx.outputs[v]
        out.append(CoinJoinLink(v, o.address, o.value, "mixed", per_output, (
            f"one of {info.anonymity_set} equal {fmt_btc(info.denomination)} outputs ({info.pattern}); the "
            f"tainted inputs bought {k_bought}",)))
    out.sort(key=lambda lk: (-lk.confidence, lk.vout))
    return out


# ---------------------------------------------------------------- common-input ownership


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
