"""tracer.domain.destinations: a bridge router's destinations read from stored JSON and written back
unchanged, and merged across batches keeping the entry that carries the most."""

from __future__ import annotations

import json
from typing import Any

from tracer.domain.destinations import BridgedPart, Destination, Onward, Payout, merge_destination_lists

FOLLOWED: dict[str, Any] = {
    "protocol": "thorchain", "tx_hash": "0xdep", "chain": "bitcoin", "address": "bc1qdest",
    "bridged_amount": "5000", "memo": "=:BTC.BTC:bc1qdest", "from": "0xthief", "asset": "native",
    "amount": "5000", "block_number": 120,
    "continue": {"possible": True, "followed": True, "chain": "bitcoin", "address": "bc1qdest",
                 "payout": {"tx_hash": "btctx", "block_number": 7, "asset": "native", "amount": "40",
                            "carried": "38", "match": "memo", "confidence": 1, "candidates": 1},
                 "note": "followed on bitcoin: payout btctx (memo, confidence 1)"},
}


def _same(d: dict[str, Any]) -> None:
    assert json.dumps(Destination.from_json(d).to_json(), sort_keys=True) == json.dumps(d, sort_keys=True)


def test_stored_entries_are_written_back_as_read() -> None:
    _same(FOLLOWED)
    # Not published by the protocol: no chain or address to go to, no deposit id or memo.
    _same({"protocol": "wormhole", "tx_hash": "0xa", "chain": None, "address": None, "deposit_id": 17,
           "from": "0xb", "asset": "0xusdt", "amount": "1", "block_number": 3,
           "continue": {"possible": False, "note": "destination not published by the protocol"}})
    # An older row: no deposit side, no "continue", and a key this code never wrote.
    _same({"protocol": "bridge", "tx_hash": "0xc", "chain": "bsc", "address": "0xd", "note": "label only",
           "legacy": {"kept": [1, 2]}})
    # Found but not sure enough: a payout without followed, a key of a newer writer inside "continue".
    _same({**FOLLOWED, "continue": {**FOLLOWED["continue"], "followed": False, "why": "x"}})


def test_the_confidence_is_kept_as_stored() -> None:
    payout = Destination.from_json(FOLLOWED).onward
    assert payout is not None and payout.payout is not None
    assert json.dumps(payout.payout.to_json()["confidence"]) == "1"  # not 1.0


def test_a_deposit_seen_again_keeps_the_entry_carrying_more() -> None:
    def entry(tx: str, carried: int | None, followed: bool) -> Destination:
        payout = Payout("p", 1, "native", 100, carried, "timing", 0.9, 2) if carried is not None else None
        return Destination("across", tx, "base", "0xr", onward=Onward(True, followed=followed, payout=payout))

    old = [entry("0x1", 10, True), entry("0x2", None, False)]
    new = [entry("0x1", 5, True), entry("0x2", 3, False), entry("0x3", 1, False)]
    merged = merge_destination_lists(old, new)
    # First-seen order; 0x1 keeps the older entry (carries more), 0x2 takes the newer (a payout now).
    assert [(d.tx_hash, d.onward.carried if d.onward else None) for d in merged] == [("0x1", 10), ("0x2", 3),
                                                                                     ("0x3", 1)]
    # Followed outranks any amount carried by an entry that was not followed.
    assert merge_destination_lists([entry("0x1", 1, True)], [entry("0x1", 99, False)])[0].followed
    # Another destination address of the same deposit is another entry.
    other = Destination("across", "0x1", "base", "0xother")
    assert len(merge_destination_lists(old, [other])) == 3


def test_a_payout_hops_parts_are_written_back_as_read() -> None:
    part = {"chain": "ethereum", "from": "0xthief", "tx_hash": "0xdep", "position": "log:3", "transfer_id": 41,
            "protocol": "across", "match": "deposit_id", "confidence": 1, "candidates": 1, "carried": "700"}
    for d in (part, {**part, "memo": "OUT:0xdep", "legacy": True}):
        back = BridgedPart.from_json(d)
        assert json.dumps(back.to_json(), sort_keys=True) == json.dumps(d, sort_keys=True)
    assert (back.key, back.carried, back.transfer_id) == (("ethereum", "0xdep", "log:3"), 700, 41)
