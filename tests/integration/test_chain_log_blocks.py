"""EvmChain.logs_in_blocks: the logs of scattered blocks from few eth_getLogs, exactly those of the
blocks asked (the same as one getLogs per block), whether its ranges are narrow (first contact:
no density known), merged across wide gaps (sparse logs seen) or refused for size and split."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.fixtures_chain import DevChainFactory, connected
from tracer.chains.evm import EvmChain
from tracer.chains.evm.mappers import TRANSFER_TOPIC
from tracer.chains.records import LogRecord
from tracer.devchain.scenario import Scenario, ScenarioParams, generate

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return generate(ScenarioParams.for_size(600, seed=11))


async def _per_block(client: EvmChain, token: str | None, blocks: list[int]) -> list[LogRecord]:
    out: list[LogRecord] = []
    for b in blocks:
        out.extend(await client.logs(token, [TRANSFER_TOPIC], b, b))
    return out


@pytest.mark.parametrize("max_logs", [None, 12])
async def test_scattered_blocks_give_their_logs_and_no_others(
    devchain_factory: DevChainFactory, scenario: Scenario, max_logs: int | None
) -> None:
    running = await devchain_factory(scenario, max_logs=max_logs)
    async with connected(running.url, scenario) as client:
        with_logs = sorted({lg.block_number for lg in await client.logs(None, [TRANSFER_TOPIC], 0, scenario.head)})
        # Every third block that logged, and a block in between each (which may log or not).
        blocks = sorted({*with_logs[::3], *(b + 1 for b in with_logs[::5])})
        token = scenario.tokens[0].address
        want = await _per_block(client, None, blocks)
        want_token = await _per_block(client, token, blocks)
        assert want and want_token and len(want) < len(await client.logs(None, [TRANSFER_TOPIC], 0, scenario.head))

        asked = running.server.request_counts["eth_getLogs"]
        first = await client.logs_in_blocks(None, [TRANSFER_TOPIC], blocks)
        first_calls = running.server.request_counts["eth_getLogs"] - asked
        assert first == want
        # The density is known now: the same blocks again, in no more requests, same logs.
        asked = running.server.request_counts["eth_getLogs"]
        assert await client.logs_in_blocks(None, [TRANSFER_TOPIC], blocks) == want
        assert running.server.request_counts["eth_getLogs"] - asked <= first_calls
        assert await client.logs_in_blocks([token], [TRANSFER_TOPIC], blocks) == want_token
        if max_logs is None:
            assert first_calls < len(blocks)  # blocks shared ranges


async def test_sparse_logs_merge_far_blocks_into_one_request(
    devchain_factory: DevChainFactory, scenario: Scenario
) -> None:
    running = await devchain_factory(scenario)
    async with connected(running.url, scenario) as client:
        token = scenario.tokens[0].address
        blocks = list(range(0, scenario.head, 400))
        want = await _per_block(client, token, blocks)
        await client.logs_in_blocks(token, [TRANSFER_TOPIC], blocks)  # learns how sparse they are
        asked = running.server.request_counts["eth_getLogs"]
        assert await client.logs_in_blocks(token, [TRANSFER_TOPIC], blocks) == want
        assert running.server.request_counts["eth_getLogs"] - asked == 1


async def test_asks_on_topic0_share_requests_and_each_gets_only_its_own(
    devchain_factory: DevChainFactory, scenario: Scenario
) -> None:
    running = await devchain_factory(scenario)
    async with connected(running.url, scenario) as client, connected(running.url, scenario) as alone:
        every = await client.logs(None, [], 0, scenario.head)
        other = Counter(lg.topics[0] for lg in every if lg.topics and lg.topics[0] != TRANSFER_TOPIC).most_common(1)
        assert other, "the scenario logs only Transfers"
        [(topic, _)] = other
        token = scenario.tokens[0].address
        blocks = sorted({lg.block_number for lg in every})[::7]
        token_blocks = blocks[::2]
        asks = [(None, [[topic]], blocks), ([token], [[TRANSFER_TOPIC]], token_blocks), (None, [[topic]], [])]
        want = [
            [lg for b in blocks for lg in await client.logs(None, [topic], b, b)],
            [lg for b in token_blocks for lg in await client.logs(token, [TRANSFER_TOPIC], b, b)],
            [],
        ]
        assert want[0] and want[1]
        for _ in range(3):  # narrow at first, merged once the densities are known: the same logs
            assert await client.logs_of_blocks(asks) == want
        asked = running.server.request_counts["eth_getLogs"]
        await client.logs_of_blocks(asks)
        # The token's Transfers and the other event share requests: fewer than one set per ask.
        merged = running.server.request_counts["eth_getLogs"] - asked
        for address, topics, bs in asks:
            for _ in range(3):
                await alone.logs_in_blocks(address, topics, bs)
        before = running.server.request_counts["eth_getLogs"]
        for address, topics, bs in asks:
            await alone.logs_in_blocks(address, topics, bs)
        assert merged < running.server.request_counts["eth_getLogs"] - before
