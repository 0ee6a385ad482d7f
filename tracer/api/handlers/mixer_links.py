"""A trace's mixer deposits and the withdrawals they were linked to, one keyset page at a time.

A mixer breaks the chain of transfers: which withdrawal spends a deposit is only ever a scored
guess (tracer.engine.mixers). The investigator gets every flagged deposit with its pool,
denomination and anonymity set, the candidate withdrawals best first with their confidence and
the heuristics behind it, and which of them the trace followed. A deposit with no good link is
listed too ("entered mixer, amount X, anonymity set N"): the money was not lost, the trail ends.
"""

from __future__ import annotations

import json
import re
from typing import Any

import asyncpg
from aiohttp import web

from tracer.api import params
from tracer.api import serialize as ser
from tracer.api.errors import bad_request
from tracer.api.handlers.common import ctx_of, make_cursor, next_link, ok, page_limit, read_cursor, trace_or_404
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


def _amount(chain: str, row: asyncpg.Record, raw: Any) -> dict[str, Any]:
    return ser.amount(chain, row["asset"], int(raw), row["symbol"], row["decimals"])


def _summary(chain: str, row: asyncpg.Record, links: list[dict[str, Any]]) -> str:
    amt = _amount(chain, row, row["flagged"])
    unit = f" {amt['symbol']}" if amt["symbol"] else ""
    followed = [lk for lk in links if lk["followed"]]
    if not followed:
        return f"entered mixer, amount {amt['amount']}{unit}, anonymity set {row['anonymity_set']} at deposit time"
    best = followed[0]
    return (f"linked to withdrawal {best['tx_hash']} to {best['recipient']} with confidence "
            f"{best['confidence']:.2f} ({', '.join(r['heuristic'] for r in best['reasons'])})")


def _link(chain: str, row: asyncpg.Record, lk: dict[str, Any]) -> dict[str, Any]:
    withdrawn = lk["withdrawn"]
    return {
        "tx_hash": lk["withdrawal_tx"],
        "log_index": lk["withdrawal_log_index"],
        "block_number": lk["withdrawal_block"],
        "timestamp": ser.iso(int(lk["withdrawal_time"])),
        "recipient": lk["recipient"],
        "relayer": lk["relayer"],
        "fee": _amount(chain, row, lk["fee"] or 0),
        # null: the withdrawal's payment was not among the transfers read (outside the window)
        "withdrawn": _amount(chain, row, withdrawn) if withdrawn is not None else None,
        "confidence": float(lk["confidence"]),
        "carried": _amount(chain, row, lk["carried"]),
        "followed": lk["status"] == "followed",
        "reasons": [{"heuristic": r["heuristic"], "detail": r["detail"], "weight": r["weight"]}
                    for r in lk["reasons"]],
    }


def _item(chain: str, row: asyncpg.Record) -> dict[str, Any]:
    raw_links = row["links"]
    if isinstance(raw_links, str):  # jsonb arrives as text unless the pool has a codec for it
        raw_links = json.loads(raw_links)
    links = [_link(chain, row, lk) for lk in raw_links]
    return {
        "pool": row["pool"],
        "deposit": {
            "tx_hash": row["tx_hash"],
            "position": row["position"],
            "block_number": row["block_number"],
            "timestamp": ser.iso(row["block_time"]),
            "from": row["depositor"],
        },
        "denomination": _amount(chain, row, row["denomination"]),
        "flagged": _amount(chain, row, row["flagged"]),
        "anonymity_set": row["anonymity_set"],
        "candidates": row["candidates"],
        "status": row["status"],
        "followed": any(lk["followed"] for lk in links),
        "summary": _summary(chain, row, links),
        "withdrawals": links,
    }


async def list_(request: web.Request) -> web.Response:
    params.reject_unknown(request, _PARAMS)
    ctx = ctx_of(request)
    trace_id = params.trace_id(request)
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
        chain = str((await trace_or_404(conn, trace_id))["chain"])
        rows = await mixer_store.mixer_links(conn, trace_id, status=status, min_confidence=min_confidence,
                                             after_transfer_id=after, limit=limit + 1)
    items = [_item(chain, r) for r in rows[:limit]]
    cursor = (make_cursor(request, "mixer-links", scope, [str(rows[limit - 1]["transfer_id"])])
              if len(rows) > limit else None)
    return ok({"trace_id": trace_id, "items": items, "next_cursor": cursor,
               "links": {"self": str(request.rel_url), "next": next_link(request, cursor)}})
