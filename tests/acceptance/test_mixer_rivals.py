"""Two launderers' notes tied to both their withdrawals by one wallet (the demo's gas station):
which note went where is read from both notes together, whichever of them the trace has found
flagged, and the README's first command, `tracer demo` at its default size, agrees with its
ground truth (it did not when each wallet's notes were linked alone: two notes left unlinked)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from tracer.engine import mixer_scope
from tracer.engine.mixer_events import PoolEvent
from tracer.engine.mixer_facts import FlaggedDeposit, LinkFacts

ETH = 10**18
POOL = "0x" + "70" * 20


def _addr(n: int) -> str:
    return f"0x{n:040x}"


class _Pool:
    def __init__(self) -> None:
        self.events: list[PoolEvent] = []
        self.gas: dict[str, int] = {}

    def add(self, kind: str, recipient: str = "") -> PoolEvent:
        n = len(self.events) + 1
        e = PoolEvent(POOL, "deposit" if kind == "deposit" else "withdrawal", n, 0, 1_700_000_000 + 12 * n,
                      f"0x{n:064x}", f"0x{n:064x}", recipient=recipient)
        self.events.append(e)
        self.gas[e.tx_hash] = (10 + n % 20) * 10**9  # whole gwei: wallet defaults, no clue
        return e


def _flagged(e: PoolEvent, depositor: str, tid: int) -> FlaggedDeposit:
    return FlaggedDeposit(tid, POOL, "native", 10 * ETH, 10 * ETH, depositor, e.tx_hash, e.block_number,
                          e.block_time)


def _gas_station_case(rivals_read: bool = True) -> tuple[LinkFacts, FlaggedDeposit, FlaggedDeposit, str, str]:
    """The demo's two 'counterparty' notes: x1 deposits, then x2; r1 withdraws, then r2; one gas
    station g paid x1, x2, r1 and r2, and nothing else ties them."""
    p = _Pool()
    for _ in range(60):  # notes of the crowd, unspent for the whole window
        p.add("deposit")
    x1, x2, r1, r2, g = _addr(1), _addr(2), _addr(77), _addr(78), _addr(0x6A5)
    n1 = p.add("deposit")
    for _ in range(4):
        p.add("deposit")
    n2 = p.add("deposit")
    for _ in range(6):
        p.add("deposit")
    p.add("withdrawal", r1)
    for _ in range(6):
        p.add("deposit")
    p.add("withdrawal", r2)
    for k in range(10):
        p.add("withdrawal", _addr(0x1000 + k))
    peers = {x1: {g, _addr(0xF1), POOL}, x2: {g, _addr(0xF2), POOL}}
    if rivals_read:
        peers[g] = {x1, x2, r1, r2}
    facts = LinkFacts(events={POOL: p.events}, gas_prices=p.gas, peers=peers,
                      deposits_by={x1: [n1], x2: [n2]},
                      recipient_peers={r1: {g, POOL, _addr(0xE1)}, r2: {g, POOL, _addr(0xE2)}},
                      rival_notes={x1: [n1], x2: [n2]} if rivals_read else {})
    return facts, _flagged(n1, x1, 1), _flagged(n2, x2, 2), r1, r2


def test_two_notes_tied_by_one_gas_station_link_one_each() -> None:
    facts, f1, f2, r1, r2 = _gas_station_case()
    [alone1] = mixer_scope.link_each_depositor([f1], facts)
    [alone2] = mixer_scope.link_each_depositor([f2], facts)
    best1, best2 = alone1.best(0.5), alone2.best(0.5)
    assert best1 is not None and best1.withdrawal.recipient == r1, alone1.links
    assert best2 is not None and best2.withdrawal.recipient == r2, alone2.links
    assert "shared_peers" in {r.heuristic for r in best1.reasons}
    # The same whichever of the two deposits the trace has found flagged, or batched together.
    both = mixer_scope.link_each_depositor([f2, f1], facts)
    assert both[1].links == alone1.links and both[0].links == alone2.links


def test_without_the_other_note_neither_withdrawal_is_likelier() -> None:
    # What linking each wallet alone gave: two equally likely withdrawals, below the threshold.
    facts, f1, f2, _, _ = _gas_station_case(rivals_read=False)
    outcomes = mixer_scope.link_each_depositor([f1, f2], facts)
    assert all(o.best(0.5) is None for o in outcomes), [o.links for o in outcomes]
    assert all(len(o.links) >= 2 for o in outcomes)


@pytest.mark.asyncio(loop_scope="session")
async def test_the_readme_demo_at_its_default_size_agrees_with_its_ground_truth(database_url: str) -> None:
    r = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "tracer.cli", "demo"], capture_output=True,
                                text=True, timeout=300, env={**os.environ, "DATABASE_URL": database_url})
    assert "PASSED: the trace agrees with the ground truth" in r.stdout, r.stdout[-3000:]
    assert r.returncode == 0, r.stderr[-2000:]
    for what in ("laundering mixer notes linked to their own recipient", "exits found with the right amount"):
        line = next(x for x in r.stdout.splitlines() if what in x)
        found, total = line.split(": ")[1].split(" (")[0].split(";")[0].split(" of ")
        assert found == total and int(total) > 0, line
