"""Ethereum → THORChain → Tron end to end: a thief's ETH deposits into the THORChain router with
memos naming Tron USDT and TRX (tracer/devchain/tron_bridge.py) are traced from the thief alone,
through the real API and workers, an Ethereum devchain and the Tron devchain (java-tron's HTTP
API and JSON-RPC), on to the exchange deposit addresses the payouts reach on Tron.

Tolerance: a swap changes the asset, so a payout hop carries the deposit's flagged share of what
the vault paid, times the match's confidence (bridges.carried): exact for the TRX payout (its
`OUT:` note names the deposit: confidence 1), int(payout × 0.7) for the USDT one (a TRC-20 transfer
has no note: matched by timing, single candidate); the hops after it carry that within 2 units."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tests.api_support import Api, conforms, running_api
from tracer.addresses import tron_base58
from tracer.api.context import Settings
from tracer.chains.evm import EvmChain
from tracer.chains.retry import RetryPolicy, TransportOptions
from tracer.chains.tron import TronChain
from tracer.demo import load_scenario_labels
from tracer.devchain.server import DevChainServer
from tracer.devchain.tron_bridge import SwapToTron, generate
from tracer.devchain.tron_server import TronServer
from tracer.domain.transfers import NATIVE
from tracer.engine import bridges
from tracer.engine import report as treport
from tracer.store.db import Database

pytestmark = pytest.mark.asyncio(loop_scope="session")
T = tron_base58


@pytest.fixture(scope="module")
def swap() -> SwapToTron:
    return generate()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def api(db: Database, swap: SwapToTron) -> AsyncIterator[Api]:
    eth_server, tron_server = DevChainServer(swap.home), TronServer(swap.tron)
    eth = EvmChain(await eth_server.start("127.0.0.1", 0), chain="ethereum", expected_chain_id=1)
    await tron_server.start()
    tron = TronChain(tron_server.jsonrpc_url, transport=TransportOptions(policy=RetryPolicy(backoff=0.01)))
    try:
        await eth.connect()
        await tron.connect()
        # What a user has: the router's label on Ethereum, the exchanges' hot wallets on Tron.
        await load_scenario_labels(db.pool, swap.home)
        await load_scenario_labels(db.pool, swap.tron)  # type: ignore[arg-type]  # duck-typed: chain + labels
        async with running_api(db, {"ethereum": eth, "tron": tron}, Settings(workers=2, worker_lease_seconds=10.0)) \
                as a:
            yield a
    finally:
        await eth.close()
        await tron.close()
        await eth_server.stop()
        await tron_server.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def trace(api: Api, swap: SwapToTron) -> dict[str, Any]:
    return await api.run_trace({"chain": "ethereum", "seeds": swap.home.seeds, "label": "swapped to tron"})


async def _hops(api: Api, trace_id: int) -> list[dict[str, Any]]:
    _, body, _ = await api.call("GET", f"/v1/traces/{trace_id}/hops?limit=500", expect=200)
    conforms("hop-page", body)
    items: list[dict[str, Any]] = body["items"]
    return items


async def test_the_trace_continues_on_tron_to_the_deposit_addresses(
    api: Api, trace: dict[str, Any], swap: SwapToTron
) -> None:
    assert trace["status"] == "done", trace
    hops = await _hops(api, trace["id"])
    assert {h["chain"] for h in hops} == {"ethereum", "tron"}, hops
    _, body, _ = await api.call("GET", f"/v1/traces/{trace['id']}/exits", expect=200)
    conforms("exit-list", body)
    exits = body["items"]
    for p in swap.payouts:
        [deposit_hop] = [h for h in hops if h["chain"] == "ethereum" and h["tx_hash"] == p.deposit_tx]
        # Continued on Tron: a crossing, not an exit on Ethereum.
        assert (deposit_hop["status"], deposit_hop["reason"]) == ("followed", "crossing"), deposit_hop
        flagged = int(deposit_hop["amount_raw"])
        assert flagged == p.deposit_amount  # the thief's own money: all of it flagged
        method = bridges.MATCH_MEMO if p.note else bridges.MATCH_SINGLE
        confidence = bridges.CONFIDENCE[method]
        want = bridges.carried(flagged, p.deposit_amount, p.amount, confidence)
        assert want == (p.amount if p.note else int(p.amount * 0.7))
        [payout] = [h for h in hops if h["chain"] == "tron" and h["to"] == T(p.recipient)]
        assert (payout["from"], payout["status"], payout["reason"], payout["confidence"]) == (
            T(swap.vault), "followed", "bridge", confidence), payout
        assert payout["asset"] == (NATIVE if p.asset == NATIVE else T(p.asset))
        assert int(payout["amount_raw"]) == want and payout["depth"] == deposit_hop["depth"] + 1
        [proof] = payout["evidence"]["deposits"]
        assert (proof["chain"], proof["tx_hash"], proof["protocol"], proof["match"]) == (
            "ethereum", p.deposit_tx, "THORChain", method)
        # Then on Tron as any wallet: into the exchange deposit address, recognised by its sweep.
        [onward] = [h for h in hops if h["chain"] == "tron" and h["from"] == T(p.recipient)]
        assert onward["to"] == T(p.deposit_address) and (onward["status"], onward["reason"]) == (
            "exit", "deposit_address"), onward
        assert abs(int(onward["amount_raw"]) - want) <= 2
        [e] = [e for e in exits if e["address"] == T(p.deposit_address)]
        assert (e["chain"], e["entity"], e["category"]) == ("tron", p.exchange, "deposit_address"), e
        assert abs(int(e["amount_raw"]) - want) <= 2
    # One count: each crossing is counted once, at the exit it reaches on Tron. The router holds no
    # exit amount for it, the hot wallets behind the deposit addresses are not exits again, and
    # the stranger's swap through the same router is not in the trace.
    assert sorted(e["address"] for e in exits) == sorted(T(p.deposit_address) for p in swap.payouts), exits
    assert not [h for h in hops if h["chain"] == "tron" and h["to"] in (T(swap.stranger.recipient),
                                                                      *map(T, swap.tron.truth.hot_wallets.values()))]


async def test_the_report_names_the_crossing(db: Database, trace: dict[str, Any], swap: SwapToTron) -> None:
    rep = await treport.build(db.pool, trace["id"])
    assert sorted((c.from_chain, c.chain, c.deposit.protocol, c.deposit.tx_hash, c.followed)
                  for c in rep.continuations) == sorted(
        ("ethereum", "tron", "THORChain", p.deposit_tx, True) for p in swap.payouts), rep.continuations
    text = treport.render(rep, max_exits=100)
    assert "Cross-chain continuations (2):" in text, text
    assert text.count("ethereum → tron via THORChain") == 2, text
    for method, confidence in ((bridges.MATCH_MEMO, 1.0), (bridges.MATCH_SINGLE, 0.7)):
        assert f"match {method}, confidence {confidence}; followed" in text, text
    # Each exit line's path crosses from the thief on Ethereum to the deposit address on Tron.
    for p in swap.payouts:
        [line] = [x for x in rep.exits if x.address == p.deposit_address]
        assert line.chain == "tron" and line.path and line.path[0]["from"] in swap.home.seeds
        assert [s["to"] for s in line.path][-2:] == [p.recipient, p.deposit_address], line.path
