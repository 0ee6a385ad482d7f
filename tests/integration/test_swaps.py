"""Swaps: the taint model carries the traced share of what a wallet paid into what it got back in
the same transaction, and a trace follows USDT swapped for ETH on a Uniswap-V2-like pair.

The tests that need nothing outside the process are in tests/unit/test_swaps.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tracer.chains.evm import EvmChain
from tracer.demo import load_scenario_labels
from tracer.devchain.scenario import Scenario, ScenarioParams, generate
from tracer.domain.transfers import NATIVE
from tracer.engine import report as treport
from tracer.engine.service import create_trace
from tracer.runner import run_with_workers
from tracer.store.db import Database

USDT = "0x" + "dd" * 20


# -- end to end ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return generate(ScenarioParams.for_size(3000, seed=11, services=True))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def traced(db: Database, scenario: Scenario, devchain_factory: Any) -> AsyncIterator[int]:
    server = await devchain_factory(scenario)
    client = EvmChain(server.url, chain=scenario.chain, expected_chain_id=scenario.chain_id)
    await client.connect()
    await load_scenario_labels(db.pool, scenario)
    trace_id = await create_trace(db.pool, client, chain=scenario.chain, seeds=scenario.seeds, policy={})
    assert await run_with_workers(db.pool, {scenario.chain: client}, trace_id, workers=2, progress=False) == "done"
    yield trace_id
    await client.close()


@pytest.mark.asyncio(loop_scope="session")
async def test_trace_follows_usdt_swapped_for_eth(db: Database, scenario: Scenario, traced: int) -> None:
    [swap] = scenario.truth.swaps
    rows = await db.pool.fetch(
        """SELECT h.*, t.tx_hash, t.kind AS tkind FROM hops h JOIN transfers t ON t.id = h.transfer_id
           WHERE h.trace_id = $1 AND h.reason = 'swap'""", traced)
    legs = {(r["asset"], r["to_addr"] == swap.wallet): r for r in rows}
    paid = legs[(swap.asset_in, False)]
    bought = legs[(NATIVE, True)]
    assert paid["tx_hash"] == bought["tx_hash"]
    # Both legs are recorded, at the swap's own rate, and followed without waking the pair.
    assert (paid["from_addr"], paid["status"], int(paid["amount"])) == (swap.wallet, "followed", swap.flagged_in)
    assert (bought["from_addr"], bought["status"], int(bought["amount"])) == (paid["to_addr"], "followed",
                                                                             swap.flagged_out)
    assert bought["tkind"] == "internal" and bought["parents"] == [paid["transfer_id"]]
    assert not await db.pool.fetchval(
        "SELECT count(*) FROM jobs WHERE trace_id = $1 AND address = $2", traced, paid["to_addr"])
    # The bought ETH reaches its off-ramp exactly, as following the swap with certainty says.
    rep = await treport.build(db.pool, traced)
    found = {(e.address, e.asset): e.amount for e in rep.exits}
    offramps = [o for o in scenario.truth.through_offramps if o.amount == swap.flagged_out]
    assert offramps and found[(offramps[0].address, NATIVE)] == swap.flagged_out
