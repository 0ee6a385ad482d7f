"""Request slots handed out by rank: every subscription's first delivery before anyone's second.

A delivery worker serves thousands of leased subscriptions through a few hundred slots. With a
plain FIFO semaphore, a subscription with two deliveries due (a block's hop, then the trace's
status event) queues its second behind the subscriptions already waiting, but ahead of those the
next claim brings: a block's hop to the last subscriptions waits for thousands of second events
to everyone else. Here a waiter names its rank (how many deliveries its subscription has sent in
this lease) and a freed slot goes to the lowest rank waiting, first come first served within a
rank. A subscription's own queue stays in order (it waits for one slot at a time); a waiter of a
higher rank is only held back while lower ones keep coming, at most until its lease's deadline.
With one rank it is a plain FIFO limit: the webhook client's connections per receiver.
"""

from __future__ import annotations

import asyncio
from collections import deque


class RankedSlots:
    def __init__(self, size: int) -> None:
        self._free = size
        # Waiters per rank, each in arrival order. Ranks are small (deliveries sent in a lease), so a
        # release looks at a few queues: a heap of (rank, arrival) over thousands of waiters cost a
        # tenth of a delivery worker's time in its pushes and pops.
        self._queues: dict[int, deque[asyncio.Future[None]]] = {}
        self._waiting = 0  # futures in the queues, done (cancelled) ones included

    async def acquire(self, rank: int) -> None:
        """Take a slot (give it back with `release`); a method pair, not a context manager: it is
        taken once per webhook, where a generator-based one cost more than the rest of it."""
        if self._free > 0 and not self._waiting:
            self._free -= 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._queues.get(rank)
        if queue is None:
            queue = self._queues[rank] = deque()
        queue.append(fut)
        self._waiting += 1
        try:
            await fut
        except asyncio.CancelledError:
            # Cancelled after a slot was handed over: pass it on. Cancelled while waiting: the
            # future stays queued, done, and `release` skips it.
            if fut.done() and not fut.cancelled():
                self.release()
            raise

    def release(self) -> None:
        while self._waiting:
            rank = min(self._queues)
            queue = self._queues[rank]
            fut = queue.popleft()
            self._waiting -= 1
            if not queue:
                del self._queues[rank]
            if not fut.done():
                fut.set_result(None)  # the slot goes straight to the waiter: never counted free
                return
        self._free += 1
