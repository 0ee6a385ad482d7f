"""Taint models on hand-made timelines, and conservation as a property."""

from hypothesis import given, settings
from hypothesis import strategies as st

from tracer.engine.taint import Movement, propagate


def mv(tid: int, block: int, amount: int, incoming: bool, asset: str = "native") -> Movement:
    return Movement(tid, (block, 0, 0, "tx"), asset, amount, incoming, "x")


def test_haircut_example_from_domain_notes() -> None:
    # W holds 10 clean, receives 30 flagged, sends 20: haircut gives 15 flagged.
    tl = [mv(1, 1, 10, True), mv(2, 2, 30, True), mv(3, 3, 20, False)]
    [out] = propagate(tl, {2: 30}, {})
    assert (out.transfer_id, out.amount, out.parents) == (3, 15, [2])


def test_poison_carries_up_to_what_is_flagged() -> None:
    tl = [mv(1, 1, 10, True), mv(2, 2, 30, True), mv(3, 3, 20, False), mv(4, 4, 20, False)]
    outs = propagate(tl, {2: 30}, {}, model="poison")
    assert [(o.transfer_id, o.amount) for o in outs] == [(3, 20), (4, 10)]


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
@given(moves, st.integers(0, 10**24), st.sampled_from(["haircut", "poison"]))
def test_conservation(items: list[tuple[int, bool, bool, str]], prior: int, model: str) -> None:
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


def test_report_amounts_are_exact_for_uint256() -> None:
    from tracer.engine.report import format_amount

    raw = 2**256 - 1
    assert format_amount(raw, 18).replace(".", "").lstrip("0") == str(raw)
    assert format_amount(1234567890123456789, 18, 4) == "1.2345"
