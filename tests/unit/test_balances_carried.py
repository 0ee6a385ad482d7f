"""Token prior balances carried back from one shared block through the Transfer logs the trace
holds (tracer.engine.balances._from_state): exact where the logs are the whole story, read at
fb - 1 itself where they may not be."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from tracer.domain.transfers import NATIVE, Transfer, TransferKind
from tracer.engine import balances

pytestmark = pytest.mark.unit

A = "0x" + "aa" * 20
B = "0x" + "bb" * 20
C = "0x" + "cc" * 20
TOKEN = "0x" + "70" * 20


def _t(block: int, frm: str, to: str, amount: int, asset: str = TOKEN, pos: int = 0) -> Transfer:
    kind = TransferKind.NATIVE if asset == NATIVE else TransferKind.TOKEN
    return Transfer("ethereum", block, 0, f"0x{block:064x}", 0, "tx" if asset == NATIVE else f"log:{pos}",
                    frm, to, asset, amount, kind)


class _Node:
    """Balances at blocks from a table (missing: reverted balanceOf); every query remembered."""

    def __init__(self, table: dict[tuple[str, str, int], int]) -> None:
        self.table = table
        self.asked: list[tuple[str, str, int]] = []
        self.optional: list[tuple[str, str, int]] = []

    async def balances_at(self, queries: Iterable[tuple[str, str, int]],
                          optional: Iterable[tuple[str, str, int]] = ()) -> dict[tuple[str, str, int], int]:
        qs = list(queries)
        self.asked.extend(qs)
        self.optional = list(optional)
        return {q: self.table[q] for q in qs if q in self.table}

    async def native_balances(self, queries: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int]:
        raise AssertionError("balances_at is used")

    async def token_balances(self, queries: Iterable[tuple[str, str, int]]) -> dict[tuple[str, str, int], int]:
        raise AssertionError("balances_at is used")


async def test_token_balances_of_a_batch_come_from_one_block_carried_back_by_the_logs() -> None:
    # A: 5 before block 100, +7 at 100 (flagged), -3 at 105: 9 at block 119.  B: 2 before 120.
    history = {A: [_t(100, C, A, 7), _t(105, A, C, 3)], B: [_t(120, C, B, 4)]}
    node = _Node({(A, TOKEN, 119): 9, (B, TOKEN, 119): 2, (A, NATIVE, 99): 11, (B, NATIVE, 119): 1})
    got = await balances.prior_balances(node, {A: (100, {TOKEN, NATIVE}), B: (120, {TOKEN, NATIVE})}, history, 200)
    assert got.balances == {A: {TOKEN: 5, NATIVE: 11}, B: {TOKEN: 2, NATIVE: 1}}
    # One read: both tokens at block 119, ETH at each fb - 1 (its history leaves fees out).
    assert sorted(node.asked) == sorted([(A, NATIVE, 99), (B, NATIVE, 119), (A, TOKEN, 119), (B, TOKEN, 119)])


async def test_logs_that_cannot_be_the_whole_story_send_the_read_to_fb_minus_one() -> None:
    # Shared block 109 (C's fb is 110). A paid ETH into the token contract at 103 (a WETH-style
    # deposit mints with no Transfer log); B's logs would have it at -45 after block 101 (money
    # left without a log): both are read at 99. C has no log in between: 3 at 109 is 3 at 109.
    history = {A: [_t(100, C, A, 7), _t(103, A, TOKEN, 10**18, NATIVE)],
               B: [_t(101, B, C, 50), _t(105, C, B, 45)], C: []}
    table = {(A, TOKEN, 109): 17, (B, TOKEN, 109): 0, (C, TOKEN, 109): 3, (A, TOKEN, 99): 0, (B, TOKEN, 99): 50}
    node = _Node(table)
    needs = {A: (100, {TOKEN}), B: (100, {TOKEN}), C: (110, {TOKEN})}
    got = await balances.prior_balances(node, needs, history, 200)
    assert got.balances == {A: {TOKEN: 0}, B: {TOKEN: 50}, C: {TOKEN: 3}}
    assert (A, TOKEN, 99) in node.asked and (B, TOKEN, 99) in node.asked and (C, TOKEN, 109) in node.asked
    # Without the ETH into the contract, A's logs do add up (17 - 7): no second read for it.
    node = _Node(table)
    got = await balances.prior_balances(node, needs, {**history, A: history[A][:1]}, 200)
    assert got.balances[A] == {TOKEN: 10} and (A, TOKEN, 99) not in node.asked


def test_carried_back_walks_the_window_in_execution_order() -> None:
    # Out 8 (block 10) then in 8 (block 11) and 0 at the end: 0 before fb would have been -8 in
    # between, so something the logs do not show happened (unsure: None), whatever order given.
    moves = [_t(10, A, C, 8, pos=1), _t(11, C, A, 8, pos=2)]
    assert balances._carried_back(A, TOKEN, 10, 11, 0, moves) is None
    assert balances._carried_back(A, TOKEN, 10, 11, 0, list(reversed(moves))) is None
    assert balances._carried_back(A, TOKEN, 10, 11, 8, moves) == 8
    assert balances._carried_back(A, TOKEN, 10, 11, 8, [_t(12, C, A, 5)]) == 8  # after the window


async def test_a_forward_trace_reads_tokens_at_its_end_block_and_warms_the_next_batch() -> None:
    # whole_history: the timelines run to to_block (200), the same block for every batch, so the
    # next batch's wallets (warm: what A paid them, and when) can be read in this batch's call:
    # a token at to_block, ETH just before the block it arrived in (that wallet's fb, likely).
    history = {A: [_t(100, C, A, 7), _t(150, A, C, 3), _t(160, A, B, 10**18, NATIVE)]}
    node = _Node({(A, TOKEN, 200): 9})
    got = await balances.prior_balances(node, {A: (100, {TOKEN})}, history, 200, whole_history=True,
                                        warm=[(C, TOKEN, 150), (B, NATIVE, 160)])
    assert got.balances == {A: {TOKEN: 5}}
    assert node.asked == [(A, TOKEN, 200)] and node.optional == [(C, TOKEN, 200), (B, NATIVE, 159)]
