"""The case page in a real browser: a case with two real traces (one per seed of a generated
laundering case) lists its traces, where they meet and its notes beside the graph; a title and a
note carrying HTML and script stay text; a note written in the page reaches the API; the address
panel says "also in case N" for another case holding the address.

Skips without Chromium or Playwright, like tests/acceptance/test_web_e2e.py (whose browser helpers it uses).
"""

from __future__ import annotations

import asyncio
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
from tracer.store import keys as key_store
from tracer.store.db import Database

pytestmark = pytest.mark.asyncio(loop_scope="session")
HOSTILE = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def setup(db: Database, small_scenario: Scenario, devchain_factory: Any) -> AsyncIterator[tuple[Api, str]]:
    server = await devchain_factory(small_scenario)
    chain = EvmChain(server.url, chain=small_scenario.chain, expected_chain_id=small_scenario.chain_id)
    await chain.connect()
    await load_scenario_labels(db.pool, small_scenario)
    async with db.pool.acquire() as conn:
        _, key = await key_store.create_key(conn, "web cases", ["trace"], created_by="test")
    try:
        async with running_api(db, {small_scenario.chain: chain}, Settings(workers=2)) as a:
            yield a, key
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


async def test_case_page_shows_traces_meeting_points_and_notes_as_text(
        setup: tuple[Api, str], browser: Any, small_scenario: Scenario) -> None:
    api, key = setup
    ids = []
    for seed in small_scenario.seeds[:2]:
        _, t, _ = await api.call("POST", "/v1/traces", key=key, expect=201,
                                 json={"chain": small_scenario.chain, "seeds": [seed]})
        ids.append(int(t["id"]))
    for tid in ids:
        for _ in range(600):
            _, body, _ = await api.call("GET", f"/v1/traces/{tid}", key=key, expect=200)
            if body["status"] not in ("queued", "running"):
                break
            await asyncio.sleep(0.1)
        assert body["status"] == "done", body
    _, case, _ = await api.call("POST", "/v1/cases", key=key, expect=201, json={"title": HOSTILE, "traces": ids})
    _, other, _ = await api.call("POST", "/v1/cases", key=key, expect=201, json={"title": "older lead",
                                                                                 "traces": ids[1:]})
    await api.call("POST", f"/v1/cases/{case['id']}/notes", key=key, expect=201, json={"text": HOSTILE})
    _, full, _ = await api.call("GET", f"/v1/cases/{case['id']}", key=key, expect=200)
    assert full["shared_addresses"]

    page = await browser.new_page(viewport=VIEWPORT)
    errors = PageErrors(page)
    await page.add_init_script(f"localStorage.setItem('tracer.apiKey', {key!r});")
    await page.goto(f"{api.base}/ui?case={case['id']}")
    await page.wait_for_selector("#case-panel:not([hidden]) .case-note", timeout=TIMEOUT_MS)
    assert await page.text_content("#case-heading") == f"Case #{case['id']}: {HOSTILE}"
    assert await page.text_content(".case-note .note-text") == HOSTILE
    assert await page.evaluate("window.__pwned") is None, "hostile text ran as HTML"
    assert await page.locator("#case-panel img").count() == 0
    traces = await page.locator(".case-traces button").all_text_contents()
    assert traces == [f"trace #{t}" for t in sorted(ids)]
    shared = await page.locator(".case-shared li.mono").count()
    assert shared == min(10, len(full["shared_addresses"]))
    # The case opens its first trace in the graph; the list shows both cases.
    await page.wait_for_function(f"() => tracerUI.state.traceId === {min(ids)} && tracerUI.cy.nodes().length > 0",
                                 timeout=TIMEOUT_MS)
    listed = await page.locator("#case-list li").count()
    assert listed >= 2

    # A note written in the page, on the open trace, reaches the API.
    await page.fill("#note-text", "asked the exchange for KYC")
    await page.select_option("#note-about", "trace")
    await page.click("#note-form button[type=submit]")
    await page.wait_for_function("() => document.querySelectorAll('.case-note').length === 2", timeout=TIMEOUT_MS)
    _, notes, _ = await api.call("GET", f"/v1/cases/{case['id']}/notes", key=key, expect=200)
    assert notes["items"][-1]["text"] == "asked the exchange for KYC"
    assert notes["items"][-1]["target"] == {"kind": "trace", "trace_id": min(ids)}

    # Select a shared address drawn in the graph: its panel names the other case.
    wanted = json.dumps([a["address"] for a in full["shared_addresses"]])
    node = await page.evaluate(
        f"() => {{ const want = {wanted}; const n = tracerUI.cy.nodes().filter(n => want.includes(n.id())); "
        "if (!n.length) return null; n[0].emit('tap'); return n[0].id(); }")
    assert node is not None, "a shared address is drawn"
    await page.wait_for_selector(".also-in-case", timeout=TIMEOUT_MS)
    text = await page.text_content(".also-in-case")
    assert text is not None and f"#{other['id']} older lead" in text

    # Source of funds from the address panel: a wallet the thief paid directly names the thief.
    await api.call("POST", f"/v1/addresses/ethereum/{small_scenario.seeds[0]}/labels", key=key, expect=201,
                   json={"entity": "VictimDAO exploiter", "category": "hacker"})
    _, hops, _ = await api.call("GET", f"/v1/traces/{min(ids)}/hops?depth=1&limit=100", key=key, expect=200)
    first = json.dumps(sorted({h["to"] for h in hops["items"] if h["from"] == small_scenario.seeds[0]}))
    node = await page.evaluate(
        f"() => {{ const want = {first}; const n = tracerUI.cy.nodes().filter(n => want.includes(n.id())); "
        "if (!n.length) return null; n[0].emit('tap'); return n[0].id(); }")
    assert node is not None, "a wallet the thief paid is drawn"
    await page.click("#d-sources-go")
    await page.wait_for_selector(".source-list li", timeout=TIMEOUT_MS)
    flagged = await page.locator(".flagged-source").all_text_contents()
    assert any("hacker" in f and "VictimDAO exploiter" in f for f in flagged), flagged
    await _screenshot(page, "case-page.png")
    assert not errors.errors, errors.errors
    await page.close()
