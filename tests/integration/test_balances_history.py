"""Nodes without historical state, on the devchain: the first-contact probe, the refusal of old-state
reads (answered exactly as Anvil answers them), fees from receipts on both native-transfer paths,
and whole traces whose prior balances are derived from history instead of read from state.

The devchain here charges gas to balances (`charge_gas`), as a real chain does, so a balance
derived from history (head balance minus later transfers plus later fees) must equal the state an
archive node reports: the traces on both nodes give the same hops, to the wei.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from tests.api_support import conforms, running_api
from tests.fixtures_chain import DevChainFactory, serving
from tests.reliability_support import forget_transfers, hop_rows, run_trace
from tracer.api.context import Settings
from tracer.chains.errors import StateUnavailable
from tracer.chains.evm import EvmChain
from tracer.demo import load_scenario_labels
from tracer.devchain.scenario import Scenario
from tracer.engine import balances, report
from tracer.nodes import connect_checked
from tracer.store import chains as chain_store
from tracer.store import traces as trace_store
from tracer.store.db import Database

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _client(url: str, scenario: Scenario, **options: Any) -> EvmChain:
    client = EvmChain(url, chain=scenario.chain, expected_chain_id=scenario.chain_id, **options)
    await client.connect()
    return client


async def test_probe_tells_archive_from_pruned(devchain_factory: DevChainFactory, small_scenario: Scenario) -> None:
    archive = await devchain_factory(charge_gas=True)
    pruned = await devchain_factory(charge_gas=True, keep_states=1)
    a = await _client(archive.url, small_scenario)
    p = await _client(pruned.url, small_scenario)
    try:
        assert a.historical_state is True and a.state_probe is not None
        assert p.historical_state is False and p.state_probe is not None
        head = pruned.chain.head
        assert p.state_probe.detail == (
            f"BlockOutOfRangeError: block height is {head} but requested was {p.state_probe.block} (code -32602)")
        # What the probe costs: one request, whatever the node answers.
        assert pruned.server.request_counts["eth_getCode"] == 1 and not pruned.server.request_counts["eth_getBalance"]
        seed = small_scenario.seeds[0]
        with pytest.raises(StateUnavailable):
            await p.native_balances([(seed, head - 5)])
        assert await p.native_balances([(seed, head)]) == await a.native_balances([(seed, head)])
    finally:
        await a.close()
        await p.close()


@pytest.mark.parametrize("traces", [True, False], ids=["trace_filter", "block-scan"])
async def test_fees_paid_match_the_chain(devchain_factory: DevChainFactory, small_scenario: Scenario,
                                         traces: bool) -> None:
    node = await devchain_factory(charge_gas=True, keep_states=1, traces=traces)
    client = await _client(node.url, small_scenario)
    try:
        assert client.supports_trace is traces
        head = node.chain.head
        senders = sorted({tx.sender for tx in node.chain.txs})[:40]
        fees = await client.fees_paid(senders, 1, head)
        paid: dict[str, int] = {}
        for f in fees:
            paid[f.address] = paid.get(f.address, 0) + f.fee
        for s in senders:
            assert paid.get(s, 0) == node.chain.fees_paid(s, head) - node.chain.fees_paid(s, 0), s
        assert sum(paid.values()) > 0
    finally:
        await client.close()


@pytest.fixture(scope="module")
def haircut() -> dict[str, Any]:
    return {"taint_model": "haircut"}


async def _trace(db: Database, url: str, scenario: Scenario, policy: dict[str, Any]) -> tuple[int, Any]:
    await forget_transfers(db.pool)
    client = await connect_checked(db.pool, scenario.chain, url, expected_chain_id=scenario.chain_id)
    assert isinstance(client, EvmChain)
    try:
        trace_id, status = await run_trace(db.pool, client, scenario, policy=policy)
    finally:
        await client.close()
    async with db.pool.acquire() as conn:
        row = await trace_store.get_trace(conn, trace_id)
    assert status == "done", row.error if row else None
    return trace_id, row


@pytest.fixture(scope="module")
async def labelled(db: Database, small_scenario: Scenario) -> AsyncIterator[None]:
    await load_scenario_labels(db.pool, small_scenario)
    yield


async def test_pruned_node_traces_like_an_archive(db: Database, devchain_factory: DevChainFactory,
                                                  small_scenario: Scenario, labelled: None) -> None:
    archive = await devchain_factory(charge_gas=True)
    pruned = await devchain_factory(charge_gas=True, keep_states=1)
    a_id, a_row = await _trace(db, archive.url, small_scenario, {})
    p_id, p_row = await _trace(db, pruned.url, small_scenario, {})
    assert a_row.balance_method == balances.NODE_STATE
    assert p_row.balance_method == balances.DERIVED
    assert "BlockOutOfRangeError" in p_row.balance_method_reason
    assert "most conservative" not in p_row.balance_method_reason
    archive_hops = await hop_rows(db.pool, a_id)
    assert archive_hops and await hop_rows(db.pool, p_id) == archive_hops
    # Head balances were read instead of the refused old ones (the pruned node serves no other
    # state): as Multicall3 eth_calls, besides the token names.
    counts = pruned.server.request_counts
    names = 2 * len(small_scenario.tokens)
    assert counts["eth_getBalance"] + counts["eth_call"] > names
    async with db.pool.acquire() as conn:
        states = {s.historical_state for s in await chain_store.node_states(conn, small_scenario.chain)}
    assert states == {True, False}


async def test_flagged_first_needs_no_balances(db: Database, devchain_factory: DevChainFactory,
                                        small_scenario: Scenario, labelled: None) -> None:
    pruned = await devchain_factory(charge_gas=True, keep_states=1)
    _, row = await _trace(db, pruned.url, small_scenario, {"taint_model": "flagged_first"})
    assert row.balance_method == balances.NOT_NEEDED


async def test_history_that_does_not_add_up_gets_the_most_conservative_taint(
        db: Database, devchain_factory: DevChainFactory, small_scenario: Scenario, labelled: None) -> None:
    """A node whose head balances are lower than the history explains (money left in a way no
    transfer shows): those addresses get no clean balance, so no exit gets less than on an archive."""
    archive = await devchain_factory(charge_gas=True)
    # No Multicall3 there: head balances come as eth_getBalance, which the proxy below lowers.
    pruned = await devchain_factory(charge_gas=True, keep_states=1, multicall=False)

    async def handle(request: web.Request) -> web.StreamResponse:
        body = json.loads(await request.read())
        answer = pruned.server.handle_body(json.dumps(body).encode())
        for req, ans in zip(body if isinstance(body, list) else [body],
                            answer if isinstance(answer, list) else [answer], strict=True):
            if req["method"] == "eth_getBalance" and "result" in ans:
                ans["result"] = hex(max(0, int(ans["result"], 16) - 10**24))
        return web.json_response(answer)

    a_id, _ = await _trace(db, archive.url, small_scenario, {})
    async with serving(handle) as url:
        c_id, c_row = await _trace(db, url, small_scenario, {})
    assert c_row.balance_method == balances.DERIVED
    assert "most conservative" in c_row.balance_method_reason
    async with db.pool.acquire() as conn:
        archive_exits = {(r.address, r.asset): r.amount for r in await trace_store.exits(conn, a_id)}
        conservative = {(r.address, r.asset): r.amount for r in await trace_store.exits(conn, c_id)}
    assert archive_exits
    for key, amount in archive_exits.items():
        assert conservative.get(key, 0) >= amount, key
    assert sum(conservative.values()) > sum(archive_exits.values())


async def test_api_report_and_text_say_which_method(db: Database, devchain_factory: DevChainFactory,
                                                    small_scenario: Scenario, labelled: None) -> None:
    """GET /v1/traces/{id} (a real API server with its own workers), the JSON report and the text
    report all name the method and the reason."""
    pruned = await devchain_factory(charge_gas=True, keep_states=1)
    await forget_transfers(db.pool)
    client = await connect_checked(db.pool, small_scenario.chain, pruned.url,
                                   expected_chain_id=small_scenario.chain_id)
    try:
        async with running_api(db, {small_scenario.chain: client}, Settings(workers=2)) as api:
            done = await api.run_trace({"chain": small_scenario.chain, "seeds": small_scenario.seeds})
            conforms("trace", done)
    finally:
        await client.close()
    assert done["balance_method"] == "derived_from_history"
    assert done["balance_method_reason"].startswith(
        f"the node keeps no state at block 1 (head {pruned.chain.head}): BlockOutOfRangeError")
    built = await report.build(db.pool, int(done["id"]))
    assert built.to_json()["balance_method"] == "derived_from_history"
    assert built.to_json()["balance_method_reason"] == done["balance_method_reason"]
    text = report.render(built)
    assert "Prior balances: derived from history (the node keeps no state at block 1" in text


async def test_no_internal_calls_means_no_clean_balance(db: Database, devchain_factory: DevChainFactory,
                                                        small_scenario: Scenario, labelled: None) -> None:
    """A node without trace_* or debug_* hides ETH moved by contracts: a derived history would miss
    it, so every address gets the most conservative taint and the trace says why."""
    pruned = await devchain_factory(charge_gas=True, keep_states=1, traces=False)
    _, row = await _trace(db, pruned.url, small_scenario, {})
    assert row.balance_method == balances.DERIVED
    assert "no internal calls" in row.balance_method_reason
    assert "most conservative" in row.balance_method_reason


async def test_state_refused_after_a_yes_probe_is_derived_too(
        db: Database, devchain_factory: DevChainFactory, small_scenario: Scenario, labelled: None) -> None:
    """A node that answered the probe but refuses the reads a trace makes (its window moved on, as a
    full node's does while a long trace runs): the refused batch derives its balances and the
    trace says why, with the same hops as on an archive node."""
    archive = await devchain_factory(charge_gas=True)
    head = archive.chain.head
    refused = {"reads": 0}

    async def handle(request: web.Request) -> web.StreamResponse:
        body = json.loads(await request.read())
        members = body if isinstance(body, list) else [body]
        answers = []
        for req in members:
            params = req.get("params") or []
            old = (req["method"] == "eth_getBalance" and params[0] != "0x" + "00" * 20
                   and int(params[1], 16) < head)
            if old:
                refused["reads"] += 1
                answers.append({"jsonrpc": "2.0", "id": req["id"], "error": {
                    "code": -32602, "message": f"BlockOutOfRangeError: block height is {head} but requested was "
                                               f"{int(params[1], 16)}"}})
            else:
                answers.append(archive.server.handle_request(req))
        return web.json_response(answers if isinstance(body, list) else answers[0])

    a_id, _ = await _trace(db, archive.url, small_scenario, {})
    async with serving(handle) as url:
        client = await _client(url, small_scenario)
        assert client.historical_state is True
        await client.close()
        r_id, row = await _trace(db, url, small_scenario, {})
    assert refused["reads"] > 0
    assert row.balance_method == balances.DERIVED
    assert row.balance_method_reason.startswith("node at ") and "keeps no state at block" in row.balance_method_reason
    assert await hop_rows(db.pool, r_id) == await hop_rows(db.pool, a_id)


async def test_cli_devchain_prune_history_and_trace_report(db: Database) -> None:
    """As a user runs it: `tracer devchain --prune-history --charge-gas` (a real process) and
    `tracer trace --json` against it: the report says the balances were derived, and why."""
    devchain = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tracer.cli", "devchain", "--generate", "300", "--seed", "9", "--port", "0",
        "--prune-history", "--charge-gas", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    try:
        assert devchain.stdout is not None
        url = (await asyncio.wait_for(devchain.stdout.readline(), 60)).decode().strip()
        seeds = (await asyncio.wait_for(devchain.stdout.readline(), 10)).decode().split()[1:]
        assert url.startswith("http://") and seeds
        trace = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tracer.cli", "trace", *seeds, "--rpc", url, "--database-url", db.url, "--json",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(trace.communicate(), 180)
        assert trace.returncode == 0, err.decode()[-2000:]
    finally:
        devchain.terminate()
        await devchain.wait()
    report = json.loads(out)
    assert report["status"] == "done"
    assert report["balance_method"] == "derived_from_history"
    assert "BlockOutOfRangeError: block height is" in report["balance_method_reason"]
    async with db.pool.acquire() as conn:
        [state] = [s for s in await chain_store.node_states(conn, "ethereum") if s.node == chain_store.node_name(url)]
    assert state.historical_state is False and "BlockOutOfRange" in state.detail
