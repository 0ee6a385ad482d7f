"""follow_mixers.decide_links: which scored links a trace follows, on hand-built outcomes (no
database, no chain): the deposit hop it turns into a followed "mixer deposit", the link and
deposit rows it writes, and the status a labelled or already judged recipient gives the link hop."""

from __future__ import annotations

from tracer.domain.labels import Label
from tracer.domain.mixer_links import DepositStatus, LinkStatus
from tracer.domain.records import HopRow, StoredTransfer
from tracer.domain.transfers import NATIVE, Transfer, TransferKind
from tracer.domain.verdicts import HopStatus, Judged, Reason
from tracer.engine.mixer_events import PoolEvent
from tracer.engine.mixer_facts import DepositOutcome, FlaggedDeposit, Link
from tracer.engine.mixer_facts import Reason as LinkReason
from tracer.engine.policy import Policy
from tracer.engine.step.follow_mixers import Payouts, decide_links
from tracer.engine.step.plan import PendingDeposit, StepPlan, TraceInfo
from tracer.engine.taint import TaintedOut

SEED, WALLET, POOL = "0x" + "5e" * 20, "0x" + "aa" * 20, "0x" + "70" * 20
ALICE, BOB, EXCHANGE = "0x" + "a1" * 20, "0x" + "b0" * 20, "0x" + "ee" * 20
TEN = 10 * 10**18
TRACE = TraceInfo(id=1, chain="ethereum", seeds=frozenset({SEED}), policy=Policy(min_link_confidence=0.5),
                  from_block=0, to_block=1_000, totals={NATIVE: TEN})


def _transfer(tid: int, tx: str, sender: str, to: str, amount: int, block: int) -> StoredTransfer:
    return StoredTransfer(tid, Transfer("ethereum", block, block * 12, tx, 0, "tx" if sender != POOL else "call:0",
                                        sender, to, NATIVE, amount, TransferKind.NATIVE))


def _plan(flagged: int = TEN) -> tuple[StepPlan, FlaggedDeposit]:
    st = _transfer(7, "0xdep", WALLET, POOL, TEN, 100)
    hop = HopRow(transfer_id=7, from_addr=WALLET, to_addr=POOL, asset=NATIVE, block_number=100, depth=2,
                 amount=flagged, share=flagged / TEN, kind="native", status=HopStatus.STOPPED,
                 reason=Reason.ENTERED_MIXER, parents=[3])
    plan = StepPlan(verdicts={})
    plan.add(WALLET, hop, quiet=True)
    plan.deposits.append(PendingDeposit(WALLET, st, POOL, TaintedOut(7, NATIVE, flagged, TEN, [3]), 2, 0))
    return plan, FlaggedDeposit(7, POOL, NATIVE, TEN, flagged, WALLET, "0xdep", 100, 1_200)


def _link(deposit: FlaggedDeposit, tx: str, recipient: str, confidence: float) -> Link:
    w = PoolEvent(POOL, "withdrawal", 200, 4, 2_400, tx, "0xnull" + tx, recipient=recipient)
    return Link(deposit, w, confidence, confidence / (1 - confidence),
                (LinkReason("timing", "withdrawn soon after", 3.0),))


def _payouts(*paid: tuple[str, str, int]) -> Payouts:
    return {(tx, to): _transfer(100 + i, tx, POOL, to, amount, 200) for i, (tx, to, amount) in enumerate(paid)}


def test_the_best_link_sure_enough_is_followed_and_the_deposit_hop_with_it() -> None:
    plan, deposit = _plan()
    outcome = DepositOutcome(deposit, anonymity_set=12, candidates=3,
                             links=[_link(deposit, "0xw1", ALICE, 0.8), _link(deposit, "0xw2", BOB, 0.1)])
    write = decide_links(TRACE, plan, [outcome], _payouts(("0xw1", ALICE, TEN), ("0xw2", BOB, TEN)), {}, {})

    owner, hop = plan.hops[0]
    assert owner == WALLET and (hop.status, hop.reason, hop.confidence) == (HopStatus.FOLLOWED,
                                                                           Reason.MIXER_DEPOSIT, 0.8)
    assert [(d.transfer_id, d.anonymity_set, d.candidates, d.status) for d in write.deposits] == [
        (7, 12, 3, DepositStatus.LINKED)]
    assert [(lk.withdrawal_tx, lk.withdrawal_transfer_id, lk.status, lk.carried) for lk in write.links] == [
        ("0xw1", 100, LinkStatus.FOLLOWED, int(TEN * 0.8)), ("0xw2", 101, LinkStatus.CANDIDATE, TEN // 10)]
    assert write.links[0].reasons == [{"heuristic": "timing", "detail": "withdrawn soon after", "weight": 3.0}]
    assert write.recipient_status == {} and plan.verdicts == {}  # an unjudged recipient: the link hop says "mixer link"


def test_no_link_is_followed_below_the_policy_without_its_payment_or_into_a_seed() -> None:
    cases = [
        (_link, "0xw1", ALICE, 0.49, _payouts(("0xw1", ALICE, TEN))),  # not sure enough
        (_link, "0xw1", ALICE, 0.9, _payouts()),  # the pool's payment to the recipient was not read
        (_link, "0xw1", SEED, 0.9, _payouts(("0xw1", SEED, TEN))),  # back into a flagged wallet
    ]
    for make, tx, recipient, confidence, payouts in cases:
        plan, deposit = _plan()
        before = plan.hops[0]
        write = decide_links(TRACE, plan, [DepositOutcome(deposit, 5, 1, [make(deposit, tx, recipient, confidence)])],
                             payouts, {}, {})
        assert plan.hops[0] == before, recipient
        assert [d.status for d in write.deposits] == [DepositStatus.UNLINKED]
        assert [lk.status for lk in write.links] == [LinkStatus.CANDIDATE]
    # Not read: what the link carries is unknown, so it carries nothing.
    assert write.links[0].withdrawn is not None
    plan, deposit = _plan()
    write = decide_links(TRACE, plan, [DepositOutcome(deposit, 5, 1, [_link(deposit, "0xw1", ALICE, 0.9)])], {}, {},
                         {})
    assert (write.links[0].withdrawn, write.links[0].withdrawal_transfer_id, write.links[0].carried) == (None, None, 0)


def test_a_judged_recipient_gives_the_link_hop_its_status() -> None:
    plan, deposit = _plan()
    labels = {EXCHANGE: [Label("ethereum", EXCHANGE, "Kraken", "exchange", "test")]}
    outcome = DepositOutcome(deposit, 5, 1, [_link(deposit, "0xw1", EXCHANGE, 0.9)])
    write = decide_links(TRACE, plan, [outcome], _payouts(("0xw1", EXCHANGE, TEN)), labels, {})
    assert write.recipient_status == {EXCHANGE: (HopStatus.EXIT, "label:test")}
    assert plan.verdicts[EXCHANGE].entity == "Kraken"

    # Judged by an earlier batch: a final verdict is copied, a max_depth stop (liftable) is not.
    for judged, status in ((Judged(HopStatus.STOPPED, Reason.HUB), {ALICE: (HopStatus.STOPPED, Reason.HUB)}),
                           (Judged(HopStatus.STOPPED, Reason.MAX_DEPTH), {})):
        plan, deposit = _plan()
        outcome = DepositOutcome(deposit, 5, 1, [_link(deposit, "0xw1", ALICE, 0.9)])
        write = decide_links(TRACE, plan, [outcome], _payouts(("0xw1", ALICE, TEN)), {}, {ALICE: judged})
        assert write.recipient_status == status
        assert plan.verdicts == {}
