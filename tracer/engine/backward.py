"""Source of funds: where the money an address received came from, walking inflows backward.

The haircut model run in reverse. Forward, every outflow of a wallet carries the flagged share of
the balance it leaves from. Colour every coin by where it came from instead of flagged/clean and
the same rule gives, for every transfer, how much of it came from each upstream source: a wallet
is a pool, an inflow adds its colours, an outflow takes each colour pro rata. The flagged amount
the forward trace gives a transfer is exactly the seeds' colours in it (the rule is linear), so
the two directions agree up to integer rounding wherever they walk the same wallets.

The walk (`source_of_funds`): from the target, the senders of its inflows, then theirs, up to
`depth` hops or `max_addresses` wallets. A wallet stops the walk, and is a source, when it is
labelled (exchanges' hot wallets, services, mixers, sanctioned or stolen-funds wallets: the label
says what the money is) or is the zero address (mints); a wallet the walk cut at the depth or size
limit is a source of unknown kind ("frontier"). Money a walked wallet already held when the window
opened (`from_block`) is a source too ("held": the wallet itself, e.g. a thief holding the loot).
Everything runs in execution order over the transfers of the walked wallets in
[from_block, to_block], native and ERC-20 alike, each asset its own pool.

Not covered yet: swaps (a DEX is a labelled source, the taint of what was paid into the swap is
not carried back through it), mixers (a pool is a source; scored links are not reversed), bridges
(the payout's deposit on the far chain is not followed), Bitcoin, and fees (balances are the
transfers' sums, as in the forward models).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from tracer.domain.labels import RISK_CATEGORIES
from tracer.domain.transfers import Transfer, TransferQuery
from tracer.engine import widest

ZERO = "0x" + "0" * 40
HELD, LABEL, FRONTIER, MINT, UNEXPLAINED = "held", "label", "frontier", "mint", "unexplained"
FLAGGED_CATEGORIES = RISK_CATEGORIES  # sanctioned, hacker (stolen funds), scam, ransomware, mixer

Color = tuple[str, str]  # (how, address)


class TransferSource(Protocol):
    async def transfers(self, query: TransferQuery) -> list[Transfer]: ...

    async def native_balances(self, queries: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int]: ...

    async def token_balances(self, queries: Iterable[tuple[str, str, int]]) -> dict[tuple[str, str, int], int]: ...


@dataclass(frozen=True, slots=True)
class SourceLabel:
    entity: str
    category: str


LabelLookup = Callable[[Sequence[str]], Awaitable[Mapping[str, SourceLabel]]]


@dataclass(slots=True)
class Source:
    address: str
    how: str  # held | label | frontier | mint | unexplained
    depth: int
    label: SourceLabel | None
    amounts: dict[str, int] = field(default_factory=dict)  # asset -> raw amount that reached the target
    path: list[str] = field(default_factory=list)  # the widest path source -> target, by this source's money

    @property
    def flagged(self) -> bool:
        return self.label is not None and self.label.category in FLAGGED_CATEGORIES


@dataclass(frozen=True, slots=True)
class SourceOfFunds:
    chain: str
    address: str
    from_block: int
    to_block: int
    depth: int
    received: dict[str, int]  # asset -> everything the target received in the window
    sources: list[Source]  # largest first
    walked: int  # wallets whose inflows were followed
    truncated: bool  # the size limit cut the walk (frontier sources are then not only depth cuts)


def _split(pool: dict[Color, int], amount: int) -> dict[Color, int]:
    """The colours of `amount` leaving `pool` pro rata (integers; the rounding left over goes to
    the largest colour, so the parts add up to `amount`)."""
    total = sum(pool.values())
    if total <= 0:
        return {}
    take = min(amount, total)
    out = {c: v * take // total for c, v in pool.items() if v * take // total > 0}
    rest = take - sum(out.values())
    if rest:
        top = max(pool, key=lambda c: (pool[c], c))
        out[top] = out.get(top, 0) + rest
    return out


Edges = dict[tuple[str, str], dict[Color, int]]


def simulate(transfers: Sequence[Transfer], walked: set[str], target: str, prior: Mapping[tuple[str, str], int],
             color_of: Callable[[str], Color]) -> tuple[dict[str, dict[Color, int]], Edges]:
    """Colour every transfer by source. Returns (colours of what `target` received per asset,
    colours per (from, to) edge summed over transfers and assets, for the evidence paths).

    `prior[(address, asset)]` is what a walked wallet held when the window opened."""
    pools: dict[tuple[str, str], dict[Color, int]] = {}
    for (address, asset), amount in prior.items():
        if amount > 0:
            pools[(address, asset)] = {(HELD, address): amount}
    received: dict[str, dict[Color, int]] = defaultdict(lambda: defaultdict(int))
    edges: dict[tuple[str, str], dict[Color, int]] = defaultdict(lambda: defaultdict(int))
    for t in sorted(transfers, key=lambda t: t.order):
        if t.from_address in walked:
            pool = pools.setdefault((t.from_address, t.asset), {})
            colours = _split(pool, t.amount)
            for c, v in colours.items():
                left = pool[c] - v
                if left > 0:
                    pool[c] = left
                else:
                    del pool[c]
            short = t.amount - sum(colours.values())
            if short > 0:  # sent more than the transfers explain (fees refunded, rewards): say so
                colours[(UNEXPLAINED, t.from_address)] = colours.get((UNEXPLAINED, t.from_address), 0) + short
        else:
            colours = {color_of(t.from_address): t.amount}
        if t.to_address in walked:
            pool = pools.setdefault((t.to_address, t.asset), {})
            for c, v in colours.items():
                pool[c] = pool.get(c, 0) + v
        if t.to_address == target:
            for c, v in colours.items():
                received[t.asset][c] += v
        edge = edges[(t.from_address, t.to_address)]
        for c, v in colours.items():
            edge[c] += v
    return {a: dict(v) for a, v in received.items()}, {e: dict(v) for e, v in edges.items()}


async def source_of_funds(chain: TransferSource, chain_name: str, labels: LabelLookup, address: str, *,
                          from_block: int, to_block: int, depth: int, max_addresses: int = 2000,
                          max_transfers: int = 200_000) -> SourceOfFunds:
    """Walk backward from `address` and colour what it received in [from_block, to_block]."""
    if depth < 1:
        raise ValueError("depth must be at least 1")
    if from_block < 1 or to_block < from_block:
        raise ValueError(f"need 1 <= from_block <= to_block, got {from_block}..{to_block}")
    depth_of: dict[str, int] = {address: 0}
    label_of: dict[str, SourceLabel] = {}
    walked: set[str] = set()
    seen: dict[tuple[str, str, str], Transfer] = {}
    frontier = [address]
    truncated = False
    for level in range(depth):  # senders found at the last level are sources, never walked
        todo = [a for a in frontier if a not in walked and a != ZERO and (a == address or a not in label_of)]
        room = max_addresses - len(walked)
        if len(todo) > room or len(seen) > max_transfers:
            # Walk the wallets that sent the most first: a budget spent on the crowd of small
            # senders would never reach the few large flows (the ones that matter in a screening).
            truncated = True
            weight = _sent_share(seen.values(), walked)
            todo.sort(key=lambda a: (-weight.get(a, 0.0), a))
            todo = todo[:max(0, room)] if len(seen) <= max_transfers else []
        if not todo:
            break
        for t in await chain.transfers(TransferQuery(todo, from_block, to_block, outgoing=True, incoming=True)):
            seen.setdefault(t.key, t)
        walked.update(todo)
        senders = sorted({t.from_address for t in seen.values() if t.to_address in walked} - depth_of.keys())
        for s in senders:
            depth_of[s] = level + 1
        label_of.update(await labels(senders))
        frontier = senders

    transfers = [t for t in seen.values() if t.to_address in walked or t.from_address in walked]
    prior = await _prior(chain, walked, transfers, from_block - 1)

    def color_of(sender: str) -> Color:
        if sender == ZERO:
            return (MINT, sender)
        if sender in label_of:
            return (LABEL, sender)
        return (FRONTIER, sender)

    received, edges = simulate(transfers, walked, address, prior, color_of)
    by_color: dict[Color, Source] = {}
    for asset, colours in received.items():
        for (how, who), amount in colours.items():
            src = by_color.get((how, who))
            if src is None:
                src = by_color[(how, who)] = Source(who, how, depth_of.get(who, 0), label_of.get(who))
            src.amounts[asset] = src.amounts.get(asset, 0) + amount
    sources = sorted(by_color.values(), key=lambda s: (-sum(s.amounts.values()), s.how, s.address))
    for src in sources[:50]:  # evidence for the largest ones: the widest path its money took
        src.path = _path(edges, (src.how, src.address), src.address, address)
    totals = {a: sum(c.values()) for a, c in received.items()}
    return SourceOfFunds(chain_name, address, from_block, to_block, depth, totals, sources, len(walked), truncated)


def _sent_share(transfers: Iterable[Transfer], walked: set[str]) -> dict[str, float]:
    """Per sender into the walked wallets: its largest share, over assets, of what they received
    (a share, so ETH in wei and a 6-decimal token compare)."""
    sent: dict[tuple[str, str], int] = defaultdict(int)
    total: dict[str, int] = defaultdict(int)
    for t in transfers:
        if t.to_address in walked and t.from_address not in walked:
            sent[(t.from_address, t.asset)] += t.amount
            total[t.asset] += t.amount
    out: dict[str, float] = {}
    for (sender, asset), v in sent.items():
        out[sender] = max(out.get(sender, 0.0), v / total[asset] if total[asset] else 0.0)
    return out


def _path(edges: Mapping[tuple[str, str], Mapping[Color, int]], color: Color, source: str, target: str) -> list[str]:
    g: dict[str, dict[str, float]] = defaultdict(dict)
    for (a, b), colours in edges.items():
        v = colours.get(color, 0)
        if v > 0 and a != b:
            g[a][b] = float(v)
    found = widest.best(g, source, target) if source in g else None
    return found or [source, target]


async def _prior(chain: TransferSource, walked: set[str], transfers: Sequence[Transfer],
                 block: int) -> dict[tuple[str, str], int]:
    """What each walked wallet held of each asset it moved, at the end of `block`."""
    assets: dict[str, set[str]] = defaultdict(set)
    for t in transfers:
        for a in (t.from_address, t.to_address):
            if a in walked:
                assets[a].add(t.asset)
    native = [(a, block) for a, kinds in assets.items() if "native" in kinds]
    tokens = [(a, asset, block) for a, kinds in assets.items() for asset in kinds if asset != "native"]
    out: dict[tuple[str, str], int] = {}
    if native:
        for (a, _), v in (await chain.native_balances(native)).items():
            out[(a, "native")] = v
    if tokens:
        for (a, asset, _), v in (await chain.token_balances(tokens)).items():
            out[(a, asset)] = v
    return out


def flagged_exposure(result: SourceOfFunds) -> list[dict[str, Any]]:
    """Per flagged category and entity: amount per asset and share of what the target received."""
    groups: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for src in result.sources:
        if src.flagged and src.label is not None:
            for asset, v in src.amounts.items():
                groups[(src.label.category, src.label.entity)][asset] += v
    out = []
    for (category, entity), amounts in sorted(groups.items()):
        out.append({"category": category, "entity": entity, "amounts": dict(amounts),
                    "shares": {a: (v / result.received[a] if result.received.get(a) else 0.0)
                               for a, v in amounts.items()}})
    return out
