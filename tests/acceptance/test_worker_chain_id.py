"""A chain name stands for one chain id: the first node seen for a name records its id in the
database, and a `tracer worker` / `serve` / `monitor` whose node for that name serves another id
refuses to start with a clear error (real processes, two devchains of different chain ids)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures_chain import DevChainFactory
from tracer.chains.errors import WrongChain
from tracer.devchain.chain import Chain
from tracer.nodes import check_chain_id, connect_checked
from tracer.store import chains as chain_store
from tracer.store.db import Database

pytestmark = pytest.mark.asyncio(loop_scope="session")

ROOT = Path(__file__).resolve().parents[2]
OTHER_CHAIN_ID = 4242


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACER_RPC_URL", "DATABASE_URL"))}
    env.update(TRACER_LOG_LEVEL="WARNING", **extra)
    return env


async def _start(*args: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tracer.cli", *args, cwd=ROOT, env=env, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE)


async def _refused(*args: str, env: dict[str, str]) -> str:
    """Run a command that must exit on its own with status 2; return its stderr."""
    proc = await _start(*args, env=env)
    assert proc.stderr is not None
    err = (await asyncio.wait_for(proc.stderr.read(), 90)).decode()
    assert await asyncio.wait_for(proc.wait(), 30) == 2, err
    assert "Traceback" not in err, err
    return err


async def _runs_until_ready(*args: str, env: dict[str, str], ready: str) -> None:
    """Start a long-running command, wait for its ready line, stop it with SIGTERM (exit 0)."""
    proc = await _start(*args, env=env)
    assert proc.stderr is not None
    seen = ""
    try:
        while ready not in seen:
            line = await asyncio.wait_for(proc.stderr.readline(), 90)
            assert line, f"exited early ({await proc.wait()}): {seen}"
            seen += line.decode()
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, seen


async def _other_chain(devchain_factory: DevChainFactory) -> str:
    return (await devchain_factory(Chain(chain_id=OTHER_CHAIN_ID))).url


async def test_node_names_keep_no_secret() -> None:
    assert chain_store.node_name("https://user:pw@mainnet.infura.io/v3/abcdef?key=1") == "https://mainnet.infura.io"
    assert chain_store.node_name("http://127.0.0.1:8545/") == "http://127.0.0.1:8545"
    assert chain_store.node_name("http://[::1]:8545") == "http://[::1]:8545"


async def test_the_first_id_seen_is_recorded_and_another_refused(db: Database) -> None:
    async with db.pool.acquire() as conn:
        assert await chain_store.recorded_chain_id(conn, "pinned-test") is None
    await check_chain_id(db.pool, "pinned-test", 10, "https://k:secret@node.example/v3/key")
    await check_chain_id(db.pool, "pinned-test", 10, "http://127.0.0.1:1")  # the same id again: fine
    with pytest.raises(WrongChain) as err:
        await check_chain_id(db.pool, "pinned-test", 11, "http://127.0.0.1:2")
    message = str(err.value)
    assert "'pinned-test'" in message and "chain id 11" in message and "chain id 10" in message
    assert "https://node.example" in message and "secret" not in message and "/v3/" not in message
    async with db.pool.acquire() as conn:
        pinned = await chain_store.recorded_chain_id(conn, "pinned-test")
        assert pinned is not None and pinned.chain_id == 10 and pinned.first_node == "https://node.example"
        assert await chain_store.forget_chain_id(conn, "pinned-test")
        assert await chain_store.recorded_chain_id(conn, "pinned-test") is None


async def test_two_processes_seeing_a_new_name_at_once_agree(db: Database) -> None:
    results = await asyncio.gather(*(check_chain_id(db.pool, "raced", cid, "http://127.0.0.1:1")
                                     for cid in (21, 22, 21, 22)), return_exceptions=True)
    async with db.pool.acquire() as conn:
        pinned = await chain_store.recorded_chain_id(conn, "raced")
    assert pinned is not None
    for cid, result in zip((21, 22, 21, 22), results, strict=True):
        assert (result is None) == (cid == pinned.chain_id), (cid, result)


async def test_connect_checked_refuses_a_node_of_another_chain(db: Database, devchain_factory: DevChainFactory,
                                                               small_scenario: Any) -> None:
    right = await devchain_factory(small_scenario)
    client = await connect_checked(db.pool, "checked", right.url)
    await client.close()
    with pytest.raises(WrongChain, match=f"serves chain id {OTHER_CHAIN_ID}"):
        await connect_checked(db.pool, "checked", await _other_chain(devchain_factory))


async def test_worker_serve_and_monitor_refuse_a_node_of_another_chain(
    db: Database, devchain_factory: DevChainFactory, small_scenario: Any
) -> None:
    right = (await devchain_factory(small_scenario)).url
    wrong = await _other_chain(devchain_factory)
    env = _env()
    # The first worker records ethereum = the scenario's chain id.
    await _runs_until_ready("worker", "--database-url", db.url, "--rpc", right, env=env, ready="tracer worker:")
    async with db.pool.acquire() as conn:
        pinned = await chain_store.recorded_chain_id(conn, "ethereum")
    assert pinned is not None and pinned.chain_id == small_scenario.chain_id

    # Then, all at once (independent processes; a start costs seconds of CPU): each command with
    # the wrong node is refused, and another name is another chain: its node may serve another
    # id, recorded for that name.
    *refusals, _ = await asyncio.gather(
        *(_refused(*command, "--database-url", db.url, "--rpc", wrong, env=env)
          for command in (("worker",), ("serve", "--port", "0"), ("monitor",))),
        _runs_until_ready("worker", "--database-url", db.url, "--rpc", right,
                          env=_env(TRACER_RPC_URL_SIDECHAIN=wrong), ready="tracer worker:"))
    assert len(refusals) == 3
    for err in refusals:
        assert f"serves chain id {OTHER_CHAIN_ID}" in err and f"chain id {small_scenario.chain_id}" in err, err
        assert "refusing" in err and "'ethereum'" in err, err
    async with db.pool.acquire() as conn:
        side = await chain_store.recorded_chain_id(conn, "sidechain")
    assert side is not None and side.chain_id == OTHER_CHAIN_ID
    # And the sidechain name now refuses the first node.
    err = await _refused("worker", "--database-url", db.url, "--rpc", right, env=_env(TRACER_RPC_URL_SIDECHAIN=right))
    assert "'sidechain'" in err and f"serves chain id {small_scenario.chain_id}" in err, err
