"""The de-mixing heuristics, each a likelihood ratio on the odds that a withdrawal spends a flagged
deposit's note (tracer/engine/mixers.py explains the scoring): same address, direct interaction,
shared third wallets, a shared unusual gas price, the multi-denomination multiset, timing against
the anonymity set, and a rival note of the recipient's own."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from tracer.engine.mixer_events import PoolEvent
from tracer.engine.mixer_facts import FlaggedDeposit, LinkFacts, LinkParams, Reason
from tracer.engine.mixer_pool import PoolIndex

ZERO_ADDRESS = "0x" + "0" * 40
NATIVE_DECIMALS = 18

# Likelihood ratios of the heuristics. Calibrated on generated pools (bench/mixer_linker.py):
# each strong clue alone lifts a link in a pool of ~50 unspent notes well above 0.5, while the
# weak ones (a whole-gwei gas price, timing) never do.
LR_SAME_ADDRESS = 5_000.0
LR_DIRECT_INTERACTION = 5_000.0
LR_SHARED_PEER = 1_000.0  # one shared third wallet
LR_SHARED_PEERS = 5_000.0  # two or more
LR_GAS_UNUSUAL = 1_500.0  # divided by (1 + others using it)^2
LR_GAS_ROUND = 10.0  # whole or tenth gwei: a wallet default, weak evidence
# Multi-denomination: k notes withdrawn to one address within span s, out of a window of length T,
# happen by chance with probability ~ (s / T)^(k - 1); the ratio is the inverse, capped.
LR_MULTI_BASE = 2.0
LR_MULTI_MAX = 2_000.0
MIN_SPAN_SECONDS = 12  # one Ethereum slot: withdrawals in one block are "at once"
LR_TIMING = ((0, 2.0), (3, 1.5))  # (at most this many other deposits in between, ratio); else 1
POPULAR_PEER = 3  # a third wallet shared with more candidate recipients than this is a service
_ODDS_CAP = 1e9


def score(
    d: FlaggedDeposit,
    candidate: tuple[int, PoolEvent],
    at: int,
    pool: PoolIndex,
    facts: LinkFacts,
    rarity: Counter[int],
    multisets: Multisets,
    popular: set[str],
    survival: float,
    unspent: int,
) -> tuple[float, tuple[Reason, ...]]:
    k, w = candidate
    reasons: list[Reason] = []
    # Prior: the withdrawal spends one of the notes unspent when it executes; ours is among them
    # only if no earlier withdrawal took it.
    prior = survival / max(1, unspent)
    odds = _ODDS_CAP if prior >= 1.0 else prior / (1.0 - prior)
    since = f"{survival:.0%} chance it was still unspent" if survival < 1.0 else "no withdrawal since the deposit"
    reasons.append(Reason("anonymity_set", f"{unspent} notes unspent in the pool at the withdrawal ({since})",
                          odds))
    if w.recipient == d.depositor:
        reasons.append(Reason("same_address", f"withdrawn to the depositing address {d.depositor}", LR_SAME_ADDRESS))
    own = facts.peers.get(d.depositor, set())
    if w.recipient != d.depositor and w.recipient in own:
        reasons.append(Reason("direct_interaction",
                              f"the recipient {w.recipient} and the depositor transacted directly",
                              LR_DIRECT_INTERACTION))
    else:
        shared = sorted((own & facts.peers_of_recipient(w.recipient)) - facts.services - popular
                        - {d.depositor, w.recipient, d.pool, ZERO_ADDRESS})
        if shared:
            weight = LR_SHARED_PEER if len(shared) == 1 else LR_SHARED_PEERS
            reasons.append(Reason("shared_peers", f"depositor and recipient both transacted with {len(shared)} "
                                  f"wallet(s): {', '.join(shared[:3])}", weight))
    gas_d = facts.gas_prices.get(d.tx_hash)
    gas_w = facts.gas_prices.get(w.tx_hash)
    if gas_d is not None and gas_d == gas_w and gas_d > 0:
        others = max(0, rarity[gas_d] - 2)
        round_price = gas_d % 10**8 == 0
        # A price many use is no evidence either way (never below 1: a match is not a mismatch).
        weight = max(1.0, (LR_GAS_ROUND if round_price else LR_GAS_UNUSUAL) / (1 + others) ** 2)
        kind = "a whole-gwei (wallet default)" if round_price else "an unusual"
        reasons.append(Reason("gas_price", f"deposit and withdrawal share {kind} gas price of {gas_d / 1e9:.9g} gwei"
                              f" ({others} other pool transactions use it)", weight))
    multi = multisets.match(d, w)
    if multi is not None:
        reasons.append(multi)
    between = max(0, pool.deposits_through(k - 1) - pool.deposits_through(at))
    delay = max(0, w.block_time - d.block_time)
    # Withdrawing before others joined the pool leaves a small crowd: launderers in a hurry do.
    timing = next((ratio for most, ratio in LR_TIMING if between <= most), 1.0)
    reasons.append(Reason("timing", f"withdrawn {duration(delay)} after the deposit; {between} other deposits "
                          "in between", timing))
    rival = _rival_notes(d, w, k, pool, facts, survival, unspent)
    if rival is not None:
        reasons.append(rival)
    for r in reasons[1:]:
        odds *= r.weight
    return min(odds, _ODDS_CAP), tuple(reasons)


def _rival_notes(
    d: FlaggedDeposit, w: PoolEvent, k: int, pool: PoolIndex, facts: LinkFacts, survival: float, unspent: int
) -> Reason | None:
    """Another note than ours with strong evidence for this withdrawal: the recipient's own,
    deposited before it (same address). The withdrawal spends one note: with the rival's chance
    (its survival times LR_SAME_ADDRESS) among the others', ours shrinks by (N - S) / (N - S + R).
    Read from the chain (the recipient's transfers), whatever the trace found flagged."""
    if w.recipient == d.depositor:
        return None  # the depositor's own notes: they compete by assignment (link)
    mass, n = 0.0, 0
    for e in facts.recipient_notes.get(w.recipient, ()):
        i = pool.index.get(e.position)
        if e.pool == w.pool and i is not None and i < k and e.tx_hash != d.tx_hash:
            mass += pool.survival(i, k) * (LR_SAME_ADDRESS - 1.0)
            n += 1
    others = unspent - survival
    if mass <= 0 or others <= 0:
        return None
    return Reason("recipient_own_note", f"{w.recipient} deposited {n} note(s) into this pool itself before this "
                  "withdrawal: its own note explains it as well", others / (others + mass))


def gas_rarity(facts: LinkFacts) -> Counter[int]:
    """How many of the pools' transactions (each counted once) used each gas price."""
    seen: dict[str, int] = {}
    for events in facts.events.values():
        for e in events:
            gp = facts.gas_prices.get(e.tx_hash)
            if gp is not None:
                seen[e.tx_hash] = gp
    return Counter(seen.values())


def popular_peers(candidates: Iterable[tuple[int, PoolEvent]], facts: LinkFacts) -> set[str]:
    """Wallets shared by many candidate recipients: services (an exchange's hot wallet, a
    relayer's payout address, a faucet) that say nothing about who is behind a withdrawal."""
    counts: Counter[str] = Counter()
    for _, w in candidates:
        counts.update(facts.peers_of_recipient(w.recipient))
    return {a for a, n in counts.items() if n > POPULAR_PEER}


class Multisets:
    """The multi-denomination heuristic: the multiset of denominations one address deposited
    comes back out, all of it, to one recipient, the withdrawals close together in time.

    Chance alone gives some recipient the same multiset (a busy address collecting unrelated
    withdrawals); it rarely gives them within a short span. So the ratio grows with how tight the
    recipient's withdrawals are within the window, ~ (T / span)^(k - 1) for k notes, and shrinks
    with every other recipient holding the same multiset at least as tightly.
    """

    def __init__(self, facts: LinkFacts, params: LinkParams) -> None:
        self.facts = facts
        self.window = params.multi_window_seconds
        self.withdrawals: list[tuple[int, str, int]] = []  # (time, recipient, denomination)
        for pool, events in facts.events.items():
            denom = facts.denominations.get(pool)
            if denom is None:
                continue
            self.withdrawals.extend((e.block_time, e.recipient, denom) for e in events if e.kind == "withdrawal")
        self.withdrawals.sort()
        # What we have seen of the chain ends here: a window reaching past it is only this long.
        self.horizon = max((e.block_time for evs in facts.events.values() for e in evs), default=0)
        self._cache: dict[int, tuple[Counter[int], int, int, dict[str, tuple[Counter[int], int]]]] = {}

    def _for(self, d: FlaggedDeposit) -> tuple[Counter[int], int, int, dict[str, tuple[Counter[int], int]]]:
        cached = self._cache.get(d.transfer_id)
        if cached is not None:
            return cached
        times = [(e.pool, e.block_time) for e in self.facts.deposits_by.get(d.depositor, ())
                 if abs(e.block_time - d.block_time) <= self.window and e.pool in self.facts.denominations]
        bag = Counter(self.facts.denominations[pool] for pool, _ in times)
        first = min((t for _, t in times), default=d.block_time)
        last = max((t for _, t in times), default=d.block_time)
        until = max(last + MIN_SPAN_SECONDS, min(last + self.window, self.horizon))
        recipients: dict[str, tuple[Counter[int], int, int]] = {}
        if sum(bag.values()) >= 2:
            # One depositor's bag against every recipient's: computed once per deposit.
            for t, recipient, denom in self.withdrawals:
                if first <= t <= until:
                    b, lo, hi = recipients.get(recipient, (Counter(), t, t))
                    b[denom] += 1
                    recipients[recipient] = (b, min(lo, t), max(hi, t))
        spans = {r: (b, hi - lo) for r, (b, lo, hi) in recipients.items()}
        cached = self._cache[d.transfer_id] = (bag, first, until - first, spans)
        return cached

    def match(self, d: FlaggedDeposit, w: PoolEvent) -> Reason | None:
        bag, first, length, recipients = self._for(d)
        size = sum(bag.values())
        found = recipients.get(w.recipient)
        if size < 2 or found is None or found[0] != bag or w.block_time < first:
            return None
        span = found[1]
        tightness = min(LR_MULTI_MAX, (max(length, MIN_SPAN_SECONDS) / max(span, MIN_SPAN_SECONDS)) ** (size - 1))
        others = sum(1 for r, (b, s) in recipients.items() if r != w.recipient and b == bag and s <= span)
        weight = min(LR_MULTI_MAX, LR_MULTI_BASE * tightness) / (1 + others)
        unit = NATIVE_DECIMALS if d.asset == "native" else d.decimals
        symbol = "ETH" if d.asset == "native" else (d.symbol or d.asset[:10])
        parts = ", ".join(f"{n}×{_amount(denom, unit)}" for denom, n in sorted(bag.items(), reverse=True))
        return Reason("multi_denomination", f"{d.depositor} deposited {{{parts}}} {symbol} and {w.recipient} withdrew "
                      f"the same within {duration(span)} ({others} other recipients did as tightly)", weight)


def _amount(raw: int, decimals: int | None) -> str:
    if not decimals:
        return str(raw)
    whole, frac = divmod(raw, 10**decimals)
    return str(whole) if not frac else f"{whole}.{str(frac).rjust(decimals, '0').rstrip('0')}"


def duration(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7_200:
        return f"{seconds // 60}min"
    if seconds < 172_800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86_400}d"
