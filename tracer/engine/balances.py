"""Prior balances for the haircut and FIFO models: from the node's state, or derived from history.

The haircut and FIFO models need each address's balance of each asset just before its first flagged inflow
(clean money already in the wallet dilutes the flagged share). An archive node answers that
directly (`eth_getBalance` / `balanceOf` at block fb - 1): method `node_state`. A full node, Anvil
by default and most public endpoints keep only recent state, so the balance is derived instead
(method `derived_from_history`), exactly, from what those nodes still serve:

    balance before fb = balance at the head
                        - what the address received in [fb, head]
                        + what it sent in [fb, head]
                        + the fees of the transactions it sent in [fb, head]   (native coin only)

The transfers of [fb, to_block] are the ones the worker already holds for the address (the trace
reads them anyway); only the tail (to_block, head] and the fees (receipts: gasUsed x
effectiveGasPrice, one batch) are extra requests, for the whole batch of addresses at once.

A balance change no transaction shows moves the derived balance away from the real one by its
amount. What the history can tell, the trace treats as incomplete and gives NO clean prior balance,
the most conservative choice for an investigator (the flagged share of what the address sends on
is then the largest the transfers allow: its exits are never under-reported, possibly
over-reported by the clean money that was there):

- a derived balance below zero (money left, or a transfer was counted that the balance does not
  hold: a node-side `setBalance`, a missed transaction): that address;
- a node that shows no internal calls (no trace_* or debug_*): ETH forwarded by contracts is
  missing from every history, so every address.

What it cannot tell: money that arrives with no transaction (validator withdrawals, fee-recipient
rewards, a node-side `setBalance` gift) makes the derived balance larger than the real one, so the
flagged share is diluted by money that was not there. Such addresses (validators, block builders)
are rarely on a laundering path; an archive node has no such gap. The trace's
`balance_method_reason` says how many addresses were treated conservatively.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from tracer.chains.errors import StateUnavailable
from tracer.domain.transfers import NATIVE, Transfer, TransferQuery
from tracer.engine.taint import CLEAN_MONEY_MODELS

log = logging.getLogger("tracer.balances")

NODE_STATE = "node_state"
DERIVED = "derived_from_history"
NOT_NEEDED = "not_needed"
# Warm-up reads ride in one Multicall3 call with the batch's own (tracer.chains.evm.state.PER_MULTICALL).
_WARM = 300
_HEAD_TRIES = 3  # a node keeping only the newest state refuses a head that moved meanwhile


class BalanceSource(Protocol):
    """What reading prior balances needs from a chain client (EvmChain provides it)."""

    async def native_balances(self, queries: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]: ...

    async def token_balances(
        self, queries: Sequence[tuple[str, str, int]]
    ) -> dict[tuple[str, str, int], int]: ...


@runtime_checkable
class BlockBalances(Protocol):
    """Native and token balances in one read, so all those of one block share a call
    (EvmChain: Multicall3, tracer.chains.evm.state); asset NATIVE or a token address."""

    async def balances_at(
        self, queries: Iterable[tuple[str, str, int]], optional: Iterable[tuple[str, str, int]] = (),
    ) -> dict[tuple[str, str, int], int]: ...


async def read_balances(
    chain: BalanceSource, native_q: Sequence[tuple[str, int]], token_q: Sequence[tuple[str, str, int]],
    optional: Sequence[tuple[str, str, int]] = (),
) -> tuple[dict[tuple[str, int], int], dict[tuple[str, str, int], int]]:
    """Native balances (a read that fails raises) and token balances (one that reverts is left
    out), at their blocks: in one read where the chain can, else one per kind. `optional` reads
    ride along only where that read makes a call anyway (BlockBalances)."""
    if isinstance(chain, BlockBalances):
        got = await chain.balances_at([(a, NATIVE, b) for a, b in native_q] + list(token_q), optional)
        return ({(a, b): v for (a, t, b), v in got.items() if t == NATIVE},
                {k: v for k, v in got.items() if k[1] != NATIVE})
    native = await chain.native_balances(native_q) if native_q else {}
    tokens = await chain.token_balances(token_q) if token_q else {}
    return native, tokens


@runtime_checkable
class HistorySource(Protocol):
    """What deriving balances needs on top (EvmChain provides it; a client without it is asked
    for node state only)."""

    historical_state: bool | None

    async def head(self) -> int: ...

    async def transfers(self, query: TransferQuery) -> list[Transfer]: ...

    async def fees_paid(self, addresses: Iterable[str], from_block: int, to_block: int) -> Sequence[Any]: ...


@dataclass(frozen=True)
class PriorBalances:
    balances: dict[str, dict[str, int]]
    method: str  # NODE_STATE | DERIVED
    reason: str
    conservative: tuple[str, ...] = field(default=())  # derived balances that did not add up: 0


def node_state_reason() -> str:
    return ("the node answered balances before each address's first flagged inflow (archive state): ETH at "
            "that block, tokens at one block per batch less the address's Transfer logs in between")


def planned(chain: object, taint_model: str) -> tuple[str, str]:
    """The method a trace starting on `chain` will use, and why (recorded when it starts)."""
    if taint_model not in CLEAN_MONEY_MODELS:
        return NOT_NEEDED, f"the {taint_model} model ignores clean balances"
    probe = getattr(chain, "state_probe", None)
    if getattr(chain, "historical_state", None) is False:
        return DERIVED, _derived_reason(probe.describe() if probe is not None else "the node keeps no old state")
    return NODE_STATE, node_state_reason()


def _derived_reason(why: str) -> str:
    return (f"{why}; each prior balance is the balance at the head minus the transfers since, plus the "
            "fees (receipts) of the transactions the address sent since")


async def prior_balances(
    chain: BalanceSource,
    needs: Mapping[str, tuple[int, set[str]]],
    history: Mapping[str, Sequence[Transfer]],
    to_block: int,
    *,
    whole_history: bool = False,
    warm: Sequence[tuple[str, str, int]] = (),
) -> PriorBalances:
    """Each address's balance per asset at the end of block fb - 1, for needs[a] = (fb, assets).

    `history[a]` holds the address's transfers of [fb, to_block] (both directions), all of them
    when `whole_history` (the forward trace's timelines): token balances are then read at
    to_block, the same block for every batch of the trace, and `warm` (address, asset, block of
    a flagged inflow: the next batch's likely wallets and their fb) are read in the same call
    where it is made anyway (tokens at to_block, ETH at that block - 1), so that batch finds
    them in the client's cache. Otherwise token balances are read at the batch's latest fb - 1."""
    wanted = {a: (fb, assets) for a, (fb, assets) in needs.items() if fb > 0}
    if not wanted:
        return PriorBalances({}, NODE_STATE, node_state_reason())
    source = chain if isinstance(chain, HistorySource) else None
    if source is not None and source.historical_state is False:
        probe = getattr(chain, "state_probe", None)
        why = probe.describe() if probe is not None else "the node keeps no old state"
        return await derive(source, chain, wanted, history, to_block, why)
    try:
        return await _from_state(chain, wanted, history, to_block if whole_history else None, warm)
    except StateUnavailable as exc:
        if source is None:
            raise
        log.info("event=balances_derived reason=%r", str(exc))
        return await derive(source, chain, wanted, history, to_block, str(exc))


async def _from_state(
    chain: BalanceSource, needs: Mapping[str, tuple[int, set[str]]], history: Mapping[str, Sequence[Transfer]],
    carry_from: int | None = None, warm: Sequence[tuple[str, str, int]] = (),
) -> PriorBalances:
    """Native balances at fb - 1 (what the ETH history cannot say without every fee paid); token
    balances at one block for the whole batch, the latest fb - 1 of its addresses, carried back
    to each address's fb - 1 through its Transfer logs in between (`history`: the trace holds
    them anyway), so a batch reads all its balances in one call per distinct native block plus
    one (Multicall3, tracer.chains.evm.state) instead of one per address and block. Where the
    logs cannot be the whole story the token balance is read at fb - 1 itself (_carried_back)."""
    native_q = [(a, fb - 1) for a, (fb, assets) in needs.items() if NATIVE in assets]
    token_needs = [(a, asset, fb) for a, (fb, assets) in needs.items() for asset in sorted(assets) if asset != NATIVE]
    shared = carry_from if carry_from is not None else max((fb for _, _, fb in token_needs), default=1) - 1
    token_q = [(a, asset, shared) for a, asset, _ in token_needs]
    optional = [(a, t, b - 1 if t == NATIVE else shared) for a, t, b in warm[:_WARM]]
    native, at_shared = await read_balances(chain, native_q, token_q, optional)
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for (a, _block), value in native.items():
        out[a][NATIVE] = value
    exact: list[tuple[str, str, int]] = []
    for a, asset, fb in token_needs:
        if (a, asset, shared) not in at_shared:
            continue  # no balanceOf there (not a token yet, or not one at all): no clean balance
        carried = _carried_back(a, asset, fb, shared, at_shared[(a, asset, shared)], history.get(a, ()))
        if carried is None:
            exact.append((a, asset, fb - 1))
        else:
            out[a][asset] = carried
    if exact:
        _, tokens = await read_balances(chain, [], exact)
        for (a, asset, _block), value in tokens.items():
            out[a][asset] = value
    return PriorBalances(dict(out), NODE_STATE, node_state_reason())


def _carried_back(a: str, asset: str, fb: int, block: int, balance: int, history: Sequence[Transfer]) -> int | None:
    """`a`'s balance of token `asset` at the end of fb - 1, from its balance at the end of
    `block` (>= fb - 1) less the Transfer logs of [fb, block]; None where those logs may not be
    the whole story: a balance that would have gone below zero on the way (money left without
    a log), or a transfer with the token contract itself in the window (WETH's deposit and
    withdraw mint and burn with no Transfer log; other wrappers do the same)."""
    moves = sorted((t for t in history if fb <= t.block_number <= block), key=lambda t: t.order)
    if any(asset in (t.from_address, t.to_address) for t in moves):
        return None
    mine = [t for t in moves if t.asset == asset and t.from_address != t.to_address]
    prior = balance - sum(t.amount if t.to_address == a else -t.amount for t in mine)
    running = prior
    for t in mine:
        running += t.amount if t.to_address == a else -t.amount
        if running < 0:
            return None
    return prior if prior >= 0 else None


async def derive(
    source: HistorySource,
    chain: BalanceSource,
    needs: Mapping[str, tuple[int, set[str]]],
    history: Mapping[str, Sequence[Transfer]],
    to_block: int,
    why: str,
) -> PriorBalances:
    """Balances before each fb from the balances at the head and the history since (module doc)."""
    addresses = sorted(needs)
    # ETH moved by contracts is invisible on a node without trace_* or debug_*: no native history
    # there can be trusted, so no address gets clean ETH (tokens move by logs: still exact).
    blind = str(getattr(source, "path", "")).endswith("(no internal calls)")
    native_addrs = [a for a in addresses if NATIVE in needs[a][1] and not blind]
    token_q = [(a, t) for a in addresses for t in sorted(needs[a][1]) if t != NATIVE]
    for attempt in range(_HEAD_TRIES):
        head = await source.head()
        try:
            native_now, tokens_now = await read_balances(
                chain, [(a, head) for a in native_addrs], [(a, t, head) for a, t in token_q])
            break
        except StateUnavailable:
            if attempt == _HEAD_TRIES - 1:
                raise
    flows: dict[str, list[Transfer]] = {a: [t for t in history.get(a, ()) if t.block_number <= head]
                                        for a in addresses}
    if head > to_block:
        wanted = set(flows)
        for t in await source.transfers(TransferQuery(addresses, to_block + 1, head, outgoing=True, incoming=True)):
            for a in {t.from_address, t.to_address} & wanted:
                flows[a].append(t)
    lo = min(needs[a][0] for a in addresses)
    fees: dict[str, int] = defaultdict(int)
    native_set = frozenset(native_addrs)
    if native_addrs:
        for f in await source.fees_paid(native_addrs, lo, head):
            if f.address in native_set and f.block_number >= needs[f.address][0]:
                fees[f.address] += f.fee

    out: dict[str, dict[str, int]] = defaultdict(dict)
    conservative: list[str] = []
    for a in addresses:
        fb, assets = needs[a]
        now: dict[str, int] = {}
        if a in native_set:
            now[NATIVE] = native_now[(a, head)]
        for asset in assets:
            if asset != NATIVE and (a, asset, head) in tokens_now:
                now[asset] = tokens_now[(a, asset, head)]
        delta: dict[str, int] = defaultdict(int)
        for t in flows[a]:
            if t.block_number < fb or t.asset not in now:
                continue
            if t.to_address == a:
                delta[t.asset] += t.amount
            if t.from_address == a:
                delta[t.asset] -= t.amount
        short = False
        for asset, value in now.items():
            before = value - delta[asset] + (fees[a] if asset == NATIVE else 0)
            if before < 0:
                short = True
                before = 0
            out[a][asset] = before
        if blind and NATIVE in assets:
            out[a][NATIVE] = 0
            short = True
        if short:
            conservative.append(a)
    reason = _derived_reason(why)
    if blind:
        reason += ("; but this node shows no internal calls (no trace_* or debug_* methods), so ETH histories "
                   "are incomplete: no address was given a clean ETH balance, the most conservative taint")
    elif conservative:
        reason += (f"; {len(conservative)} address(es) whose history does not add up (they hold less than their "
                   "transfers since explain) were given no clean balance, the most conservative taint")
        log.info("event=balances_conservative addresses=%d first=%s", len(conservative), conservative[0])
    return PriorBalances(dict(out), DERIVED, reason, tuple(conservative))
