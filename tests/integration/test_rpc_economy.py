"""RPC economy (issue 22): the worker reads block headers and token names only for the transfers
that become hops, and the hops (with their times, decimals and symbols) are the same as when every
fetched transfer had them read. Real devchain, Postgres, workers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
import pytest_asyncio

from tests.fixtures_db import temporary_database
from tracer.chains.evm import EvmChain
from tracer.demo import load_scenario_labels
from tracer.devchain.scenario import Scenario, ScenarioParams, generate
from tracer.domain.transfers import Transfer, TransferQuery
from tracer.engine.service import create_trace
from tracer.runner import run_with_workers
from tracer.store import reads
from tracer.store.db import Database

pytestmark = pytest.mark.asyncio(loop_scope="session")

Hop = tuple[str, str, str, str, str, int, str, str, int | None, str | None, int]


class EagerChain:
    """The worker's view of a client that cannot read block times apart from transfers (no
    `block_times`): it then asks for every transfer's time while fetching, as before issue 22."""

    def __init__(self, client: EvmChain) -> None:
        self.client = client

    async def transfers(self, query: TransferQuery) -> list[Transfer]:
        assert query.times, "a client without block_times must be asked for times with the transfers"
        return await self.client.transfers(query)

    async def native_balances(self, queries: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
        return await self.client.native_balances(queries)

    async def token_balances(self, queries: Sequence[tuple[str, str, int]]) -> dict[tuple[str, str, int], int]:
        return await self.client.token_balances(queries)

    async def token_meta(self, tokens: Sequence[str]) -> dict[str, tuple[int | None, str | None]]:
        return await self.client.token_meta(tokens)

    async def logs(self, address: Any, topics: Any, from_block: int, to_block: int) -> Any:
        return await self.client.logs(address, topics, from_block, to_block)


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return generate(ScenarioParams.for_size(3000, seed=11))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def chain_url(scenario: Scenario, devchain_factory: Any) -> AsyncIterator[str]:
    server = await devchain_factory(scenario)
    yield server.url


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def old_node_url(scenario: Scenario, devchain_factory: Any) -> AsyncIterator[str]:
    """The same chain served as nodes before Geth 1.16 serve it: logs without blockTimestamp."""
    server = await devchain_factory(scenario, log_timestamps=False)
    yield server.url


async def _noise_beside_first_exit(conn: Any, trace_id: int) -> None:
    """A transfer the worker stored without time or token name (as it stores noise) into the
    biggest exit, in the block of its first hop, placed before the hop's own transfer in the
    index (the hop's row is rewritten after it): exits must not take their time from it."""
    hop = await conn.fetchrow(
        """SELECT t.* FROM hops h JOIN transfers t ON t.id = h.transfer_id
           WHERE h.trace_id = $1 AND h.status = 'exit' ORDER BY h.amount DESC, h.block_number LIMIT 1""", trace_id)
    first = await conn.fetchval(
        "SELECT min(block_number) FROM hops WHERE trace_id = $1 AND status = 'exit' AND to_addr = $2 AND asset = $3",
        trace_id, hop["to_addr"], hop["asset"])
    await conn.execute(
        """INSERT INTO transfers (chain, tx_hash, position, block_number, block_time, tx_index, from_addr, to_addr,
                                  asset, amount, kind, decimals, symbol)
           SELECT chain, '0x' || repeat('0', 64), 'tx', $2, -1, 0, '0x' || repeat('1', 40), to_addr, asset, 1, kind,
                  NULL, NULL FROM transfers WHERE id = $1""", hop["id"], first)
    await conn.execute(
        """UPDATE transfers SET block_time = block_time WHERE to_addr = $1 AND asset = $2 AND block_number = $3
             AND block_time >= 0""", hop["to_addr"], hop["asset"], first)


async def _trace(server_url: str, template: str, chain_url: str, scenario: Scenario, eager: bool,
                 client_class: type[EvmChain] = EvmChain) -> tuple[set[Hop], dict[str, int], int]:
    """Hops of one trace on a fresh database and a fresh client, and the calls that client made."""
    client = client_class(chain_url, chain=scenario.chain, expected_chain_id=scenario.chain_id)
    await client.connect()
    try:
        async with temporary_database(server_url, template=template) as url:
            db = await Database.connect(url, migrate=False)
            try:
                await load_scenario_labels(db.pool, scenario)
                source: Any = EagerChain(client) if eager else client
                trace_id = await create_trace(db.pool, client, chain=scenario.chain, seeds=scenario.seeds, policy={})
                status = await run_with_workers(db.pool, {scenario.chain: source}, trace_id, workers=1,
                                                progress=False)
                assert status == "done"
                rows = await db.pool.fetch(
                    """SELECT t.tx_hash, t.position, h.from_addr, h.to_addr, h.asset, h.amount, h.status, h.reason,
                              t.decimals, t.symbol, t.block_time
                       FROM hops h JOIN transfers t ON t.id = h.transfer_id WHERE h.trace_id = $1""", trace_id)
                untimed = await db.pool.fetchval("SELECT count(*) FROM transfers WHERE block_time < 0")
                async with db.pool.acquire() as conn:
                    await _noise_beside_first_exit(conn, trace_id)
                    exits = [e for e in await reads.exits(conn, trace_id) if e.chain == scenario.chain]
                assert exits and all(e.first_time is not None and e.first_time >= 0 and e.last_time is not None
                                    and e.last_time >= 0 for e in exits)
                assert all(e.symbol for e in exits if e.asset != "native")
            finally:
                await db.close()
        hops = {(r["tx_hash"], r["position"], r["from_addr"], r["to_addr"], r["asset"], int(r["amount"]),
                 r["status"], r["reason"], r["decimals"], r["symbol"], r["block_time"]) for r in rows}
        return hops, dict(client.request_counts), int(untimed)
    finally:
        await client.close()


async def test_headers_only_for_hops_and_the_same_hops(
    chain_url: str, scenario: Scenario, pg_server_url: str, migrated_template: str
) -> None:
    eager, eager_calls, eager_untimed = await _trace(pg_server_url, migrated_template, chain_url, scenario, True)
    lazy, lazy_calls, lazy_untimed = await _trace(pg_server_url, migrated_template, chain_url, scenario, False)
    assert len(eager) > 50
    # The same hops, each with the same block time: hop by hop, not totals.
    assert lazy == eager
    assert all(h[-1] >= 0 for h in lazy)
    assert eager_untimed == 0
    assert lazy_untimed > 0  # noise transfers were stored without a time: nobody needed one
    # Token hops take their times from their logs' blockTimestamp: headers only for native hops.
    native_hop_txs = len({h[0] for h in lazy if h[4] == "native"})
    assert lazy_calls.get("eth_getBlockByNumber", 0) <= native_hop_txs
    assert lazy_calls.get("eth_getBlockByNumber", 0) < eager_calls.get("eth_getBlockByNumber", 0)
    assert any(h[9] for h in lazy)  # token hops carry their symbol
    assert lazy_calls.get("eth_call", 0) <= eager_calls.get("eth_call", 0)


async def test_logs_without_block_timestamps_need_headers(
    chain_url: str, old_node_url: str, scenario: Scenario, pg_server_url: str, migrated_template: str
) -> None:
    """A node whose logs carry no blockTimestamp costs a header per block of token hops; the hops
    and their times are the same."""
    new, new_calls, _ = await _trace(pg_server_url, migrated_template, chain_url, scenario, False)
    old, old_calls, _ = await _trace(pg_server_url, migrated_template, old_node_url, scenario, False)
    assert new == old
    token_only = {h[0] for h in new if h[4] != "native"} - {h[0] for h in new if h[4] == "native"}
    assert token_only
    assert old_calls["eth_getBlockByNumber"] >= new_calls.get("eth_getBlockByNumber", 0) + 1
    assert old_calls["eth_getBlockByNumber"] <= len({h[0] for h in new})


async def test_token_names_are_kept_across_traces(
    chain_url: str, scenario: Scenario, pg_server_url: str, migrated_template: str
) -> None:
    """A second trace over the same tokens asks the node for none of their names (token_meta)."""
    calls: list[int] = []
    names_asked: list[int] = []  # decimals() and symbol() calls that reached the node, per trace
    async with temporary_database(pg_server_url, template=migrated_template) as url:
        db = await Database.connect(url, migrate=False)
        try:
            await load_scenario_labels(db.pool, scenario)
            for _ in range(2):
                client = EvmChain(chain_url, chain=scenario.chain, expected_chain_id=scenario.chain_id)
                await client.connect()
                names_asked.append(0)
                calls_at = client.calls_at

                async def counted(asked: Any, block: str, calls_at: Any = calls_at) -> list[Any]:
                    names_asked[-1] += sum(data in ("0x313ce567", "0x95d89b41") for _, data in asked)
                    return list(await calls_at(asked, block))

                client.calls_at = counted  # type: ignore[method-assign]
                try:
                    trace_id = await create_trace(db.pool, client, chain=scenario.chain, seeds=scenario.seeds,
                                                  policy={})
                    assert await run_with_workers(db.pool, {scenario.chain: client}, trace_id, workers=1,
                                                  progress=False) == "done"
                    calls.append(client.request_counts.get("eth_call", 0))
                finally:
                    await client.close()
                # Forget the names the stored transfers carry: only the kept names can spare the calls.
                await db.pool.execute("UPDATE transfers SET symbol = NULL, decimals = NULL WHERE asset <> 'native'")
            named = int(await db.pool.fetchval("SELECT count(*) FROM token_meta"))
            hops = await db.pool.fetchval(
                "SELECT count(*) FROM hops h JOIN transfers t ON t.id = h.transfer_id WHERE h.trace_id = $1", trace_id)
        finally:
            await db.close()
    assert named > 0 and hops
    assert names_asked == [2 * named, 0], (names_asked, named)  # decimals() and symbol() per token
    # Through Multicall3 the names of several tokens come in one call: the second trace is cheaper.
    assert calls[1] < calls[0], calls


class _ColdChain(EvmChain):
    """A client that drops the next batch's reads the worker lets ride along (no warm cache)."""

    async def balances_at(self, queries: Any, optional: Any = ()) -> dict[tuple[str, str, int], int]:
        return await super().balances_at(queries)


async def test_a_batch_warms_the_next_ones_balances_for_free(
    chain_url: str, scenario: Scenario, pg_server_url: str, migrated_template: str
) -> None:
    """The wallets a batch pays on to are the next batch's: their balances ride in this batch's
    Multicall3 calls (tracer.engine.step.gather), so the next batch finds them cached. The same
    hops either way, fewer balance calls with it."""
    cold, cold_calls, _ = await _trace(pg_server_url, migrated_template, chain_url, scenario, False, _ColdChain)
    warm, warm_calls, _ = await _trace(pg_server_url, migrated_template, chain_url, scenario, False)
    assert len(warm) > 50 and warm == cold
    balance_calls = [c["eth_call"] + c.get("eth_getBalance", 0) for c in (cold_calls, warm_calls)]
    assert balance_calls[1] < balance_calls[0], balance_calls
