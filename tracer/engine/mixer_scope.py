"""Which facts each wallet's mixer deposits are linked with, so that a link does not depend on
which deposits a worker happened to batch together.

A worker links the flagged deposits of one batch at once, and reads facts for all of them: the
pools' events, gas prices, counterparties. Several of the linker's measures are taken over
everything in those facts: how rare a gas price is among the pools' transactions, which
denominations a recipient withdrew (the multi-denomination heuristic), which addresses are pools
(never a shared wallet), and which notes compete for a withdrawal. Fed a whole batch, a deposit's
confidence, hence the amount its link carries, moved with the other wallets' deposits in it.

Here each depositing wallet is linked on its own, with the facts of its pools (those its flagged
deposits went to, and those its other deposits in the facts went to): their events over the
trace's whole window, and its own deposits there (its notes, which compete with each other;
`mixers.link`). The worker reads a wallet's transfers and notes over the whole window too, not
from its first flagged inflow, so a link depends only on chain data in the trace's window and on
the flagged amount of its own deposit: never on batch composition, on which of the wallet's
deposits the trace has found flagged so far, or on order. Taint only grows, and a link carries
its deposit's flagged amount times a confidence nothing else moves, so the amounts links carry
only grow as the trace finds more flagged money (the engine's fixed point).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

from tracer.engine.mixer_events import PoolEvent
from tracer.engine.mixer_facts import DepositOutcome, FlaggedDeposit, LinkFacts, LinkParams
from tracer.engine.mixers import candidate_withdrawals, link


def own_facts(depositor: str, deposits: Sequence[FlaggedDeposit], facts: LinkFacts) -> LinkFacts:
    """The part of a batch's facts about `depositor` and its pools: those its flagged `deposits`
    went to and those of its other deposits the facts hold (`deposits_by`: read from the chain,
    the same whichever of them the trace found flagged)."""
    pools = {d.pool for d in deposits} | {e.pool for e in facts.deposits_by.get(depositor, ())}
    events = {p: evs for p, evs in facts.events.items() if p in pools}
    notes = [e for e in facts.deposits_by.get(depositor, ()) if e.pool in pools]
    services = set(facts.services) | pools  # the pools are never a shared wallet
    rivals = _rivals(depositor, deposits, facts, events, notes, services)
    return LinkFacts(
        events=events,
        before={p: c for p, c in facts.before.items() if p in pools},
        denominations={p: v for p, v in facts.denominations.items() if p in pools},
        gas_prices=facts.gas_prices,  # looked up by transaction: other pools' entries are never read
        peers={a: facts.peers.get(a, set()) for a in [depositor, *rivals]},
        services=services,
        deposits_by={depositor: notes, **rivals},
        recipient_peers=facts.recipient_peers,
        recipient_notes=facts.recipient_notes,
        rival_notes=rivals,
    )


def _rivals(depositor: str, deposits: Sequence[FlaggedDeposit], facts: LinkFacts,
            events: Mapping[str, Sequence[PoolEvent]], notes: Sequence[PoolEvent],
            services: set[str]) -> dict[str, list[PoolEvent]]:
    """Other wallets whose notes in the depositor's pools compete with its own: those that
    transacted with a wallet the depositor shares with one of its candidates' recipients (one gas
    station paying two launderers and their two recipients ties each deposit to both withdrawals;
    which note went where is read from both notes together). Chain data: the shared wallet's
    counterparties and their deposits, whichever of them the trace found flagged, or when."""
    mine = candidate_withdrawals(deposits, LinkFacts(events, deposits_by={depositor: notes}))
    recipients = {w.recipient for ws in mine.values() for w in ws}
    theirs: set[str] = set().union(*(facts.peers_of_recipient(r) for r in recipients))
    shared = (facts.peers.get(depositor, set()) & theirs) - services - recipients - {depositor}
    wallets = set().union(*(facts.peers.get(s, set()) for s in shared)) - {depositor}
    out = {}
    for wallet in sorted(wallets):
        evs = [e for e in facts.rival_notes.get(wallet, ()) if e.pool in events]
        if evs:
            out[wallet] = evs
    return out


def link_each_depositor(
    deposits: Sequence[FlaggedDeposit], facts: LinkFacts, params: LinkParams | None = None
) -> list[DepositOutcome]:
    """`mixers.link` for each depositing wallet apart, with its own facts; outcomes in the order
    of `deposits`."""
    by_depositor: dict[str, list[FlaggedDeposit]] = defaultdict(list)
    for d in deposits:
        by_depositor[d.depositor].append(d)
    outcomes: dict[int, DepositOutcome] = {}
    for depositor, mine in sorted(by_depositor.items()):
        for outcome in link(mine, own_facts(depositor, mine, facts), params):
            outcomes[outcome.deposit.transfer_id] = outcome
    return [outcomes[d.transfer_id] for d in deposits]
