"""The trace step's decisions (tracer.engine.step.decide) on hand-built inputs: no database, no
chain. Each case builds the batch's facts as gather would hand them over and checks the hops,
their statuses and reasons, and the verdicts decide writes."""

from __future__ import annotations

from collections.abc import Sequence

from tracer.domain.labels import Label
from tracer.domain.records import Job, StoredTransfer
from tracer.domain.transfers import NATIVE, Transfer, TransferKind
from tracer.domain.verdicts import FOLLOW, Judged, Verdict
from tracer.engine.policy import Policy
from tracer.engine.recognised import ServiceLogs
from tracer.engine.step import decide
from tracer.engine.step.plan import FlaggedOut, StepFacts, TraceInfo
from tracer.engine.taint import TaintedOut

SEED = "0x" + "5e" * 20
WALLET = "0x" + "aa" * 20
NEXT = "0x" + "bb" * 20
EXCHANGE = "0x" + "ee" * 20
HUB = "0x" + "cc" * 20
ETH = 10**18


def _trace(**policy: object) -> TraceInfo:
    return TraceInfo(id=1, chain="ethereum", seeds=frozenset({SEED}), policy=Policy(**policy),  # type: ignore[arg-type]
                     from_block=100, to_block=1_000, totals={NATIVE: 100 * ETH}, home="ethereum")


def _job(address: str, depth: int = 1, *, seed: bool = False) -> Job:
    return Job(trace_id=1, address=address, kind="address", depth=depth, is_seed=seed, generation=0, attempts=0)


def _transfer(tid: int, frm: str, to: str, amount: int, block: int = 200) -> StoredTransfer:
    return StoredTransfer(tid, Transfer("ethereum", block, 1_700_000_000 + block, f"0x{tid:064x}", 0, "tx", frm, to,
                                        NATIVE, amount, TransferKind.NATIVE, 18, "ETH"))


def _out(owner: str, st: StoredTransfer, flagged: int, parents: Sequence[int] = (1,)) -> FlaggedOut:
    return FlaggedOut(owner, TaintedOut(st.id, NATIVE, flagged, st.transfer.amount, list(parents)), st)


def _label(address: str, category: str, entity: str = "Some Exchange") -> Label:
    return Label(chain="ethereum", address=address, entity=entity, category=category, source="test")


def _facts(trace: TraceInfo, outs: list[FlaggedOut], *, jobs: Sequence[Job] = (), labels: dict | None = None,
           known: dict | None = None, verdicts: dict | None = None) -> StepFacts:
    return StepFacts(trace=trace, jobs=list(jobs) or [_job(WALLET)], verdicts=dict(verdicts or {WALLET: FOLLOW}),
                     active=[WALLET], outs=outs, labels=labels or {}, known=known or {}, service_logs=ServiceLogs())


def test_flagged_money_is_followed_to_the_next_wallet_one_level_deeper() -> None:
    st = _transfer(10, WALLET, NEXT, 5 * ETH)
    plan = decide.decide(_facts(_trace(), [_out(WALLET, st, 4 * ETH)], jobs=[_job(WALLET, depth=3)]))
    [(owner, hop)] = plan.hops
    assert owner == WALLET
    assert (hop.from_addr, hop.to_addr, hop.status, hop.reason) == (WALLET, NEXT, "followed", "flagged funds")
    assert hop.amount == 4 * ETH and hop.share == 0.8 and hop.depth == 4 and hop.parents == [1]
    assert hop.transfer_id not in plan.quiet  # it wakes NEXT
    assert plan.verdicts == {WALLET: FOLLOW}


def test_below_the_threshold_the_hop_is_stopped() -> None:
    # min_share 0.0005 of 100 ETH is 0.05 ETH: 0.01 ETH of flagged money is not followed.
    st = _transfer(11, WALLET, NEXT, ETH)
    [(_, hop)] = decide.decide(_facts(_trace(), [_out(WALLET, st, ETH // 100)])).hops
    assert (hop.status, hop.reason) == ("stopped", "below_threshold")
    # A policy's min_amount overrides the share.
    [(_, hop)] = decide.decide(_facts(_trace(min_amount={NATIVE: 1}), [_out(WALLET, st, ETH // 100)])).hops
    assert (hop.status, hop.reason) == ("followed", "flagged funds")


def test_a_labelled_exchange_is_an_exit_with_its_verdict() -> None:
    st = _transfer(12, WALLET, EXCHANGE, 5 * ETH)
    labels = {EXCHANGE: [_label(EXCHANGE, "exchange", "Binance")]}
    plan = decide.decide(_facts(_trace(), [_out(WALLET, st, 5 * ETH)], labels=labels))
    [(_, hop)] = plan.hops
    assert (hop.status, hop.reason) == ("exit", "label:test")
    assert plan.verdicts[EXCHANGE] == Verdict("exit", "label:test", "Binance", "exchange")


def test_a_recipient_an_earlier_batch_stopped_copies_its_verdict_unless_only_too_deep() -> None:
    st = _transfer(13, WALLET, HUB, 5 * ETH)
    stopped = {HUB: Judged("stopped", "hub", None, None)}
    [(_, hop)] = decide.decide(_facts(_trace(), [_out(WALLET, st, 5 * ETH)], known=stopped)).hops
    assert (hop.status, hop.reason) == ("stopped", "hub")
    # max_depth is lifted by a shorter path: the hop stays followed and wakes the address again.
    too_deep = {HUB: Judged("stopped", "max_depth", None, None)}
    [(_, hop)] = decide.decide(_facts(_trace(), [_out(WALLET, st, 5 * ETH)], known=too_deep)).hops
    assert (hop.status, hop.reason) == ("followed", "flagged funds")


def test_money_back_to_a_seed_makes_no_hop() -> None:
    st = _transfer(14, WALLET, SEED, 5 * ETH)
    assert decide.decide(_facts(_trace(), [_out(WALLET, st, 5 * ETH)])).hops == []


def test_a_swap_out_is_followed_quietly_and_its_bought_side_is_an_inflow_hop() -> None:
    paid, bought = _transfer(15, WALLET, NEXT, 5 * ETH), _transfer(16, NEXT, WALLET, 7 * ETH)
    outs = [FlaggedOut(WALLET, TaintedOut(15, NATIVE, 5 * ETH, 5 * ETH, [1], swap="out"), paid),
            FlaggedOut(WALLET, TaintedOut(16, NATIVE, 7 * ETH, 7 * ETH, [15], swap="in"), bought)]
    plan = decide.decide(_facts(_trace(), outs))
    assert [(h.from_addr, h.to_addr, h.status, h.reason) for _, h in plan.hops] == [
        (WALLET, NEXT, "followed", "swap"), (NEXT, WALLET, "followed", "swap")]
    assert plan.quiet == {15, 16}  # neither wakes anyone: the taint is counted in this pass


def test_labels_judge_the_batch_own_addresses_but_never_a_seed() -> None:
    own = {WALLET: [_label(WALLET, "exchange")], SEED: [_label(SEED, "exchange")]}
    verdicts = decide.by_own_label([_job(WALLET), _job(SEED, 0, seed=True)], own, Policy())
    assert set(verdicts) == {WALLET} and verdicts[WALLET].role == "exit"


def test_history_makes_a_hub_a_stop_and_max_depth_stops_an_address_too_deep() -> None:
    senders = [_transfer(100 + i, "0x" + f"{i:040x}", HUB, ETH) for i in range(300)]
    jobs = {HUB: _job(HUB), WALLET: _job(WALLET, depth=5), SEED: _job(SEED, 0, seed=True)}
    got = decide.by_history([HUB, WALLET, SEED], jobs, {HUB: senders}, {}, {}, Policy(max_depth=5))
    assert got[HUB].role == "stopped" and got[HUB].reason == "hub"
    assert got[WALLET] == Verdict("stopped", "max_depth")
    assert got[SEED] == Verdict("followed", "seed")
    # One level shallower the wallet is followed.
    assert decide.by_history([WALLET], {WALLET: _job(WALLET, depth=4)}, {}, {}, {}, Policy(max_depth=5)) == {
        WALLET: FOLLOW}


def test_a_wallet_that_sweeps_to_an_exchange_is_recognised_as_its_deposit_address() -> None:
    deposit = _transfer(20, NEXT, WALLET, 3 * ETH, block=300)
    sweep = _transfer(21, WALLET, EXCHANGE, 3 * ETH, block=310)
    labels = {EXCHANGE: [_label(EXCHANGE, "exchange", "Kraken")]}
    got = decide.by_history([WALLET], {WALLET: _job(WALLET)}, {WALLET: [deposit, sweep]}, labels, {}, Policy())
    assert (got[WALLET].role, got[WALLET].reason, got[WALLET].entity) == ("exit", "deposit_address", "Kraken")


def test_a_frozen_address_is_a_stop_before_anything_else() -> None:
    frozen = {WALLET: Verdict("stopped", "frozen by issuer at block 250", "Tether", "frozen")}
    got = decide.by_history([WALLET], {WALLET: _job(WALLET)}, {}, {}, frozen, Policy())
    assert got[WALLET] is frozen[WALLET]


def test_clean_money_models_ask_for_prior_balances_of_followed_non_seeds_only() -> None:
    jobs = {WALLET: _job(WALLET), SEED: _job(SEED, 0, seed=True)}
    timelines = {WALLET: [_transfer(1, SEED, WALLET, 3 * ETH, 150), _transfer(2, WALLET, NEXT, ETH, 160)],
                 SEED: [_transfer(1, SEED, WALLET, 3 * ETH, 150)]}
    moves = {a: decide.moves(a, t) for a, t in timelines.items()}
    needs = decide.balance_needs(_trace(), [WALLET, SEED], jobs, {WALLET: 150, SEED: 100}, {WALLET: {NATIVE}}, moves)
    assert needs == {WALLET: (150, {NATIVE})}
    assert decide.balance_needs(_trace(taint_model="full_poison"), [WALLET], jobs, {WALLET: 150}, {}, moves) == {}


def test_a_wallet_that_does_not_send_an_asset_on_needs_no_prior_balance_of_it() -> None:
    """Clean money only changes what an outflow carries: a holder's taint is the same whatever
    it held, so its balance is not read (one call per leaf of the trace)."""
    jobs = {WALLET: _job(WALLET)}
    holder = {WALLET: decide.moves(WALLET, [_transfer(1, SEED, WALLET, 3 * ETH, 150),
                                            _transfer(3, NEXT, WALLET, ETH, 170)])}
    assert decide.balance_needs(_trace(), [WALLET], jobs, {WALLET: 150}, {WALLET: {NATIVE}}, holder) == {}
    # The same wallet once it sends: its clean ETH would dilute what leaves, so it is read.
    spender = {WALLET: [*holder[WALLET], *decide.moves(WALLET, [_transfer(2, WALLET, NEXT, ETH, 160)])]}
    assert decide.balance_needs(_trace(), [WALLET], jobs, {WALLET: 150}, {WALLET: {NATIVE}}, spender) == {
        WALLET: (150, {NATIVE})}
    inflow, out = _transfer(1, SEED, WALLET, 3 * ETH, 150), _transfer(2, WALLET, NEXT, ETH, 160)
    moves_of, flagged = decide.movements([WALLET], {WALLET: [inflow, out]}, {WALLET: {1: ETH}}, merge_utxo=False)
    # ...because the prior balance does change what it passes on (haircut).
    with_prior = decide.flagged_outflows(_trace(), [WALLET], jobs, {WALLET: [inflow, out]}, moves_of, flagged,
                                         {WALLET: {NATIVE: 3 * ETH}})
    without = decide.flagged_outflows(_trace(), [WALLET], jobs, {WALLET: [inflow, out]}, moves_of, flagged, {})
    assert with_prior[0].taint.amount < without[0].taint.amount


def test_flagged_outflows_follow_the_taint_model_over_the_wallet_timeline() -> None:
    inflow = _transfer(30, SEED, WALLET, 10 * ETH, block=200)
    out = _transfer(31, WALLET, NEXT, 4 * ETH, block=210)
    timelines = {WALLET: [inflow, out]}
    moves_of, flagged = decide.movements([WALLET], timelines, {WALLET: {30: 10 * ETH}}, merge_utxo=False)
    outs = decide.flagged_outflows(_trace(), [WALLET], {WALLET: _job(WALLET)}, timelines, moves_of, flagged, {})
    assert [(f.owner, f.st.id, f.taint.amount) for f in outs] == [(WALLET, 31, 4 * ETH)]
    # Half the wallet was clean before: haircut halves what leaves.
    outs = decide.flagged_outflows(_trace(), [WALLET], {WALLET: _job(WALLET)}, timelines, moves_of, flagged,
                                   {WALLET: {NATIVE: 10 * ETH}})
    assert [f.taint.amount for f in outs] == [2 * ETH]


def test_a_deposit_into_a_mixer_pool_is_stopped_and_handed_to_the_linker() -> None:
    pool = "0x" + "77" * 20
    st = _transfer(40, WALLET, pool, ETH)
    facts = _facts(_trace(), [_out(WALLET, st, ETH)])
    facts.service_logs = ServiceLogs(pools_of={st.transfer.tx_hash: [pool]})
    plan = decide.decide(facts)
    [(_, hop)] = plan.hops
    assert (hop.status, hop.reason) == ("stopped", "entered mixer") and plan.quiet == {40}
    [pending] = plan.deposits
    assert (pending.owner, pending.pool, pending.hop_index, pending.depth) == (WALLET, pool, 0, 2)
    assert plan.services[pool].category == "mixer" and pool not in plan.verdicts


def test_a_labelled_bridge_is_an_exit_handed_to_the_bridge_follower() -> None:
    router = "0x" + "b1" * 20
    st = _transfer(41, WALLET, router, 2 * ETH)
    labels = {router: [_label(router, "bridge", "Across")]}
    plan = decide.decide(_facts(_trace(), [_out(WALLET, st, 2 * ETH)], labels=labels))
    [(_, hop)] = plan.hops
    assert (hop.status, hop.reason) == ("exit", "bridge")
    assert [(b.router, b.st.id, b.hop_index) for b in plan.bridged] == [(router, 41, 0)]
    assert plan.deposits == []
