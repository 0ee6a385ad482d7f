"""Starting and following traces: the operations the CLI and the API share."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection, Sequence
from typing import Any, Protocol

import asyncpg

from tracer.addresses import InvalidAddress, normalize_address
from tracer.chains.bitcoin import NETWORKS, configured_network
from tracer.domain.chains import BITCOIN, TRON
from tracer.domain.errors import UserError
from tracer.domain.records import UnknownTrace
from tracer.engine.bridges import EVM_CHAINS
from tracer.engine.policy import Policy, PolicyError
from tracer.store import backward as backward_store
from tracer.store import labels as label_store
from tracer.store import traces as store

MAX_SEEDS = 10_000
# Chain names a trace may start on when the caller does not say which chains it has nodes for:
# every EVM chain the bridge decoders name, Bitcoin and Tron.
CHAINS = tuple(sorted({*EVM_CHAINS.values(), BITCOIN, TRON}))


def check_chain(chain: Any, configured: Collection[str] | None = None) -> str:
    """`chain` if a trace may start there: one of `configured` (the chains this process has nodes
    for) when given and not empty, else one of the known names (CHAINS)."""
    accepted = sorted(configured) if configured else list(CHAINS)
    if not isinstance(chain, str) or chain not in accepted:
        raise TraceInputError("chain", f"unsupported chain {chain!r}; accepted: {', '.join(accepted)}")
    return chain


class HeadSource(Protocol):
    async def head(self) -> int: ...

    async def block_times(self, numbers: Sequence[int]) -> dict[int, int]: ...


async def block_at_time(chain: HeadSource, when: int, head: int, *, after: bool) -> int:
    """The first block at or after `when` (after=True), or the last block at or before it.

    Binary search over block timestamps: about log2(head) requests, once per trace.
    """
    lo, hi = 0, head
    while lo < hi:
        mid = (lo + hi) // 2 if after else (lo + hi + 1) // 2
        t = (await chain.block_times([mid]))[mid]
        if after:
            lo, hi = (mid + 1, hi) if t < when else (lo, mid)
        else:
            lo, hi = (lo, mid - 1) if t > when else (mid, hi)
    # No block on that side of `when`: point past the chain so the window comes out empty.
    t = (await chain.block_times([lo]))[lo]
    if after and t < when:
        return head + 1
    if not after and t > when:
        return -1
    return lo


class TraceInputError(UserError, ValueError):
    """Bad input to a trace request; `field` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


# First character of a base58 address by version byte: P2PKH 0x00 "1", P2SH 0x05 "3"; testnet,
# signet and regtest share 0x6F ("m" or "n") and 0xC4 ("2").
_B58_FIRST = {0x00: "1", 0x05: "3", 0x6F: "mn", 0xC4: "2"}


def bitcoin_network(client: Any) -> str | None:
    """The Bitcoin network this process reads: the connected client's (checked against the
    server's genesis block), else the one it was built for, else TRACER_BITCOIN_NETWORK (default
    mainnet, as tracer.chains.factory builds clients). None: a client told not to check."""
    net = getattr(client, "network", None)
    name = getattr(net, "name", None) or getattr(client, "expected_network", None)
    if isinstance(name, str):
        return name
    if hasattr(client, "expected_network"):
        return None
    return configured_network()


def _network_mismatch(address: str, network: str) -> str | None:
    """Why a (valid) Bitcoin address cannot be on `network`, or None if it can. Every address
    names its network (bech32 prefix, base58 version byte): a testnet seed on a mainnet trace has
    no history there, and would otherwise fail only when a worker asks the server about it."""
    net = NETWORKS.get(network)
    if net is None:
        return None
    hrp = address.rpartition("1")[0] if address[:2].lower() in ("bc", "tb") else None
    if hrp in ("bc", "tb", "bcrt"):
        if hrp == net.bech32_hrp:
            return None
        kind = {"bc": "mainnet", "tb": "testnet/signet", "bcrt": "regtest"}[hrp]
    else:
        if address[:1] in _B58_FIRST[net.p2pkh_version] + _B58_FIRST[net.p2sh_version]:
            return None
        kind = "mainnet" if address[:1] in "13" else "testnet/signet/regtest"
    return f"a {kind} address, but this server reads Bitcoin {network} (TRACER_BITCOIN_NETWORK)"


def parse_seeds(seeds: Any, chain: str = "ethereum", network: str | None = None) -> list[str]:
    """Normalised, deduplicated seeds; on Bitcoin with `network`, every seed must be of it."""
    if not isinstance(seeds, list) or not seeds:
        raise TraceInputError("seeds", "must be a non-empty list of addresses")
    if len(seeds) > MAX_SEEDS:
        raise TraceInputError("seeds", f"at most {MAX_SEEDS} seeds per trace")
    out: list[str] = []
    for i, s in enumerate(seeds):
        try:
            address = normalize_address(chain, s)
        except InvalidAddress as exc:
            raise TraceInputError(f"seeds[{i}]", exc.reason) from None
        wrong = _network_mismatch(address, network) if chain == BITCOIN and network else None
        if wrong is not None:
            raise TraceInputError(f"seeds[{i}]", wrong)
        out.append(address)
    return sorted(set(out))


async def create_trace(
    pool: asyncpg.Pool,
    chain_client: HeadSource,
    *,
    chain: str,
    seeds: Sequence[Any],
    policy: Any = None,
    label: str | None = None,
    created_by: str | None = None,
    chains: Collection[str] | None = None,
    direction: str = backward_store.FORWARD,
) -> int:
    """Validate, fix the block range (the head now, so every worker sees the same chain), queue.

    `chains`: the chain names the caller has nodes for (see check_chain). `direction`: forward
    (where the seeds' money went) or backward (where the money they received came from)."""
    check_chain(chain, chains)
    if direction not in backward_store.DIRECTIONS:
        raise TraceInputError("direction", f"must be one of {', '.join(backward_store.DIRECTIONS)}")
    clean = parse_seeds(list(seeds), chain, bitcoin_network(chain_client) if chain == BITCOIN else None)
    try:
        pol = policy if isinstance(policy, Policy) else Policy.from_json(policy)
    except PolicyError as exc:
        raise TraceInputError(f"policy.{exc.field}".rstrip("."), exc.message) from None
    head = await chain_client.head()
    to_block = min(pol.to_block, head) if pol.to_block is not None else head
    if pol.watch and direction == backward_store.BACKWARD:
        raise TraceInputError("policy.watch", "a backward trace is not watched (subscribe to screening results)")
    if pol.watch:
        # A watching trace only ever reads confirmed blocks: the monitor extends it from there.
        to_block = min(to_block, max(0, head - pol.confirmations))
    from_block = pol.from_block
    if pol.from_time is not None:
        from_block = max(from_block, await block_at_time(chain_client, pol.from_time, head, after=True))
    if pol.to_time is not None:
        to_block = min(to_block, await block_at_time(chain_client, pol.to_time, head, after=False))
    if from_block > to_block:
        raise TraceInputError("policy.from_block", f"the window is empty (blocks {from_block}..{to_block}, "
                              f"head {head})")
    async with pool.acquire() as conn, conn.transaction():
        trace_id = await store.insert_trace(
            conn, chain=chain, seeds=clean, policy=pol.to_json(), label=label,
            from_block=from_block, to_block=to_block, created_by=created_by,
        )
        if direction != backward_store.FORWARD:  # in the same transaction: no worker sees it forward
            await backward_store.set_direction(conn, trace_id, direction)
        return trace_id


async def seeds_from_list(pool: asyncpg.Pool, chain: str, list_name: str, program: str | None = None) -> list[str]:
    """Every address of a sanctions list (optionally one programme family) as trace seeds."""
    if list_name != "ofac":
        raise TraceInputError("from_list", f"unknown list {list_name!r}; known: ofac")
    async with pool.acquire() as conn:
        seeds = await label_store.listed_addresses(conn, chain, source_prefix="ofac", program=program)
    if not seeds:
        raise TraceInputError("program", f"no {chain} address of list {list_name!r}"
                              + (f" in programme {program!r}" if program else "") + " (are the labels loaded?)")
    return seeds


async def wait_for(pool: asyncpg.Pool, trace_id: int, timeout: float = 600.0, poll: float = 0.2) -> str:
    """Wait until the trace leaves queued/running; return its final status (KeyError: it is gone)."""
    deadline = time.monotonic() + timeout
    while True:
        async with pool.acquire() as conn:
            status = await store.trace_status(conn, trace_id)
        if status is None:
            raise UnknownTrace(trace_id)
        if status not in ("queued", "running"):
            return status
        if time.monotonic() > deadline:
            raise TimeoutError(f"trace {trace_id} still {status} after {timeout:.0f}s")
        await asyncio.sleep(poll)


async def cancel_trace(pool: asyncpg.Pool, trace_id: int) -> bool:
    """Cancel a queued/running/watching trace; False if it is unknown or already finished."""
    async with pool.acquire() as conn:
        return await store.cancel_trace(conn, trace_id)


async def delete_trace(pool: asyncpg.Pool, trace_id: int) -> bool:
    """Cancel (so no worker claims it again) and delete a trace with its hops; False if unknown."""
    async with pool.acquire() as conn, conn.transaction():
        await store.cancel_trace(conn, trace_id)
        return await store.delete_trace(conn, trace_id)
