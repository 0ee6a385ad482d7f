"""One computation per key however many requests wait for it, and the last few results kept.

A trace's dollar sums read every hop of the trace (tracer.engine.dollars): on a large trace that is
seconds of work. Fifty clients polling the same exits must not start fifty of them, nor one per
request on a trace that did not change in between."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Any


class DollarsMemo:
    def __init__(self, size: int = 16) -> None:
        self.size = size
        self._done: OrderedDict[Hashable, Any] = OrderedDict()
        self._running: dict[Hashable, asyncio.Task[Any]] = {}
        self.computed = 0  # how many computations ran (tests and metrics)

    async def get(self, key: Hashable, compute: Callable[[], Awaitable[Any]]) -> Any:
        if key in self._done:
            self._done.move_to_end(key)
            return self._done[key]
        task = self._running.get(key)
        if task is None:
            task = asyncio.ensure_future(self._run(key, compute))
            self._running[key] = task
        # shield: a client that leaves does not cancel the sums the others wait for.
        return await asyncio.shield(task)

    async def _run(self, key: Hashable, compute: Callable[[], Awaitable[Any]]) -> Any:
        try:
            value = await compute()
            self.computed += 1
            self._done[key] = value
            while len(self._done) > self.size:
                self._done.popitem(last=False)
            return value
        finally:
            self._running.pop(key, None)
