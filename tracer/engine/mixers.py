"""Mixer pools (Tornado Cash and its forks, any EVM chain): deposits, withdrawals and the linker.

A pool holds one asset at one denomination. A deposit emits `Deposit(bytes32 indexed commitment,
uint32 leafIndex, uint256 timestamp)`; a withdrawal pays the recipient (minus a relayer's fee) and
emits `Withdrawal(address to, bytes32 nullifierHash, address indexed relayer, uint256 fee)`. The
zero-knowledge proof hides which deposit a withdrawal spends, so a link deposit -> withdrawal is
only ever a scored guess from the published de-mixing heuristics (Tutela, arXiv:2201.06811; Wang
et al., WWW 2023; Béres et al. 2021):

- the same address deposits and withdraws;
- deposit and withdrawal share an unusual gas price (set by hand, used by almost nobody else);
- the depositor and the recipient transact with the same third wallets (or with each other);
- the depositor's multiset of denominations comes back out to one recipient within a window;
- timing against the pool's anonymity set: how many notes were unspent when the withdrawal came;
- a rival: the recipient deposited into the pool itself before, its own note explains it too.

Scoring is Bayesian in odds. The prior that a withdrawal spends our note is S / N: N notes are
unspent in the pool when it executes, and S is the chance ours is still among them after the
withdrawals since our deposit (each spending a random unspent note). Each heuristic that fires
multiplies the odds by a likelihood ratio (its `weight`, stated in the reasons). A deposit's candidates then share
one probability mass with "none of them" (weight 1), and a greedy one-to-one assignment lets each
withdrawal spend at most one of the depositor's notes in the pool, so equivalent notes (three 10 ETH
deposits to one recipient) link one each instead of splitting into three uncertain thirds. A
withdrawal another of the depositor's notes claimed does not compete: whichever of the two it spent,
the depositor's money reached it, so confidence is about where this deposit's money went, not which
of one wallet's interchangeable notes is which. The notes that compete are the depositor's, read
from the chain (`LinkFacts.deposits_by`, flagged or not), never other wallets' flagged deposits: a
link depends on chain data and on its own deposit, not on which other deposits the trace found, or
when (tracer/engine/mixer_scope.py gives each depositor the facts of its own pools). Other wallets'
notes compete too when the chain ties them to the depositor's candidates (`LinkFacts.rival_notes`:
wallets that transacted with a wallet the depositor shares with a candidate's recipient), weighed
on those candidates only: a withdrawal one of them claims is explained by it.

Everything here is pure: the worker (and bench/mixer_linker.py) fetch the facts and call `link`.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from tracer.chains import events as chain_events
from tracer.engine.mixer_pool import PoolIndex

DEPOSIT_TOPIC = chain_events.topic("tornado", "Deposit(bytes32,uint32,uint256)")
WITHDRAWAL_TOPIC = chain_events.topic("tornado", "Withdrawal(address,bytes32,address,uint256)")
POOL_TOPICS = (DEPOSIT_TOPIC, WITHDRAWAL_TOPIC)

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


LogLike = chain_events.LogLike


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


def decode_pool_log(log: LogLike) -> PoolEvent | None:
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


# ---------------------------------------------------------------------------------------------
# the linker


@dataclass(frozen=True, slots=True)
class FlaggedDeposit:
    """A deposit into a pool that carried flagged money (one hop of the trace)."""

    transfer_id: int
    pool: str
    asset: str
    denomination: int  # what the deposit put in (the transfer's whole amount)
    flagged: int  # the flagged part of it
    depositor: str
    tx_hash: str
    block_number: int
    block_time: int
    decimals: int | None = None
    symbol: str | None = None


@dataclass
class LinkFacts:
    """What the linker reads; the caller fetches it in batches.

    `events` holds each pool's events from the first flagged deposit to the end of the window,
    `before` the counts (deposits, withdrawals) of each pool before them. `peers` maps depositors
    and candidate recipients to the wallets they transacted with; `services` are addresses never
    counted as a shared wallet (labelled services, the pools themselves). `deposits_by` lists
    every deposit event each depositor made into the pools, flagged or not: its notes.
    """

    events: Mapping[str, Sequence[PoolEvent]]
    before: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    denominations: Mapping[str, int] = field(default_factory=dict)
    gas_prices: Mapping[str, int] = field(default_factory=dict)
    peers: Mapping[str, set[str]] = field(default_factory=dict)
    services: set[str] = field(default_factory=set)
    deposits_by: Mapping[str, Sequence[PoolEvent]] = field(default_factory=dict)
    # Candidate recipients' wallets when the caller reads them over another window than the
    # depositors' (an address can be both); empty: `peers` serves both roles.
    recipient_peers: Mapping[str, set[str]] = field(default_factory=dict)
    # Deposits candidate recipients made into the pools themselves (read from their transfers):
    # a recipient's own note explains its withdrawal as well as ours would (same address).
    recipient_notes: Mapping[str, Sequence[PoolEvent]] = field(default_factory=dict)
    # Other wallets' notes in the pools that compete with the depositors' own for their candidate
    # withdrawals (mixer_scope.own_facts keeps those of wallets tied to a candidate's recipient
    # through a wallet the depositor shares with it; their peers are in `peers`).
    rival_notes: Mapping[str, Sequence[PoolEvent]] = field(default_factory=dict)

    def peers_of_recipient(self, address: str) -> set[str]:
        source = self.recipient_peers if self.recipient_peers else self.peers
        return source.get(address, set())


@dataclass(frozen=True)
class LinkParams:
    window_seconds: int = 90 * 86_400  # withdrawals this long after a deposit are candidates
    multi_window_seconds: int = 86_400  # the multi-denomination heuristic looks this far around
    max_candidates: int = 400  # nearest withdrawals per deposit (a busy pool has thousands)
    keep: int = 5  # links reported per deposit (the best; only one can pass a threshold >= 0.5)
    min_reported: float = 0.01


@dataclass(frozen=True, slots=True)
class Reason:
    heuristic: str  # same_address | direct_interaction | shared_peers | gas_price | multi_denomination |
    #                 timing | anonymity_set | same_recipient | recipient_own_note
    detail: str
    weight: float  # likelihood ratio (anonymity_set: the prior odds)

    def to_json(self) -> dict[str, Any]:
        return {"heuristic": self.heuristic, "detail": self.detail, "weight": round(self.weight, 6)}


@dataclass(frozen=True, slots=True)
class Link:
    deposit: FlaggedDeposit
    withdrawal: PoolEvent
    confidence: float
    odds: float
    reasons: tuple[Reason, ...]

    def carried(self, withdrawn: int) -> int:
        """Flagged amount this link carries: the deposit's flagged amount scaled by the
        confidence, never more than the recipient got out of the pool."""
        return min(withdrawn, int(self.deposit.flagged * self.confidence))


@dataclass
class DepositOutcome:
    deposit: FlaggedDeposit
    anonymity_set: int  # notes unspent in the pool right after this deposit (ours included)
    candidates: int  # withdrawals considered
    links: list[Link]  # best first, at most LinkParams.keep

    def best(self, threshold: float) -> Link | None:
        return self.links[0] if self.links and self.links[0].confidence >= threshold else None


def link(
    deposits: Sequence[FlaggedDeposit], facts: LinkFacts, params: LinkParams | None = None
) -> list[DepositOutcome]:
    """Score every flagged deposit against the pool's later withdrawals; best links first."""
    p = params or LinkParams()
    index = {pool: PoolIndex(events, facts.before.get(pool, (0, 0))) for pool, events in facts.events.items()}
    rarity = _gas_rarity(facts)
    multisets = _Multisets(facts, p)
    scored: dict[int, list[tuple[float, PoolEvent, tuple[Reason, ...]]]] = {}
    outcomes: dict[int, DepositOutcome] = {}
    groups = _notes(deposits, facts)
    # The withdrawals the depositors' own notes may have made: another wallet's note competes for
    # these only (what it could claim elsewhere is not read, and does not matter here).
    own_candidates: dict[tuple[str, str], set[tuple[str, int]]] = defaultdict(set)
    for group, d in ((group, d) for group, notes in groups.items() for d in notes):
        pool = index.get(d.pool)
        if pool is None:
            outcomes[d.transfer_id] = DepositOutcome(d, 0, 0, [])
            continue
        at = pool.position_of(d)
        candidates = pool.withdrawals_after(at, d.block_time + p.window_seconds, p.max_candidates)
        # Another wallet's note is weighed on the depositor's candidates only, whose recipients'
        # wallets are read whatever the batch; so are the crowds among them.
        rival = d.depositor != group[0]
        popular = _popular_peers([c for c in candidates if not rival or (c[1].tx_hash, c[1].log_index)
                                  in own_candidates[group]], facts)
        pairs = []
        survival = 1.0  # chance our note is still unspent (withdrawals spend random unspent notes)
        for cand in candidates:
            k = cand[0]
            unspent = pool.unspent_after(k - 1) if k > 0 else pool.base_unspent
            odds, reasons = _score(d, cand, at, pool, facts, rarity, multisets, popular, survival, unspent)
            pairs.append((odds, cand[1], reasons))
            if unspent > 0:
                survival *= 1.0 - 1.0 / unspent
        if not rival:
            own_candidates[group].update((w.tx_hash, w.log_index) for _, w, _ in pairs)
        else:
            pairs = [pair for pair in pairs if (pair[1].tx_hash, pair[1].log_index) in own_candidates[group]]
        scored[d.transfer_id] = pairs
        outcomes[d.transfer_id] = DepositOutcome(d, pool.unspent_after(at), len(candidates), [])
    # One note per withdrawal: within each depositor's notes in a pool, the strongest pairs claim
    # their withdrawal first.
    claimed: dict[tuple[str, int], int] = {}
    assigned: dict[int, tuple[str, int]] = {}
    for notes in groups.values():
        # Ties go to the earlier note (chain order), then the earlier withdrawal.
        ranking = sorted(((odds, (d.block_number, d.tx_hash, d.transfer_id), w) for d in notes
                          for odds, w, _ in scored.get(d.transfer_id, ())), key=lambda x: (-x[0], x[1], x[2].position))
        for _odds, (_, _, d_id), w in ranking:
            key = (w.tx_hash, w.log_index)
            if d_id in assigned or key in claimed:
                continue
            claimed[key] = d_id
            assigned[d_id] = key
    for d in deposits:
        d_id = d.transfer_id
        pairs = scored.get(d_id, [])
        open_pairs = [(o, w, r) for o, w, r in pairs if claimed.get((w.tx_hash, w.log_index), d_id) == d_id]
        mass = 1.0 + sum(o for o, _, _ in open_pairs)
        # Withdrawals of this pool to one recipient are the same money to the same place: their
        # probabilities add up, and the link names the one assigned (else the likeliest of them).
        by_recipient: dict[str, list[tuple[float, PoolEvent, tuple[Reason, ...]]]] = {}
        for pair in open_pairs:
            by_recipient.setdefault(pair[1].recipient, []).append(pair)
        mine = assigned.get(d_id)
        links = []
        for members in by_recipient.values():
            members.sort(key=lambda x: (-((x[1].tx_hash, x[1].log_index) == mine), -x[0], x[1].position))
            odds, w, reasons = members[0]
            total = sum(o for o, _, _ in members)
            if len(members) > 1:
                # Odds are 0 when the pool had spent every earlier note (survival 0): nothing to add up.
                gain = total / odds if odds > 0 else 1.0
                reasons = (*reasons, Reason("same_recipient", f"{len(members)} unclaimed withdrawals of this pool "
                                            f"went to {w.recipient}; their chances add up", gain))
            links.append(Link(outcomes[d_id].deposit, w, total / mass, total, reasons))
        links.sort(key=lambda lk: (-lk.confidence, lk.withdrawal.position))
        outcomes[d_id].links = [lk for lk in links[: p.keep] if lk.confidence >= p.min_reported]
    return [outcomes[d.transfer_id] for d in deposits]


def _notes(deposits: Sequence[FlaggedDeposit], facts: LinkFacts) -> dict[tuple[str, str], list[FlaggedDeposit]]:
    """Each depositor's notes in each pool: its flagged deposits, then its other deposits there
    (from `facts.deposits_by`, carrying nothing: they only compete), under negative ids."""
    groups: dict[tuple[str, str], list[FlaggedDeposit]] = {}
    for d in deposits:
        groups.setdefault((d.depositor, d.pool), []).append(d)
    next_id = -1
    for (depositor, pool), notes in groups.items():
        taken = Counter(d.tx_hash for d in notes)
        first = notes[0]
        for e in sorted((e for e in facts.deposits_by.get(depositor, ()) if e.pool == pool and e.kind == "deposit"),
                        key=lambda e: e.position):
            if taken[e.tx_hash] > 0:
                taken[e.tx_hash] -= 1
                continue
            notes.append(FlaggedDeposit(next_id, pool, first.asset, first.denomination, 0, depositor, e.tx_hash,
                                        e.block_number, e.block_time, first.decimals, first.symbol))
            next_id -= 1
        # Then other wallets' notes there (after the depositor's own: `link` reads its candidates first).
        for rival, evs in sorted(facts.rival_notes.items()):
            if rival == depositor:
                continue
            for e in sorted((e for e in evs if e.pool == pool and e.kind == "deposit"), key=lambda e: e.position):
                notes.append(FlaggedDeposit(next_id, pool, first.asset, first.denomination, 0, rival, e.tx_hash,
                                            e.block_number, e.block_time, first.decimals, first.symbol))
                next_id -= 1
    return groups


def candidate_withdrawals(
    deposits: Sequence[FlaggedDeposit], facts: LinkFacts, params: LinkParams | None = None
) -> dict[int, list[PoolEvent]]:
    """The withdrawals `link` will weigh for each deposit and each other note of its depositor in
    its pool (by transfer id; the other notes' ids are negative): the caller fetches facts (gas
    prices, recipients' transfers) for exactly these. `facts` needs only `events` and `deposits_by`."""
    p = params or LinkParams()
    index = {pool: PoolIndex(evs, (0, 0)) for pool, evs in facts.events.items()}
    out: dict[int, list[PoolEvent]] = {}
    for d in (d for notes in _notes(deposits, facts).values() for d in notes):
        pool = index.get(d.pool)
        at = pool.position_of(d) if pool is not None else 0
        out[d.transfer_id] = [] if pool is None else [
            w for _, w in pool.withdrawals_after(at, d.block_time + p.window_seconds, p.max_candidates)]
    return out


def _score(
    d: FlaggedDeposit,
    candidate: tuple[int, PoolEvent],
    at: int,
    pool: PoolIndex,
    facts: LinkFacts,
    rarity: Counter[int],
    multisets: _Multisets,
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
    reasons.append(Reason("timing", f"withdrawn {_duration(delay)} after the deposit; {between} other deposits "
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


def _gas_rarity(facts: LinkFacts) -> Counter[int]:
    """How many of the pools' transactions (each counted once) used each gas price."""
    seen: dict[str, int] = {}
    for events in facts.events.values():
        for e in events:
            gp = facts.gas_prices.get(e.tx_hash)
            if gp is not None:
                seen[e.tx_hash] = gp
    return Counter(seen.values())


def _popular_peers(candidates: Iterable[tuple[int, PoolEvent]], facts: LinkFacts) -> set[str]:
    """Wallets shared by many candidate recipients: services (an exchange's hot wallet, a
    relayer's payout address, a faucet) that say nothing about who is behind a withdrawal."""
    counts: Counter[str] = Counter()
    for _, w in candidates:
        counts.update(facts.peers_of_recipient(w.recipient))
    return {a for a, n in counts.items() if n > POPULAR_PEER}


class _Multisets:
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
                      f"the same within {_duration(span)} ({others} other recipients did as tightly)", weight)


def _amount(raw: int, decimals: int | None) -> str:
    if not decimals:
        return str(raw)
    whole, frac = divmod(raw, 10**decimals)
    return str(whole) if not frac else f"{whole}.{str(frac).rjust(decimals, '0').rstrip('0')}"


def _duration(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7_200:
        return f"{seconds // 60}min"
    if seconds < 172_800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86_400}d"


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
