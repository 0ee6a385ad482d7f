"""Mixer pools: event decoding, the deposit -> withdrawal linker, and traces through real pools.

Unit tests score hand-made pools; the end-to-end tests trace a generated scenario whose
launderers withdraw their Tornado notes leaving one published clue each, over a real devchain
(JSON-RPC) and Postgres, and compare with the generator's ground truth.

This file holds the tests that need nothing outside the process; those over a devchain, Postgres
or a subprocess are in tests/integration/test_mixers.py.
"""

from __future__ import annotations

import pytest
from eth_hash.auto import keccak

from tracer.devchain.chain import DEPOSIT_TOPIC, WITHDRAWAL_TOPIC
from tracer.engine import mixer_events, mixer_facts, mixer_scope, mixers
from tracer.engine.mixer_events import PoolEvent
from tracer.engine.mixer_facts import FlaggedDeposit, LinkFacts
from tracer.engine.policy import Policy, PolicyError

ETH = 10**18
POOL = "0x" + "70" * 20

HAND_GAS = 23_456_789_123  # set by hand: not a whole gwei


def test_topics_are_the_keccak_of_the_tornado_signatures() -> None:
    assert mixer_events.DEPOSIT_TOPIC == "0x" + keccak(b"Deposit(bytes32,uint32,uint256)").hex() == DEPOSIT_TOPIC
    assert mixer_events.WITHDRAWAL_TOPIC == "0x" + keccak(b"Withdrawal(address,bytes32,address,uint256)").hex()
    assert mixer_events.WITHDRAWAL_TOPIC == WITHDRAWAL_TOPIC


def test_policy_min_link_confidence() -> None:
    assert Policy().min_link_confidence == 0.5
    assert Policy.from_json({"min_link_confidence": 0.8}).min_link_confidence == 0.8
    for bad in (1.5, -0.1, "0.5", True):
        with pytest.raises(PolicyError) as err:
            Policy.from_json({"min_link_confidence": bad})
        assert err.value.field == "min_link_confidence"


@pytest.mark.parametrize(("amount", "decimals", "expected"), [
    (ETH // 10, 18, True), (ETH, 18, True), (100 * ETH, 18, True), (5000 * 10**8, 8, True),
    (100_000 * 10**6, 6, True), (3 * ETH, 18, False), (ETH + 1, 18, False), (10**16, 18, False), (ETH, None, False),
])
def test_pool_like_amounts(amount: int, decimals: int | None, expected: bool) -> None:
    assert mixer_events.looks_like_denomination(amount, decimals) is expected


def _addr(n: int) -> str:
    return f"0x{n:040x}"


class _Pool:
    """A pool's history built step by step: one event per block, 12 s apart."""

    def __init__(self, pool: str = POOL, clock: list[int] | None = None) -> None:
        self.pool = pool
        self.events: list[PoolEvent] = []
        self.gas: dict[str, int] = {}
        self.clock = clock if clock is not None else [0]  # pools sharing a clock share a chain

    def _next(self) -> tuple[int, int]:
        self.clock[0] += 1
        n = self.clock[0]
        return n, 1_700_000_000 + 12 * n

    def deposit(self, gas: int = 20 * 10**9) -> PoolEvent:
        block, t = self._next()
        e = PoolEvent(self.pool, "deposit", block, 0, t, f"0x{block:064x}", f"0x{block:064x}",
                      leaf_index=len(self.events))
        self.events.append(e)
        self.gas[e.tx_hash] = gas
        return e

    def withdraw(self, recipient: str, gas: int = 20 * 10**9, fee: int = 0) -> PoolEvent:
        block, t = self._next()
        e = PoolEvent(self.pool, "withdrawal", block, 0, t, f"0x{block:064x}", f"0x{block:064x}", recipient=recipient,
                      relayer=_addr(0xEE), fee=fee)
        self.events.append(e)
        self.gas[e.tx_hash] = gas
        return e


def _flagged(e: PoolEvent, depositor: str, tid: int = 1, denomination: int = 10 * ETH) -> FlaggedDeposit:
    return FlaggedDeposit(tid, e.pool, "native", denomination, denomination, depositor, e.tx_hash, e.block_number,
                          e.block_time)


def _crowd(p: _Pool, n: int, start: int = 1000) -> None:
    """n unrelated users deposit, then n withdraw to fresh addresses (whole-gwei gas prices)."""
    for k in range(n):
        p.deposit(gas=(10 + k % 20) * 10**9)
    for k in range(n):
        p.withdraw(_addr(start + k), gas=(10 + k % 20) * 10**9)


def test_same_address_links_with_high_confidence() -> None:
    p = _Pool()
    _crowd(p, 20)
    depositor = _addr(1)
    ours = p.deposit()
    _crowd(p, 20, start=2000)
    p.withdraw(depositor)
    [outcome] = mixers.link([_flagged(ours, depositor)], LinkFacts(events={POOL: p.events}, gas_prices=p.gas))
    best = outcome.best(0.5)
    assert best is not None and best.withdrawal.recipient == depositor
    assert best.confidence > 0.9
    assert "same_address" in {r.heuristic for r in best.reasons}
    assert outcome.anonymity_set == 1  # the crowd before us had withdrawn everything
    assert sum(lk.confidence for lk in outcome.links) <= 1.0


def test_unusual_gas_price_links_and_a_common_one_does_not() -> None:
    p = _Pool()
    _crowd(p, 30)
    unusual = 31_415_926_535
    ours = p.deposit(gas=unusual)
    _crowd(p, 10, start=2000)
    p.withdraw(_addr(77), gas=unusual)
    _crowd(p, 10, start=3000)
    [outcome] = mixers.link([_flagged(ours, _addr(1))], LinkFacts(events={POOL: p.events}, gas_prices=p.gas))
    best = outcome.best(0.5)
    assert best is not None and best.withdrawal.recipient == _addr(77)
    assert "gas_price" in {r.heuristic for r in best.reasons}
    # The same shape with a whole-gwei price many others use links nothing.
    q = _Pool()
    _crowd(q, 30)
    ours = q.deposit(gas=15 * 10**9)
    _crowd(q, 10, start=2000)
    q.withdraw(_addr(77), gas=15 * 10**9)
    _crowd(q, 10, start=3000)
    [outcome] = mixers.link([_flagged(ours, _addr(1))], LinkFacts(events={POOL: q.events}, gas_prices=q.gas))
    assert outcome.best(0.5) is None
    assert all(lk.confidence < 0.2 for lk in outcome.links)


def test_shared_wallets_link_but_popular_ones_do_not() -> None:
    p = _Pool()
    _crowd(p, 30)
    depositor, recipient, station, exchange = _addr(1), _addr(77), _addr(99), _addr(98)
    ours = p.deposit()
    _crowd(p, 15, start=2000)
    p.withdraw(recipient)
    peers = {depositor: {station, exchange}, recipient: {station}}
    # The exchange pays half the crowd: a service, whatever its label says.
    for k in range(0, 15, 2):
        peers.setdefault(_addr(2000 + k), set()).add(exchange)
    facts = LinkFacts(events={POOL: p.events}, gas_prices=p.gas, peers=peers)
    [outcome] = mixers.link([_flagged(ours, depositor)], facts)
    best = outcome.best(0.5)
    assert best is not None and best.withdrawal.recipient == recipient
    [shared] = [r for r in best.reasons if r.heuristic == "shared_peers"]
    assert station in shared.detail and exchange not in shared.detail
    # Sharing only the popular exchange says nothing.
    peers[recipient] = {exchange}
    [outcome] = mixers.link([_flagged(ours, depositor)], LinkFacts(events={POOL: p.events}, gas_prices=p.gas,
                                                                     peers=peers))
    assert outcome.best(0.5) is None


def test_multi_denomination_links_each_note_once() -> None:
    clock = [0]
    big, small = _Pool(_addr(0x100), clock), _Pool(_addr(0x10), clock)
    _crowd(big, 10)
    _crowd(small, 30, start=5000)
    depositor, recipient = _addr(1), _addr(77)
    d_big = big.deposit()
    d_small = [small.deposit(), small.deposit()]
    _crowd(small, 10, start=6000)
    big.withdraw(recipient)
    small.withdraw(recipient)
    small.withdraw(recipient)
    _crowd(small, 10, start=7000)
    # Same timestamps across the two pools: the withdrawals come right after each other.
    flagged = [_flagged(d_big, depositor, 1, 100 * ETH), _flagged(d_small[0], depositor, 2), _flagged(d_small[1],
                                                                                                      depositor, 3)]
    facts = LinkFacts(
        events={big.pool: big.events, small.pool: small.events}, gas_prices={**big.gas, **small.gas},
        denominations={big.pool: 100 * ETH, small.pool: 10 * ETH},
        deposits_by={depositor: [d_big, *d_small]},
    )
    outcomes = mixers.link(flagged, facts)
    linked = [o.best(0.5) for o in outcomes]
    assert all(lk is not None and lk.withdrawal.recipient == recipient for lk in linked)
    # Two notes of one pool to one recipient: one withdrawal each, not both on one.
    small_links = {(lk.withdrawal.tx_hash) for lk in linked[1:] if lk is not None}
    assert len(small_links) == 2
    assert all("multi_denomination" in {r.heuristic for r in lk.reasons} for lk in linked if lk is not None)


def test_a_deposit_s_link_does_not_depend_on_other_wallets_deposits() -> None:
    # Wallets x and y each deposit into pool P with the same hand-set gas price as one withdrawal;
    # y also used it in pool Q. A worker batching x with y reads Q's events too, and lets y's note
    # compete for the withdrawal: x's link must not move either way.
    clock = [0]
    p, q = _Pool(POOL, clock), _Pool(_addr(0x71), clock)
    _crowd(p, 20)
    _crowd(q, 20, start=5000)
    x, y = _addr(1), _addr(2)
    fx, fy = _flagged(p.deposit(gas=HAND_GAS), x, 1), _flagged(p.deposit(gas=HAND_GAS), y, 2)
    fyq = _flagged(q.deposit(gas=HAND_GAS), y, 3)
    _crowd(p, 3, start=3000)
    p.withdraw(_addr(77), gas=HAND_GAS)
    q.withdraw(_addr(78), gas=HAND_GAS)
    _crowd(p, 10, start=4000)
    alone = mixer_scope.link_each_depositor([fx], LinkFacts(events={POOL: p.events}, gas_prices=p.gas))
    batched = mixer_scope.link_each_depositor(
        [fy, fyq, fx], LinkFacts(events={POOL: p.events, q.pool: q.events}, gas_prices={**p.gas, **q.gas}))
    assert alone[0].links and alone[0].links[0].withdrawal.recipient == _addr(77)
    assert batched[2].links == alone[0].links
    assert batched[0].links[0].withdrawal.recipient == _addr(77)  # y's note weighs the same withdrawal


def test_a_wallet_s_link_is_the_same_whichever_of_its_deposits_are_flagged_yet() -> None:
    # The multi-denomination case, linked when the trace has found one of the wallet's three
    # notes flagged, then all three: the first note's link is the same (its pools and notes come
    # from the chain, not from what is flagged so far).
    clock = [0]
    big, small = _Pool(_addr(0x100), clock), _Pool(_addr(0x10), clock)
    _crowd(big, 10)
    _crowd(small, 30, start=5000)
    depositor, recipient = _addr(1), _addr(77)
    d_big = big.deposit()
    d_small = [small.deposit(), small.deposit()]
    _crowd(small, 10, start=6000)
    big.withdraw(recipient)
    small.withdraw(recipient)
    small.withdraw(recipient)
    _crowd(small, 10, start=7000)
    facts = LinkFacts(
        events={big.pool: big.events, small.pool: small.events}, gas_prices={**big.gas, **small.gas},
        denominations={big.pool: 100 * ETH, small.pool: 10 * ETH}, deposits_by={depositor: [d_big, *d_small]})
    first = _flagged(d_small[0], depositor, 2)
    [early] = mixer_scope.link_each_depositor([first], facts)
    later = mixer_scope.link_each_depositor([_flagged(d_big, depositor, 1, 100 * ETH), first,
                                             _flagged(d_small[1], depositor, 3)], facts)
    assert early.links == later[1].links
    assert early.best(0.5) is not None and "multi_denomination" in {r.heuristic for r in early.links[0].reasons}


def test_a_wallet_s_notes_compete_whether_flagged_or_not() -> None:
    # One wallet's two notes, withdrawn to two recipients with its hand-set gas price: each note
    # takes one withdrawal (instead of two uncertain halves), and the flagged one's link is the
    # same whether the trace found the other note flagged or only read it from the chain.
    p = _Pool()
    _crowd(p, 20)
    x = _addr(1)
    n1, n2 = p.deposit(gas=HAND_GAS), p.deposit(gas=HAND_GAS)
    _crowd(p, 3, start=3000)
    p.withdraw(_addr(77), gas=HAND_GAS)
    p.withdraw(_addr(78), gas=HAND_GAS)
    _crowd(p, 10, start=4000)
    f1, f2 = _flagged(n1, x, 1), _flagged(n2, x, 2)
    facts = LinkFacts(events={POOL: p.events}, gas_prices=p.gas, deposits_by={x: [n1, n2]})
    [read] = mixers.link([f1], facts)
    both = mixers.link([f1, f2], facts)
    assert read.links == both[0].links
    best = read.best(0.5)
    assert best is not None and best.confidence > 0.9
    assert both[1].best(0.5) is not None and both[1].best(0.5).withdrawal.recipient != best.withdrawal.recipient
    [unaware] = mixers.link([f1], LinkFacts(events={POOL: p.events}, gas_prices=p.gas))
    assert unaware.best(0.5) is None  # without its sibling note: two equally likely withdrawals


def test_a_recipient_s_own_note_explains_its_withdrawal() -> None:
    # x shares a wallet with two recipients. r1 deposited into the pool itself and withdrew to its
    # own address first: its own note explains that withdrawal, so x's money went to r2.
    p = _Pool()
    _crowd(p, 20)
    x, r1, r2, friend = _addr(1), _addr(76), _addr(77), _addr(0xF0)
    theirs = p.deposit()
    ours = p.deposit()
    _crowd(p, 3, start=3000)
    p.withdraw(r1)
    _crowd(p, 10, start=4000)
    p.withdraw(r2)
    peers = {x: {friend}}
    recipient_peers = {r1: {friend}, r2: {friend}}
    unaware = LinkFacts(events={POOL: p.events}, gas_prices=p.gas, peers=peers, recipient_peers=recipient_peers)
    [before] = mixers.link([_flagged(ours, x)], unaware)
    assert before.links[0].withdrawal.recipient == r1  # earlier: more likely still unspent
    aware = LinkFacts(events={POOL: p.events}, gas_prices=p.gas, peers=peers, recipient_peers=recipient_peers,
                      recipient_notes={r1: [theirs]})
    [after] = mixers.link([_flagged(ours, x)], aware)
    best = after.best(0.5)
    assert best is not None and best.withdrawal.recipient == r2, after.links
    rival = next(lk for lk in after.links if lk.withdrawal.recipient == r1) if len(after.links) > 1 else None
    assert rival is None or "recipient_own_note" in {r.heuristic for r in rival.reasons}


def test_no_clue_no_link_and_the_anonymity_set_is_reported() -> None:
    p = _Pool()
    _crowd(p, 25)
    ours = p.deposit()
    _crowd(p, 25, start=2000)
    [outcome] = mixers.link([_flagged(ours, _addr(1))], LinkFacts(events={POOL: p.events}, gas_prices=p.gas))
    assert outcome.best(0.5) is None
    assert outcome.anonymity_set == 1  # every earlier note was withdrawn before ours came in
    assert outcome.candidates == 25


def test_the_only_unspent_note_is_certain_only_until_someone_withdraws() -> None:
    p = _Pool()
    ours = p.deposit()
    p.withdraw(_addr(50))  # the only note in the pool: it must be ours
    [outcome] = mixers.link([_flagged(ours, _addr(1))], LinkFacts(events={POOL: p.events}))
    assert outcome.links[0].withdrawal.recipient == _addr(50) and outcome.links[0].confidence > 0.99
    q = _Pool()
    ours = q.deposit()
    q.deposit()
    q.withdraw(_addr(50))
    q.withdraw(_addr(51))  # the last unspent note, but ours may be gone already
    [outcome] = mixers.link([_flagged(ours, _addr(1))], LinkFacts(events={POOL: q.events}))
    # Two notes, two withdrawals: each could be ours, neither is likely enough to follow.
    assert outcome.best(0.5) is None and len(outcome.links) == 2
    assert outcome.links[0].confidence == pytest.approx(outcome.links[1].confidence)


def test_carried_is_scaled_by_confidence_and_capped_by_the_withdrawal() -> None:
    p = _Pool()
    ours = p.deposit()
    w = p.withdraw(_addr(50), fee=ETH // 10)
    lk = mixer_facts.Link(_flagged(ours, _addr(1)), w, 0.8, 4.0, ())
    assert lk.carried(10 * ETH) == 8 * ETH
    lk = mixer_facts.Link(_flagged(ours, _addr(1)), w, 1.0, 1e9, ())
    assert lk.carried(10 * ETH - ETH // 10) == 10 * ETH - ETH // 10
