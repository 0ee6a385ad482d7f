"""CoinJoins: recognising a Wasabi (1.x and 2.x), Whirlpool or JoinMarket round, and where a
tainted participant's money could have gone through it (its own change output, nearly certain; each
equal output one of `anonymity_set` indistinguishable coins). Pure; amounts are satoshis."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from tracer.chains.utxo_records import UtxoTx
from tracer.engine.utxo_change import fmt_btc, io_type

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
# A participant's own CoinJoin change: how sure when exactly one output fits its inputs.
CHANGE_LINK_CONFIDENCE = 0.9
CHANGE_LINK_SAME_TYPE = 0.95
CHANGE_LINK_OTHER_TYPE = 0.75
# Fees a participant pays out of its change: mining fee share plus coordinator fee.
_FEE_SLACK_SATS = 100_000
_FEE_SLACK_SHARE = 0.005
_MAKER_FEE_SATS = 10_000
_MAKER_FEE_SHARE = 0.001




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
    in_types = {io_type(tx.inputs[i]) for i in mine}
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
        otype = io_type(o)
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
