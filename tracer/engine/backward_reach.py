"""How much of each walked transfer reached the seeds of a backward trace (the haircut model run
from the end of the window back to its start).

Forward, a wallet is a pool and every outflow takes the same share of each coin in it. So every
coin in a pool at a given moment has the same future: the share of it that will end up at the
seeds. Call that share f(wallet, moment). Walking the transfers from the last to the first:

- a transfer into a seed reaches it whole (f = 1: a seed is where the question is asked; what a
  seed sends on is not followed);
- a transfer into a walked wallet carries f(recipient, just after it) of its amount to the seeds;
- an outflow that took r of its sender's pool makes f(sender, before) = r * f(what it paid into)
  + (1 - r) * f(sender, after); an inflow does not change f (the coins mix pro rata).

What a source (a wallet the walk stopped at) sent is then exactly what of its money reached the
seeds, and what a walked wallet already held when the window opened times f at the start is
money it held ("held"). The forward trace's haircut gives a transfer the seeds' share of it with
the same rule, so the two directions agree up to the integer rounding of each model (at most a
base unit per transfer here). The shares are fixed-point integers (2**128), not floats: a float
loses about a millionth of a token on a 10**24 amount, far beyond that rounding.

A transfer an outflow could not explain from its sender's pool (the pool held less) passes the
pool whole and the rest is money the window does not explain (fees refunded, rewards): nobody's.
Each asset is its own pool; a swap a walked wallet made and a mixer withdrawal the linker ties to
deposits carry the share across (backward_links.py): the legs paid into the swap, and the linked
deposits, take the share of what came out.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass, field

from tracer.domain.transfers import Transfer
from tracer.engine import widest
from tracer.engine.backward_links import Through

SCALE = 1 << 128


@dataclass(frozen=True, slots=True)
class Reach:
    reached: dict[int, int]  # index into the transfers -> the part of it that reached the seeds
    held: dict[tuple[str, str], int]  # (walked wallet, asset) -> what it held at the start that reached them
    received: dict[str, int]  # asset -> everything the seeds received from outside them
    at: dict[int, int] = field(default_factory=dict)  # watched index -> its share (fixed point) when passed


def reach(transfers: Sequence[Transfer], walked: Set[str], seeds: Set[str],
          prior: Mapping[tuple[str, str], int], through: Through | None = None) -> Reach:
    """The part of each transfer that reached `seeds`; `walked` holds the seeds and every wallet
    whose pools are followed, `prior[(wallet, asset)]` what a walked wallet held at the start,
    `through` the swaps and mixer links carried across."""
    through = through or Through()
    targets = through.withdrawals | through.watch
    at: dict[int, int] = {}  # withdrawal index -> its share when the backward pass went by it
    order = sorted(range(len(transfers)), key=lambda i: transfers[i].order)
    pools = {k: v for k, v in prior.items() if v > 0 and k[0] in walked and k[0] not in seeds}
    took: dict[int, int] = {}  # outflow index -> fixed-point share of its sender's pool it took
    for i in order:
        t = transfers[i]
        if t.from_address == t.to_address:
            continue
        if t.from_address in walked and t.from_address not in seeds:
            key = (t.from_address, t.asset)
            balance = pools.get(key, 0)
            if balance > 0:
                part = min(t.amount, balance)
                took[i] = part * SCALE // balance
                pools[key] = balance - part
        if t.to_address in walked and t.to_address not in seeds:
            key = (t.to_address, t.asset)
            pools[key] = pools.get(key, 0) + t.amount

    share: dict[tuple[str, str], int] = {}  # f(wallet, asset) at the moment the backward pass is at
    reached: dict[int, int] = {}
    received: dict[str, int] = defaultdict(int)
    for i in reversed(order):
        t = transfers[i]
        if t.from_address == t.to_address or t.from_address in seeds:
            continue  # a seed's own money was counted when it came in
        if t.to_address in seeds:
            g = SCALE
            received[t.asset] += t.amount
        elif t.to_address in walked:
            g = share.get((t.to_address, t.asset), 0)
        elif i in through.paid:
            swap = through.paid[i]
            g = sum(share.get((swap.wallet, a), 0) for a in swap.bought) // (len(swap.bought) * swap.paid_assets)
        elif i in through.deposits:
            g = min(SCALE, sum(c * at.get(j, 0) // SCALE for j, c in through.deposits[i]))
        elif i in through.fixed:
            g = through.fixed[i]
        else:
            g = 0
        if i in through.coinjoin:
            g = g * through.coinjoin[i] // SCALE
        if i in targets:
            at[i] = g
        if g:
            part = t.amount * g // SCALE
            if part:
                reached[i] = part
        r = took.get(i)
        if r is not None:
            key = (t.from_address, t.asset)
            share[key] = (r * g + (SCALE - r) * share.get(key, 0)) // SCALE
    held = {}
    for key, amount in prior.items():
        if amount > 0 and key[0] in walked and key[0] not in seeds:
            part = amount * share.get(key, 0) // SCALE
            if part:
                held[key] = part
    return Reach(reached, held, dict(received), {i: at[i] for i in through.watch if i in at})


def source_paths(transfers: Sequence[Transfer], reached: Mapping[int, int], sources: Sequence[str],
                 seeds: Set[str]) -> dict[str, list[str]]:
    """Per source, the widest path its money took to a seed (by what reached the seeds over each
    edge, all assets counted in their base units): the evidence shown beside its amount."""
    g: dict[object, dict[object, float]] = defaultdict(dict)
    sink = object()  # one end for every seed, so one search finds the best seed
    for i, part in reached.items():
        t = transfers[i]
        g[t.from_address][t.to_address] = g[t.from_address].get(t.to_address, 0.0) + float(part)
    for s in seeds:
        g[s][sink] = float("inf")
    hint = widest.bounds(g, sink)
    out: dict[str, list[str]] = {}
    for s in sources:
        path = widest.best(g, s, sink, within=hint) if s in g else None
        if path:
            out[s] = [str(a) for a in path[:-1]]
    return out
