"""Results that change after a reorg: a node reorganises in the middle of a trace, replacing the
block that paid A -> B (already recorded as a hop) with A -> C. The trace never keeps a hop of a
block that no longer exists: it fails with the reorg as its reason and the stale hops retracted,
and tracing again gives exactly the hops of a healthy node serving the final chain. Real devchain
over HTTP, real Postgres, real workers, the same ReorgGuard the CLI and API put on their clients.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.reliability_support import (
    REORG_A,
    REORG_B,
    REORG_C,
    REORG_EXCHANGE,
    REORG_SEED,
    ReorgingDevChain,
    hop_rows,
    label_reorg_exchange,
    reorg_chains,
    trace_reorg_seed,
)
from tracer.chains.evm import EvmChain
from tracer.chains.retry import RetryPolicy, TransportOptions
from tracer.reorg import ReorgGuard, guarded
from tracer.store.db import Database

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _client(url: str) -> EvmChain:
    client = EvmChain(url, chain="ethereum", expected_chain_id=1337,
                      transport=TransportOptions(timeout=5.0, policy=RetryPolicy(retries=2, backoff=0.05)))
    await client.connect()
    return client


def _edges(hops: list[Any]) -> set[tuple[str, str]]:
    return {(h[2], h[3]) for h in hops}


async def test_a_reorg_mid_trace_fails_it_with_the_reason_and_leaves_no_hop_of_a_vanished_block(
    db: Database, devchain_factory: Any
) -> None:
    await label_reorg_exchange(db.pool)
    # The reference: a healthy node that only ever served the final chain (no guard needed there).
    final = await devchain_factory(reorg_chains()[1])
    healthy = await _client(final.url)
    try:
        ref_id, ref_status = await trace_reorg_seed(db.pool, healthy)
    finally:
        await healthy.close()
    reference = await hop_rows(db.pool, ref_id)
    assert ref_status == "done"
    # (C sweeps everything to the exchange: it may be judged a deposit address and end the trace.)
    assert {(REORG_SEED, REORG_A), (REORG_A, REORG_C)} <= _edges(reference) <= {
        (REORG_SEED, REORG_A), (REORG_A, REORG_C), (REORG_C, REORG_EXCHANGE)}
    await db.pool.execute("DELETE FROM address_coverage")  # the reorging node must really be asked

    server = ReorgingDevChain()
    await server.start("127.0.0.1", 0)
    raw = await _client(server.url)
    client = guarded(raw, db.pool, "ethereum")
    assert isinstance(client, ReorgGuard)
    try:
        trace_id, status = await trace_reorg_seed(db.pool, client)
        assert server.reorged, "the node never reorganised: the scenario did not reach B"
        row = await db.pool.fetchrow("SELECT status, error FROM traces WHERE id = $1", trace_id)
        assert status == row["status"] == "failed", row
        assert "reorganised" in row["error"] and "start the trace again" in row["error"], row["error"]
        assert client.reorgs_detected >= 1
        # Never a wrong hop: what is left is on the final chain (the shared SEED -> A).
        hops = await hop_rows(db.pool, trace_id)
        assert set(hops) <= set(reference), set(hops) - set(reference)
        assert (REORG_A, REORG_B) not in _edges(hops)
        # The hop that was recorded and then vanished was announced as retracted.
        retracted = await db.pool.fetch(
            "SELECT payload FROM events WHERE trace_id = $1 AND type = 'hop_retracted'", trace_id)
        assert any(r["payload"]["to"] == REORG_B for r in retracted), retracted
        # Tracing again (same node, now on the final chain) gives exactly the healthy hops.
        again_id, again_status = await trace_reorg_seed(db.pool, client)
        assert again_status == "done", await db.pool.fetchval("SELECT error FROM traces WHERE id = $1", again_id)
        assert await hop_rows(db.pool, again_id) == reference
    finally:
        await raw.close()
        await server.stop()


async def test_without_a_reorg_the_guard_changes_nothing(db: Database, devchain_factory: Any) -> None:
    await label_reorg_exchange(db.pool)
    await db.pool.execute("DELETE FROM block_pins")
    await db.pool.execute("DELETE FROM address_coverage")
    steady = await devchain_factory(reorg_chains()[0])
    raw = await _client(steady.url)
    client = guarded(raw, db.pool, "ethereum")
    try:
        trace_id, status = await trace_reorg_seed(db.pool, client)
    finally:
        await raw.close()
    assert status == "done"
    assert {(REORG_SEED, REORG_A), (REORG_A, REORG_B)} <= _edges(await hop_rows(db.pool, trace_id)) <= {
        (REORG_SEED, REORG_A), (REORG_A, REORG_B), (REORG_B, REORG_EXCHANGE)}
    assert client.reorgs_detected == 0
    assert await db.pool.fetchval("SELECT count(*) FROM block_pins WHERE chain = 'ethereum'") >= 1


async def test_the_guard_depth_is_configurable(db: Database, devchain_factory: Any,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    steady = await devchain_factory(reorg_chains()[0])
    raw = await _client(steady.url)
    try:
        monkeypatch.setenv("TRACER_REORG_GUARD_DEPTH", "0")
        assert guarded(raw, db.pool, "ethereum") is raw
        monkeypatch.setenv("TRACER_REORG_GUARD_DEPTH", "3")
        guard = guarded(raw, db.pool, "ethereum")
        assert isinstance(guard, ReorgGuard)
        await db.pool.execute("DELETE FROM block_pins")
        await guard.native_balances([(REORG_A, 1)])  # head 7: block 1 is final at depth 3, not pinned
        await guard.native_balances([(REORG_A, 6)])  # within 3 of the head: pinned
        pinned = await db.pool.fetch("SELECT number FROM block_pins WHERE chain = 'ethereum'")
        assert [r["number"] for r in pinned] == [6]
        monkeypatch.setenv("TRACER_REORG_GUARD_DEPTH", "many")
        with pytest.raises(SystemExit, match="TRACER_REORG_GUARD_DEPTH"):
            guarded(raw, db.pool, "ethereum")
    finally:
        await raw.close()
