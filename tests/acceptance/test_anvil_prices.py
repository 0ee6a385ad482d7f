"""USD prices on Anvil (a real EVM): PriceFeed.sol (AggregatorV3Interface) placed at the real
ETH/USD feed address answers hand-set rounds as of each block's time; the generated case executed
as real transactions with its feeds placed, traced through the API, valued at the generator's
prices, and its PDF report read back with pdftotext."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
import pytest_asyncio

from tests.anvil_support import AnvilNode, AnvilRpc, anvil_node
from tests.api_support import running_api
from tests.fixtures_db import temporary_database
from tracer.api.context import Settings
from tracer.chains import feeds
from tracer.chains.evm import EvmChain
from tracer.chains.prices import FeedMiss, FeedRound, latest_rounds, rounds_by_id
from tracer.demo import load_scenario_labels, register_case_feeds
from tracer.devchain.anvil.executor import ExecutionReport, execute_scenario
from tracer.devchain.anvil.feeds import place_feeds
from tracer.devchain.prices import PricePath, case_paths
from tracer.devchain.scenario import Scenario, ScenarioParams, generate
from tracer.dollars_check import check_dollars
from tracer.domain.transfers import NATIVE
from tracer.engine import report_doc
from tracer.engine.dollars import trace_dollars
from tracer.engine.report import build
from tracer.store.db import Database

pytestmark = pytest.mark.asyncio(loop_scope="session")
ETH_USD = feeds.known_feed("ethereum", NATIVE)
assert ETH_USD is not None
T0 = 1_700_000_000


async def test_price_feed_contract_answers_hand_set_rounds_at_each_block() -> None:
    path = PricePath("ethereum", NATIVE, "ethereum", ETH_USD.feed, "ETH / USD", (T0 + 100, T0 + 200, T0 + 300),
                     (200012345678, 201000000000, 199950000000))
    async with anvil_node(chain_id=1, mode="archive", timestamp=T0) as node:
        assert await place_feeds(node.url, [path]) == 1
        async with AnvilRpc(node.url) as rpc:
            for t in (T0 + 50, T0 + 150, T0 + 250, T0 + 350):  # blocks 1..4
                await rpc.batch([("evm_setNextBlockTimestamp", [t]), ("evm_mine", [])])
        client = EvmChain(node.url, chain="ethereum")
        await client.connect()
        try:
            got = await latest_rounds(client.rpc, [(ETH_USD.feed, b) for b in (1, 2, 3, 4)])
            assert isinstance(got[(ETH_USD.feed, 1)], FeedMiss)  # "No data present" before round 1
            want = {2: (1, Decimal("2000.12345678"), T0 + 100), 3: (2, Decimal("2010"), T0 + 200),
                    4: (3, Decimal("1999.5"), T0 + 300)}
            for block, (rid, usd, updated) in want.items():
                r = got[(ETH_USD.feed, block)]
                assert isinstance(r, FeedRound), r
                assert (r.round_id, r.usd, r.updated_at, r.decimals) == (rid, usd, updated, 8)
            by_id = await rounds_by_id(client.rpc, [(ETH_USD.feed, 1), (ETH_USD.feed, 4)])
            assert by_id[(ETH_USD.feed, 1)].usd == Decimal("2000.12345678")  # type: ignore[union-attr]
            assert isinstance(by_id[(ETH_USD.feed, 4)], FeedMiss)
        finally:
            await client.close()


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return generate(ScenarioParams.for_size(800, seed=5, services=True))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def anvil(scenario: Scenario) -> AsyncIterator[tuple[AnvilNode, ExecutionReport, list[PricePath]]]:
    paths = case_paths(scenario, seed=5)[scenario.chain]
    async with anvil_node(chain_id=scenario.chain_id, mode="archive", timestamp=scenario.genesis_time) as node:
        await place_feeds(node.url, paths)  # before block 1: the feeds exist at every block of the case
        yield node, await execute_scenario(node.url, scenario), paths


async def test_the_case_on_anvil_in_dollars_and_its_pdf(anvil: tuple[AnvilNode, ExecutionReport, list[PricePath]],
                                                        scenario: Scenario, pg_server_url: str,
                                                        migrated_template: str) -> None:
    node, run, paths = anvil
    assert run.mismatches == []
    client = EvmChain(node.url, chain=scenario.chain, expected_chain_id=scenario.chain_id)
    await client.connect()
    async with temporary_database(pg_server_url, template=migrated_template) as url:
        db = await Database.connect(url, migrate=False)
        try:
            await load_scenario_labels(db.pool, scenario)
            await register_case_feeds(db.pool, {scenario.chain: paths})
            async with running_api(db, {scenario.chain: client}, Settings(workers=2, worker_lease_seconds=10.0)) as api:
                trace = await api.run_trace({"chain": scenario.chain, "seeds": scenario.seeds, "policy": {}},
                                            tries=1200)
                async with api.session.get(f"{api.base}/v1/traces/{trace['id']}/report?format=pdf") as r:
                    status, pdf = r.status, await r.read()
            d = await trace_dollars(db.pool, trace["id"])
            rep = await build(db.pool, trace["id"])
            check = check_dollars(scenario, paths, d, rep)
            assert check.ok, check.render()
            assert d.sources == {"feed": len(d.values)}  # every hop priced by the feeds on the node
            if report_doc.find_chromium() is None or shutil.which("pdftotext") is None:
                pytest.skip("needs chromium and pdftotext (poppler-utils)")
            assert status == 200 and pdf.startswith(b"%PDF")
            proc = await asyncio.create_subprocess_exec("pdftotext", "-raw", "-", "-", stdin=asyncio.subprocess.PIPE,
                                                        stdout=asyncio.subprocess.PIPE)
            out, _ = await proc.communicate(pdf)
            flat = "".join(out.decode().split())
            assert rep.exits
            for x in rep.exits:
                assert x.address in flat
                assert "".join(report_doc._usd(d.exit_usd(x.chain or rep.chain, x.address, x.asset)).split()) in flat
                for step in x.path:
                    assert step["tx_hash"] in flat
        finally:
            await db.close()
            await client.close()


