"""`Connected`: the `async with` of every chain client (EvmChain, EsploraChain, TronChain), which
connects on entry (checking the chain) and closes its transports on exit."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Self


class Connected(ABC):
    @abstractmethod
    async def connect(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
