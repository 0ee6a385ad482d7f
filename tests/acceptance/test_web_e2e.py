"""The investigator web view end to end, in a real browser.

A real API server (real socket, real Postgres, its own embedded workers) traces a generated
laundering case from a devchain served over JSON-RPC; headless Chromium (Debian's `chromium`,
driven by Playwright) opens the page, is refused without an API key, takes one, starts the trace
from the form, watches it grow until it is done, checks the exposure panel against the API,
clicks the largest exit in the graph and checks the path shown against GET /paths, downloads the
exports, opens the shareable link in a second tab, and saves screenshots as test artefacts.

No Chromium (or no Playwright) skips with the reason, unless TRACER_REQUIRE_BROWSER=1 (CI) turns
that into a failure. Browser: $TRACER_CHROMIUM, else `chromium` / `chromium-browser` on PATH.
Artefacts: $TRACER_TEST_ARTIFACTS (default bench/results/web/). TRACER_UPDATE_SCREENSHOTS=1 also
refreshes docs/screenshots/, which README.md shows.
"""

from __future__ import annotations

import io
import os
import re
import shutil
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import networkx as nx
import pytest
import pytest_asyncio

from tests.api_support import Api, running_api
from tracer.api.context import Settings
from tracer.chains.evm import EvmChain
from tracer.demo import load_scenario_labels, register_case_feeds
from tracer.devchain.prices import case_paths
from tracer.devchain.scenario import Scenario, ScenarioParams, generate
from tracer.store import keys as key_store
from tracer.store.db import Database

pytestmark = pytest.mark.asyncio(loop_scope="session")

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("TRACER_TEST_ARTIFACTS") or ROOT / "bench" / "results" / "web")
README_SHOTS = ROOT / "docs" / "screenshots"
VIEWPORT = {"width": 1600, "height": 1000}
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage",
                 "--disable-extensions", "--no-first-run", "--mute-audio"]
TIMEOUT_MS = 120_000


def _unavailable(reason: str) -> None:
    if os.environ.get("TRACER_REQUIRE_BROWSER") == "1":
        pytest.fail(f"TRACER_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


def find_chromium() -> str | None:
    given = os.environ.get("TRACER_CHROMIUM")
    if given:
        return given if Path(given).exists() else None
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def chromium() -> str:
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        _unavailable("Playwright for Python is not installed (pip install playwright; no `playwright install` "
                     "needed: the test drives the system Chromium)")
    path = find_chromium()
    if path is None:
        _unavailable("no Chromium found: apt-get install chromium, or point TRACER_CHROMIUM at a Chromium binary")
    assert path is not None
    return path


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return generate(ScenarioParams.for_size(2000, seed=21))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def api_key(db: Database) -> str:
    """With a key in the database the server is no longer open: the page must send it."""
    async with db.pool.acquire() as conn:
        _, text = await key_store.create_key(conn, "web investigator", ["trace"], created_by="test")
    return text


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def api(db: Database, scenario: Scenario, devchain_factory: Any, api_key: str) -> AsyncIterator[Api]:
    # A little node latency so the trace takes a few seconds and the page sees it grow.
    # Price feeds on the node, so the exposure panel reads dollars (tracer.devchain.prices).
    paths = case_paths(scenario, seed=21)
    server = await devchain_factory(scenario, latency=0.02, prices=paths[scenario.chain])
    chain = EvmChain(server.url, chain=scenario.chain, expected_chain_id=scenario.chain_id)
    await chain.connect()
    await load_scenario_labels(db.pool, scenario)
    await register_case_feeds(db.pool, paths)
    try:
        async with running_api(db, {scenario.chain: chain}, Settings(workers=2, worker_lease_seconds=10.0)) as a:
            yield a
    finally:
        await chain.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def browser(chromium: str) -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            await b.close()


class PageErrors:
    """Uncaught exceptions and console errors (CSP violations among them). Failed requests are
    expected (the 401 before the key is entered, the events endpoint where a server lacks it) and
    are checked by what the page shows instead."""

    def __init__(self, page: Any) -> None:
        self.errors: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        page.on("console", self._console)

    def _console(self, msg: Any) -> None:
        if msg.type == "error" and not msg.text.startswith("Failed to load resource"):
            self.errors.append(f"console: {msg.text}")


def _read(path: str | Path) -> bytes:
    return Path(path).read_bytes()


def _save(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


async def _screenshot(page: Any, name: str) -> Path:
    out = ARTIFACTS / name
    _save(out, await page.screenshot())
    if os.environ.get("TRACER_UPDATE_SCREENSHOTS") == "1":
        _save(README_SHOTS / name, _read(out))
    return out


async def _settled(page: Any) -> None:
    """No reload in flight, no live stream left, no node still moving."""
    await page.wait_for_function(
        "() => { const s = tracerUI.state; return !s.refreshing && (!s.live || s.live.stopped) && "
        "tracerUI.cy.nodes().every(n => !n.animated()); }", timeout=TIMEOUT_MS)
    await page.wait_for_timeout(150)


async def test_investigator_traces_a_case_in_the_browser(
    api: Api, browser: Any, scenario: Scenario, api_key: str
) -> None:
    context = await browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors = PageErrors(page)

    # / leads to the page; without a key the API refuses and the page says so.
    await page.goto(api.base + "/")
    assert page.url == api.base + "/ui"
    banner = page.locator("#auth-banner")
    await banner.wait_for(state="visible")
    assert "API key" in await banner.text_content()

    # The key goes into the page, which keeps it in localStorage and sends it as a header.
    await page.fill("#api-key", api_key)
    await page.click("#key-save")
    await banner.wait_for(state="hidden")
    assert await page.evaluate("localStorage.getItem('tracer.apiKey')") == api_key
    await page.wait_for_selector("#trace-list li.muted:text('No traces yet.')")

    # Start a trace from the form.
    await page.fill("#f-seeds", "\n".join(scenario.seeds))
    await page.fill("#f-label", "browser case")
    await page.fill("#f-depth", "40")
    await page.click("#f-submit")
    await page.wait_for_url(re.compile(r"/ui\?trace=\d+$"))
    trace_id = int(page.url.rsplit("=", 1)[1])
    headers = {"X-API-Key": api_key}

    # Watch it grow until it is done; the exits appear in the graph and in the exposure table.
    await page.wait_for_function("() => document.querySelector('#trace-status').textContent === 'done'")
    await _settled(page)
    _, trace, _ = await api.call("GET", f"/v1/traces/{trace_id}", headers=headers, expect=200)
    assert trace["status"] == "done" and trace["label"] == "browser case"
    # The summary says how prior balances were read (the devchain keeps every state) and why.
    method = page.locator("#balance-method")
    assert await method.text_content() == "balances from node state"
    assert await method.get_attribute("title") == trace["balance_method_reason"]
    # The page lists exits by dollar value, largest first.
    _, exits, _ = await api.call("GET", f"/v1/traces/{trace_id}/exits?sort=usd", headers=headers, expect=200)
    exit_addresses = {x["address"] for x in exits["items"]}
    assert len(exit_addresses) >= 3
    history = await page.evaluate("tracerUI.state.history")
    live_mode = await page.evaluate("tracerUI.state.live && tracerUI.state.live.mode")
    assert live_mode in ("sse", "poll"), live_mode
    print(f"live updates by {live_mode}: {[(h['status'], h['edges'], h['exits']) for h in history]}")
    assert history[0]["status"] in ("queued", "running") and history[-1]["status"] == "done"
    sizes = [h["edges"] for h in history]
    assert sizes == sorted(sizes), "the drawn trace only grows"
    assert len(set(sizes)) >= 2, f"the page saw the trace only once it was complete: {history}"
    drawn_exits = set(await page.evaluate("tracerUI.cy.nodes('[kind = \"exit\"]').map(n => n.id())"))
    assert drawn_exits == exit_addresses
    seeds_drawn = await page.evaluate("tracerUI.cy.nodes('[kind = \"seed\"]').map(n => n.id())")
    assert set(seeds_drawn) == set(scenario.seeds)

    # Exposure: one table row per exit line, the exact amount in each row's tooltip, bars per entity.
    rows = page.locator("#exp-table tbody tr")
    assert await rows.count() == len(exits["items"])
    for i, x in enumerate(exits["items"]):
        row = rows.nth(i)
        assert await row.get_attribute("data-address") == x["address"]
        title = await row.locator("td").nth(3).get_attribute("title")
        whole, _, frac = x["amount"].partition(".")
        assert title == f"{int(whole):,}{'.' + frac if frac else ''} {x['symbol']}"
    entities = {x["entity"] for x in exits["items"]}
    bar_entities = set(await page.locator("#exp-bars .bar-row").evaluate_all("rs => rs.map(r => r.dataset.entity)"))
    assert bar_entities == entities
    summary = await page.locator("#exp-summary").text_content()
    for line in exits["totals"]:
        assert line["total"]["symbol"] in summary
    # One line in dollars across assets: what reached exits of what left the seeds.
    usd = exits["usd"]
    assert usd["seeds"] is not None and usd["unpriced_hops"] == 0
    assert f"${round(float(usd['seeds'])):,}" in summary and f"${round(float(usd['exits'])):,}" in summary
    usd_cells = await rows.evaluate_all("rs => rs.map(r => r.querySelectorAll('td')[4].textContent)")
    assert usd_cells == [f"${round(float(x['usd'])):,}" for x in exits["items"]]
    assert await page.locator("#sankey svg path").count() >= len(entities)

    # Click the largest exit in the graph (a real mouse click on the canvas).
    target = exits["items"][0]["address"]
    box = await page.locator("#cy").bounding_box()
    assert box is not None
    pos = await page.evaluate(f"tracerUI.graph.position('{target}')")
    assert 0 < pos["x"] < box["width"] and 0 < pos["y"] < box["height"], "the exit is in view"
    await page.mouse.click(box["x"] + pos["x"], box["y"] + pos["y"])
    await page.wait_for_selector(f"#details-body[data-address='{target}']")
    await page.wait_for_selector("#path li")
    await _settled(page)

    # The path shown is a widest path the API finds (paths with equal bottlenecks may come in any
    # order), from a seed to this exit, drawn on the graph.
    _, paths, _ = await api.call("GET", f"/v1/traces/{trace_id}/paths?to={target}&limit=5", headers=headers,
                                 expect=200)
    widest = Decimal(paths["paths"][0]["bottleneck"]["amount"])
    shown = await page.locator("#path li").evaluate_all("lis => lis.map(li => li.dataset.address)")
    best = next((p for p in paths["paths"] if p["addresses"] == shown), None)
    assert best is not None, (shown, [p["addresses"] for p in paths["paths"]])
    assert Decimal(best["bottleneck"]["amount"]) == widest
    assert shown[0] in scenario.seeds and shown[-1] == target
    steps_text = await page.locator("#path .step b").all_text_contents()
    assert len(steps_text) == best["hops"]
    for text, step in zip(steps_text, best["steps"], strict=True):
        assert text.endswith(" " + step["symbol"])
        shown_amount = Decimal(text.split(" ")[0].replace(",", ""))
        assert Decimal(0) < shown_amount <= Decimal(step["amount"]) < shown_amount * Decimal("1.001") + 1
    details = await page.locator("#details-body").text_content()
    assert exits["items"][0]["address_checksum"] in details
    assert exits["items"][0]["entity"] in details
    on_path = await page.evaluate("tracerUI.cy.elements('.on-path').map(e => e.id())")
    assert target in on_path and any(">" in e for e in on_path)
    await page.mouse.move(box["x"] + 5, box["y"] + box["height"] - 5)  # no tooltip over the picture
    shot = await _screenshot(page, "investigator-view.png")
    assert shot.stat().st_size > 50_000

    # Exports: GraphML as the API writes it, and the drawn graph as a PNG.
    async with page.expect_download() as info:
        await page.click("[data-export=graphml]")
    download = await info.value
    assert download.suggested_filename == f"trace-{trace_id}.graphml"
    graphml = _read(await download.path())
    g = nx.read_graphml(io.BytesIO(graphml))
    assert exit_addresses <= set(g.nodes) and g.number_of_edges() == trace["progress"]["hops"]
    async with page.expect_download() as info:
        await page.click("[data-export=png]")
    png = await info.value
    assert png.suggested_filename == f"trace-{trace_id}.png"
    assert _read(await png.path())[:8] == b"\x89PNG\r\n\x1a\n"
    async with page.expect_download() as info:
        await page.click("[data-export=csv]")
    csv_text = _read(await (await info.value).path()).decode()
    assert csv_text.startswith("source,target,tx_hash")
    assert len(csv_text.splitlines()) == trace["progress"]["hops"] + 1

    # Filters: depth 1 keeps the seeds' own hops; turning off peel-chain collapsing shows more wallets.
    collapsed = await page.evaluate("tracerUI.state.view.nodes.length")
    await page.evaluate("""() => { const r = document.querySelector('#flt-depth'); r.value = 1;
        r.dispatchEvent(new Event('input')); r.dispatchEvent(new Event('change')); }""")
    depths = await page.evaluate("tracerUI.state.view.edges.map(e => e.depth)")
    assert depths and max(depths) == 1
    await page.evaluate("""() => { const r = document.querySelector('#flt-depth'); r.value = r.max;
        r.dispatchEvent(new Event('input')); r.dispatchEvent(new Event('change')); }""")
    chains = await page.evaluate("tracerUI.state.view.chains.size")
    await page.click("#flt-collapse")
    expanded = await page.evaluate("tracerUI.state.view.nodes.length")
    assert (expanded > collapsed) == (chains > 0)
    await page.click("#flt-collapse")

    # The shareable link opens the same trace in another tab (same browser profile, same key).
    await page.click("#share")
    await page.wait_for_selector(f"#toast:text('/ui?trace={trace_id}')")
    second = await context.new_page()
    errors_second = PageErrors(second)
    await second.goto(f"{api.base}/ui?trace={trace_id}")
    await second.wait_for_function("() => document.querySelector('#trace-status').textContent === 'done'")
    await _settled(second)
    again = set(await second.evaluate("tracerUI.cy.nodes('[kind = \"exit\"]').map(n => n.id())"))
    assert again == exit_addresses
    assert await second.locator("#exp-table tbody tr").count() == len(exits["items"])
    await second.close()

    assert not errors.errors, errors.errors
    assert not errors_second.errors, errors_second.errors
    await context.close()


MODEL_CHECKS = """async () => {
  const f = await import('/ui/static/format.js');
  const {TraceModel} = await import('/ui/static/model.js');
  const out = {};
  out.amounts = ['2723.323886089415707794', '0.000012345', '1234567.5', '0', '12.5', '999.99999']
    .map(f.shortAmount);
  out.units = [f.unitsOf(12345n, 2), f.unitsOf(5n, 3), f.unitsOf(10n ** 21n, 18)];
  out.ratio = f.ratio(1n, 3n);
  // A seed S peels off through A -> B -> C -> D (each sends a little to exit X), and fans out to
  // W1..W3, which all pay T.
  const a = (c) => '0x' + c.repeat(40);
  const [S, A, B, C, D, X, W1, W2, W3, T] = ['5', 'a', 'b', 'c', 'd', 'e', '1', '2', '3', '7'].map(a);
  const node = (id, role, extra = {}) => ({id, role, label: id, reason: null, entity: null, category: null,
    depth: 1, seed: role === 'seed', ...extra});
  const nodes = [node(S, 'seed'), node(A, 'followed'), node(B, 'followed'), node(C, 'followed'),
    node(D, 'followed'), node(X, 'exit', {entity: 'Binance', category: 'exchange'}), node(W1, 'followed'),
    node(W2, 'followed'), node(W3, 'followed'), node(T, 'followed')];
  let n = 0;
  const edge = (s, t, amount, status = 'followed') => ({source: s, target: t,
    tx_hash: '0x' + (++n).toString(16).padStart(64, '0'), position: 'tx', block_number: n,
    timestamp: '2024-01-01T00:00:00Z', asset: 'native', symbol: 'ETH', decimals: 0,
    amount: String(amount), amount_raw: String(amount), depth: 1, kind: 'native', status, reason: status});
  const edges = [edge(S, A, 100), edge(A, B, 90), edge(A, X, 10, 'exit'), edge(B, C, 80), edge(B, X, 10, 'exit'),
    edge(C, D, 70), edge(C, X, 10, 'exit'), edge(D, X, 70, 'exit'),
    edge(S, W1, 10), edge(S, W2, 10), edge(S, W3, 10), edge(W1, T, 10), edge(W2, T, 10), edge(W3, T, 10)];
  const m = new TraceModel();
  m.setTrace({id: 1, chain: 'ethereum', seeds: [S], status: 'done',
    totals: [{asset: 'native', symbol: 'ETH', decimals: 0, amount: '130', amount_raw: '130'}]});
  out.changed = m.setGraph({nodes, edges});
  out.unchanged = m.setGraph({nodes, edges});
  const filters = {collapse: true, group: true, dust: true, expanded: new Set()};
  const v = m.view(filters);
  out.collapsed = [...v.chains.values()].map((c) => [c.kind, c.members.length]).sort();
  out.viewNodes = v.nodes.length;
  out.xIn = v.edges.filter((e) => e.target === X).map((e) => [e.source.split(':')[0], e.amount, e.hops.length]);
  const plain = m.view({...filters, collapse: false, group: false});
  out.plainNodes = plain.nodes.length;
  out.minShare = m.view({...filters, collapse: false, group: false, minAmount: '50'}).edges.length;
  const dest = m.destinations('native');
  out.dest = dest.flows.map((x) => [x.group, x.entity, x.value]).sort();
  out.flows = m.flows(X).in.map((t) => [t.amount, t.count]);
  return out;
}"""


async def test_page_logic_formats_collapses_and_attributes(api: Api, browser: Any) -> None:
    """The page's own modules, in the browser: amounts shortened without floating point, peel
    chains and fan-outs collapsed, hops merged per sender/recipient/asset, and where the seed's
    money went."""
    page = await browser.new_page()
    errors = PageErrors(page)
    await page.goto(api.base + "/ui")
    out = await page.evaluate(MODEL_CHECKS)
    await page.close()
    assert out["amounts"] == ["2,723.32", "0.00001234", "1,234,567", "0", "12.5", "999.9999"]
    assert out["units"] == ["123.45", "0.005", "1000"]
    assert out["ratio"] == pytest.approx(1 / 3, abs=1e-9)
    assert out["changed"] is True and out["unchanged"] is False
    assert out["collapsed"] == [["group", 3], ["peel", 4]]
    assert out["plainNodes"] == 10 and out["viewNodes"] == 5  # S, peel chain, X, wallet group, T
    assert out["xIn"] == [["peel", "100", 4]]  # the three peels and the last step, merged
    assert out["minShare"] == 5  # at least 50% of the stolen 130: S->A, A->B, B->C, C->D, D->X
    assert out["dest"] == [["exits", "Binance", 100], ["unresolved", None, 30]]
    assert out["flows"] == [["100", 4]]
    assert not errors.errors, errors.errors
