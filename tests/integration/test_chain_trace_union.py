"""Both directions of native transfers from one trace_filter per address list (mode "union"), and
the same transfers from a node that ignores the mode (Nethermind-like: it answers the intersection,
rows from one listed address to another) as from one that honours it: the client asks the two
one-sided queries too until an answer proves the mode, and stops asking union of a node whose
one-sided answers hold rows its union answer lacked, or that refuses the field outright (a filter
type that denies unknown fields, as alloy's did before it had `mode`)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fixtures_chain import DevChainFactory, connected, proxy, senders, serving
from tracer.devchain.scenario import Scenario, ScenarioParams, generate
from tracer.domain.transfers import Transfer, TransferQuery

pytestmark = pytest.mark.asyncio(loop_scope="session")

PER_REQUEST = 40  # addresses per trace_filter: several lists, so several union queries


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return generate(ScenarioParams.for_size(600, seed=11))


async def _both_ways(client: Any, sc: Scenario) -> list[Transfer]:
    asked = TransferQuery(senders(sc)[::3], 0, sc.head, outgoing=True, incoming=True)
    result: list[Transfer] = await client.transfers(asked)
    return result


async def test_union_when_honoured_and_one_sided_queries_when_ignored(
    devchain_factory: DevChainFactory, scenario: Scenario
) -> None:
    running = await devchain_factory(scenario)
    chunks = -(-len(senders(scenario)[::3]) // PER_REQUEST)
    assert chunks > 1

    # The reference: one-sided queries only (what the client asked before union).
    async with connected(running.url, scenario, addresses_per_request=PER_REQUEST) as one_sided:
        one_sided.trace_union = False
        want = await _both_ways(one_sided, scenario)
    assert sum(1 for t in want if t.position.startswith("call:")) > 0

    async with connected(running.url, scenario, addresses_per_request=PER_REQUEST) as honoured:
        assert await _both_ways(honoured, scenario) == want
    assert honoured.trace_union is True
    assert honoured.request_counts["trace_filter"] - 1 == chunks  # one union query per chunk (+ the probe)

    modes: list[Any] = []

    def ignore_mode(req: dict[str, Any]) -> None:
        if req["method"] == "trace_filter":
            modes.append(req["params"][0].pop("mode", None))  # answered as an intersection

    async with serving(proxy(running, ignore_mode)) as url, connected(
            url, scenario, addresses_per_request=PER_REQUEST) as client:
        assert await _both_ways(client, scenario) == want
        assert client.trace_union is False
        modes.clear()
        assert await _both_ways(client, scenario) == want
        assert "union" not in modes and len(modes) == 2 * chunks


async def test_a_node_refusing_the_mode_gets_one_sided_queries(
    devchain_factory: DevChainFactory, scenario: Scenario
) -> None:
    running = await devchain_factory(scenario)
    async with connected(running.url, scenario) as plain:
        want = await _both_ways(plain, scenario)

    def refuse_mode(req: dict[str, Any]) -> dict[str, Any] | None:
        if req["method"] == "trace_filter" and "mode" in req["params"][0]:
            return {"jsonrpc": "2.0", "id": req["id"], "error": {
                "code": -32602, "message": "Invalid params: unknown field `mode`, expected one of `fromBlock`, "
                "`toBlock`, `fromAddress`, `toAddress`, `after`, `count`"}}
        return None

    async with serving(proxy(running, refuse_mode)) as url, connected(url, scenario) as client:
        assert await _both_ways(client, scenario) == want
        assert client.trace_union is False
