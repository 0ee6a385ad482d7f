"""Chain clients for long-running processes (`tracer worker`, `serve`, `monitor`, `trace`), held to
the chain id the database records for each chain name (`tracer.store.chains`).

A chain name is a promise about which chain its transfers come from: they are cached under it and
shared by every trace. So the first node seen for a name fixes its chain id, and a process whose
node for that name serves another id refuses to start instead of mixing two chains.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg

from tracer.chains.errors import WrongChain
from tracer.chains.factory import AnyChain, make_chain
from tracer.store import chains as chain_store


async def check_chain_id(pool: asyncpg.Pool, chain: str, chain_id: int, url: str) -> None:
    """Record `chain_id` for `chain` the first time; raise WrongChain if another one is recorded."""
    async with pool.acquire() as conn:
        pinned = await chain_store.pin_chain_id(conn, chain, chain_id, url)
    if pinned.chain_id != chain_id:
        first = f" at {pinned.first_node}" if pinned.first_node else ""
        raise WrongChain(
            f"the node for chain {chain!r} at {chain_store.node_name(url)} serves chain id {chain_id}, but this "
            f"database has {chain!r} as chain id {pinned.chain_id} (first seen{first} on "
            f"{pinned.first_seen:%Y-%m-%d %H:%M} UTC): refusing to mix two chains under one name; check the "
            "RPC URL for this chain"
        )


async def connect_checked(pool: asyncpg.Pool, chain: str, url: str, **options: Any) -> AnyChain:
    """A connected client for `chain` (EsploraChain for "bitcoin", else EvmChain) whose node serves the
    chain id recorded for the name (Bitcoin's: its network's magic number). What an EVM node said
    to the historical-state probe is recorded too (`node_state`)."""
    client = make_chain(chain, url, **options)
    try:
        await client.connect()
        assert client.chain_id is not None  # connect() sets it or raises
        await check_chain_id(pool, chain, client.chain_id, url)
        probe = getattr(client, "state_probe", None)
        if probe is not None:
            # Recorded beside the chain id: whether this node answers balances at old blocks.
            async with pool.acquire() as conn:
                await chain_store.record_node_state(
                    conn, chain, url, probe.historical_state, probe.block, probe.head, probe.detail)
    except BaseException:
        await client.close()
        raise
    return client


async def connect_all(pool: asyncpg.Pool, urls: Mapping[str, str], **options: Any) -> dict[str, AnyChain]:
    """connect_checked() for every chain name; nothing stays open if one of them is refused."""
    clients: dict[str, AnyChain] = {}
    try:
        for name, url in urls.items():
            clients[name] = await connect_checked(pool, name, url, **options)
    except BaseException:
        for client in clients.values():
            await client.close()
        raise
    return clients
