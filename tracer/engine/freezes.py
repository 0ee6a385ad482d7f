"""Issuer freezes as stops: money that reached an address the token's issuer froze (Tether's
`AddedBlackList` on Tron) cannot move on, so the trace stops there and says who froze it and at
which block. Only chains whose client reads freezes (tracer.chains.tron.TronChain) have them; on
the others this costs nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol, runtime_checkable

from tracer.chains.tron_mappers import Freeze
from tracer.domain.transfers import Transfer
from tracer.domain.verdicts import HopStatus, Verdict, frozen_reason

# The reason of the verdict on a frozen address (category "frozen") names the block, "frozen by
# issuer at block N", so every view that shows reasons says when.


@runtime_checkable
class FreezeSource(Protocol):
    async def freezes(self, addresses: Iterable[str], from_block: int, to_block: int) -> dict[str, Freeze]: ...


async def frozen_verdicts(
    chain: object, timelines: Mapping[str, Sequence[Transfer]], to_block: int,
) -> dict[str, Verdict]:
    """Stops for the addresses that received a token whose issuer froze them by `to_block`."""
    if not isinstance(chain, FreezeSource):
        return {}
    received = {a: {t.asset for t in ts if t.to_address == a} for a, ts in timelines.items()}
    firsts = [t.block_number for a, ts in timelines.items() for t in ts if t.to_address == a]
    if not firsts:
        return {}
    found = await chain.freezes(sorted(received), min(firsts), to_block)
    out = {}
    for a, f in found.items():
        if f.token in received.get(a, ()):
            out[a] = Verdict(HopStatus.STOPPED, frozen_reason(f.block_number), f.issuer, "frozen", {
                "event": "AddedBlackList", "token": f.token, "block": f.block_number, "tx_hash": f.tx_hash,
                "source": "issuer event"})
    return out
