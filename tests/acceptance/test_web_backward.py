"""A backward trace (source of funds) in a real browser: the trace bar says so, counts what the
seeds received and the sources reached, and the graph draws the thief's wallet the money came from.

Skips without Chromium or Playwright, like tests/acceptance/test_web_e2e.py (whose browser helpers it uses).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tests.acceptance.test_web_e2e import CHROMIUM_ARGS, TIMEOUT_MS, VIEWPORT, PageErrors, _screenshot, chromium  # noqa: F401
from tests.api_support import Api, running_api
from tracer.api.context import Settings
from tracer.chains.evm import EvmChain
from tracer.demo import load_scenario_labels
from tracer.devchain.scenario import Scenario
from tracer.store.db import Database

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def api(db: Database, small_scenario: Scenario, devchain_factory: Any) -> AsyncIterator[Api]:
    server = await devchain_factory(small_scenario)
    chain = EvmChain(server.url, chain=small_scenario.chain, expected_chain_id=small_scenario.chain_id)
    await chain.connect()
    await load_scenario_labels(db.pool, small_scenario)
    try:
        async with running_api(db, {small_scenario.chain: chain}, Settings(workers=2)) as a:
            yield a
    finally:
        await chain.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def browser(chromium: str) -> AsyncIterator[Any]:  # noqa: F811
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            await b.close()


async def test_a_backward_trace_reads_as_source_of_funds(api: Api, browser: Any, small_scenario: Scenario) -> None:
    thief = small_scenario.seeds[0]
    fwd = await api.run_trace({"chain": small_scenario.chain, "seeds": [thief], "policy": {"max_depth": 60}})
    _, exits, _ = await api.call("GET", f"/v1/traces/{fwd['id']}/exits", expect=200)
    deposit = next(x["address"] for x in exits["items"] if x["reason"] == "deposit_address")
    await api.call("POST", f"/v1/addresses/ethereum/{thief}/labels", expect=201,
                   json={"entity": "VictimDAO exploiter", "category": "hacker"})
    back = await api.run_trace({"chain": small_scenario.chain, "seeds": [deposit], "direction": "backward",
                                "policy": {"max_depth": 12, "from_block": max(1, fwd["from_block"]),
                                           "to_block": fwd["to_block"]}})
    _, sources, _ = await api.call("GET", f"/v1/traces/{back['id']}/exits", expect=200)
    assert thief in {x["address"] for x in sources["items"]}

    page = await browser.new_page(viewport=VIEWPORT)
    errors = PageErrors(page)
    await page.goto(f"{api.base}/ui?trace={back['id']}")
    await page.wait_for_selector("#trace-direction", timeout=TIMEOUT_MS)
    assert await page.text_content("#trace-direction") == "Source of funds"
    bar = await page.text_content("#trace-progress") or ""
    assert "Seeds received" in bar and f"{len(sources['items'])} sources" in bar, bar
    drawn = await page.evaluate(f"() => tracerUI.cy.nodes().map(n => n.id()).includes({json.dumps(thief)})")
    assert drawn, "the thief's wallet the money came from is drawn"
    await _screenshot(page, "backward-trace.png")
    assert not errors.errors, errors.errors
    await page.close()
