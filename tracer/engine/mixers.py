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
The pools' events are in mixer_events, the linker's inputs and outputs in mixer_facts, the
heuristics in mixer_heuristics: each name is imported from the module that holds it.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

from tracer.engine.mixer_events import PoolEvent
from tracer.engine.mixer_facts import DepositOutcome, FlaggedDeposit, Link, LinkFacts, LinkParams, Reason
from tracer.engine.mixer_heuristics import Multisets, gas_rarity, popular_peers, score
from tracer.engine.mixer_pool import PoolIndex


def link(
    deposits: Sequence[FlaggedDeposit], facts: LinkFacts, params: LinkParams | None = None
) -> list[DepositOutcome]:
    """Score every flagged deposit against the pool's later withdrawals; best links first."""
    p = params or LinkParams()
    index = {pool: PoolIndex(events, facts.before.get(pool, (0, 0))) for pool, events in facts.events.items()}
    rarity = gas_rarity(facts)
    multisets = Multisets(facts, p)
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
        popular = popular_peers([c for c in candidates if not rival or (c[1].tx_hash, c[1].log_index)
                                  in own_candidates[group]], facts)
        pairs = []
        survival = 1.0  # chance our note is still unspent (withdrawals spend random unspent notes)
        for cand in candidates:
            k = cand[0]
            unspent = pool.unspent_after(k - 1) if k > 0 else pool.base_unspent
            odds, reasons = score(d, cand, at, pool, facts, rarity, multisets, popular, survival, unspent)
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
