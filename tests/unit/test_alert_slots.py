"""Delivery slots by rank: a freed slot goes to the lowest rank waiting, in arrival order within a rank."""

from __future__ import annotations

import asyncio

import pytest

from tracer.alerts.slots import RankedSlots


async def _take(slots: RankedSlots, rank: int, name: str, order: list[str], hold: asyncio.Event) -> None:
    await slots.acquire(rank)
    try:
        order.append(name)
        await hold.wait()
    finally:
        slots.release()


@pytest.mark.asyncio(loop_scope="session")
async def test_a_freed_slot_goes_to_the_lowest_rank_then_first_come() -> None:
    """One slot, busy; second deliveries (rank 1) queue before first ones (rank 0) arrive: every
    first delivery still goes before any second, and each rank in arrival order."""
    slots = RankedSlots(1)
    order: list[str] = []
    go = asyncio.Event()
    go.set()
    busy = asyncio.Event()
    first = asyncio.create_task(_take(slots, 0, "busy", order, busy))
    await asyncio.sleep(0)
    waiting = []
    for rank, name in ((1, "a2"), (1, "b2"), (0, "c1"), (2, "a3"), (0, "d1")):
        waiting.append(asyncio.create_task(_take(slots, rank, name, order, go)))
        await asyncio.sleep(0)
    busy.set()
    await asyncio.gather(first, *waiting)
    assert order == ["busy", "c1", "d1", "a2", "b2", "a3"]


@pytest.mark.asyncio(loop_scope="session")
async def test_a_waiter_cancelled_before_or_after_its_turn_loses_no_slot() -> None:
    slots = RankedSlots(1)
    order: list[str] = []
    busy, go = asyncio.Event(), asyncio.Event()
    go.set()
    holder = asyncio.create_task(_take(slots, 0, "holder", order, busy))
    await asyncio.sleep(0)
    gone = asyncio.create_task(_take(slots, 0, "gone", order, go))
    late = asyncio.create_task(_take(slots, 0, "late", order, go))
    await asyncio.sleep(0)
    gone.cancel()  # while waiting
    busy.set()
    await asyncio.sleep(0)  # the holder leaves: its slot is handed to "late" ...
    late.cancel()  # ... which is cancelled before it runs: the slot must come back
    await asyncio.gather(holder, gone, late, return_exceptions=True)
    after = asyncio.create_task(_take(slots, 0, "after", order, go))
    await asyncio.wait_for(after, 1.0)
    assert "gone" not in order and order[-1] == "after"
