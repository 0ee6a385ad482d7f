"""The widest path over real HTTP, on the fan-out that ranking paths by hop count got wrong:
a seed pays 60 wallets 1 ETH each, which each pay Z 0.999 ETH, and sends 1,000 ETH along a
4-hop chain that reaches Z with 997 ETH. `GET /paths?to=Z&limit=1` must answer the 4-hop chain,
and so must the report's path to Z, an exchange deposit address. A hand-made chain served by a real devchain, real
Postgres, real workers inside the API process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tests.api_support import Api, conforms, running_api
from tracer.api.context import Settings
from tracer.chains.evm import EvmChain
from tracer.devchain.chain import Chain
from tracer.devchain.scenario import KIND_NATIVE, ScenarioTx
from tracer.domain.labels import Label
from tracer.engine import report as treport
from tracer.store import labels as label_store
from tracer.store.db import Database

pytestmark = pytest.mark.asyncio(loop_scope="session")

ETH = 10**18
SEED = "0x" + "5e" * 20
Z = "0x" + "ee" * 20
EXCHANGE = "0x" + "ec" * 20
CHAIN_LINKS = ["0x" + f"c{i}" * 20 for i in range(1, 4)]
FANS = [f"0x{i:040x}" for i in range(0x1000, 0x1000 + 60)]


def _pay(sender: str, to: str, wei: int) -> ScenarioTx:
    return ScenarioTx(KIND_NATIVE, sender, to, wei)


def fan_and_chain() -> Chain:
    c = Chain(chain_id=1337, genesis_balances={SEED: {"native": 2_000 * ETH}})
    c.append_block([_pay(SEED, f, ETH) for f in FANS])
    c.append_block([_pay(SEED, CHAIN_LINKS[0], 1_000 * ETH)])
    c.append_block([_pay(f, Z, 999 * ETH // 1000) for f in FANS])
    c.append_block([_pay(CHAIN_LINKS[0], CHAIN_LINKS[1], 999 * ETH)])
    c.append_block([_pay(CHAIN_LINKS[1], CHAIN_LINKS[2], 998 * ETH)])
    c.append_block([_pay(CHAIN_LINKS[2], Z, 997 * ETH)])
    c.append_block([_pay(Z, EXCHANGE, 1_050 * ETH)])  # Z sweeps to an exchange: a deposit address
    for _ in range(3):
        c.append_block([])
    return c


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def api(db: Database, devchain_factory: Any) -> AsyncIterator[Api]:
    node = await devchain_factory(fan_and_chain())
    client = EvmChain(node.url, chain="ethereum", expected_chain_id=1337)
    await client.connect()
    async with db.pool.acquire() as conn:  # Z sweeps to it: Z is an exit, with a line in the report
        await label_store.upsert_labels(conn, [Label("ethereum", EXCHANGE, "Kraken", "exchange", "test")])
    try:
        async with running_api(db, {"ethereum": client}, Settings(workers=2, worker_lease_seconds=10.0)) as a:
            yield a
    finally:
        await client.close()


async def test_paths_answer_the_wide_long_chain_before_the_short_fan_out(api: Api, db: Database) -> None:
    trace = await api.run_trace({"chain": "ethereum", "seeds": [SEED], "policy": {}})
    _, body, _ = await api.call("GET", f"/v1/traces/{trace['id']}/paths?to={Z}&limit=1", expect=200)
    conforms("paths", body)
    assert body["seeds_reached"] and len(body["paths"]) == 1
    best = body["paths"][0]
    assert best["addresses"] == [SEED, *CHAIN_LINKS, Z], best["addresses"]
    assert best["hops"] == 4 and best["bottleneck"]["amount_raw"] == str(997 * ETH), best["bottleneck"]

    # More paths: the chain, then the 2-hop fan-out paths (0.999 ETH each), fewest hops first.
    _, body, _ = await api.call("GET", f"/v1/traces/{trace['id']}/paths?to={Z}&limit=5", expect=200)
    widths = [int(p["bottleneck"]["amount_raw"]) for p in body["paths"]]
    assert widths == [997 * ETH] + [999 * ETH // 1000] * 4, widths
    assert all(p["hops"] == 2 and p["addresses"][1] in FANS for p in body["paths"][1:])

    rep = await treport.build(db.pool, int(trace["id"]))
    line = next(e for e in rep.exits if e.address == Z)
    assert [s["to"] for s in line.path] == [*CHAIN_LINKS, Z], line.path
