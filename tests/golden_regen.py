"""Record what the engine decides on a fixed set of cases, for tests/acceptance/test_same_hops.py, and write it
to tests/data/golden/same_hops.json when run as a script:

    TRACER_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres python -m tests.golden_regen

Run it only for an intended change of behaviour, and say in the commit what changed and why.

The cases: `tracer demo` exactly as a user runs it (subprocess, default size, seed and policy:
mixers, swaps, bridges continued on avalanche, bsc and bitcoin), a generated case with services
of another seed, the mixer family (many wallets' deposits competing for one pool's withdrawals)
and a Bitcoin UTXO history with a CoinJoin. Each is traced on a database of its own; hops are
read back by SQL from the tables, so the record does not depend on where the code that wrote them
lives. Database ids are left out (they follow insertion order): a transfer is named by chain, tx
hash and position.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg

GOLDEN = Path(__file__).parent / "data" / "golden" / "same_hops.json"
DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"

_HOPS = """
SELECT h.chain, t.tx_hash, t.position, h.from_addr, h.to_addr, h.asset, t.amount AS transfer_amount,
       h.amount AS taint, h.status, h.reason, h.followed_reason, h.depth, h.kind, h.confidence
FROM hops h JOIN transfers t ON t.id = h.transfer_id
WHERE h.trace_id = $1"""

_EXITS = """
SELECT chain, to_addr, asset, sum(amount) AS amount, count(*) AS hops
FROM hops WHERE trace_id = $1 AND status = 'exit' GROUP BY chain, to_addr, asset"""

_ROLES = """
SELECT address, role, reason, depth FROM jobs WHERE trace_id = $1 AND kind = 'address'"""

_LINKS = """
SELECT t.chain, t.tx_hash AS deposit_tx, t.position AS deposit_position, l.withdrawal_tx,
       l.withdrawal_log_index, l.recipient, l.confidence, l.carried, l.status
FROM mixer_links l JOIN transfers t ON t.id = l.deposit_transfer_id
WHERE l.trace_id = $1"""


def _hop(r: asyncpg.Record) -> dict[str, Any]:
    return {"chain": r["chain"], "tx": r["tx_hash"], "position": r["position"], "from": r["from_addr"],
            "to": r["to_addr"], "asset": r["asset"], "amount": str(int(r["transfer_amount"])),
            "taint": str(int(r["taint"])), "status": r["status"], "reason": r["reason"],
            "followed_reason": r["followed_reason"], "depth": r["depth"], "kind": r["kind"],
            "confidence": round(float(r["confidence"]), 6)}


def hop_key(h: dict[str, Any]) -> str:
    return f"{h['chain']}:{h['tx']}:{h['position']}"


async def read_trace(url: str, trace_id: int | None = None) -> dict[str, Any]:
    """Hops, exits, address roles and mixer links of a trace (the last one if no id), sorted."""
    conn = await asyncpg.connect(url)
    try:
        if trace_id is None:
            trace_id = await conn.fetchval("SELECT max(id) FROM traces")
        status = await conn.fetchval("SELECT status FROM traces WHERE id = $1", trace_id)
        hops = sorted((_hop(r) for r in await conn.fetch(_HOPS, trace_id)), key=hop_key)
        exits = sorted(({"chain": r["chain"], "to": r["to_addr"], "asset": r["asset"], "amount": str(int(r["amount"])),
                         "hops": r["hops"]} for r in await conn.fetch(_EXITS, trace_id)),
                       key=lambda e: (e["chain"], e["to"], e["asset"]))
        roles = sorted(([r["address"], r["role"], r["reason"], r["depth"]] for r in await conn.fetch(_ROLES, trace_id)),
                       key=lambda x: x[0])
        links = sorted(([r["chain"], r["deposit_tx"], r["deposit_position"], r["withdrawal_tx"],
                         r["withdrawal_log_index"], r["recipient"], round(float(r["confidence"]), 6),
                         str(int(r["carried"])), r["status"]] for r in await conn.fetch(_LINKS, trace_id)),
                       key=lambda x: x[:5])
    finally:
        await conn.close()
    return {"status": status, "hop_count": len(hops), "hops": hops, "exits": exits, "roles": roles,
            "mixer_links": links}


@asynccontextmanager
async def fresh_database(server_url: str) -> AsyncIterator[str]:
    """An empty database of its own on `server_url` (the tracer migrates it), dropped afterwards."""
    from tracer.store.urls import with_database

    name = f"tracer_t_golden_{secrets.token_hex(5)}"
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield with_database(server_url, name)
    finally:
        conn = await asyncpg.connect(server_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


# Lines of `tracer demo`'s text output that are figures of the result (not of the clock or ports).
_DEMO_FIGURES = re.compile(
    r"^(Counts:|  left the seeds:|  laundering |  exits |  bridge destinations|  continuations|  payouts matched|"
    r"  seeds' dollars|  PASSED|Dollar check|\d+ JSON-RPC calls)")


async def demo_case(server_url: str) -> dict[str, Any]:
    """`tracer demo` (text output, every default) on a fresh database: its figures and its hops."""
    async with fresh_database(server_url) as url:
        env = {**os.environ, "DATABASE_URL": url}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tracer.cli", "demo", env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 600)
        assert proc.returncode == 0, err.decode()[-3000:] + out.decode()[-3000:]
        figures = [re.sub(r"; [\d.]+s in all$", "", line.rstrip()) for line in out.decode().splitlines()
                   if _DEMO_FIGURES.match(line)]
        return {"figures": figures, **await read_trace(url)}


async def _traced(server_url: str, scenario: Any, chain_client: Any, policy: dict[str, Any]) -> dict[str, Any]:
    from tracer.demo import load_scenario_labels
    from tracer.engine.service import create_trace
    from tracer.runner import run_with_workers
    from tracer.store.db import Database

    async with fresh_database(server_url) as url:
        db = await Database.connect(url)
        try:
            await load_scenario_labels(db.pool, scenario)
            trace_id = await create_trace(db.pool, chain_client, chain=scenario.chain, seeds=scenario.seeds,
                                          policy=policy, label="golden")
            status = await run_with_workers(db.pool, {scenario.chain: chain_client}, trace_id, workers=2,
                                            progress=False, timeout=300)
            assert status == "done", status
        finally:
            await db.close()
        return await read_trace(url, trace_id)


async def evm_case(server_url: str, scenario: Any) -> dict[str, Any]:
    from tracer.chains.evm import EvmChain
    from tracer.devchain.server import DevChainServer

    server = DevChainServer(scenario)
    url = await server.start("127.0.0.1", 0)
    client = EvmChain(url, chain=scenario.chain, expected_chain_id=scenario.chain_id)
    try:
        await client.connect()
        return await _traced(server_url, scenario, client, {})
    finally:
        await client.close()
        await server.stop()


async def bitcoin_case(server_url: str, scenario: Any) -> dict[str, Any]:
    from tracer.chains.bitcoin import EsploraChain
    from tracer.devchain.esplora import EsploraServer

    server = EsploraServer(scenario, page_size=4)
    url = await server.start("127.0.0.1", 0)
    client = EsploraChain(url, network=scenario.network)
    try:
        await client.connect()
        return await _traced(server_url, scenario, client, {})
    finally:
        await client.close()
        await server.stop()


def _scenarios() -> dict[str, tuple[str, Any]]:
    from tracer.devchain.bitcoin.records import BitcoinScenarioParams
    from tracer.devchain.bitcoin.story import generate as generate_bitcoin
    from tracer.devchain.mixer_family import MixerFamilyParams, generate_family
    from tracer.devchain.scenario import ScenarioParams, generate

    return {
        "services_1000_seed5": ("evm", generate(ScenarioParams.for_size(1000, seed=5, services=True))),
        "mixer_family_seed1": ("evm", generate_family(MixerFamilyParams(seed=1, users=60))),
        "bitcoin_coinjoin_seed11": ("bitcoin", generate_bitcoin(BitcoinScenarioParams(seed=11, peel_hops=15,
                                                                                      coinjoin=True))),
    }


async def record_all(server_url: str) -> dict[str, Any]:
    """Every case's record, as the golden file holds it."""
    cases: dict[str, Any] = {"demo": await demo_case(server_url)}
    for name, (kind, scenario) in _scenarios().items():
        cases[name] = await (evm_case if kind == "evm" else bitcoin_case)(server_url, scenario)
    return cases


def dump(cases: dict[str, Any]) -> str:
    """JSON with one hop (exit, role, link, figure) a line: a behaviour change reads as a line diff."""
    out = ["{"]
    for i, (name, case) in enumerate(sorted(cases.items())):
        out.append(f"{json.dumps(name)}: {{")
        fields = sorted(case.items())
        for j, (key, value) in enumerate(fields):
            comma = "," if j < len(fields) - 1 else ""
            if isinstance(value, list):
                items = [" " + json.dumps(v, sort_keys=True) for v in value]
                out.append(f" {json.dumps(key)}: [" + ("\n" + ",\n".join(items) + "\n ]" if items else "]") + comma)
            else:
                out.append(f" {json.dumps(key)}: {json.dumps(value)}{comma}")
        out.append("}" + ("," if i < len(cases) - 1 else ""))
    out.append("}")
    return "\n".join(out) + "\n"


def main() -> int:
    server_url = os.environ.get("TRACER_TEST_DATABASE_URL", DEFAULT_SERVER)
    cases = asyncio.run(record_all(server_url))
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN.write_text(dump(cases))
    for name, case in cases.items():
        print(f"{name}: {case['hop_count']} hops, {len(case['exits'])} exits, {len(case['mixer_links'])} mixer links")
    print(f"wrote {GOLDEN}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
