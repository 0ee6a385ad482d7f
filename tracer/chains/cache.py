"""The bounded cache the chain clients keep node answers in (blocks, times, transactions, gas
prices): the engine asks overlapping ranges for different address batches, and a cache that grew
without bound would hold a busy chain's history."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Lru(Generic[K, V]):
    """A small bounded mapping that forgets the least recently used entry first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._data: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self.size:
            self._data.popitem(last=False)

    def split(self, keys: Iterable[K]) -> tuple[dict[K, V], list[K]]:
        """What the cache holds of `keys`, and the keys it lacks (in the order given): the ones a
        client still has to ask the node for."""
        found: dict[K, V] = {}
        missing: list[K] = []
        for key in keys:
            value = self.get(key)
            if value is None:
                missing.append(key)
            else:
                found[key] = value
        return found, missing

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)
