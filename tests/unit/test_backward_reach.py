"""The part of each transfer that reached the seeds (tracer.engine.backward_reach), by hand on a
small case and against the colouring that runs forward in time (tracer.engine.backward.simulate:
every coin coloured by its source) on random histories: the two ways round agree per source to
within a few base units per transfer."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tracer.domain.transfers import Transfer, TransferKind
from tracer.engine import backward, backward_reach

W, D, T, C, X, Y = ("0x" + c * 40 for c in "abcdef")


def tx(n: int, a: str, b: str, amount: int, asset: str = "native") -> Transfer:
    return Transfer(chain="ethereum", block_number=n, block_time=n, tx_hash=f"0x{n:064x}", tx_index=0,
                    position="tx", from_address=a, to_address=b, asset=asset, amount=amount,
                    kind=TransferKind.NATIVE)


def test_by_hand() -> None:
    # W holds 30 clean; the thief T pays it 10; W pays the deposit address D 20 (half its pool),
    # sends the other 20 elsewhere, then C pays it 40 and it pays D 10 (a quarter of that pool).
    transfers = [tx(1, T, W, 10), tx(2, W, D, 20), tx(3, W, X, 20), tx(4, C, W, 40), tx(5, W, D, 10)]
    got = backward_reach.reach(transfers, {W, D}, {D}, {(W, "native"): 30})
    assert got.received == {"native": 30}
    assert got.reached == {0: 5, 1: 20, 3: 10, 4: 10}  # T's 10 -> 5 reached D; C's 40 -> 10
    assert got.held == {(W, "native"): 15}
    paths = backward_reach.source_paths(transfers, got.reached, [T, C], {D})
    assert paths == {T: [T, W, D], C: [C, W, D]}


def test_what_a_seed_sends_on_is_not_counted_again() -> None:
    transfers = [tx(1, T, D, 7), tx(2, D, W, 7), tx(3, W, D, 7)]
    got = backward_reach.reach(transfers, {W, D}, {D}, {})
    assert got.received == {"native": 14}  # the window shows D receiving twice
    assert got.reached[0] == 7 and 1 not in got.reached


def test_assets_are_separate_pools() -> None:
    token = "0x" + "9" * 40
    transfers = [tx(1, T, W, 100, token), tx(2, C, W, 100), tx(3, W, D, 50)]
    got = backward_reach.reach(transfers, {W, D}, {D}, {})
    assert got.reached == {1: 50, 2: 50}


WALKED = ["0x" + f"{i:040x}" for i in range(1, 5)]
SOURCES = ["0x" + f"{i:040x}" for i in range(10, 13)]
SEED = "0x" + "5" * 40
OUT = "0x" + "6" * 40


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[Transfer], dict[tuple[str, str], int]]:
    n = draw(st.integers(1, 30))
    transfers = []
    for i in range(n):
        a = draw(st.sampled_from(SOURCES + WALKED))
        # No self-transfers: the colouring counts one larger than its wallet's pool as new money.
        b = draw(st.sampled_from([w for w in [*WALKED, SEED, OUT] if w != a]))
        transfers.append(tx(i + 1, a, b, draw(st.integers(1, 10**21)), draw(st.sampled_from(["native", Y]))))
    prior = {(w, asset): draw(st.integers(0, 10**21)) for w in WALKED for asset in ("native", Y)}
    return transfers, prior


@settings(max_examples=200, deadline=None)
@given(histories())
def test_backward_agrees_with_the_colouring_forward(history: tuple[list[Transfer], dict[tuple[str, str], int]]
                                                    ) -> None:
    transfers, prior = history
    walked = {*WALKED, SEED}
    got = backward_reach.reach(transfers, walked, {SEED}, prior)
    received, _ = backward.simulate(transfers, walked, SEED, prior, lambda a: (backward.LABEL, a))
    # Each model floors every part of every transfer (the colouring hands the remainder to the
    # largest colour): a few base units per transfer and colour, nothing near a token.
    slack = 10 * (len(transfers) + 1)
    for asset, colours in received.items():
        assert sum(colours.values()) == got.received.get(asset, 0)
        for (how, who), amount in colours.items():
            if how == backward.LABEL:
                mine = sum(v for i, v in got.reached.items()
                           if transfers[i].from_address == who and transfers[i].asset == asset)
            elif how == backward.HELD:
                mine = got.held.get((who, asset), 0)
            else:
                continue  # money the window does not explain: nobody's, in both
            assert abs(mine - amount) <= slack, (asset, how, who, mine, amount)
    for i, v in got.reached.items():
        assert 0 < v <= transfers[i].amount
