"""One trace across three chains: THORChain deposits on the home devchain whose memos name addresses
on a second EVM devchain ("avalanche") or on Bitcoin continue there as payout hops (matched by
timing on the EVM chain, by the vault's OP_RETURN memo on Bitcoin), then hop by hop to an exchange,
through the real API, real workers, two real JSON-RPC servers and a real Esplora server."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
import pytest_asyncio

from tests.api_support import Api, conforms, running_api
from tests.fixtures_db import temporary_database
from tracer.api.context import Settings
from tracer.chains.bitcoin import EsploraChain
from tracer.chains.evm import EvmChain
from tracer.demo import load_scenario_labels
from tracer.devchain.bitcoin.records import BitcoinScenario
from tracer.devchain.crosschain import CrossChain, destination, with_bitcoin_payouts
from tracer.devchain.esplora import EsploraServer
from tracer.devchain.scenario import Scenario, ScenarioParams, generate
from tracer.domain.transfers import NATIVE, Transfer, TransferKind
from tracer.engine import bridges
from tracer.engine import report as treport
from tracer.engine.service import create_trace
from tracer.runner import run_with_workers
from tracer.store.db import Database, create_pool
from tracer.store.migrate import migrate, migrations_dir

DEST = "avalanche"
DEST_ID = 43114


@pytest.fixture(scope="module")
def home_and_btc() -> tuple[Scenario, BitcoinScenario]:
    # Nine THORChain deposits: memos cycle through BTC, AVAX and BNB, so three go to each.
    return with_bitcoin_payouts(generate(replace(ScenarioParams.for_size(1000, seed=11, services=True),
                                                 n_bridges=9)))


@pytest.fixture(scope="module")
def home(home_and_btc: tuple[Scenario, BitcoinScenario]) -> Scenario:
    return home_and_btc[0]


@pytest.fixture(scope="module")
def btc(home_and_btc: tuple[Scenario, BitcoinScenario]) -> BitcoinScenario:
    return home_and_btc[1]


@pytest.fixture(scope="module")
def cross(home: Scenario) -> CrossChain:
    return destination(home, DEST, DEST_ID, decoys=2, memos=1)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def chains(home: Scenario, cross: CrossChain, btc: BitcoinScenario,
                 devchain_factory: Any) -> AsyncIterator[dict[str, Any]]:
    out: dict[str, Any] = {}
    for sc in (home, cross.scenario):
        server = await devchain_factory(sc if sc is home else cross.chain())
        client = EvmChain(server.url, chain=sc.chain, expected_chain_id=sc.chain_id)
        await client.connect()
        out[sc.chain] = client
    esplora = EsploraServer(btc)
    await esplora.start()
    out["bitcoin"] = EsploraChain(esplora.url, network="mainnet")
    await out["bitcoin"].connect()
    yield out
    for client in out.values():
        await client.close()
    await esplora.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def api(db: Database, chains: dict[str, Any], home: Scenario, cross: CrossChain,
              btc: BitcoinScenario) -> AsyncIterator[Api]:
    await load_scenario_labels(db.pool, home)
    await load_scenario_labels(db.pool, cross.scenario)
    await load_scenario_labels(db.pool, btc)  # type: ignore[arg-type]  # duck-typed: chain + labels
    async with running_api(db, chains, Settings(workers=2, worker_lease_seconds=10.0, page_max=500)) as a:
        yield a


async def _run_over_api(api: Api, home: Scenario, policy: dict[str, Any]) -> dict[str, Any]:
    return await api.run_trace({"chain": home.chain, "seeds": home.seeds, "policy": policy}, tries=1200)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def trace(api: Api, home: Scenario) -> dict[str, Any]:
    return await _run_over_api(api, home, {"max_depth": 40})


async def _hops(api: Api, trace_id: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    async for page in api.pages(f"/v1/traces/{trace_id}/hops?limit=500"):
        conforms("hop-page", page)
        out.extend(page["items"])
    return out


async def _exits(api: Api, trace_id: int) -> list[dict[str, Any]]:
    _, body, _ = await api.call("GET", f"/v1/traces/{trace_id}/exits", expect=200)
    conforms("exit-list", body)
    items: list[dict[str, Any]] = body["items"]
    return items


def _router_destinations(exits: list[dict[str, Any]], router: str) -> dict[tuple[str, str], dict[str, Any]]:
    [line] = [e for e in exits if e["address"] == router and e["asset"] == NATIVE]
    evidence = line["recognised_by"]["evidence"]
    return {(d["from"], d["address"]): d for d in evidence["destinations"]}


@pytest.mark.asyncio(loop_scope="session")
async def test_bridge_payouts_continue_the_trace_to_an_exchange_on_the_destination_chain(
    api: Api, db: Database, trace: dict[str, Any], home: Scenario, cross: CrossChain
) -> None:
    # The first payout is a router outbound whose memo names the deposit (taken with certainty
    # although a later payment makes two candidates); the others plain transfers, matched by timing:
    # the earliest of two candidates, then the only one.
    assert [p.decoy for p in cross.payouts] == [True, True, False]
    assert [p.memo is not None for p in cross.payouts] == [True, False, False]
    hops = await _hops(api, trace["id"])
    assert {h["chain"] for h in hops} == {home.chain, DEST, "bitcoin"}
    router = home.truth.bridges[0].router
    expected: dict[str, int] = {}
    for p in cross.payouts:
        dep = p.deposit
        [deposit_hop] = [h for h in hops if h["chain"] == home.chain and h["from"] == dep.sender
                         and h["to"] == router]
        # Continued on the far chain: a crossing, not an exit (its amount is counted at the exits there).
        assert (deposit_hop["status"], deposit_hop["reason"]) == ("followed", "crossing")
        flagged = int(deposit_hop["amount_raw"])
        assert abs(flagged - dep.flagged) <= dep.flagged * 0.001
        # The payout: a hop on the destination chain, carrying the deposit's flagged share at the
        # bridge's own rate, times the confidence of the timing match.
        [payout] = [h for h in hops if h["chain"] == DEST and h["to"] == p.address and h["from"] == p.payer]
        method = bridges.MATCH_MEMO if p.memo else bridges.MATCH_EARLIEST if p.decoy else bridges.MATCH_SINGLE
        confidence = bridges.CONFIDENCE[method]
        want = bridges.carried(flagged, dep.amount, p.amount, confidence)
        share = p.amount * flagged // dep.amount  # exact integers: a float would round a wei amount
        assert want == (share if confidence == 1.0 else int(share * confidence))
        assert (payout["status"], payout["reason"], payout["confidence"]) == ("followed", "bridge", confidence)
        assert int(payout["amount_raw"]) == want
        assert payout["depth"] == deposit_hop["depth"] + 1
        [proof] = payout["evidence"]["deposits"]
        assert (proof["chain"], proof["tx_hash"], proof["protocol"], proof["match"]) == (
            home.chain, deposit_hop["tx_hash"], "THORChain", method)
        assert proof["candidates"] == (1 if p.memo or not p.decoy else 2)
        # Then the engine follows it as any wallet: every hop of the path carries it on, to the
        # exchange deposit address (recognised by its sweep to the labelled hot wallet there).
        chain_path = [p.address, *p.path, p.deposit_address]
        for depth, (a, b) in enumerate(itertools.pairwise(chain_path), start=payout["depth"] + 1):
            [h] = [h for h in hops if h["chain"] == DEST and h["from"] == a and h["to"] == b]
            assert abs(int(h["amount_raw"]) - want) <= 2 and h["depth"] == depth
            assert (h["status"], h["reason"]) == (("exit", "deposit_address") if b == p.deposit_address
                                                  else ("followed", "flagged funds"))
        expected[p.deposit_address] = want
    # The router's evidence says what crossed, as of the final taint (not a first, smaller pass).
    destinations = _router_destinations(await _exits(api, trace["id"]), router)
    for p in cross.payouts:
        [payout] = [h for h in hops if h["chain"] == DEST and h["to"] == p.address and h["from"] == p.payer]
        follow = destinations[(p.deposit.sender, p.address)]["continue"]
        assert follow["followed"] is True and int(follow["payout"]["carried"]) == int(payout["amount_raw"])
    # The destination's later, unrelated inflow is not part of the trace.
    assert not [h for h in hops if h["chain"] == DEST and h["to"] == cross.payouts[0].address
                and h["from"] != cross.payouts[0].payer]
    exits = await _exits(api, trace["id"])
    # One count: the router's exit line holds only the deposits nobody continued (to BNB, whose
    # chain is not served); the continued ones are crossings, counted at the exits they reach.
    into_router = [h for h in hops if h["chain"] == home.chain and h["to"] == router]
    assert {h["reason"] for h in into_router if h["status"] == "followed"} == {"crossing"}
    [router_line] = [e for e in exits if e["address"] == router and e["asset"] == NATIVE]
    assert router_line["recognised_by"]["method"] == "event"  # its Deposit event named the destinations
    assert int(router_line["amount_raw"]) == sum(int(h["amount_raw"]) for h in into_router if h["status"] == "exit")
    assert sum(1 for h in into_router if h["status"] == "exit") == sum(
        1 for b in home.truth.bridges if b.dest_chain not in (DEST, "bitcoin"))
    remote = {e["address"]: e for e in exits if e["chain"] == DEST}
    assert set(remote) == set(expected)
    for address, want in expected.items():
        e = remote[address]
        assert (e["category"], e["entity"], e["reason"]) == ("deposit_address", "Binance", "deposit_address")
        assert abs(int(e["amount_raw"]) - want) <= 4
        assert e["symbol"] == "AVAX" and e["share"] == 0.0  # totals are in the home chain's units
    # The report's path to each of them crosses the bridge from the depositor to the destination.
    rep = await treport.build(db.pool, trace["id"])
    for p in cross.payouts:
        [line] = [x for x in rep.exits if x.address == p.deposit_address]
        assert line.chain == DEST and line.path and line.path[0]["from"] in home.seeds
        steps = [(s["from"], s["to"]) for s in line.path]
        assert (p.deposit.sender, p.address) in steps and steps[-1] == (p.path[-1], p.deposit_address)
        # The paths endpoint crosses the bridge too.
        _, found, _ = await api.call("GET", f"/v1/traces/{trace['id']}/paths?to={p.deposit_address}", expect=200)
        conforms("paths", found)
        assert found["seeds_reached"] and found["paths"][0]["addresses"][0] in home.seeds
        assert p.address in found["paths"][0]["addresses"]
    text = treport.render(rep, max_exits=100)
    assert text.count(f"{DEST}: deposit") == len(cross.payouts)
    # What reached exits is measured against the seeds' totals on the home chain only (swaps
    # bought ETH with USDT, so it may exceed the ETH that left the seeds).
    reached = sum(e.amount for e in rep.exits if e.asset == NATIVE and e.chain == home.chain)
    assert f"({reached / rep.totals[NATIVE]:.1%})" in text
    assert all(e["chain"] in (home.chain, "bitcoin") for e in exits if e["address"] not in expected)


@pytest.mark.asyncio(loop_scope="session")
async def test_a_deposit_whose_memo_names_bitcoin_continues_as_a_bitcoin_hop_in_the_same_trace(
    api: Api, trace: dict[str, Any], home: Scenario, btc: BitcoinScenario
) -> None:
    hops = await _hops(api, trace["id"])
    exits = {e["address"]: e for e in await _exits(api, trace["id"]) if e["chain"] == "bitcoin"}
    router = home.truth.bridges[0].router
    deposits = [b for b in home.truth.bridges if b.dest_chain == "bitcoin"]
    assert len(deposits) == len(btc.truth.handoffs) == 3
    for dep in deposits:
        [deposit_hop] = [h for h in hops if h["chain"] == home.chain and h["from"] == dep.sender
                         and h["to"] == router]
        [ho] = [ho for ho in btc.truth.handoffs if bridges.memo_names(ho.memo, deposit_hop["tx_hash"])]
        assert ho.address == dep.dest_address
        flagged = int(deposit_hop["amount_raw"])
        # The vault's payout names the deposit in its OP_RETURN: matched by memo, with certainty,
        # though the vault paid other users around the same time.
        [payout] = [h for h in hops if h["chain"] == "bitcoin" and h["tx_hash"] == ho.txid and h["to"] == ho.address]
        assert (payout["from"], payout["status"], payout["reason"], payout["confidence"]) == (
            ho.vault, "followed", "bridge", 1.0)
        want = ho.amount * flagged // dep.amount
        assert int(payout["amount_raw"]) == want and payout["symbol"] == "BTC" and payout["decimals"] == 8
        [proof] = payout["evidence"]["deposits"]
        assert (proof["tx_hash"], proof["match"], proof["memo"]) == (deposit_hop["tx_hash"], bridges.MATCH_MEMO,
                                                                     dep.memo)
        # On Bitcoin the engine follows it into the exchange deposit address it was paid into.
        assert ho.onward_deposit is not None and ho.onward_amount is not None
        e = exits[ho.onward_deposit]
        assert e["entity"] == ho.exchange
        assert abs(int(e["amount_raw"]) - want * ho.onward_amount // ho.amount) <= 2


@pytest.mark.asyncio(loop_scope="session")
async def test_router_evidence_says_which_destinations_were_followed(
    api: Api, trace: dict[str, Any], home: Scenario, cross: CrossChain
) -> None:
    exits = await _exits(api, trace["id"])
    destinations = _router_destinations(exits, home.truth.bridges[0].router)
    payouts = {p.address: p for p in cross.payouts}
    for b in home.truth.bridges:
        follow = destinations[(b.sender, b.dest_address)]["continue"]
        if b.dest_chain == DEST:
            p = payouts[b.dest_address.lower()]
            assert (follow["possible"], follow["followed"], follow["chain"]) == (True, True, DEST)
            assert follow["payout"]["match"] == (bridges.MATCH_MEMO if p.memo else bridges.MATCH_EARLIEST if p.decoy
                                                 else bridges.MATCH_SINGLE)
            assert int(follow["payout"]["amount"]) == p.amount
        elif b.dest_chain == "bitcoin":
            assert (follow["possible"], follow["followed"], follow["chain"]) == (True, True, "bitcoin")
            assert (follow["payout"]["match"], follow["payout"]["confidence"]) == (bridges.MATCH_MEMO, 1.0)
        else:
            assert follow["possible"] is False and follow["note"] == f"no RPC configured for {b.dest_chain}"


@pytest.mark.asyncio(loop_scope="session")
async def test_two_workers_one_worker_and_a_rerun_give_identical_hops(
    api: Api, db: Database, trace: dict[str, Any], home: Scenario, chains: dict[str, Any]
) -> None:
    def key(h: dict[str, Any]) -> tuple[Any, ...]:
        return (h["chain"], h["tx_hash"], h["position"], h["amount_raw"], h["status"], h["reason"], h["depth"])

    reference = sorted(key(h) for h in await _hops(api, trace["id"]))
    # The same trace again, by one worker in this process: everything now comes from the cache.
    again = await create_trace(db.pool, chains[home.chain], chain=home.chain, seeds=home.seeds,
                               policy={"max_depth": 40})
    assert await run_with_workers(db.pool, chains, again, workers=1, progress=False) == "done"
    assert sorted(key(h) for h in await _hops(api, again)) == reference
    windows = await db.pool.fetch("SELECT chain, from_block, to_block FROM trace_chains WHERE trace_id = ANY($1)",
                                  [trace["id"], again])
    assert len(windows) == 4 and {w["chain"] for w in windows} == {DEST, "bitcoin"}
    assert len({(w["chain"], w["from_block"], w["to_block"]) for w in windows}) == 2


@pytest.mark.asyncio(loop_scope="session")
async def test_without_the_destination_chain_the_deposit_stays_a_reported_exit(
    pg_server_url: str, migrated_template: str, home: Scenario, chains: dict[str, Any]
) -> None:
    # A database of its own: the module's API runs workers that read every chain, and they would
    # take part in this trace and continue it.
    only_home = {home.chain: chains[home.chain]}
    async with temporary_database(pg_server_url, template=migrated_template) as url:
        own = await Database.connect(url)
        try:
            await load_scenario_labels(own.pool, home)
            trace_id = await create_trace(own.pool, only_home[home.chain], chain=home.chain, seeds=home.seeds,
                                          policy={})
            assert await run_with_workers(own.pool, only_home, trace_id, workers=2, progress=False) == "done"
            async with running_api(own, only_home, Settings(page_max=500)) as api:
                hops = await _hops(api, trace_id)
                exits = await _exits(api, trace_id)
        finally:
            await own.close()
    assert {h["chain"] for h in hops} == {home.chain}
    destinations = _router_destinations(exits, home.truth.bridges[0].router)
    for b in home.truth.bridges:
        follow = destinations[(b.sender, b.dest_address)]["continue"]
        assert follow["possible"] is False and follow["note"] == f"no RPC configured for {b.dest_chain}"


@pytest.mark.asyncio(loop_scope="session")
async def test_max_hops_stops_expanding_and_says_so(
    api: Api, db: Database, home: Scenario, trace: dict[str, Any]
) -> None:
    body = await _run_over_api(api, home, {"max_depth": 40, "max_hops": 5})
    hops = await _hops(api, body["id"])
    # Batches that began under the limit finish, so a trace holds a little more than the limit.
    assert 5 <= len(hops) < 200
    stopped = await db.pool.fetch("SELECT address FROM jobs WHERE trace_id = $1 AND reason = 'max_hops'", body["id"])
    assert stopped
    [finished] = await db.pool.fetch("SELECT payload FROM events WHERE trace_id = $1 AND type = 'trace_finished'",
                                     body["id"])
    payload = finished["payload"]
    assert (json.loads(payload) if isinstance(payload, str) else payload)["hop_limit_reached"] is True
    assert len(hops) < len(await _hops(api, trace["id"]))  # the same trace without the limit


# -- payout matching (pure) --------------------------------------------------------------------

DEPOSIT_TX = "0x" + "ab" * 32
DEST_ADDR = "0x" + "22" * 20
VAULT = "0x" + "33" * 20


def _payment(block: int, time: int, amount: int, memo: str | None = None, asset: str = NATIVE,
             sender: str = VAULT) -> Transfer:
    return Transfer(DEST, block, time, f"0x{block:064x}", 0, "tx", sender, DEST_ADDR, asset, amount,
                    TransferKind.NATIVE, memo=memo)


def test_memo_names_the_deposit_whatever_the_spelling() -> None:
    assert bridges.memo_names("OUT:" + DEPOSIT_TX[2:].upper(), DEPOSIT_TX)
    assert bridges.memo_names("out:" + DEPOSIT_TX, DEPOSIT_TX)
    assert not bridges.memo_names("REFUND:" + DEPOSIT_TX[2:], DEPOSIT_TX)
    assert not bridges.memo_names("OUT:" + "cd" * 32, DEPOSIT_TX)
    assert not bridges.memo_names("OUT:", DEPOSIT_TX) and not bridges.memo_names(None, DEPOSIT_TX)


def test_match_payout_prefers_the_memo_then_timing() -> None:
    ex = bridges.thorchain_memo(DEPOSIT_TX, f"=:AVAX.AVAX:{DEST_ADDR}", 10)
    early = _payment(10, 1_000, 5)
    other_deposit = _payment(11, 1_100, 7, memo="OUT:" + "cd" * 32)
    named = _payment(900, 1_000 + 2 * 86_400, 9, memo="OUT:" + DEPOSIT_TX[2:].upper())  # late, but named
    m = bridges.match_payout([early, other_deposit, named], ex, 900)
    assert m is not None and (m.transfer, m.method, m.confidence) == (named, bridges.MATCH_MEMO, 1.0)
    # Without the memo: another deposit's payout is no candidate, the one left is taken at 0.7.
    m = bridges.match_payout([early, other_deposit], ex, 900)
    assert m is not None and (m.transfer, m.method, m.confidence, m.candidates) == (early, bridges.MATCH_SINGLE,
                                                                                    0.7, 1)
    later = _payment(12, 1_200, 3)
    token = _payment(13, 1_150, 3, asset="0x" + "44" * 20)  # not the asset the memo asked for
    before = _payment(1, 100, 3)  # before the deposit
    m = bridges.match_payout([later, token, before, early], ex, 900)
    assert m is not None and (m.transfer, m.method, m.confidence, m.candidates) == (early, bridges.MATCH_EARLIEST,
                                                                                    0.5, 2)
    assert bridges.match_payout([before, _payment(14, 900 + 86_401, 3)], ex, 900) is None
    assert bridges.match_payout([_payment(15, 1_000, 3, sender=DEST_ADDR)], ex, 900) is None  # its own money


def test_carried_is_the_flagged_share_at_the_bridges_rate() -> None:
    assert bridges.carried(5, 10, 300, 1.0) == 150
    assert bridges.carried(10, 10, 300, 0.7) == 210
    assert bridges.carried(0, 10, 300, 1.0) == 0
    assert bridges.carried(10**20, 10**20, 3 * 10**21 + 1, 1.0) == 3 * 10**21 + 1
    usdc = bridges.thorchain_memo(DEPOSIT_TX, "=:ETH.USDC-0XA0B86991C6218B36C1D19D4A2E9EB0CE3606EB48:0x1")
    assert bridges.payout_asset(usdc) == "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48"
    assert bridges.payout_asset(bridges.BridgeExit("Across", DEPOSIT_TX, "base", DEST_ADDR)) is None


# -- migration 006 on a database that already holds single-chain traces ---------------------------


@pytest.mark.asyncio(loop_scope="session")
async def test_migration_backfills_the_chain_of_existing_jobs_and_hops(pg_server_url: str, tmp_path: Any) -> None:
    before = tmp_path / "before"
    before.mkdir()
    for path in sorted(migrations_dir().glob("*.sql")):
        if int(path.name[:3]) < 6:
            (before / path.name).write_text(path.read_text())
    async with temporary_database(pg_server_url) as url:
        pool = await create_pool(url, min_size=1, max_size=2)
        try:
            assert await migrate(pool, before) == [1, 2, 3, 4, 5]
            trace_id = await pool.fetchval(
                """INSERT INTO traces (chain, seeds, policy, from_block, to_block)
                   VALUES ('base', ARRAY['0x01'], '{}'::jsonb, 0, 10) RETURNING id""")
            await pool.execute("INSERT INTO jobs (trace_id, address, kind, depth) VALUES ($1, '0x02', 'address', 1)",
                               trace_id)
            tid = await pool.fetchval(
                """INSERT INTO transfers (chain, tx_hash, position, block_number, block_time, tx_index, from_addr,
                                          to_addr, asset, amount, kind)
                   VALUES ('base', '0xaa', 'tx', 1, 1, 0, '0x01', '0x02', 'native', 5, 'native') RETURNING id""")
            await pool.execute(
                """INSERT INTO hops (trace_id, transfer_id, from_addr, to_addr, asset, block_number, depth, amount,
                                     share, kind, status, reason) VALUES
                   ($1, $2, '0x01', '0x02', 'native', 1, 1, 5, 1.0, 'native', 'followed', 'flagged funds')""",
                trace_id, tid)
            assert 6 in await migrate(pool)
            assert await pool.fetchval("SELECT chain FROM jobs WHERE trace_id = $1", trace_id) == "base"
            assert await pool.fetchval("SELECT chain FROM hops WHERE trace_id = $1", trace_id) == "base"
            assert await pool.fetchval("SELECT hop_count FROM traces WHERE id = $1", trace_id) == 1
            # Writers that do not name a chain (the bench's bulk loads) get the trace's own.
            await pool.execute("INSERT INTO jobs (trace_id, address, kind, depth) VALUES ($1, '0x03', 'address', 2)",
                               trace_id)
            assert await pool.fetchval("SELECT chain FROM jobs WHERE address = '0x03'") == "base"
            # The same address on another chain of the trace is another job.
            await pool.execute("""INSERT INTO jobs (trace_id, chain, address, kind, depth)
                                  VALUES ($1, 'bitcoin', '0x03', 'address', 3)""", trace_id)
            assert await pool.fetchval("SELECT count(*) FROM jobs WHERE address = '0x03'") == 2
        finally:
            await pool.close()
