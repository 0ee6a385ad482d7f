"""Reading the wallets whose mixer notes may rival a depositor's (mixer_scope._rivals picks them).

Two launderers funded by one gas station, which also pays their two recipients: each deposit is
tied to both withdrawals by the same shared wallet, and only reading both notes together tells
which went where. The other note's wallet is found from the chain, through the shared wallet's
counterparties, whether or not the trace has found it flagged yet: a link must not depend on
which deposits a worker happened to batch together (mixer_scope.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence

from tracer.domain.records import StoredTransfer
from tracer.engine.mixer_events import PoolEvent

# A shared wallet with more counterparties than this is a crowd (a service no label names): its
# counterparties are not read as rivals. Chain data, so the cut is the same for every worker.
MAX_SHARED_COUNTERPARTIES = 50

Ensure = Callable[[Mapping[str, int]], Awaitable[list[StoredTransfer]]]


def _counterparties(transfers: Sequence[StoredTransfer], wallets: set[str]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {w: set() for w in wallets}
    for st in transfers:
        t = st.transfer
        if t.from_address in out:
            out[t.from_address].add(t.to_address)
        if t.to_address in out:
            out[t.to_address].add(t.from_address)
    return out


async def read_rivals(
    ensure: Ensure, from_block: int, shared: Sequence[str], pool_deposits: Mapping[tuple[str, str], PoolEvent]
) -> tuple[dict[str, set[str]], dict[str, list[PoolEvent]]]:
    """Counterparties of the `shared` wallets and of the wallets they transacted with, and those
    wallets' deposits into the pools (`pool_deposits` by (pool, tx)): (peers, rival notes)."""
    if not shared:
        return {}, {}
    peers = _counterparties(await ensure({a: from_block for a in shared}), set(shared))
    wallets = set().union(*(ps for ps in peers.values() if len(ps) <= MAX_SHARED_COUNTERPARTIES)) - set(shared)
    wallets -= {pool for pool, _ in pool_deposits}
    if not wallets:
        return peers, {}
    got = await ensure({a: from_block for a in wallets})
    peers.update(_counterparties(got, wallets))
    notes: dict[str, list[PoolEvent]] = {}
    for st in got:
        t = st.transfer
        note = pool_deposits.get((t.to_address, t.tx_hash))
        if t.from_address in wallets and note is not None:
            notes.setdefault(t.from_address, []).append(note)
    return peers, notes
