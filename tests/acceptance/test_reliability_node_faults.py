"""Node faults: a trace against a devchain that hangs, 5xx-es, resets, garbles JSON, answers batches
out of order or in part, and rate-limits with and without Retry-After finds exactly the hops a
healthy node gives; a node serving another chain id is refused with a clear reason; a node that
never recovers fails the trace with its status and reason, and records no wrong hop."""

from __future__ import annotations

from typing import Any

import pytest

from tests.reliability_support import (
    SCRIPT,
    FaultyDevChain,
    FreshDatabases,
    every_fault,
    faulty_client,
    reference_hops,
    run_faulty,
)
from tracer.chains.errors import WrongChain
from tracer.chains.evm import EvmChain
from tracer.chains.retry import RetryPolicy, TransportOptions
from tracer.devchain.scenario import Scenario
from tracer.devchain.server import FaultPlan
from tracer.engine.service import create_trace
from tracer.runner import run_with_workers
from tracer.store.db import Database
from tracer.workers.trace import MAX_ATTEMPTS

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _reference(db: Database, scenario: Scenario, devchain_factory: Any) -> list[Any]:
    hops = await reference_hops(db, scenario, devchain_factory)
    assert len(hops) > 10, "the reference trace found too little to compare"
    return hops


async def test_every_node_fault_at_once_gives_the_healthy_hops(
    db: Database, small_scenario: Scenario, devchain_factory: Any, pg_server_url: str
) -> None:
    reference = await _reference(db, small_scenario, devchain_factory)
    server = FaultyDevChain(small_scenario, faults=every_fault(seed=3), rate_limit=10.0, bare_429=0.05, seed=3,
                            script=SCRIPT)
    await server.start("127.0.0.1", 0)
    # On a database of its own: in the reference's, workers would read the transfers it cached
    # instead of asking the faulty node.
    dbs = await FreshDatabases.create(pg_server_url, small_scenario)
    try:
        async with dbs.fresh() as fresh:
            run = await run_faulty(fresh.pool, small_scenario, server)
    finally:
        await server.stop()
        await dbs.drop()
    assert run.status == "done", run.error
    assert run.duplicates == 0
    assert run.hops == reference
    kinds = {"hang", "http_500", "http_502", "http_503", "reset", "malformed", "shuffle_batch", "partial_batch",
             "http_429_bare", "http_429_retry_after"}
    missing = {k for k in kinds if not run.injected.get(k)}
    assert not missing, f"faults never injected: {missing} ({dict(run.injected)})"


async def test_a_node_on_another_chain_is_refused_with_a_clear_reason(small_scenario: Scenario) -> None:
    server = FaultyDevChain(small_scenario, faults=FaultPlan(wrong_chain_id=1.0))
    await server.start("127.0.0.1", 0)
    client = faulty_client(server.url, small_scenario)
    try:
        with pytest.raises(WrongChain) as err:
            await client.connect()
    finally:
        await client.close()
        await server.stop()
    message = str(err.value)
    assert str(small_scenario.chain_id) in message and str(small_scenario.chain_id + 1) in message
    assert "RPC URL" in message


async def test_a_node_that_never_answers_fails_the_trace_with_a_reason_and_no_hop(
    db: Database, small_scenario: Scenario
) -> None:
    # Healthy for connect and create_trace (head), then every request a 503.
    server = FaultyDevChain(small_scenario)
    await server.start("127.0.0.1", 0)
    client = EvmChain(server.url, chain=small_scenario.chain, expected_chain_id=small_scenario.chain_id,
                      transport=TransportOptions(timeout=0.5, policy=RetryPolicy(retries=1, backoff=0.01)))
    try:
        await client.connect()
        await db.pool.execute("DELETE FROM address_coverage")
        trace_id = await create_trace(db.pool, client, chain=small_scenario.chain, seeds=small_scenario.seeds,
                                      policy={})
        server.faults = FaultPlan(http_503=1.0)
        # The worker gives a job MAX_ATTEMPTS tries with growing pauses (~30 s); start at the last.
        await db.pool.execute("UPDATE jobs SET attempts = $2 WHERE trace_id = $1", trace_id, MAX_ATTEMPTS - 1)
        status = await run_with_workers(db.pool, {small_scenario.chain: client}, trace_id, workers=1,
                                        progress=False, timeout=90)
    finally:
        await client.close()
        await server.stop()
    assert status == "failed"
    error = await db.pool.fetchval("SELECT error FROM traces WHERE id = $1", trace_id)
    assert error and "503" in error, error
    assert await db.pool.fetchval("SELECT count(*) FROM hops WHERE trace_id = $1", trace_id) == 0
