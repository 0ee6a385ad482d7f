"""What an investigator sees of a trace that crossed chains: the graph exports (one node per chain
and address, a "bridge" edge from each deposit to its payout), /paths in each step's own units,
hop events naming their chain, POST /v1/traces on any configured chain, and the text report's
CoinJoin entries and cross-chain continuations.

The cross-chain trace is test_crosschain's (its fixtures, imported): THORChain deposits on the
home devchain continue on a second EVM devchain ("avalanche") and on Bitcoin (Esplora devchain),
through the real API and real workers. The CoinJoin report runs a generated Wasabi round through
EsploraChain in a database of its own.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import networkx as nx
import pytest
import pytest_asyncio

from tests.acceptance import test_web_e2e as web_e2e
from tests.api_support import Api, conforms, running_api
from tests.bitcoin_support import esplora_client, own_database, running_esplora
from tests.integration import test_crosschain as cc
from tracer.chains.bitcoin import EsploraChain
from tracer.demo import load_scenario_labels
from tracer.devchain.bitcoin.records import BitcoinScenario, BitcoinScenarioParams
from tracer.devchain.bitcoin.story import generate
from tracer.devchain.crosschain import CrossChain
from tracer.devchain.scenario import Scenario
from tracer.domain.views import StoredHop
from tracer.engine import bridges, service, utxo
from tracer.engine import graph as tgraph
from tracer.engine import report as treport
from tracer.runner import run_with_workers
from tracer.store.db import Database

ASYNC = pytest.mark.asyncio(loop_scope="session")

# test_crosschain's scenario, servers, API and trace, set up again for this module (its own database).
DEST = cc.DEST
_hops = cc._hops
home_and_btc, home, btc, cross = cc.home_and_btc, cc.home, cc.btc, cc.cross
chains, api, trace = cc.chains, cc.api, cc.trace


def _deposit_hop(hops: list[dict[str, Any]], chain: str, sender: str, router: str) -> dict[str, Any]:
    [h] = [h for h in hops if h["chain"] == chain and h["from"] == sender and h["to"] == router]
    return h


async def _graph(api: Api, trace_id: int, fmt: str = "json", table: str | None = None) -> Any:
    q = f"format={fmt}" + (f"&table={table}" if table else "")
    _, body, _ = await api.call("GET", f"/v1/traces/{trace_id}/graph?{q}", expect=200)
    return body


# -- 1. graph exports ----------------------------------------------------------------------------


@ASYNC
async def test_graph_nodes_are_per_chain_and_bridges_link_deposits_to_payouts(
    api: Api, trace: dict[str, Any], home: Scenario, cross: CrossChain, btc: BitcoinScenario
) -> None:
    tid = trace["id"]
    hops = await _hops(api, tid)
    g = await _graph(api, tid)
    conforms("graph", g)
    ids = [n["id"] for n in g["nodes"]]
    assert len(ids) == len(set(ids))
    # Every node id names its chain, and the node says the same.
    for n in g["nodes"]:
        chain, _, address = n["id"].partition(":")
        assert n["chain"] == chain and address and chain in (home.chain, DEST, "bitcoin")
        assert n["label"].startswith(f"{chain}: ")
    # One node per (chain, address) a hop touches: the vault paying on Bitcoin is a Bitcoin node.
    assert set(ids) == {f"{h['chain']}:{h[end]}" for h in hops for end in ("from", "to")}
    bridge_edges = [e for e in g["edges"] if e["kind"] == "bridge"]
    plain = [e for e in g["edges"] if e["kind"] != "bridge"]
    assert len(plain) == len(hops) and all(e["chain"] in (home.chain, DEST, "bitcoin") for e in plain)
    assert all(e["source"] in set(ids) and e["target"] in set(ids) for e in g["edges"])
    router = home.truth.bridges[0].router
    by_target = {e["target"]: e for e in bridge_edges}
    # The avalanche payouts: matched by memo (1.0), then by timing (0.5, then 0.7).
    for p in cross.payouts:
        deposit = _deposit_hop(hops, home.chain, p.deposit.sender, router)
        e = by_target[f"{DEST}:{p.address}"]
        method = bridges.MATCH_MEMO if p.memo else bridges.MATCH_EARLIEST if p.decoy else bridges.MATCH_SINGLE
        assert e["source"] == f"{home.chain}:{p.deposit.sender}"
        assert (e["from_chain"], e["chain"], e["match"], e["protocol"]) == (home.chain, DEST, method, "THORChain")
        assert e["confidence"] == bridges.CONFIDENCE[method] and e["deposit_tx_hash"] == deposit["tx_hash"]
        [payout] = [h for h in hops if h["chain"] == DEST and h["to"] == p.address and h["reason"] == "bridge"]
        assert (e["tx_hash"], e["amount_raw"], e["symbol"]) == (payout["tx_hash"], payout["amount_raw"], "AVAX")
    # The Bitcoin hand-offs: named by the vault's OP_RETURN, amounts in BTC.
    for ho in btc.truth.handoffs:
        e = by_target[f"bitcoin:{ho.address}"]
        assert (e["from_chain"], e["chain"], e["match"], e["confidence"]) == (home.chain, "bitcoin",
                                                                              bridges.MATCH_MEMO, 1.0)
        assert (e["symbol"], e["decimals"]) == ("BTC", 8)
        assert Decimal(e["amount"]) * 10**8 == int(e["amount_raw"])
    assert len(bridge_edges) == len(cross.payouts) + len(btc.truth.handoffs)
    # Through the bridge edges a path runs from a seed on the home chain to the exchange deposit
    # addresses on the other chains.
    d = nx.DiGraph()
    d.add_edges_from((e["source"], e["target"]) for e in g["edges"] if e["status"] != "stopped")
    for p in cross.payouts:
        assert any(nx.has_path(d, f"{home.chain}:{s}", f"{DEST}:{p.deposit_address}") for s in home.seeds
                   if f"{home.chain}:{s}" in d)
    for ho in btc.truth.handoffs:
        assert ho.onward_deposit is not None
        assert any(nx.has_path(d, f"{home.chain}:{s}", f"bitcoin:{ho.onward_deposit}") for s in home.seeds
                   if f"{home.chain}:{s}" in d)


@ASYNC
async def test_every_export_format_carries_the_chains_and_the_bridge_edges(
    api: Api, trace: dict[str, Any], home: Scenario, cross: CrossChain, btc: BitcoinScenario
) -> None:
    tid = trace["id"]
    n_hops = len(await _hops(api, tid))
    n_bridges = len(cross.payouts) + len(btc.truth.handoffs)
    rows = list(csv.DictReader(io.StringIO(await _graph(api, tid, "csv"))))
    assert len(rows) == n_hops + n_bridges
    bridged = [r for r in rows if r["kind"] == "bridge"]
    assert len(bridged) == n_bridges and all(r["confidence"] and r["source"].startswith(f"{home.chain}:")
                                             for r in bridged)
    assert {r["chain"] for r in rows} == {home.chain, DEST, "bitcoin"}
    nodes = list(csv.DictReader(io.StringIO(await _graph(api, tid, "csv", "nodes"))))
    assert all(r["id"] == f"{r['chain']}:{r['id'].split(':', 1)[1]}" for r in nodes)
    dot = await _graph(api, tid, "dot")
    assert dot.count(" -> ") == n_hops + n_bridges and dot.count("style=dashed") == n_bridges
    assert f"THORChain {home.chain} → bitcoin" in dot
    gm = nx.parse_graphml(await _graph(api, tid, "graphml"), force_multigraph=True)
    assert gm.number_of_edges() == n_hops + n_bridges and gm.number_of_nodes() == len(nodes)
    kinds = [data["kind"] for _u, _v, data in gm.edges(data=True)]
    assert kinds.count("bridge") == n_bridges
    gx = nx.read_gexf(io.BytesIO((await _graph(api, tid, "gexf")).encode()))
    assert all(":" in n for n in gx.nodes)


@ASYNC
async def test_a_single_chain_trace_keeps_plain_address_ids(
    api: Api, db: Database, home: Scenario, chains: dict[str, Any]
) -> None:
    only_home = {home.chain: chains[home.chain]}
    tid = await service.create_trace(db.pool, only_home[home.chain], chain=home.chain, seeds=home.seeds,
                                     policy={"max_depth": 3})
    assert await run_with_workers(db.pool, only_home, tid, workers=2, progress=False) == "done"
    g = await _graph(api, tid)
    conforms("graph", g)
    assert g["nodes"] and all(n["id"].startswith("0x") and ":" not in n["id"] for n in g["nodes"])
    assert all(n["chain"] == home.chain for n in g["nodes"])
    assert not [e for e in g["edges"] if e["kind"] == "bridge"] and len(g["edges"]) == len(await _hops(api, tid))


# What graph.build does not read.
_HOP: dict[str, Any] = {"share": 1.0, "kind": "transfer", "position": "0", "block_time": 0, "decimals": None,
                        "symbol": None, "confidence": 1.0, "evidence": None}


def test_graph_build_keeps_one_address_on_two_chains_apart() -> None:
    a, b, c, vault = ("0x" + ch * 40 for ch in "abcd")
    hops = [StoredHop(**{**_HOP, **h}) for h in [
        {"transfer_id": 1, "from_addr": a, "to_addr": b, "asset": "native", "amount": 100, "tx_hash": "0x1",
         "block_number": 1, "depth": 1, "status": "followed", "reason": "flagged funds", "chain": "ethereum"},
        {"transfer_id": 2, "from_addr": b, "to_addr": vault, "asset": "native", "amount": 100, "tx_hash": "0x2",
         "block_number": 2, "depth": 2, "status": "exit", "reason": "bridge", "chain": "ethereum"},
        # The payout lands on `a` again, but on base: another wallet, another node.
        {"transfer_id": 3, "from_addr": vault, "to_addr": a, "asset": "native", "amount": 90, "tx_hash": "0x3",
         "block_number": 9, "depth": 3, "status": "followed", "reason": "bridge", "chain": "base",
         "evidence": {"bridge": True, "deposits": [{"chain": "ethereum", "from": b, "tx_hash": "0x2",
                                                    "confidence": 1.0, "carried": "90"}]}},
        {"transfer_id": 4, "from_addr": a, "to_addr": c, "asset": "native", "amount": 90, "tx_hash": "0x4",
         "block_number": 10, "depth": 4, "status": "exit", "reason": "deposit_address", "chain": "base"},
    ]]
    g = tgraph.build(hops, "ethereum")
    assert ("ethereum", a) in g and ("base", a) in g and ("base", vault) in g and ("ethereum", vault) in g
    [path] = tgraph.paths_to(g, [a], c, chain="ethereum")
    assert [(s.from_addr, s.to_addr, s.chain, s.from_chain) for s in path] == [
        (a, b, "ethereum", "ethereum"), (b, a, "base", "ethereum"), (a, c, "base", "base")]
    assert [s.amount for s in path] == [100, 90, 90]
    # The address on base, as a target of its own: reached across the bridge, not the seed itself.
    [path] = tgraph.paths_to(g, [a], a, chain="ethereum", target_chain="base")
    assert [(s.from_addr, s.to_addr, s.chain) for s in path] == [(a, b, "ethereum"), (b, a, "base")]


# -- 2. paths in each step's units ---------------------------------------------------------------


@ASYNC
async def test_path_steps_are_in_their_own_chains_units(
    api: Api, trace: dict[str, Any], home: Scenario, btc: BitcoinScenario, cross: CrossChain
) -> None:
    for ho in btc.truth.handoffs:
        _, found, _ = await api.call("GET", f"/v1/traces/{trace['id']}/paths?to={ho.onward_deposit}", expect=200)
        conforms("paths", found)
        path = found["paths"][0]
        on = [s["chain"] for s in path["steps"]]
        # Home-chain steps, one bridge step (the deposit's sender to the payout's recipient), Bitcoin steps.
        cut = on.index("bitcoin")
        assert set(on[:cut]) == {home.chain} and set(on[cut:]) == {"bitcoin"}
        bridge = path["steps"][cut]
        assert (bridge["from_chain"], bridge["to"]) == (home.chain, ho.address)
        assert all("from_chain" not in s for i, s in enumerate(path["steps"]) if i != cut)
        for s in path["steps"]:
            if s["asset"] != "native":
                continue
            want = ("BTC", 8) if s["chain"] == "bitcoin" else ("ETH", 18)
            assert (s["symbol"], s["decimals"]) == want
            assert Decimal(s["amount"]).scaleb(want[1]) == int(s["amount_raw"])
        assert path["bottleneck"] is None  # ETH and BTC steps have no common unit
    p = cross.payouts[0]
    _, found, _ = await api.call("GET", f"/v1/traces/{trace['id']}/paths?to={p.deposit_address}", expect=200)
    last = found["paths"][0]["steps"][-1]
    assert (last["chain"], last["symbol"], last["to"]) == (DEST, "AVAX", p.deposit_address)


# -- 3. hop events name their chain --------------------------------------------------------------


@ASYNC
async def test_hop_events_carry_the_hops_chain_and_its_units(api: Api, trace: dict[str, Any], home: Scenario
                                                             ) -> None:
    events: list[dict[str, Any]] = []
    after = 0
    while True:
        _, page, _ = await api.call("GET", f"/v1/traces/{trace['id']}/events?after={after}&limit=500", expect=200)
        conforms("event-page", page)
        events.extend(page["items"])
        if not page["items"]:
            break
        after = page["next_after"]
    hop_events = [e for e in events if e["type"] in ("hop_added", "hop_updated")]
    assert hop_events and all("chain" in e["hop"] for e in hop_events)
    assert {e["hop"]["chain"] for e in hop_events} == {home.chain, DEST, "bitcoin"}
    assert all(e["chain"] == home.chain for e in events)  # the trace's own, as before
    for e in hop_events:
        h = e["hop"]
        if h["asset"] == "native":
            want = {"bitcoin": ("BTC", 8), DEST: ("AVAX", 18)}.get(h["chain"], ("ETH", 18))
            assert (h["symbol"], h["decimals"]) == want


# -- 4. POST /v1/traces on any configured chain --------------------------------------------------


@ASYNC
async def test_traces_start_on_any_configured_chain_and_a_400_lists_them(
    api: Api, db: Database, cross: CrossChain
) -> None:
    seed = cross.payouts[0].address
    _, body, _ = await api.call("POST", "/v1/traces", expect=201,
                                json={"chain": DEST, "seeds": [seed], "policy": {"max_depth": 1}})
    assert body["chain"] == DEST
    # Known but not configured here, and not a chain at all: 400, naming the accepted chains.
    for chain in ("base", "dogecoin", "Avalanche"):
        _, problem, _ = await api.call("POST", "/v1/traces", expect=400, json={"chain": chain, "seeds": [seed]})
        assert problem["field"] == "chain"
        if chain != "Avalanche":  # the schema refuses upper case before the chain list is consulted
            assert f"accepted: {', '.join(sorted(['bitcoin', DEST, 'ethereum']))}" in problem["detail"]
    # A server without nodes accepts every known name (and then has no node: 503); others are 400.
    async with running_api(db, {}) as bare:
        _, problem, _ = await bare.call("POST", "/v1/traces", expect=503, json={"chain": "base", "seeds": [seed]})
        assert problem["field"] == "chain"
        _, problem, _ = await bare.call("POST", "/v1/traces", expect=400, json={"chain": "dogecoin", "seeds": [seed]})
        assert "avalanche" in problem["detail"] and "bitcoin" in problem["detail"] and "base" in problem["detail"]


def test_check_chain_accepts_configured_then_known_names() -> None:
    assert service.check_chain("base") == "base"
    assert set(service.CHAINS) >= {"ethereum", "bitcoin", "avalanche", "base", "arbitrum", "bsc", "polygon"}
    assert set(service.CHAINS) == {*bridges.EVM_CHAINS.values(), "bitcoin", "tron"}
    assert service.check_chain("fantom", ["fantom", "ethereum"]) == "fantom"
    for bad, configured in (("base", ["ethereum"]), ("dogecoin", None), (7, None)):
        with pytest.raises(service.TraceInputError) as err:
            service.check_chain(bad, configured)
        assert err.value.field == "chain" and "accepted: " in err.value.message


# -- 5. the text report --------------------------------------------------------------------------


@ASYNC
async def test_report_lists_cross_chain_continuations(
    api: Api, db: Database, trace: dict[str, Any], home: Scenario, cross: CrossChain, btc: BitcoinScenario
) -> None:
    rep = await treport.build(db.pool, trace["id"])
    by_recipient = {c.recipient: c for c in rep.continuations}
    assert len(rep.continuations) == len(cross.payouts) + len(btc.truth.handoffs)
    hops = await _hops(api, trace["id"])
    for p in cross.payouts:
        c = by_recipient[p.address]
        method = bridges.MATCH_MEMO if p.memo else bridges.MATCH_EARLIEST if p.decoy else bridges.MATCH_SINGLE
        [payout] = [h for h in hops if h["chain"] == DEST and h["to"] == p.address and h["reason"] == "bridge"]
        assert (c.from_chain, c.chain, c.deposit.protocol, c.deposit.sender, c.paid.match, c.followed) == (
            home.chain, DEST, "THORChain", p.deposit.sender, method, True)
        assert (c.paid.amount, c.paid.carried, c.symbol, c.paid.tx_hash) == (
            p.amount, int(payout["amount_raw"]), "AVAX", payout["tx_hash"])
    for ho in btc.truth.handoffs:
        c = by_recipient[ho.address]
        assert (c.chain, c.symbol, c.decimals, c.paid.amount, c.paid.match, c.paid.confidence) == (
            "bitcoin", "BTC", 8, ho.amount, bridges.MATCH_MEMO, 1.0)
    text = treport.render(rep, max_exits=100)
    assert f"Cross-chain continuations ({len(rep.continuations)}):" in text
    assert text.count(f"{home.chain} → bitcoin via THORChain") == len(btc.truth.handoffs)
    assert text.count(f"{home.chain} → {DEST} via THORChain") == len(cross.payouts)
    ho = btc.truth.handoffs[0]
    assert f"payout {treport.format_amount(ho.amount, 8, 8)} BTC to {ho.address[:8]}" in text
    assert "match memo, confidence 1.0; followed" in text
    # The JSON form carries them too, amounts as exact strings; exit paths name each step's chain.
    js = rep.to_json()
    assert len(js["continuations"]) == len(rep.continuations) and js["coinjoins"] == []
    assert all(isinstance(c["payout"], str) for c in js["continuations"])
    remote = [e for e in rep.exits if e.chain == "bitcoin" and e.path]
    assert remote and all(e.path[-1]["chain"] == "bitcoin" and e.path[0]["chain"] == home.chain for e in remote)


@pytest.fixture(scope="module")
def wasabi() -> BitcoinScenario:
    return generate(BitcoinScenarioParams(seed=7, peel_hops=4, coinjoin=True))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def wasabi_db(pg_server_url: str, migrated_template: str, wasabi: BitcoinScenario
                    ) -> AsyncIterator[tuple[Database, EsploraChain]]:
    # Its own database: the same heights hold other blocks than the cross-chain scenario's Bitcoin.
    async with (running_esplora(wasabi) as server, own_database(pg_server_url, migrated_template) as cj_db,
                esplora_client(server.url) as client):
        await load_scenario_labels(cj_db.pool, wasabi)  # type: ignore[arg-type]
        yield cj_db, client


@ASYNC
async def test_report_lists_coinjoin_entries(wasabi_db: tuple[Database, EsploraChain], wasabi: BitcoinScenario
                                             ) -> None:
    cj_db, client = wasabi_db
    (cj,) = wasabi.truth.coinjoins
    tid = await service.create_trace(cj_db.pool, client, chain="bitcoin", seeds=wasabi.seeds, policy={})
    assert await asyncio.wait_for(run_with_workers(cj_db.pool, {"bitcoin": client}, tid, workers=2,
                                                   progress=False), 120) == "done"
    rep = await treport.build(cj_db.pool, tid)
    [line] = rep.coinjoins
    assert (line.txid, line.pattern, line.anonymity_set, line.denomination) == (cj.txid, "wasabi", cj.anonymity_set,
                                                                                cj.denomination)
    assert line.flagged > 0 and line.unfollowed == cj.anonymity_set
    # Only the thief's own change is followed out of the round, at the change link's confidence.
    [link] = line.links
    assert (link["kind"], link["vout"], link["status"]) == ("change", cj.thief_change_vout, "followed")
    assert link["confidence"] == pytest.approx(utxo.CHANGE_LINK_SAME_TYPE)
    text = treport.render(rep)
    assert "CoinJoins entered (1):" in text
    assert f"CoinJoin {cj.txid[:10]}… (wasabi, anonymity set {cj.anonymity_set}, " in text
    assert f"{treport.format_amount(cj.denomination, 8)} BTC outputs" in text
    assert f"link followed: change → {link['to'][:8]}" in text and "at 95% (followed)" in text
    assert f"{cj.anonymity_set} outputs reported, not followed" in text
    assert rep.to_json()["coinjoins"][0]["denomination"] == str(cj.denomination)


# -- the web view draws a cross-chain trace ------------------------------------------------------

chromium, browser = web_e2e.chromium, web_e2e.browser

PAGE_CHECKS = """async (tid) => {
  const {TraceModel, nodeTitle} = await import('/ui/static/model.js');
  const f = await import('/ui/static/format.js');
  const get = async (path) => (await fetch(path)).json();
  const m = new TraceModel();
  m.setTrace(await get(`/v1/traces/${tid}`));
  m.setGraph(await get(`/v1/traces/${tid}/graph?format=json`));
  const titles = [...m.nodes.values()].map((n) => [n.id, n.chain, nodeTitle(n)]);
  const plain = m.view({collapse: false, group: false, dust: true, expanded: new Set()});
  const dest = m.destinations('native');
  return {multichain: m.multichain, titles, seeds: m.seeds, viewNodes: plain.nodes.length, nodes: m.nodes.size,
    bridges: plain.edges.filter((e) => e.bridge).length, destSeeds: dest.seeds.map((s) => s.id),
    short: f.shortAddr('bitcoin:bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4'),
    addr: f.addressOf('avalanche:0x' + 'ab'.repeat(20)), plainAddr: f.addressOf('0x' + 'ab'.repeat(20))};
}"""


@ASYNC
async def test_the_web_view_draws_a_cross_chain_trace(
    api: Api, trace: dict[str, Any], home: Scenario, cross: CrossChain, btc: BitcoinScenario, browser: Any
) -> None:
    tid = trace["id"]
    page = await browser.new_page(viewport=web_e2e.VIEWPORT)
    errors = web_e2e.PageErrors(page)
    # The page logic on the API's own export: nodes per chain, each titled with its chain.
    await page.goto(api.base + "/ui")
    out = await page.evaluate(PAGE_CHECKS, tid)
    assert out["multichain"] is True
    assert out["seeds"] == [f"{home.chain}:{s}" for s in home.seeds]
    assert set(out["destSeeds"]) <= set(out["seeds"]) and out["destSeeds"]
    assert all(title.endswith(f" · {chain}") for _id, chain, title in out["titles"])
    assert out["viewNodes"] == out["nodes"] and out["bridges"] == len(cross.payouts) + len(btc.truth.handoffs)
    assert (out["short"], out["addr"], out["plainAddr"]) == ("bc1qw5…f3t4", "0x" + "ab" * 20, "0x" + "ab" * 20)
    # The page itself: open the trace, click the Bitcoin exchange deposit, read the path across the bridge.
    await page.goto(f"{api.base}/ui?trace={tid}")
    await page.wait_for_function("() => document.querySelector('#trace-status').textContent === 'done'",
                                 timeout=web_e2e.TIMEOUT_MS)
    await web_e2e._settled(page)
    drawn = await page.evaluate("tracerUI.cy.nodes().map(n => [n.id(), n.data('label')])")
    assert any(i.startswith("bitcoin:") for i, _ in drawn) and any(i.startswith(f"{DEST}:") for i, _ in drawn)
    assert all(label.endswith(f" · {i.split(':')[0]}") for i, label in drawn if i.startswith(("bitcoin:", f"{DEST}:")))
    assert await page.evaluate("tracerUI.cy.edges('[bridge = 1]').length") >= 1
    # Exposure keeps each chain's coin apart: Binance's AVAX is not added to its ETH.
    bars = await page.evaluate("[...document.querySelectorAll('#exp-bars .bar-label')].map(e => e.textContent)")
    assert any(f"Binance · {DEST}" in b for b in bars) and any(" · bitcoin" in b for b in bars)
    ho = btc.truth.handoffs[0]
    target = f"bitcoin:{ho.onward_deposit}"
    # A block body: emit() returns the element, and Playwright would serialise all of Cytoscape with it.
    await page.evaluate("(id) => { tracerUI.cy.getElementById(id).emit('tap'); }", target)
    await page.wait_for_selector("#path li")
    shown = await page.evaluate("[...document.querySelectorAll('#path li')].map(li => li.dataset.address)")
    _, found, _ = await api.call("GET", f"/v1/traces/{tid}/paths?to={ho.onward_deposit}&limit=5", expect=200)
    assert shown == found["paths"][0]["addresses"] and ho.address in shown
    assert "bridge " + home.chain + " → bitcoin" in await page.inner_text("#path")
    assert "Chain" in await page.inner_text("#details-body") and "bitcoin" in await page.inner_text("#details-body")
    await web_e2e._screenshot(page, "crosschain-trace.png")
    await page.close()
    assert not errors.errors, errors.errors
