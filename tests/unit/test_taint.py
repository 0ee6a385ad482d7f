"""Taint models on hand-made timelines, and conservation as a property."""

from hypothesis import given, settings
from hypothesis import strategies as st

from tracer.domain.transfers import Movement
from tracer.engine.taint import propagate, totals_by_asset


def mv(tid: int, block: int, amount: int, incoming: bool, asset: str = "native") -> Movement:
    return Movement(tid, (block, 0, 0, "tx"), asset, amount, incoming, "x")


def test_haircut_example_from_domain_notes() -> None:
    # W holds 10 clean, receives 30 flagged, sends 20: haircut gives 15 flagged.
    tl = [mv(1, 1, 10, True), mv(2, 2, 30, True), mv(3, 3, 20, False)]
    [out] = propagate(tl, {2: 30}, {})
    assert (out.transfer_id, out.amount, out.parents) == (3, 15, [2])


def test_flagged_first_carries_up_to_what_is_flagged() -> None:
    tl = [mv(1, 1, 10, True), mv(2, 2, 30, True), mv(3, 3, 20, False), mv(4, 4, 20, False)]
    outs = propagate(tl, {2: 30}, {}, model="flagged_first")
    assert [(o.transfer_id, o.amount) for o in outs] == [(3, 20), (4, 10)]


def test_policy_value_poison_is_still_flagged_first() -> None:
    # "poison" was flagged_first's name: traces and clients that send it get the same model.
    from tracer.engine.policy import Policy

    assert Policy.from_json({"taint_model": "poison"}).taint_model == "flagged_first"
    assert Policy.from_json({"taint_model": "full_poison"}).taint_model == "full_poison"


def test_full_poison_flags_every_later_outflow_whole_and_is_not_conserved() -> None:
    # The literature's poison: 1 flagged unit in, everything out afterwards is flagged, any asset.
    tl = [mv(1, 1, 5, False), mv(2, 2, 100, True), mv(3, 3, 1, True), mv(4, 4, 60, False),
          mv(5, 5, 45, False), mv(6, 6, 700, False, "usdt")]
    outs = propagate(tl, {3: 1}, {"native": 1000}, model="full_poison")
    assert [(o.transfer_id, o.amount, o.total) for o in outs] == [(4, 60, 60), (5, 45, 45), (6, 700, 700)]
    assert sum(o.amount for o in outs if o.asset == "native") > 1  # 105 out for 1 in
    assert propagate(tl, {}, {}, model="full_poison") == []


def test_prior_balance_dilutes_and_outflows_before_taint_carry_nothing() -> None:
    tl = [mv(1, 1, 5, False), mv(2, 2, 100, True), mv(3, 3, 50, False)]
    outs = propagate(tl, {2: 100}, {"native": 105})
    # 105 - 5 = 100 clean before the flagged 100 arrives: half of the 50 sent is flagged
    assert [(o.transfer_id, o.amount) for o in outs] == [(3, 25)]


def test_assets_are_separate() -> None:
    tl = [mv(1, 1, 100, True, "usdt"), mv(2, 2, 7, True), mv(3, 3, 7, False), mv(4, 4, 60, False, "usdt")]
    outs = propagate(tl, {1: 100}, {})
    assert [(o.transfer_id, o.asset, o.amount) for o in outs] == [(4, "usdt", 60)]


def test_seed_sends_everything_flagged() -> None:
    tl = [mv(1, 1, 100, True), mv(2, 2, 70, False), mv(3, 3, 50, False)]
    outs = propagate(tl, {}, {}, fully_flagged=True)
    assert [o.amount for o in outs] == [70, 50]


def test_emptied_wallet_passes_exactly_what_arrived() -> None:
    # A fresh wallet gets flagged money and a little gas money, then empties: all flagged leaves.
    tl = [mv(1, 1, 10**18, True), mv(2, 2, 5 * 10**15, True), mv(3, 3, 10**18 + 5 * 10**15, False)]
    [out] = propagate(tl, {1: 10**18}, {})
    assert out.amount == 10**18


moves = st.lists(
    st.tuples(st.integers(1, 10**24), st.booleans(), st.booleans(), st.sampled_from(["native", "tok"])),
    min_size=1, max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(moves, st.integers(0, 10**24), st.sampled_from(["haircut", "flagged_first", "poison", "fifo"]))
def test_conservation(items: list[tuple[int, bool, bool, str]], prior: int, model: str) -> None:
    from tracer.engine.policy import Policy

    model = Policy.from_json({"taint_model": model}).taint_model  # "poison": its old name, still accepted
    tl = [mv(i, i, amount, incoming, asset) for i, (amount, incoming, _, asset) in enumerate(items)]
    flagged = {i: amount for i, (amount, incoming, flag, _) in enumerate(items) if incoming and flag}
    outs = propagate(tl, flagged, {"native": prior}, model=model)
    for asset in ("native", "tok"):
        flagged_in = sum(a for i, a in flagged.items() if items[i][3] == asset)
        out_total = sum(o.amount for o in outs if o.asset == asset)
        assert out_total <= flagged_in
    for o in outs:
        assert 0 < o.amount <= o.total
        # an outflow never carries taint that had not yet arrived
        assert sum(a for i, a in flagged.items() if i < o.transfer_id and items[i][3] == o.asset) >= o.amount


@settings(max_examples=300, deadline=None)
@given(moves, st.integers(0, 10**24))
def test_full_poison_is_everything_after_the_first_flagged_inflow(
    items: list[tuple[int, bool, bool, str]], prior: int
) -> None:
    # Not conserved, by definition: checked against the definition instead.
    tl = [mv(i, i, amount, incoming, asset) for i, (amount, incoming, _, asset) in enumerate(items)]
    flagged = {i: amount for i, (amount, incoming, flag, _) in enumerate(items) if incoming and flag}
    outs = {o.transfer_id: o for o in propagate(tl, flagged, {"native": prior}, model="full_poison")}
    first = min(flagged, default=len(items))
    for i, (amount, incoming, _, _) in enumerate(items):
        if incoming:
            continue
        if i > first:
            assert outs[i].amount == outs[i].total == amount
        else:
            assert i not in outs


# ------------------------------------------------------------------ fifo


def test_fifo_spends_the_clean_prior_balance_first() -> None:
    # W holds 10 clean, receives 30 flagged, sends 20: the first 10 out are the clean coins, the
    # next 10 come from the flagged lot (haircut would say 15, flagged_first 20).
    tl = [mv(2, 2, 30, True), mv(3, 3, 20, False)]
    [out] = propagate(tl, {2: 30}, {"native": 10}, model="fifo")
    assert (out.transfer_id, out.amount, out.parents) == (3, 10, [2])


def test_fifo_clean_coin_spent_first_passes_nothing_then_the_flagged_lot_leaves_whole() -> None:
    tl = [mv(1, 1, 50, True), mv(2, 2, 40, True), mv(3, 3, 50, False), mv(4, 4, 40, False)]
    outs = propagate(tl, {2: 40}, {}, model="fifo")
    assert [(o.transfer_id, o.amount, o.parents) for o in outs] == [(4, 40, [2])]
    haircut = propagate(tl, {2: 40}, {}, model="haircut")
    assert [(o.transfer_id, o.amount) for o in haircut] == [(3, 50 * 40 // 90), (4, 40 - 50 * 40 // 90)]


def test_fifo_partly_flagged_lot_gives_up_its_share_exactly() -> None:
    # One inflow of 7 of which 3 flagged, spent 2 + 2 + 3: 3*2//7 = 0, then 3*2//5 = 1, then the
    # last 3 coins take the 2 flagged left.
    tl = [mv(1, 1, 7, True), mv(2, 2, 2, False), mv(3, 3, 2, False), mv(4, 4, 3, False)]
    outs = propagate(tl, {1: 3}, {}, model="fifo")
    assert [(o.transfer_id, o.amount) for o in outs] == [(3, 1), (4, 2)]
    assert sum(o.amount for o in outs) == 3


def test_fifo_part_of_a_lot_never_loses_taint_when_the_lot_gains_some() -> None:
    # A lot of 5 spent 2 + 1 + 2. With 2 flagged a cumulative floor gives the middle slice
    # 2*3//5 - 2*2//5 = 1, with 3 flagged 9//5 - 6//5 = 0: less taint out for more taint in. Haircut
    # inside the lot keeps every slice growing.
    tl = [mv(1, 1, 5, True), mv(2, 2, 2, False), mv(3, 3, 1, False), mv(4, 4, 2, False)]
    for flagged, expected in ((2, {4: 2}), (3, {2: 1, 4: 2}), (4, {2: 1, 3: 1, 4: 2})):
        outs = propagate(tl, {1: flagged}, {}, model="fifo")
        assert {o.transfer_id: o.amount for o in outs} == expected


def test_fifo_outflow_spanning_lots_names_the_flagged_ones_biggest_first() -> None:
    tl = [mv(1, 1, 5, True), mv(2, 2, 10, True), mv(3, 3, 20, True), mv(4, 4, 35, False)]
    [out] = propagate(tl, {1: 5, 3: 20}, {"native": 1}, model="fifo")
    # the 1 prior, the 5 flagged, the 10 clean, the first 19 of the 20 flagged
    assert (out.amount, out.parents) == (24, [3, 1])


def test_fifo_outflow_larger_than_what_we_saw_empties_every_lot() -> None:
    tl = [mv(1, 1, 10, True), mv(2, 2, 30, False), mv(3, 3, 10, True), mv(4, 4, 10, False)]
    outs = propagate(tl, {1: 10, 3: 4}, {}, model="fifo")
    assert [(o.transfer_id, o.amount) for o in outs] == [(2, 10), (4, 4)]


def _io(tid: int, vin: int, vout: int, amount: int, incoming: bool, tx: str = "t") -> Movement:
    return Movement(tid, (5, 0, 2, f"io:{vin}:{vout}"), "native", amount, incoming, "x", tx)


def test_fifo_bitcoin_inputs_go_in_vin_order_compared_as_numbers() -> None:
    # Inside one transaction the flattened transfers of vin 2 come before those of vin 10 (as
    # text "io:10:0" < "io:2:0"): the older, clean coins are paid out first.
    tl = [mv(1, 1, 20, True), mv(2, 2, 20, True),
          _io(10, 10, 0, 20, False), _io(11, 2, 1, 20, False)]
    outs = propagate(tl, {2: 20}, {}, model="fifo")
    assert [(o.transfer_id, o.amount) for o in outs] == [(10, 20)]


def _sw(tid: int, block: int, asset: str, amount: int, incoming: bool) -> Movement:
    return Movement(tid, (block, 0, 0, f"log:{tid}"), asset, amount, incoming, "pool", f"tx{block}")


def test_fifo_swaps_carry_the_flagged_part_of_the_lots_paid() -> None:
    # 100 clean native, then 50 flagged; swap 100 native -> 200 tok (all clean coins: nothing
    # carried), swap 50 native -> 100 tok (all flagged); then send 150 + 150 tok.
    tl = [mv(1, 1, 50, True),
          _sw(2, 2, "native", 100, False), _sw(3, 2, "tok", 200, True),
          _sw(4, 3, "native", 50, False), _sw(5, 3, "tok", 100, True),
          mv(6, 4, 150, False, "tok"), mv(7, 5, 150, False, "tok")]
    outs = propagate(tl, {1: 50}, {"native": 100}, model="fifo")
    assert [(o.transfer_id, o.asset, o.amount, o.swap) for o in outs] == [
        (4, "native", 50, "out"), (5, "tok", 100, "in"), (7, "tok", 100, None)]
    assert totals_by_asset(outs) == {"native": 50, "tok": 100}


def test_fifo_seed_still_sends_everything_flagged() -> None:
    tl = [mv(1, 1, 100, True), mv(2, 2, 70, False)]
    assert [o.amount for o in propagate(tl, {}, {"native": 5}, model="fifo", fully_flagged=True)] == [70]


def test_unknown_model_is_refused() -> None:
    import pytest

    with pytest.raises(ValueError):
        propagate([mv(1, 1, 1, True)], {}, {}, model="lifo")


def _reference_fifo(items: list[tuple[int, bool, int]], prior: int) -> list[int]:
    """Independent fifo: a queue of [coins left, flagged left] in arrival order; an outflow walks
    it from the front, and a lot it takes only part of gives up that part's flagged share
    (rounded down), its last coins whatever flagged is left."""
    queue: list[list[int]] = [[prior, 0]] if prior else []
    head = 0
    carried: list[int] = []
    for amount, incoming, flagged in items:
        if incoming:
            queue.append([amount, min(flagged, amount)])
            continue
        got = 0
        while amount and head < len(queue):
            coins, dirty = queue[head]
            if amount >= coins:
                got, amount, head = got + dirty, amount - coins, head + 1
            else:
                part = dirty * amount // coins
                queue[head] = [coins - amount, dirty - part]
                got, amount = got + part, 0
        carried.append(got)
    return carried


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 1000), st.booleans(), st.integers(0, 1000)), min_size=1, max_size=30),
       st.integers(0, 1000))
def test_fifo_matches_a_reference_and_stays_within_flagged_first(
    items: list[tuple[int, bool, int]], prior: int
) -> None:
    tl = [mv(i + 1, i + 1, amount, incoming) for i, (amount, incoming, _) in enumerate(items)]
    flagged = {i + 1: f for i, (_, incoming, f) in enumerate(items) if incoming and f}
    fifo = {o.transfer_id: o.amount for o in propagate(tl, flagged, {"native": prior}, model="fifo")}
    first = {o.transfer_id: o.amount for o in propagate(tl, flagged, {"native": prior}, model="flagged_first")}
    haircut = propagate(tl, flagged, {"native": prior}, model="haircut")
    outflows = [i + 1 for i, (_, incoming, _) in enumerate(items) if not incoming]
    assert [fifo.get(t, 0) for t in outflows] == _reference_fifo(items, prior)
    # flagged_first takes flagged money first, so no model has paid out more flagged money by any point.
    so_far_fifo = so_far_first = 0
    for t in outflows:
        so_far_fifo += fifo.get(t, 0)
        so_far_first += first.get(t, 0)
        assert so_far_fifo <= so_far_first
    # Conservation: no more leaves than arrived flagged; an emptied wallet lets all of it out,
    # whatever the model.
    arrived = sum(min(f, items[t - 1][0]) for t, f in flagged.items())
    assert sum(fifo.values()) <= arrived
    balance = prior  # as the models keep it: an outflow beyond it empties the wallet
    for amount, incoming, _ in items:
        balance = balance + amount if incoming else max(0, balance - amount)
    if balance == 0:
        assert sum(fifo.values()) == sum(first.values()) == sum(o.amount for o in haircut)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 1000), st.booleans(), st.integers(0, 1000)), min_size=1, max_size=30),
       st.integers(0, 1000), st.integers(0, 29), st.integers(1, 1000),
       st.sampled_from(["haircut", "flagged_first", "fifo", "full_poison"]))
def test_more_flagged_inflow_never_means_less_flagged_outflow(
    items: list[tuple[int, bool, int]], prior: int, which: int, more: int, model: str
) -> None:
    # The workers' fixed point rests on this: a wallet re-run after one of its inflows got more
    # taint never passes less on, on any outflow, so a recipient woken earlier never has too much.
    tl = [mv(i + 1, i + 1, amount, incoming) for i, (amount, incoming, _) in enumerate(items)]
    flagged = {i + 1: f for i, (_, incoming, f) in enumerate(items) if incoming}
    if which + 1 not in flagged:
        return
    grown = {**flagged, which + 1: flagged[which + 1] + more}
    before = {o.transfer_id: o.amount for o in propagate(tl, flagged, {"native": prior}, model=model)}
    after = {o.transfer_id: o.amount for o in propagate(tl, grown, {"native": prior}, model=model)}
    assert all(after.get(t, 0) >= amount for t, amount in before.items()), (before, after)


def test_report_amounts_are_exact_for_uint256() -> None:
    from tracer.engine.report import format_amount

    raw = 2**256 - 1
    assert format_amount(raw, 18).replace(".", "").lstrip("0") == str(raw)
    assert format_amount(1234567890123456789, 18, 4) == "1.2345"
