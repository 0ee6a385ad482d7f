"""bench/faults.py can fail: a small configuration of it (one fault kind, one round, a 200-transfer
scenario) against a client that lies reports the lie.

Each faulty run traces on a fresh database, so its workers read every transfer from the faulty
node through the client under test; before, they read the transfers the healthy run had cached,
and a client returning nothing still "matched". A client that drops one transfer must show up as
lost hops, one that alters one amount as wrong hops; the honest client as neither.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import pytest_asyncio

from tracer.chains.evm import EvmChain
from tracer.devchain.scenario import Scenario, ScenarioParams, generate
from tracer.domain.transfers import Transfer, TransferQuery

pytestmark = pytest.mark.asyncio(loop_scope="session")

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _bench_modules() -> tuple[ModuleType, ModuleType]:
    # The bench scripts import their neighbours by plain name (they run as scripts).
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    import faultkit
    import faults

    return faults, faultkit


@dataclasses.dataclass
class Setup:
    faults: ModuleType
    faultkit: ModuleType
    scenario: Scenario
    dbs: Any
    reference: list[Any]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def bench(pg_server_url: str) -> AsyncIterator[Setup]:
    faults, faultkit = _bench_modules()
    sc = generate(ScenarioParams.for_size(200, seed=9))
    dbs = await faults.FreshDatabases.create(pg_server_url, sc)
    try:
        async with dbs.fresh() as db:
            _, reference = await faults.reference_trace(db, sc)
        assert len(reference) > 10
        yield Setup(faults, faultkit, sc, dbs, reference)
    finally:
        await dbs.drop()


def _lying_client(change: Any, victim: tuple[str, str]) -> Any:
    """`faulty_client` whose transfers pass through `change` for the victim transfer."""
    _, faultkit = _bench_modules()

    class Lying(EvmChain):
        async def transfers(self, query: TransferQuery) -> list[Transfer]:
            found = await super().transfers(query)
            out = []
            for t in found:
                if (t.tx_hash, t.position) == victim:
                    t = change(t)
                    if t is None:
                        continue
                out.append(t)
            return out

    def make(url: str, scenario: Scenario) -> EvmChain:
        return Lying(url, chain=scenario.chain, expected_chain_id=scenario.chain_id,
                     transport=faultkit.FAULTY_TRANSPORT)

    return make


async def _one_kind(s: Setup) -> Any:
    (row,) = await s.faults.fault_rows(s.dbs, s.scenario, s.reference, 1, {"http 500": s.faults.KINDS["http 500"]})
    assert row.traces == 1 and row.injected > 0
    return row


def _victim(s: Setup) -> tuple[str, str]:
    # The biggest hop: its transfer carries all of its amount, so halving it changes the hop.
    top = max(s.reference, key=lambda h: h[4])
    return (top[0], top[1])


async def test_honest_client_matches_the_reference(bench: Setup) -> None:
    row = await _one_kind(bench)
    assert row.completed == 1
    assert (row.lost, row.wrong, row.duplicated_events) == (0, 0, 0), row.notes


async def test_a_client_dropping_one_transfer_loses_hops(bench: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    victim = _victim(bench)
    monkeypatch.setattr(bench.faultkit, "faulty_client", _lying_client(lambda t: None, victim))
    row = await _one_kind(bench)
    assert row.completed == 1  # the trace ends well: only the comparison can tell
    assert row.lost >= 1, row.notes


async def test_a_client_altering_one_amount_gives_wrong_hops(bench: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    victim = _victim(bench)
    monkeypatch.setattr(bench.faultkit, "faulty_client",
                        _lying_client(lambda t: dataclasses.replace(t, amount=t.amount // 2), victim))
    row = await _one_kind(bench)
    assert row.completed == 1
    assert row.wrong >= 1, row.notes
    assert any(n.startswith("altered ") for n in row.notes), row.notes
