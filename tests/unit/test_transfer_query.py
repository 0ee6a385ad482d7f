"""TransferQuery: the one ask every chain client answers. What it refuses, when nothing can match
(the clients then send no request), and which transfers fit which direction."""

from __future__ import annotations

import pytest

from tracer.domain.transfers import Transfer, TransferKind, TransferQuery

A, B, C = "0x" + "a" * 40, "0x" + "b" * 40, "0x" + "c" * 40


def _sent(src: str, dst: str) -> Transfer:
    return Transfer("ethereum", 5, 100, "0x" + "1" * 64, 0, "tx", src, dst, "native", 7, TransferKind.NATIVE)


def test_addresses_of_any_iterable_become_one_value() -> None:
    from_list = TransferQuery([A, B], 1, 9)
    assert from_list.addresses == (A, B)
    assert TransferQuery(iter([A, B]), 1, 9) == from_list
    assert hash(TransferQuery((A, B), 1, 9)) == hash(from_list)
    assert (from_list.outgoing, from_list.incoming, from_list.times) == (True, False, True)


@pytest.mark.parametrize("blocks", [(-1, 5), (0, -1), (-3, -2)])
def test_negative_blocks_are_refused(blocks: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match="block numbers must be >= 0"):
        TransferQuery([A], *blocks)


@pytest.mark.parametrize("query", [
    TransferQuery([], 0, 10),
    TransferQuery([A], 11, 10),
    TransferQuery([A], 0, 10, outgoing=False, incoming=False),
])
def test_nothing_can_match(query: TransferQuery) -> None:
    assert query.empty


def test_one_block_and_one_direction_are_enough() -> None:
    assert not TransferQuery([A], 10, 10).empty
    assert not TransferQuery([A], 0, 10, outgoing=False, incoming=True).empty


def test_directions() -> None:
    mine = {A}
    out, into, apart = _sent(A, B), _sent(C, A), _sent(B, C)
    outgoing = TransferQuery([A], 0, 9)
    incoming = TransferQuery([A], 0, 9, outgoing=False, incoming=True)
    both = TransferQuery([A], 0, 9, incoming=True)
    assert [outgoing.wants(t, mine) for t in (out, into, apart)] == [True, False, False]
    assert [incoming.wants(t, mine) for t in (out, into, apart)] == [False, True, False]
    assert [both.wants(t, mine) for t in (out, into, apart)] == [True, True, False]
    assert both.wants(_sent(A, A), mine)
