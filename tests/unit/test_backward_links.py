"""Backward through a swap and a mixer link, by hand (tracer.engine.backward_links and the
colouring in backward_reach): what reaches the seeds through the service is what the forward
rule carries (taint.propagate for a swap, Link.carried for a mixer link), in the asset paid."""

from __future__ import annotations

from tracer.domain.records import StoredTransfer
from tracer.domain.transfers import Movement, Transfer, TransferKind
from tracer.engine import backward_links, backward_reach, taint

T, U, P, S, Q, R, V = ("0x" + c * 40 for c in "1234567")  # thief, wallet, pair, seed, pool, recipient, thief 2
USDT = "0x" + "d" * 40
ETH, M = 10**18, 10**6  # wei; USDT's base units


def tx(n: int, a: str, b: str, amount: int, asset: str = "native", *, h: str | None = None, pos: str = "tx"
       ) -> Transfer:
    return Transfer(chain="ethereum", block_number=n, block_time=n, tx_hash=h or f"0x{n:064x}", tx_index=0,
                    position=pos, from_address=a, to_address=b, asset=asset, amount=amount,
                    kind=TransferKind.NATIVE)


def test_a_swap_is_walked_back_to_what_its_wallet_paid() -> None:
    # U gets 100 USDT from the thief and 50 from C, swaps 120 USDT for 2 ETH at the pair P (one
    # transaction), and pays the seed 1.5 ETH.
    c = "0x" + "c" * 40
    swap = "0x" + "ab" * 32
    transfers = [tx(1, T, U, 100 * M, USDT), tx(2, c, U, 50 * M, USDT), tx(3, U, P, 120 * M, USDT, h=swap, pos="log:1"),
                 tx(3, P, U, 2 * ETH, h=swap, pos="call:0"), tx(4, U, S, 3 * ETH // 2)]
    through = backward_links.swap_legs(transfers, {U})
    assert through.bought == {3} and set(through.paid) == {2}
    assert backward_links.bought_senders(transfers, through) == {U: {P}}  # the pair is no source
    got = backward_reach.reach(transfers, {U, S}, {S}, {}, through)
    # 120 of U's 150 USDT paid (80 of them the thief's), 3/4 of what it bought reached S.
    assert [abs(got.reached[i] - v * M) <= 1 for i, v in ((2, 90), (0, 60), (1, 30))] == [True] * 3
    # Forward: the thief's share of the USDT paid carries over to the ETH, 3/4 of which left to S.
    moves = [Movement(i, t.order, t.asset, t.amount, t.to_address == U, "x", t.tx_hash)
             for i, t in enumerate(transfers) if U in (t.from_address, t.to_address)]
    outs = taint.propagate(moves, {0: 100 * M}, {})
    [to_seed] = [o for o in outs if o.transfer_id == 4]
    rate = 2 * ETH / (120 * M)
    assert abs(got.reached[0] * rate - to_seed.amount) <= 2 * rate  # the same, at the swap's own rate (to a unit)
    # Without the swap rule the paid leg carries nothing back and the thief is not found.
    plain = backward_reach.reach(transfers, {U, S}, {S}, {})
    assert 0 not in plain.reached


def test_a_mixer_withdrawal_goes_back_to_its_linked_deposits_by_confidence() -> None:
    # The thief deposits 10 ETH into the pool Q; the linker ties the 9.9 ETH withdrawal to R (a
    # relayer took 0.1) to it with confidence 0.8; R pays the seed everything.
    stored = [StoredTransfer(i + 1, t) for i, t in enumerate(
        [tx(1, T, Q, 10 * ETH), tx(5, Q, R, 99 * ETH // 10), tx(6, R, S, 99 * ETH // 10)])]

    def thief(confidences: list[tuple[int, float]]) -> dict[int, int]:
        through = backward_links.with_mixers(backward_links.Through(), stored,
                                             [(d, 2, c) for d, c in confidences], backward_reach.SCALE)
        return backward_reach.reach([st.transfer for st in stored], {R, S}, {S}, {}, through).reached

    # Forward a link carries flagged * confidence: 8 ETH (to the float's rounding: 0.8 is 0.80...0444).
    assert abs(thief([(1, 0.8)])[0] - 8 * ETH) <= 1_000
    # ... never more than the withdrawal paid: a sure link carries 9.9, not 10.
    assert abs(thief([(1, 1.0)])[0] - 99 * ETH // 10) <= 1_000
    # Two deposits linked to it together carry what it paid, each in proportion.
    stored.insert(1, StoredTransfer(9, tx(2, V, Q, 10 * ETH)))
    two = thief([(1, 0.9), (9, 0.9)])
    assert abs(two[0] - 495 * ETH // 100) <= 1_000 and abs(two[1] - 495 * ETH // 100) <= 1_000
    # A link whose withdrawal is missing carries nothing.
    assert backward_links.with_mixers(backward_links.Through(), stored, [(1, 77, 0.9)], backward_reach.SCALE) \
        .deposits == {}
