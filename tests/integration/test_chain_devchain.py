"""The real web3 client over HTTP against the devchain: every path, every misbehaviour, one answer.

The client fetches the transfers of every address that sends anything in a generated scenario
(so every transfer of the chain must come back, exactly once) through the trace_filter path, the
block-scan + debug_traceBlockByNumber path and the block-scan path without any tracing; with
getLogs/trace caps, a rate limit (HTTP 429 + Retry-After) and a fault plan (hangs past the
timeout, 5xx, connection resets, truncated bodies, shuffled and partial batches). The answers must
be identical (without tracing: identical minus internal calls) and match the scenario.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from tests.fixtures_chain import DevChainFactory, senders
from tracer.chains.evm import EvmChain, WrongChain
from tracer.chains.retry import RetryPolicy, TransportOptions
from tracer.devchain.scenario import KIND_MIXER, Scenario, ScenarioParams, generate
from tracer.devchain.server import FaultPlan
from tracer.domain.transfers import NATIVE, Transfer, TransferKind, TransferQuery

Move = tuple[str, str, str, int]


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return generate(ScenarioParams.for_size(600, seed=11))


def all_moves(sc: Scenario, internal: bool = True) -> Counter[Move]:
    moves: Counter[Move] = Counter()
    for _, tx in sc.iter_txs():
        for frm, to, asset, amount in tx.transfers():
            if amount and (internal or frm == tx.sender):
                moves[(frm, to, asset, amount)] += 1
    return moves


# Retries a test can afford to wait for.
QUICK = TransportOptions(policy=RetryPolicy(backoff=0.01))


def moves(found: list[Transfer]) -> Counter[Move]:
    return Counter((t.from_address, t.to_address, t.asset, t.amount) for t in found)


async def fetch(url: str, sc: Scenario, *, incoming: bool = False, transport: TransportOptions = QUICK,
                **kwargs: Any) -> tuple[EvmChain, list[Transfer]]:
    client = EvmChain(url, chain=sc.chain, expected_chain_id=sc.chain_id, transport=transport, **kwargs)
    await client.connect()
    try:
        found = await client.transfers(TransferQuery(senders(sc), 0, sc.head, outgoing=True, incoming=incoming))
    finally:
        await client.close()
    return client, found


@pytest.fixture(scope="module")
async def reference(devchain_factory: DevChainFactory, scenario: Scenario) -> list[Transfer]:
    """The trace_filter path's answer, checked against the scenario once."""
    running = await devchain_factory(scenario)
    client, found = await fetch(running.url, scenario)
    assert client.supports_trace and client.path == "trace_filter"
    assert moves(found) == all_moves(scenario)
    return found


def test_reference_is_the_whole_chain(reference: list[Transfer], scenario: Scenario) -> None:
    kinds = Counter(t.kind for t in reference)
    assert kinds[TransferKind.NATIVE] and kinds[TransferKind.INTERNAL] and kinds[TransferKind.TOKEN]
    assert len({t.key for t in reference}) == len(reference)
    assert reference == sorted(reference, key=lambda t: t.order)
    times = {b.number: b.timestamp for b in scenario.blocks}
    assert all(t.block_time == times[t.block_number] for t in reference)
    internal = [t for t in reference if t.kind == TransferKind.INTERNAL]
    assert all(t.position.startswith("call:") and t.asset == NATIVE for t in internal)
    assert all(t.position.startswith("log:") for t in reference if t.kind == TransferKind.TOKEN)
    failed = sum(1 for _, tx in scenario.iter_txs() if not tx.ok)
    assert failed > 0  # the scenario has failed transactions, and none of them shows up above


async def test_block_scan_with_debug_is_identical(
    devchain_factory: DevChainFactory, scenario: Scenario, reference: list[Transfer]
) -> None:
    running = await devchain_factory(scenario)
    client, found = await fetch(running.url, scenario, use_trace_filter=False)
    assert client.path == "block-scan+debug_traceBlockByNumber"
    assert client.supports_block_receipts
    assert found == reference


@pytest.mark.parametrize(
    ("debug_method", "block_receipts"),
    [("debug_traceTransaction", True), ("debug_traceTransaction", False), ("debug_traceBlockByNumber", False)],
)
async def test_other_node_shapes_are_identical(
    devchain_factory: DevChainFactory,
    scenario: Scenario,
    reference: list[Transfer],
    debug_method: str,
    block_receipts: bool,
) -> None:
    """Geth without eth_getBlockReceipts, or with per-transaction tracing only: same answer."""
    running = await devchain_factory(scenario)
    client = EvmChain(running.url, chain=scenario.chain, use_trace_filter=False, batch_size=30)
    await client.connect()
    try:
        # What connect() would have found on such a node.
        client.debug_method = debug_method
        client.supports_block_receipts = block_receipts
        client.request_counts.clear()
        found = await client.transfers(TransferQuery(senders(scenario), 0, scenario.head))
    finally:
        await client.close()
    assert found == reference
    assert client.request_counts[debug_method] > 0
    assert (client.request_counts["eth_getBlockReceipts"] > 0) == (
        block_receipts and debug_method == "debug_traceTransaction"
    )


async def test_without_traces_only_internal_calls_are_missing(
    devchain_factory: DevChainFactory, scenario: Scenario, reference: list[Transfer]
) -> None:
    running = await devchain_factory(scenario, traces=False)
    client, found = await fetch(running.url, scenario)
    assert client.path == "block-scan (no internal calls)"
    assert found == [t for t in reference if t.kind != TransferKind.INTERNAL]
    assert moves(found) == all_moves(scenario, internal=False)


async def test_incoming_adds_nothing_when_every_sender_is_asked(
    devchain_factory: DevChainFactory, scenario: Scenario, reference: list[Transfer]
) -> None:
    running = await devchain_factory(scenario)
    _, found = await fetch(running.url, scenario, incoming=True)
    assert found == reference  # every incoming transfer is some sender's outgoing one: deduped


@pytest.mark.parametrize("use_trace_filter", [True, False])
async def test_result_caps_are_split(
    devchain_factory: DevChainFactory, scenario: Scenario, reference: list[Transfer], use_trace_filter: bool
) -> None:
    running = await devchain_factory(scenario, max_logs=5)
    client, found = await fetch(running.url, scenario, use_trace_filter=use_trace_filter, trace_page_size=7)
    assert found == reference
    assert running.server.request_counts["eth_getLogs"] > 10  # refused and split
    if use_trace_filter:
        assert client.request_counts["trace_filter"] > 10  # paginated


async def test_rate_limit_is_honoured(
    devchain_factory: DevChainFactory, scenario: Scenario, reference: list[Transfer]
) -> None:
    running = await devchain_factory(scenario, rate_limit=4.0)
    _, found = await fetch(running.url, scenario, batch_size=20,
                             transport=TransportOptions(concurrency=4, policy=QUICK.policy))
    assert found == reference
    assert running.server.request_counts["http_429"] > 0


@pytest.mark.parametrize("use_trace_filter", [True, False])
async def test_faults_give_identical_results(
    devchain_factory: DevChainFactory, scenario: Scenario, reference: list[Transfer], use_trace_filter: bool
) -> None:
    plan = FaultPlan(
        seed=5,
        hang=0.03,
        hang_seconds=1.5,
        http_500=0.04,
        http_502=0.03,
        http_503=0.04,
        reset=0.04,
        malformed=0.05,
        shuffle_batch=0.5,
        partial_batch=0.3,
    )
    running = await devchain_factory(scenario, faults=plan)
    # Short address lists and pages: many queries per HTTP batch for the faults to hit.
    _, found = await fetch(
        running.url, scenario, use_trace_filter=use_trace_filter, batch_size=25,
        transport=TransportOptions(timeout=0.5, policy=RetryPolicy(retries=10, backoff=0.01)),
        addresses_per_request=10, trace_page_size=50,
    )
    assert found == reference
    served = running.server.fault_counts
    assert served["partial_batch"] and served["shuffle_batch"] and sum(served.values()) > 5


async def test_wrong_chain_id_is_refused(devchain_factory: DevChainFactory, scenario: Scenario) -> None:
    running = await devchain_factory(scenario, faults=FaultPlan(wrong_chain_id=1.0))
    client = EvmChain(running.url, expected_chain_id=scenario.chain_id)
    try:
        with pytest.raises(WrongChain, match=f"expects {scenario.chain_id}"):
            await client.connect()
    finally:
        await client.close()


async def test_reads_and_logs(devchain_factory: DevChainFactory, scenario: Scenario) -> None:
    running = await devchain_factory(scenario)
    client = EvmChain(running.url, chain=scenario.chain, expected_chain_id=scenario.chain_id)
    await client.connect()
    try:
        # The web3.py client under the chain layer talks to the same node.
        assert await client.w3.eth.block_number == scenario.head == await client.head()
        meta = await client.token_meta([t.address for t in scenario.tokens])
        assert meta == {t.address: (t.decimals, t.symbol) for t in scenario.tokens}
        code = await client.is_contract([*scenario.contracts, *scenario.seeds])
        assert code == {**{a: True for a in scenario.contracts}, **{s: False for s in scenario.seeds}}
        pools = [p.address for p in scenario.mixer_pools]
        deposits = await client.logs(pools, [], 0, scenario.head)
        ok_deposits = sum(1 for _, tx in scenario.iter_txs() if tx.kind == KIND_MIXER and tx.ok)
        assert len(deposits) == ok_deposits > 0
        seed = scenario.seeds[0]
        genesis = scenario.genesis_balances.get(seed, {})
        assert (await client.native_balances([(seed, 0)]))[(seed, 0)] == genesis.get(NATIVE, 0)
        token = scenario.tokens[0].address
        balances = await client.token_balances([(seed, token, 0)])
        assert balances.get((seed, token, 0), 0) == genesis.get(token, 0)
    finally:
        await client.close()


async def test_head_read_at_connect_is_handed_out_once(devchain_factory: DevChainFactory, scenario: Scenario) -> None:
    running = await devchain_factory(scenario)
    client = EvmChain(running.url, chain=scenario.chain, expected_chain_id=scenario.chain_id)
    await client.connect()
    try:
        assert running.server.request_counts["eth_blockNumber"] == 1
        assert await client.head() == scenario.head
        assert running.server.request_counts["eth_blockNumber"] == 1  # a trace created right after connect
        assert await client.head() == scenario.head
        assert running.server.request_counts["eth_blockNumber"] == 2  # later heads are asked
    finally:
        await client.close()
