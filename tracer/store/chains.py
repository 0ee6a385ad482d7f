"""SQL for the chain id behind each chain name (schemas/migrations/007_chain_ids.sql).

The first process that connects a node for a chain name records the node's chain id; every later
one compares against it. A worker pointed at a node of another chain would otherwise put that
chain's transfers in the shared cache under the name, and every trace on it would follow them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from tracer.chains.urls import node_name as node_name  # where it was first: callers name it from here
from tracer.store.sql import Conn


@dataclass(frozen=True, slots=True)
class PinnedChain:
    chain: str
    chain_id: int
    first_node: str | None
    first_seen: datetime


async def recorded_chain_id(conn: Conn, chain: str) -> PinnedChain | None:
    row = await conn.fetchrow(
        "SELECT chain, chain_id, first_node, first_seen FROM chain_ids WHERE chain = $1", chain)
    if row is None:
        return None
    return PinnedChain(row["chain"], int(row["chain_id"]), row["first_node"], row["first_seen"])


async def pin_chain_id(conn: Conn, chain: str, chain_id: int, node_url: str | None = None) -> PinnedChain:
    """Record `chain_id` for `chain` unless one is recorded already; return what is recorded.

    The caller compares: a different id in the answer means this node serves another chain.
    Two processes seeing a new name at once both land on the first insert (ON CONFLICT)."""
    await conn.execute(
        """INSERT INTO chain_ids (chain, chain_id, first_node) VALUES ($1, $2, $3)
           ON CONFLICT (chain) DO NOTHING""",
        chain, chain_id, node_name(node_url) if node_url else None,
    )
    pinned = await recorded_chain_id(conn, chain)
    if pinned is None:  # only if someone deleted the row between the two statements
        raise RuntimeError(f"chain id of {chain!r} vanished while being recorded")
    return pinned


async def forget_chain_id(conn: Conn, chain: str) -> bool:
    """Drop the record (after moving a chain name to another network on purpose)."""
    done = await conn.execute("DELETE FROM chain_ids WHERE chain = $1", chain)
    return bool(done.endswith(" 1"))


# ---------------------------------------------------------------------------- block pins (008)


async def pin_block(conn: Conn, chain: str, number: int, block_hash: str) -> str:
    """Record `block_hash` for block `number` unless a hash is recorded; return the recorded one."""
    recorded: str | None = await conn.fetchval(
        """INSERT INTO block_pins (chain, number, hash) VALUES ($1, $2, $3)
           ON CONFLICT (chain, number) DO UPDATE SET hash = block_pins.hash
           RETURNING hash""",
        chain, number, block_hash,
    )
    if recorded is None:  # RETURNING of an upsert always yields the row
        raise RuntimeError(f"no pin recorded for block {number} of {chain!r}")
    return recorded


async def block_pin(conn: Conn, chain: str, number: int) -> str | None:
    """The hash recorded for block `number`, if any."""
    found: str | None = await conn.fetchval(
        "SELECT hash FROM block_pins WHERE chain = $1 AND number = $2", chain, number)
    return found


async def pins_below(conn: Conn, chain: str, below: int, limit: int) -> list[tuple[int, str]]:
    """The highest recorded pins under `below`, highest first (to locate a reorg's fork)."""
    rows = await conn.fetch(
        "SELECT number, hash FROM block_pins WHERE chain = $1 AND number < $2 ORDER BY number DESC LIMIT $3",
        chain, below, limit,
    )
    return [(int(r["number"]), str(r["hash"])) for r in rows]


async def prune_pins(conn: Conn, chain: str, below: int) -> None:
    await conn.execute("DELETE FROM block_pins WHERE chain = $1 AND number < $2", chain, below)


async def forget_pins_after(conn: Conn, chain: str, fork: int) -> None:
    await conn.execute("DELETE FROM block_pins WHERE chain = $1 AND number > $2", chain, fork)


async def traces_reading_past(conn: Conn, chain: str, fork: int) -> list[int]:
    """Traces in their historical pass on `chain` that have started reading a window past `fork`."""
    rows = await conn.fetch(
        """SELECT id FROM traces t WHERE chain = $1 AND status IN ('queued', 'running') AND to_block > $2
             AND (started_at IS NOT NULL OR EXISTS (SELECT 1 FROM jobs j WHERE j.trace_id = t.id AND j.attempts > 0))
           ORDER BY id FOR UPDATE""",
        chain, fork,
    )
    return [int(r["id"]) for r in rows]


# ---------------------------------------------------------------------------- node state (009)


@dataclass(frozen=True, slots=True)
class NodeState:
    chain: str
    node: str
    historical_state: bool
    probe_block: int
    head: int
    detail: str
    checked_at: datetime


async def record_node_state(
    conn: Conn, chain: str, node_url: str, historical_state: bool, probe_block: int, head: int, detail: str
) -> None:
    """What a node answered to the first-contact state probe; the latest answer per node wins
    (an operator may turn a full node into an archive one)."""
    await conn.execute(
        """INSERT INTO node_state (chain, node, historical_state, probe_block, head, detail)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (chain, node) DO UPDATE SET historical_state = EXCLUDED.historical_state,
             probe_block = EXCLUDED.probe_block, head = EXCLUDED.head, detail = EXCLUDED.detail, checked_at = now()""",
        chain, node_name(node_url), historical_state, probe_block, head, detail,
    )


async def node_states(conn: Conn, chain: str) -> list[NodeState]:
    rows = await conn.fetch(
        """SELECT chain, node, historical_state, probe_block, head, detail, checked_at FROM node_state
           WHERE chain = $1 ORDER BY node""", chain)
    return [NodeState(r["chain"], r["node"], r["historical_state"], int(r["probe_block"]), int(r["head"]),
                      r["detail"], r["checked_at"]) for r in rows]
