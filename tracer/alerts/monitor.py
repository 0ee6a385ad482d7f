"""Live following: extends watching traces as blocks are confirmed, retracts hops a reorg removed.

Each poll, per chain:

1. Reorg check. The monitor keeps the hashes of the blocks it followed (`chain_blocks`). If the
   node's hash of the highest of them (at or below the head) differs, the blocks were replaced:
   the highest recorded block that still matches is the fork point, and everything after it is
   retracted in one transaction (`store.follow.retract_after`: hop_retracted events, transfers and
   coverage dropped, windows moved back), to be followed again from the new chain.
2. Extension. A watching trace follows blocks up to `head - policy.confirmations`. Its live
   addresses (those it follows, where money may still sit) are fetched for the new range in one
   request set for all watching traces that share a window, the transfers are cached like a
   worker's, and only the addresses that sent something in the range go back on the frontier. The
   trace runs again (status running) and, once caught up, returns to watching
   (`traces.try_finish_trace`). Hop events come out of the workers' commits as usual.
3. Screening. Subscriptions with `screen_depth` get a screening_result event for each watched
   address that received money in the blocks confirmed since their last look (alerts/screening.py).

Block hashes are read before transfers: if the chain reorganises in between, the stale hashes are
what gets recorded and the next check sees the difference (the other order could record the new
chain's hashes next to the old chain's transfers and never notice).

One monitor acts per chain at a time (a session advisory lock); others wait as standbys.

When a chain's node pushes new heads (`eth_subscribe ["newHeads"]` over WebSocket,
tracer.chains.evm.heads), a new head wakes the monitor and that chain is stepped at once, so a
confirmed block does not wait up to `poll` seconds. Polling every `poll` seconds goes on beside it
as the fallback and safety net: a notice that never came, a node without WebSocket, a dropped
connection all end in the next poll. Steps never overlap and never queue up: heads pushed during a
step make one more step after it. `tracer monitor --ws URL` (env `TRACER_WS_URL`, per chain
`TRACER_WS_URL_<CHAIN>`) names the WebSocket; by default an EVM chain's RPC URL with ws/wss for
http/https is tried (Anvil and the devchain serve both on one port; Geth and Reth put WebSocket
on 8546 by default: give them --ws); `--ws off` polls only.
A refused upgrade is logged once (`event=heads_unavailable ... falling back to polling`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

import asyncpg

from tracer.alerts import screening
from tracer.domain.alerts import Extend, Retraction, WatchingTrace
from tracer.domain.transfers import NATIVE, Transfer, TransferQuery
from tracer.engine.policy import Policy
from tracer.store import follow
from tracer.store import traces as trace_store
from tracer.store.listen import ping

log = logging.getLogger("tracer.alerts")

_DEFAULT_CONFIRMATIONS = Policy().confirmations


class FollowSource(Protocol):
    """What the monitor needs of a chain client (tracer.chains.evm.EvmChain has it)."""

    async def head(self) -> int: ...

    async def transfers(self, query: TransferQuery) -> list[Transfer]: ...

    async def token_meta(self, tokens: Sequence[str]) -> dict[str, tuple[int | None, str | None]]: ...

    async def block_hashes(self, numbers: Iterable[int]) -> dict[int, str]: ...


class HeadStream(Protocol):
    """Pushed new heads of one chain (tracer.chains.evm.heads.HeadWatcher has it)."""

    def heads(self) -> AsyncIterator[int]: ...


@dataclass
class MonitorSettings:
    poll: float = 1.0  # seconds between looks at the head when no head is pushed (and as a safety net)
    keep_blocks: int = 256  # recorded hashes per chain: how deep a reorg can be located
    max_range: int = 2000  # blocks followed per step (catching up after downtime goes in steps)


@dataclass
class Extension:
    trace_id: int
    from_block: int
    to_block: int
    woken: int


@dataclass
class Step:
    chain: str
    head: int
    retraction: Retraction | None = None
    extensions: list[Extension] = field(default_factory=list)
    screened: int = 0  # screening_result events written (watched addresses' new inflows)


class Monitor:
    def __init__(self, pool: asyncpg.Pool, chains: Mapping[str, FollowSource], *,
                 settings: MonitorSettings | None = None, heads: Mapping[str, HeadStream] | None = None) -> None:
        self.pool = pool
        self.chains = chains
        self.settings = settings or MonitorSettings()
        self.heads = dict(heads or {})  # chain -> its node's pushed heads (tracer.chains.evm.heads)
        self.steps = 0
        self.last: dict[str, Step] = {}
        self.pushed: Counter[str] = Counter()  # heads pushed per chain
        self._noticed: set[str] = set()  # chains with a head pushed since their last step began
        self._wake = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Step every chain each `poll` seconds, and a chain at once when its node pushes a new head,
        until `stop`; act on a chain only while holding its advisory lock."""
        listeners = [asyncio.create_task(self._listen(chain, source), name=f"heads-{chain}")
                     for chain, source in self.heads.items() if chain in self.chains]
        lock_conn: asyncpg.Connection | None = None
        held: set[str] = set()
        next_poll = 0.0
        try:
            while not stop.is_set():
                started = time.monotonic()
                if started >= next_poll:
                    due, next_poll = set(self.chains), started + self.settings.poll
                else:
                    due = self._noticed & set(self.chains)
                # Notices from here on are for the next step: a flood of heads during this one
                # makes one more step after it, not one per head.
                self._noticed.clear()
                self._wake.clear()
                try:
                    if lock_conn is None or lock_conn.is_closed():
                        if lock_conn is not None:
                            with contextlib.suppress(Exception):
                                await self.pool.release(lock_conn)
                        lock_conn, held = await self.pool.acquire(), set()
                    await ping(lock_conn)
                    for chain in sorted(due):
                        if chain not in held:
                            if await follow.try_lead_chain(lock_conn, chain):
                                held.add(chain)
                                log.info("event=monitor_leader chain=%s", chain)
                            else:
                                continue
                        await self.step(chain)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a node or database hiccup: log, keep polling
                    log.warning("event=monitor_step_failed error=%r", exc)
                    if isinstance(exc, (asyncpg.InterfaceError, asyncpg.PostgresConnectionError, OSError)) \
                            and lock_conn is not None and lock_conn.is_closed():
                        held = set()
                await self._sleep(stop, next_poll - time.monotonic())
        finally:
            for task in listeners:
                task.cancel()
            await asyncio.gather(*listeners, return_exceptions=True)
            if lock_conn is not None:
                with contextlib.suppress(Exception):
                    await follow.give_up_leads(lock_conn)
                with contextlib.suppress(Exception):
                    await self.pool.release(lock_conn)

    async def _sleep(self, stop: asyncio.Event, seconds: float) -> None:
        """Until `stop`, a head notice or `seconds` pass, whichever comes first."""
        if self._wake.is_set() or seconds <= 0:
            return
        waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())]
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def _listen(self, chain: str, source: HeadStream) -> None:
        """Turn one chain's pushed heads into notices for the loop in `run` (a source that ends, or
        fails, leaves the chain to polling)."""
        try:
            async for _ in source.heads():
                self.pushed[chain] += 1
                self._noticed.add(chain)
                self._wake.set()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug in a head source must not end the monitor: polling goes on
            log.error("event=heads_failed chain=%s error=%r: polling only", chain, exc)

    async def step(self, chain: str) -> Step:
        """One look at one chain: reorg check, then extend the watching traces that are behind."""
        client = self.chains[chain]
        head = await client.head()
        step = Step(chain, head)
        async with self.pool.acquire() as conn:
            recorded = await follow.recorded_blocks(conn, chain, self.settings.keep_blocks)
        if recorded:
            step.retraction = await self._check_reorg(chain, client, head, recorded)
        async with self.pool.acquire() as conn:
            traces = await follow.watching_traces(conn, chain)
        groups: dict[tuple[int, int], list[WatchingTrace]] = defaultdict(list)
        for row in traces:
            confirmations = int(row.policy.get("confirmations", _DEFAULT_CONFIRMATIONS))
            target = min(head - confirmations, row.to_block + self.settings.max_range)
            if target > row.to_block:
                groups[(row.to_block, target)].append(row)
        for (old, target), rows in sorted(groups.items()):
            step.extensions.extend(await self._extend(chain, client, old, target, rows))
        step.screened = await screening.screen_new_inflows(self.pool, chain, client, head)
        self.steps += 1
        self.last[chain] = step
        return step

    async def _check_reorg(self, chain: str, client: FollowSource, head: int,
                           recorded: Sequence[tuple[int, str]]) -> Retraction | None:
        ours = dict(recorded)
        probe = [n for n, _ in recorded if n <= head]  # highest first
        if not probe:
            return None  # the node is behind everything we followed (a lagging replica): wait
        top = probe[0]
        now = await client.block_hashes([top])
        if top not in now or now[top] == ours[top]:
            return None  # same block (blocks link to parents, so everything below matches too)
        theirs = await client.block_hashes(probe)
        if len(theirs) < len(probe):
            return None  # the node could not answer for all of them: decide next time
        matching = [n for n in probe if theirs[n] == ours[n]]
        fork = max(matching) if matching else min(ours) - 1
        if not matching:
            log.error("event=reorg_beyond_window chain=%s recorded_from=%d: retracting from there", chain, min(ours))
        log.warning("event=reorg chain=%s fork_block=%d replaced=%d..%d head=%d", chain, fork, fork + 1, top, head)
        async with self.pool.acquire() as conn:
            result = await follow.retract_after(conn, chain, fork, old_hash=ours[top], new_hash=now[top])
        log.warning("event=hops_retracted chain=%s fork_block=%d hops=%d traces=%s transfers=%d", chain, fork,
                    result.hops, ",".join(map(str, sorted(result.traces))) or "-", result.transfers)
        return result

    async def _extend(self, chain: str, client: FollowSource, old: int, target: int,
                      rows: Sequence[WatchingTrace]) -> list[Extension]:
        ids = [r.id for r in rows]
        numbers = {old, *range(max(old + 1, target - self.settings.keep_blocks + 1), target + 1)}
        hashes = await client.block_hashes(numbers)
        if len(hashes) < len(numbers):
            return []  # the node does not have them all yet (a lagging replica): next poll
        async with self.pool.acquire() as conn:
            await follow.record_blocks(conn, chain, hashes, self.settings.keep_blocks)
            depth = await follow.live_addresses(conn, ids)
        addresses = sorted({a for mine in depth.values() for a in mine})
        transfers: list[Transfer] = []
        if addresses:
            async with self.pool.acquire() as conn:
                known = await trace_store.coverage(conn, chain, addresses)
            # Normally every live address is cached up to `old`; one that is not (coverage cut
            # back by a reorg) is fetched from where its cache ends, so coverage stays contiguous.
            lagging = [hi + 1 for lo, hi in known.values() if hi < old]
            fetch_from = max(min([old + 1, *lagging]), min(r.from_block for r in rows))
            asked = TransferQuery(addresses, fetch_from, target, outgoing=True, incoming=True)
            transfers = await client.transfers(asked)
            transfers = await self._with_token_meta(client, transfers)
            async with self.pool.acquire() as conn, conn.transaction():
                await trace_store.store_transfers(conn, transfers)
                await trace_store.set_coverage(conn, chain, addresses, fetch_from, target)
        moves: list[Extend] = []
        for row in rows:
            mine = depth.get(row.id, {})
            seeds = set(row.seeds)
            senders: set[str] = set()
            seed_out: dict[str, int] = defaultdict(int)
            for t in transfers:
                if t.block_number <= old or t.from_address == t.to_address:
                    continue
                if t.from_address in mine:
                    senders.add(t.from_address)
                if t.from_address in seeds and t.to_address not in seeds:
                    seed_out[t.asset] += t.amount
            moves.append(Extend(row.id, tuple((a, mine[a]) for a in sorted(senders)), dict(seed_out)))
        # Every trace of the window in one transaction: one commit, not one per trace.
        async with self.pool.acquire() as conn:
            moved = set(await follow.extend_traces(conn, old, target, moves))
        out = [Extension(m.trace_id, old + 1, target, len(m.wake)) for m in moves if m.trace_id in moved]
        for e in out:
            log.info("event=trace_extended trace=%d blocks=%d..%d woken=%d", e.trace_id, old + 1, target, e.woken)
        return out

    @staticmethod
    async def _with_token_meta(client: FollowSource, transfers: list[Transfer]) -> list[Transfer]:
        # Same as the worker: reports and events say "1,250 USDT", not raw units of a contract.
        tokens = sorted({t.asset for t in transfers if t.asset != NATIVE and t.symbol is None})
        if not tokens:
            return transfers
        meta = await client.token_meta(tokens)
        return [replace(t, decimals=meta[t.asset][0], symbol=meta[t.asset][1])
                if t.asset in meta and t.symbol is None else t for t in transfers]
