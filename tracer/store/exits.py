"""A trace's exits as GET /v1/traces/{id}/exits sends them: each line's JSON written by Postgres.

A running trace's exits are read on every request (nothing is kept: a hop committed a moment ago is
in the next answer). Decoding 17 columns per line into Python values and encoding them again cost
the API more than everything else in that request, so the JSON is Postgres's, written with the
trace_exits row in the commit that writes the hops (migration 030's trigger, as migration 033
replaced it): the parts that follow from the row (with the address's checksum the commit computed),
the verdict's fields (kept equal to the trace's jobs row by a trigger on jobs, in the transaction
that changes the verdict) and the share of the seeds' totals (used while the totals it was computed
from still hold). A read joins nothing and computes nothing per line but what changed since. Only
the dollars are the API's. The fields, their order and their text are those of
tracer.api.serialize.exit_line (tests/integration/test_exit_lines.py holds the two to the same JSON)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal

from tracer.domain.views import ExitItems, ExitLine
from tracer.store.hops import EXIT_FIRST, EXIT_LAST, FIRST_UNKNOWN, LAST_UNKNOWN
from tracer.store.sql import Conn

_FIRST = EXIT_FIRST.format(e="e", addr="address")
_LAST = EXIT_LAST.format(e="e", addr="address")

#: One row per (chain, address, asset) of trace $1 (asset $2, category $3 when not NULL), with the
#: verdict's fields. A value not known when the row was written is looked up in one transfer of its
#: block; the CASE gates the lookup, so rows with every value known read no transfer (a LEFT JOIN
#: LATERAL with the condition inside was planned as a join filter run after the lookups: two index
#: probes per line on every request).
RESOLVED = f"""
    SELECT e.chain, e.address, e.asset, e.amount, e.hops, e.senders, e.depth, e.first_block, e.last_block,
           e.address_checksum, e.line_head, e.line_tail,
           CASE WHEN {FIRST_UNKNOWN} THEN (SELECT block_time FROM ({_FIRST}) x) ELSE e.first_time END AS first_time,
           CASE WHEN {LAST_UNKNOWN} THEN (SELECT block_time FROM ({_LAST}) x) ELSE e.last_time END AS last_time,
           CASE WHEN {FIRST_UNKNOWN} THEN (SELECT decimals FROM ({_FIRST}) x) ELSE e.decimals END AS decimals,
           CASE WHEN {FIRST_UNKNOWN} THEN (SELECT symbol FROM ({_FIRST}) x) ELSE e.symbol END AS symbol,
           j.reason, j.entity, j.category, j.evidence
    FROM trace_exits e
    LEFT JOIN jobs j ON j.trace_id = $1 AND j.chain = e.chain AND j.address = e.address
    WHERE e.trace_id = $1 AND ($2::text IS NULL OR e.asset = $2) AND ($3::text IS NULL OR j.category = $3)"""


# A tail not written with the row (a block time or the token's name not known then): written now from
# the values RESOLVED looks up, by the function the row's trigger uses.
_TAIL = f"""coalesce(e.line_tail, tracer_exit_line_tail(
    e.chain, e.asset, e.amount, e.hops, e.senders, e.depth, e.first_block, e.last_block,
    CASE WHEN {FIRST_UNKNOWN} THEN (SELECT block_time FROM ({_FIRST}) x) ELSE e.first_time END,
    CASE WHEN {LAST_UNKNOWN} THEN (SELECT block_time FROM ({_LAST}) x) ELSE e.last_time END,
    CASE WHEN {FIRST_UNKNOWN} THEN (SELECT symbol FROM ({_FIRST}) x) ELSE e.symbol END,
    CASE WHEN {FIRST_UNKNOWN} THEN (SELECT decimals FROM ({_FIRST}) x) ELSE e.decimals END))"""

_WHERE = "e.trace_id = $1 AND ($2::text IS NULL OR e.asset = $2) AND ($3::text IS NULL OR e.verdict_category = $3)"

#: Each line (up to its dollars) of trace $1 (asset $2, the verdict's category $3 when not NULL) with
#: what the API needs of it, all of it written with the row (migrations 030 and 033: head, verdict,
#: share, tail) but a share whose total changed since ($4, $5: the trace's totals, assets and raw
#: amounts, and $6 its chain: an exit on a chain the trace continued into has no share of them, they
#: are in the trace chain's units) and a tail whose values were not known then. `tron`: a stored Tron
#: address (0x41 + 40 hex) may be in the line (the API shows those as T...), or in the token name a
#: tail written now found.
_LINES = f"""
    SELECT e.chain, e.address, e.asset, e.amount, e.address_checksum IS NULL AS no_checksum,
           e.line_head || e.line_verdict || ',"share":'
           || CASE WHEN e.share_of IS NOT DISTINCT FROM t.total THEN e.line_share
                   ELSE tracer_exit_share(e.amount, t.total) END
           || {_TAIL} AS line,
           e.tron OR (e.line_tail IS NULL AND ({FIRST_UNKNOWN})
                      AND strpos((SELECT symbol FROM ({_FIRST}) x), '0x41') > 0) AS tron
    FROM trace_exits e
    LEFT JOIN unnest($4::text[], $5::numeric[]) AS t(asset, total) ON t.asset = e.asset AND e.chain = $6
    WHERE {_WHERE}"""
_ORDER = "amount DESC, address, asset"
_NO_USD = ',"usd":null,"usd_share":null}'


def _totals(chain: str, totals: Mapping[str, int]) -> tuple[list[str], list[Decimal], str]:
    assets = sorted(totals)
    return assets, [Decimal(totals[a]) for a in assets], chain


async def exit_lines(conn: Conn, trace_id: int, chain: str, totals: Mapping[str, int], *, asset: str | None = None,
                     category: str | None = None) -> list[ExitLine]:
    """Every off-ramp the trace reached, largest first, each with its line's JSON up to the dollars
    (ExitLine); `chain` and `totals`: the trace's, for each line's share of them."""
    rows = await conn.fetch(f"SELECT * FROM ({_LINES}) l ORDER BY {_ORDER}", trace_id, asset, category,
                            *_totals(chain, totals))
    # By position: 200 lines a request, and a Record's lookup by name costs more than the rest.
    return [ExitLine(c, a, s, int(m), no_checksum, line, tron) for c, a, s, m, no_checksum, line, tron in rows]


async def exit_items(conn: Conn, trace_id: int, chain: str, totals: Mapping[str, int], *, asset: str | None = None,
                     category: str | None = None) -> ExitItems | None:
    """The items array of GET /exits whole, when no line has dollars (a running trace's are deferred):
    one text value, nothing decoded per line. None when a line needs the API (a row written before the
    store kept its address's checksum): `exit_lines` then."""
    row = await conn.fetchrow(
        # Not a CTE read twice (materialised): the sums read the rows again, through the same index.
        f"""-- as bytes: the API sends them as they are (no 100 kB decoded to str and encoded back)
            SELECT convert_to('[' || coalesce(string_agg(line || '{_NO_USD}', ',' ORDER BY {_ORDER}), '') || ']',
                              'UTF8') AS items,
                   coalesce(bool_or(tron), false) AS tron, coalesce(bool_or(no_checksum), false) AS no_checksum,
                   (SELECT json_object_agg(asset, amount::text)::text
                    FROM (SELECT e.asset, sum(e.amount) AS amount FROM trace_exits e WHERE {_WHERE}
                          GROUP BY e.asset) s) AS reached
            FROM ({_LINES}) l""",
        trace_id, asset, category, *_totals(chain, totals))
    assert row is not None
    if row["no_checksum"]:
        return None
    reached = json.loads(row["reached"]) if row["reached"] is not None else {}
    return ExitItems(row["items"], row["tron"], {a: int(x) for a, x in reached.items()})
