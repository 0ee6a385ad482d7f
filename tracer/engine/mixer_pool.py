"""One mixer pool's events in chain order, answering what the linker's priors need: how many
notes were unspent at a point, how many deposits came in between, which withdrawals follow a
deposit, and the chance a note was still unspent when a later withdrawal came."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tracer.engine.mixer_events import PoolEvent
    from tracer.engine.mixer_facts import FlaggedDeposit


class PoolIndex:
    """One pool's events in order, answering "how many notes were unspent at this point"."""

    def __init__(self, events: Sequence[PoolEvent], before: tuple[int, int]) -> None:
        self.events = sorted(events, key=lambda e: e.position)
        self.unspent: list[int] = []  # after each event
        self.deposits_so_far: list[int] = []
        n_dep, n_wd = before
        for e in self.events:
            if e.kind == "deposit":
                n_dep += 1
            else:
                n_wd += 1
            self.unspent.append(max(0, n_dep - n_wd))
            self.deposits_so_far.append(n_dep)
        self.index = {e.position: i for i, e in enumerate(self.events)}
        self.base_unspent = max(0, before[0] - before[1])
        self.base_deposits = before[0]

    def position_of(self, d: FlaggedDeposit) -> int:
        """Index of the deposit's own event (by transaction), or of the last event before its block."""
        last = -1
        for i, e in enumerate(self.events):
            if e.kind == "deposit" and e.tx_hash == d.tx_hash:
                return i
            if e.block_number <= d.block_number:
                last = i
        return last

    def unspent_after(self, i: int) -> int:
        return self.unspent[i] if 0 <= i < len(self.unspent) else self.base_unspent

    def deposits_through(self, i: int) -> int:
        return self.deposits_so_far[i] if 0 <= i < len(self.deposits_so_far) else self.base_deposits

    def withdrawals_after(self, i: int, until: int, limit: int) -> list[tuple[int, PoolEvent]]:
        out = []
        for k in range(i + 1, len(self.events)):
            e = self.events[k]
            if e.block_time > until:
                break
            if e.kind == "withdrawal":
                out.append((k, e))
                if len(out) >= limit:
                    break
        return out

    def survival(self, i: int, j: int) -> float:
        """Chance a note deposited at event i is still unspent right before event j, each
        withdrawal in between spending a random unspent note."""
        out = 1.0
        for k in range(i + 1, min(j, len(self.events))):
            if self.events[k].kind == "withdrawal":
                unspent = self.unspent_after(k - 1)
                if unspent > 0:
                    out *= 1.0 - 1.0 / unspent
        return out
