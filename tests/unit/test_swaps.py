"""Swaps: the taint model carries the traced share of what a wallet paid into what it got back in
the same transaction, and a trace follows USDT swapped for ETH on a Uniswap-V2-like pair.

This file holds the tests that need nothing outside the process; those over a devchain, Postgres
or a subprocess are in tests/integration/test_swaps.py.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tracer.domain.transfers import NATIVE, Movement
from tracer.engine import swaps
from tracer.engine.taint import propagate

USDT = "0x" + "dd" * 20

moves = st.lists(
    st.tuples(st.integers(1, 10**24), st.booleans(), st.booleans(), st.sampled_from([NATIVE, USDT]),
              st.integers(0, 3)),
    min_size=1, max_size=40,
)


def mv(tid: int, block: int, amount: int, incoming: bool, asset: str = NATIVE, tx: str = "", rank: int = 0
       ) -> Movement:
    # Inside a transaction the node orders top-level value, internal calls, then logs: a swap paying
    # a token (a log) and receiving ETH (an internal call) lists the ETH first.
    return Movement(tid, (block, 0, rank, f"p{tid}"), asset, amount, incoming, "x", tx or f"0x{tid:064x}")


def test_swap_carries_the_traced_share_at_the_swaps_rate() -> None:
    # 1,000 USDT in, 600 of them flagged (haircut: 600/1000 of what leaves); all 1,000 swapped for 0.5 ETH.
    tl = [
        mv(1, 1, 400, True, USDT),
        mv(2, 2, 600, True, USDT),
        mv(4, 3, 5 * 10**17, True, NATIVE, tx="0xswap", rank=1),  # ETH back (internal call)
        mv(3, 3, 1000, False, USDT, tx="0xswap", rank=2),  # USDT paid (log)
        mv(5, 4, 5 * 10**17, False, NATIVE),
    ]
    outs = propagate(tl, {2: 600}, {})
    by_id = {o.transfer_id: o for o in outs}
    assert (by_id[3].amount, by_id[3].swap) == (600, "out")
    assert (by_id[4].amount, by_id[4].swap, by_id[4].asset) == (3 * 10**17, "in", NATIVE)
    assert by_id[4].parents == [3]
    assert (by_id[5].amount, by_id[5].swap) == (3 * 10**17, None)


def test_clean_eth_already_held_dilutes_the_swapped_in_taint() -> None:
    tl = [mv(1, 1, 1000, True, USDT), mv(2, 2, 10**18, True, NATIVE, tx="0xs", rank=1),
          mv(3, 2, 1000, False, USDT, tx="0xs", rank=2), mv(4, 3, 10**18, False, NATIVE)]
    outs = propagate(tl, {1: 1000}, {NATIVE: 10**18})
    assert {o.transfer_id: o.amount for o in outs}[4] == 5 * 10**17  # half the ETH held is the swapped taint


def test_a_swap_ignores_the_hop_it_wrote_last_time() -> None:
    tl = [mv(1, 1, 1000, True, USDT), mv(2, 2, 10**18, True, NATIVE, tx="0xs", rank=1),
          mv(3, 2, 1000, False, USDT, tx="0xs", rank=2)]
    first = propagate(tl, {1: 500}, {})
    again = propagate(tl, {1: 500, 2: 10**18}, {})  # the in-leg hop read back as a flagged inflow
    assert [(o.transfer_id, o.amount) for o in first] == [(o.transfer_id, o.amount) for o in again]
    assert {o.transfer_id: o.amount for o in again}[2] == 5 * 10**17


def test_refunds_and_same_asset_moves_are_not_swaps() -> None:
    # A router returning part of the ETH sent is change, not a purchase.
    tl = [mv(1, 1, 10**18, True), mv(2, 2, 10**18, False, tx="0xr"), mv(3, 2, 10**17, True, tx="0xr", rank=1)]
    assert swaps.split([tl[1], tl[2]]) is None
    outs = propagate(tl, {1: 10**18}, {})
    assert [o.swap for o in outs] == [None]
    # Moves without a transaction never pair up.
    assert swaps.split([Movement(1, (1, 0, 0, "a"), USDT, 5, False, "x"), Movement(2, (1, 0, 1, "b"), NATIVE, 5,
                                                                                 True, "x")]) is None


def test_seed_swaps_are_fully_flagged() -> None:
    tl = [mv(1, 1, 2 * 10**18, True, NATIVE, tx="0xs", rank=1), mv(2, 1, 4000, False, USDT, tx="0xs", rank=2)]
    outs = propagate(tl, {}, {}, fully_flagged=True)
    assert {(o.transfer_id, o.amount, o.swap) for o in outs} == {(2, 4000, "out"), (1, 2 * 10**18, "in")}


def test_two_assets_paid_average_their_shares() -> None:
    dai = "0x" + "da" * 20
    tl = [mv(1, 1, 100, True, USDT), mv(2, 1, 100, True, dai),
          mv(3, 2, 100, False, USDT, tx="0xs", rank=2), mv(4, 2, 100, False, dai, tx="0xs", rank=2),
          mv(5, 2, 1000, True, NATIVE, tx="0xs", rank=1)]
    outs = propagate(tl, {1: 100}, {})  # the USDT is flagged, the DAI clean
    assert {o.transfer_id: o.amount for o in outs}[5] == 500


@settings(max_examples=300, deadline=None)
@given(moves, st.integers(0, 10**24))
def test_conservation_per_asset_with_swaps(items: list[tuple[int, bool, bool, str, int]], prior: int) -> None:
    # Moves share a transaction by their tx tag (0 = alone), so random ones form swaps.
    tl = [Movement(i, (i // 3, 0, int(incoming), str(i)), asset, amount, incoming, "x",
                   f"0x{i // 3}-{tag}" if tag else f"0xsolo{i}")
          for i, (amount, incoming, _, asset, tag) in enumerate(items)]
    flagged = {i: amount for i, (amount, incoming, flag, _, _) in enumerate(items) if incoming and flag}
    outs = propagate(tl, flagged, {NATIVE: prior})
    bought = {o.transfer_id: o.amount for o in outs if o.swap == "in"}
    for asset in (NATIVE, USDT):
        arrived = sum(a for i, a in flagged.items() if items[i][3] == asset and i not in bought)
        arrived += sum(o.amount for o in outs if o.swap == "in" and o.asset == asset)
        left = sum(o.amount for o in outs if o.swap != "in" and o.asset == asset)
        assert left <= arrived
    for o in outs:
        assert 0 < o.amount <= o.total
