"""What the engine and the workers need of a chain client, as Protocols (tracer.chains.evm.EvmChain,
tracer.chains.bitcoin.EsploraChain and tracer.chains.tron provide them). They live with the chains
so the layers above (engine, workers, api) name them without importing one another."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol, runtime_checkable

from tracer.chains.records import LogAddresses, LogRecord, LogTopics
from tracer.chains.utxo_records import UtxoTx
from tracer.domain.transfers import Transfer, TransferQuery


class ChainSource(Protocol):
    """What a trace step needs from a chain client."""

    async def transfers(self, query: TransferQuery) -> list[Transfer]: ...

    async def native_balances(self, queries: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]: ...

    async def token_balances(
        self, queries: Sequence[tuple[str, str, int]]
    ) -> dict[tuple[str, str, int], int]: ...

    async def token_meta(self, tokens: Sequence[str]) -> dict[str, tuple[int | None, str | None]]: ...

    async def logs(
        self, address: LogAddresses, topics: LogTopics, from_block: int, to_block: int
    ) -> Sequence[LogRecord]: ...


@runtime_checkable
class WindowSource(Protocol):
    """What a chain needs on top of ChainSource to be continued into from a bridge: its head and
    block times (the block at the deposit's time is where the payout search starts)."""

    async def head(self) -> int: ...

    async def block_times(self, numbers: Sequence[int]) -> dict[int, int]: ...


@runtime_checkable
class BlockLogSource(Protocol):
    """Optional: the logs of sets of scattered blocks, one list per ask (contracts or None, topics,
    blocks), asked in as few ranges as the chain's density of such logs allows, asks filtering on
    topic0 alone possibly together (EvmChain); others fall back to `logs` over clusters of blocks."""

    async def logs_of_blocks(
        self, asks: Sequence[tuple[LogAddresses, LogTopics, Iterable[int]]]
    ) -> Sequence[Sequence[LogRecord]]: ...


@runtime_checkable
class GasPriceSource(Protocol):
    """Optional: gas prices of transactions (the unusual-gas-price de-mixing heuristic needs them)."""

    async def gas_prices(self, tx_hashes: Sequence[str]) -> dict[str, int]: ...


@runtime_checkable
class UtxoSource(Protocol):
    """A UTXO chain (tracer.chains.bitcoin.EsploraChain): whole transactions, which the change and
    CoinJoin heuristics (tracer.engine.utxo) read where the flattened transfers cannot tell."""

    async def transactions(self, txids: Iterable[str]) -> dict[str, UtxoTx]: ...


@runtime_checkable
class CoinbaseSource(Protocol):
    """A chain whose new coins are paid by coinbase transactions (EsploraChain): what they paid the
    addresses, as transfers from COINBASE (tracer.chains.bitcoin.mappers), which `transfers` leaves
    out (nobody sent them). A backward trace stops there: mining rewards are a source."""

    async def coinbase_rewards(self, addresses: Sequence[str], from_block: int, to_block: int) -> list[Transfer]: ...
