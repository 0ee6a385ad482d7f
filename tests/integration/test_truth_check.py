"""The ground-truth check fails for real: a generated laundering case is traced (real devchain over
JSON-RPC, real Postgres, real workers) and checked against its truth, which passes; then defects
are planted in the truth one at a time (an off-ramp too many or too few, an amount off beyond the
tolerance, a mixer note withdrawn by another launderer, a swap by another wallet) and each makes
the check fail. `tracer demo` exits 1 when its check fails."""

from __future__ import annotations

import copy
import dataclasses
import json
from typing import Any

import pytest
import pytest_asyncio

from tracer import truth_check
from tracer.chains.evm import EvmChain
from tracer.demo import load_scenario_labels
from tracer.devchain.scenario import Scenario, ScenarioParams, generate
from tracer.engine.service import create_trace
from tracer.runner import run_with_workers
from tracer.store.db import Database

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(scope="module")
def case() -> Scenario:
    return generate(ScenarioParams.for_size(2000, seed=11, services=True))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def traced(db: Database, case: Scenario, devchain_factory: Any) -> int:
    node = await devchain_factory(case)
    client = EvmChain(node.url, chain=case.chain, expected_chain_id=case.chain_id)
    await client.connect()
    try:
        await load_scenario_labels(db.pool, case)
        trace_id = await create_trace(db.pool, client, chain=case.chain, seeds=case.seeds, policy={})
        status = await run_with_workers(db.pool, {case.chain: client}, trace_id, workers=2, progress=False,
                                        timeout=120)
    finally:
        await client.close()
    assert status == "done"
    return trace_id


def _with_truth(case: Scenario, **changes: Any) -> Scenario:
    planted = copy.copy(case)
    planted.truth = dataclasses.replace(case.truth, **changes)
    return planted


async def test_the_untouched_truth_passes_and_covers_every_kind_of_exit(
    db: Database, case: Scenario, traced: int
) -> None:
    check = await truth_check.check_trace(db.pool, traced, case)
    assert check.ok, check.render()
    assert case.truth.through_offramps and case.truth.mixer_links and case.truth.swaps  # a case with services
    found, expected = check.counts["exits"]
    assert found == expected == len(case.truth.offramps) + len(case.truth.through_offramps) + sum(
        1 for x in case.truth.other_exits if x.category == "bridge")
    assert check.counts["mixer_notes"] == (len(case.truth.mixer_links),) * 2
    assert check.counts["swaps"] == (len(case.truth.swaps),) * 2
    assert json.loads(json.dumps(check.to_json()))["ok"] is True


async def test_one_extra_offramp_in_the_truth_fails(db: Database, case: Scenario, traced: int) -> None:
    o = case.truth.offramps[0]
    ghost = dataclasses.replace(o, address="0x" + "d0" * 20)
    check = await truth_check.check_trace(db.pool, traced, _with_truth(case, offramps=[*case.truth.offramps, ghost]))
    assert not check.ok and any(m.startswith("missing off-ramp 0x" + "d0" * 20) for m in check.mismatches)


async def test_an_offramp_the_truth_does_not_have_fails(db: Database, case: Scenario, traced: int) -> None:
    o = case.truth.offramps[0]
    check = await truth_check.check_trace(db.pool, traced, _with_truth(case, offramps=case.truth.offramps[1:]))
    assert not check.ok and any(m.startswith(f"extra exit {o.address}") for m in check.mismatches), check.mismatches


@pytest.mark.parametrize(("factor", "passes"), [(1.0005, True), (1.003, False), (0.99, False)])
async def test_amounts_are_held_to_the_stated_tolerance(
    db: Database, case: Scenario, traced: int, factor: float, passes: bool
) -> None:
    o = case.truth.offramps[0]
    moved = dataclasses.replace(o, amount=int(o.amount * factor))
    check = await truth_check.check_trace(db.pool, traced,
                                          _with_truth(case, offramps=[moved, *case.truth.offramps[1:]]))
    assert check.tolerance == truth_check.AMOUNT_TOLERANCE == 0.001
    assert check.ok is passes, check.mismatches


async def test_an_exit_behind_a_mixer_is_checked_too(db: Database, case: Scenario, traced: int) -> None:
    o = case.truth.through_offramps[0]
    moved = dataclasses.replace(o, amount=o.amount * 2)
    check = await truth_check.check_trace(
        db.pool, traced, _with_truth(case, through_offramps=[moved, *case.truth.through_offramps[1:]]))
    assert not check.ok and any(f"behind a mixer or swap {o.address}" in m for m in check.mismatches)


async def test_a_note_linked_to_another_launderers_recipient_fails(db: Database, case: Scenario, traced: int) -> None:
    notes = case.truth.mixer_links
    a, b = next((x, y) for x in notes for y in notes if x.recipient != y.recipient)
    swapped = [dataclasses.replace(a, recipient=b.recipient, withdrawal_block=b.withdrawal_block) if m is a else m
               for m in notes]
    check = await truth_check.check_trace(db.pool, traced, _with_truth(case, mixer_links=swapped))
    assert not check.ok
    assert any(f"not linked to its recipient {b.recipient}" in m for m in check.mismatches), check.mismatches
    assert any(f"followed to {a.recipient}" in m for m in check.mismatches), check.mismatches


async def test_a_swap_credited_to_another_wallet_fails(db: Database, case: Scenario, traced: int) -> None:
    s = case.truth.swaps[0]
    pair = next(lb.address for lb in case.labels if lb.category == "dex")
    check = await truth_check.check_trace(
        db.pool, traced, _with_truth(case, swaps=[dataclasses.replace(s, wallet=pair), *case.truth.swaps[1:]]))
    assert not check.ok and any(m.startswith(f"swap of {pair}") for m in check.mismatches)


async def test_demo_exits_1_and_says_so_in_json_when_the_check_fails(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The demo's own case with one off-ramp planted in its truth: the CLI must fail.
    from tracer import cli, demo

    def planted(params: ScenarioParams) -> Scenario:
        sc = generate(params)
        ghost = dataclasses.replace(sc.truth.offramps[0], address="0x" + "d1" * 20)
        sc.truth.offramps.append(ghost)
        return sc

    monkeypatch.setattr(demo, "generate", planted)
    code = await _in_thread(cli.main, ["demo", "--size", "1500", "--workers", "2", "--json",
                                       "--database-url", database_url])
    out = capsys.readouterr().out
    assert code == 1
    body = json.loads(out)
    assert body["truth_check"]["ok"] is False and body["truth_check"]["amount_tolerance"] == 0.001
    assert any(m.startswith("missing off-ramp 0x" + "d1" * 20) for m in body["truth_check"]["mismatches"])


async def _in_thread(fn: Any, *args: Any) -> Any:
    import asyncio

    return await asyncio.to_thread(fn, *args)


async def test_swap_lines_name_the_wallet_that_swapped_not_the_pair(db: Database, case: Scenario, traced: int) -> None:
    from tracer.demo import _services, _short
    from tracer.engine import report as treport
    from tracer.store import traces as trace_store

    rep = await treport.build(db.pool, traced)
    async with db.pool.acquire() as conn:
        hops = await trace_store.all_hops(conn, traced)
    lines = [x for x in _services(rep, [], [h for h in hops if h.reason == "swap"]).splitlines()
             if x.startswith("  swap")]
    payers = {x.split()[1] for x in lines}
    assert payers == {_short(s.wallet) for s in case.truth.swaps}, lines
    pairs = {_short(lb.address) for lb in case.labels if lb.category == "dex"}
    assert not payers & pairs
