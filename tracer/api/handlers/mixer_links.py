"""A trace's mixer deposits and the withdrawals they were linked to, one keyset page at a time.

A mixer breaks the chain of transfers: which withdrawal spends a deposit is only ever a scored
guess (tracer.engine.mixers). The investigator gets every flagged deposit with its pool,
denomination and anonymity set, the candidate withdrawals best first with their confidence and
the heuristics behind it, and which of them the trace followed. A deposit with no good link is
listed too ("entered mixer, amount X, anonymity set N"): the money was not lost, the trail ends.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from tracer.api import params
from tracer.api import serialize as ser
from tracer.api.errors import bad_request
from tracer.api.handlers.common import ok, page, page_limit, read_cursor, trace_or_404, trace_request
from tracer.domain.mixer_links import CandidateWithdrawal, MixerDeposit
from tracer.store import mixers as mixer_store

DEPOSIT_STATUSES = ("linked", "unlinked")
_PARAMS = ("status", "min_confidence", "limit", "cursor")
# Plain decimals only: "1e-1", "nan" or "inf" would pass float() and mean nothing to a client.
_CONFIDENCE = re.compile(r"0(\.[0-9]{1,12})?|1(\.0{1,12})?")  # the pattern in openapi.yaml


def _min_confidence(request: web.Request) -> float | None:
    text = params.str_param(request, "min_confidence", max_len=20)
    if text is None or text == "":
        return None
    if not _CONFIDENCE.fullmatch(text):
        raise bad_request("min_confidence", "must be a number between 0 and 1, such as 0.5")
    return float(text)


def _amount(chain: str, dep: MixerDeposit, raw: int) -> dict[str, Any]:
    return ser.amount(chain, dep.asset, raw, dep.symbol, dep.decimals)


def _summary(chain: str, dep: MixerDeposit) -> str:
    amt = _amount(chain, dep, dep.flagged)
    unit = f" {amt['symbol']}" if amt["symbol"] else ""
    followed = dep.followed
    if not followed:
        return f"entered mixer, amount {amt['amount']}{unit}, anonymity set {dep.anonymity_set} at deposit time"
    best = followed[0]
    return (f"linked to withdrawal {best.withdrawal_tx} to {best.recipient} with confidence "
            f"{best.confidence:.2f} ({', '.join(r.heuristic for r in best.reasons)})")


def _link(chain: str, dep: MixerDeposit, lk: CandidateWithdrawal) -> dict[str, Any]:
    return {
        "tx_hash": lk.withdrawal_tx,
        "log_index": lk.withdrawal_log_index,
        "block_number": lk.withdrawal_block,
        "timestamp": ser.iso(lk.withdrawal_time),
        "recipient": lk.recipient,
        "relayer": lk.relayer,
        "fee": _amount(chain, dep, lk.fee or 0),
        # null: the withdrawal's payment was not among the transfers read (outside the window)
        "withdrawn": _amount(chain, dep, lk.withdrawn) if lk.withdrawn is not None else None,
        "confidence": lk.confidence,
        "carried": _amount(chain, dep, lk.carried),
        "followed": lk.followed,
        "reasons": [{"heuristic": r.heuristic, "detail": r.detail, "weight": r.weight} for r in lk.reasons],
    }


def _item(chain: str, dep: MixerDeposit) -> dict[str, Any]:
    return {
        "pool": dep.pool,
        "deposit": {
            "tx_hash": dep.tx_hash,
            "position": dep.position,
            "block_number": dep.block_number,
            "timestamp": ser.iso(dep.block_time),
            "from": dep.depositor,
        },
        "denomination": _amount(chain, dep, dep.denomination),
        "flagged": _amount(chain, dep, dep.flagged),
        "anonymity_set": dep.anonymity_set,
        "candidates": dep.candidates,
        "status": dep.status,
        "followed": bool(dep.followed),
        "summary": _summary(chain, dep),
        "withdrawals": [_link(chain, dep, lk) for lk in dep.links],
    }


async def list_(request: web.Request) -> web.Response:
    ctx, trace_id = trace_request(request, _PARAMS)
    status = params.enum_param(request, "status", DEPOSIT_STATUSES)
    min_confidence = _min_confidence(request)
    limit = page_limit(request)
    # Bound to this trace and filter set: a cursor reused with other filters is a 400.
    scope = {"trace": trace_id, "status": status, "min_confidence": min_confidence}
    key = read_cursor(request, "mixer-links", scope)
    after: int | None = None
    if key is not None:
        if len(key) != 1 or not key[0].isdigit():  # signed by us, so only a bug gets here
            raise bad_request("cursor", "malformed cursor")
        after = int(key[0])
    async with ctx.pool.acquire() as conn:
        chain = str((await trace_or_404(conn, trace_id)).chain)
        rows = await mixer_store.mixer_links(conn, trace_id, status=status, min_confidence=min_confidence,
                                             after_transfer_id=after, limit=limit + 1)
    items = [_item(chain, r) for r in rows[:limit]]
    return ok({"trace_id": trace_id,
               **page(request, "mixer-links", scope, items, rows, limit, lambda r: [str(r.transfer_id)])})
