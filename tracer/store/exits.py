"""A trace's exits as GET /v1/traces/{id}/exits sends them: each line's JSON written by Postgres.

A running trace's exits are read on every request (nothing is kept: a hop committed a moment ago is
in the next answer). Decoding 17 columns per line into Python values and encoding them again cost
the API more than everything else in that request, so the JSON is Postgres's: the parts that follow
from the trace_exits row alone are written with the row (migration 030's trigger, in the commit that
writes the hops, with the address's checksum the commit computed), the verdict's fields (jobs) and
the share of the seeds' totals when read. Only the dollars are the API's. The fields, their order
and their text are those of tracer.api.serialize.exit_line (tests/integration/test_exit_lines.py
holds the two to the same JSON)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal

from tracer.domain.verdicts import LABEL_REASON_PREFIX, Reason
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


def _j(expr: str) -> str:
    """A SQL value as JSON text (null for NULL), as orjson writes it."""
    return f"coalesce(to_json({expr})::text, 'null')"


# tracer.api.serialize.recognised_by: an event its contract emitted, a label, the deposit-address
# behaviour, or the reason as it is. The evidence is the verdict's JSON document as Postgres writes it.
_EVIDENCE = "coalesce(r.evidence::text, 'null')"
_EVENTS = ("(SELECT string_agg(x, ', ' ORDER BY n) FROM jsonb_array_elements_text(CASE WHEN "
           "jsonb_typeof(r.evidence -> 'events') = 'array' THEN r.evidence -> 'events' END) "
           "WITH ORDINALITY AS v(x, n))")
_RECOGNISED = f"""CASE
    WHEN r.evidence ->> 'recognised_by' = 'event'
        THEN '{{"method":"event","source":' || {_j(f"coalesce(nullif({_EVENTS}, ''), r.reason)")}
             || ',"evidence":' || {_EVIDENCE} || '}}'
    WHEN starts_with(r.reason, '{LABEL_REASON_PREFIX}')
        THEN '{{"method":"label","source":' || {_j(f"substr(r.reason, {len(LABEL_REASON_PREFIX) + 1})")}
             || ',"evidence":' || {_EVIDENCE} || '}}'
    WHEN r.reason = '{Reason.DEPOSIT_ADDRESS}'
        THEN '{{"method":"behaviour","source":'
             || CASE WHEN jsonb_typeof(r.evidence) = 'object' AND r.evidence ? 'source'
                     THEN (r.evidence -> 'source')::text ELSE '"behaviour"' END
             || ',"evidence":' || {_EVIDENCE} || '}}'
    ELSE '{{"method":"other","source":' || {_j("r.reason")} || ',"evidence":' || {_EVIDENCE} || '}}' END"""

# The share of the totals: the exact ratio rounded half up to 9 decimals in integers (one division:
# q9 = (2 a 10^9 + t) div 2t), as tracer.api.serialize.ratio9; written as the API writes a float
# (a whole number with ".0").
_SHARE = ("CASE WHEN r.q9 IS NULL THEN '0.0' WHEN mod(r.q9, 1000000000) = 0 THEN div(r.q9, 1000000000)::text || '.0' "
          "ELSE trim_scale(r.q9 * 1e-9)::text END")

#: Each line (up to its dollars) with what the API needs of it; $4, $5: the trace's totals
#: (assets, raw amounts) and $6 its chain (an exit on a chain the trace continued into has no
#: share of them: they are in the trace chain's units).
_LINES = f"""
    SELECT r.chain, r.address, r.asset, r.amount, r.address_checksum IS NULL AS no_checksum,
           r.line_head || ',"entity":' || {_j("r.entity")} || ',"category":' || {_j("r.category")}
           || ',"reason":' || {_j("r.reason")} || ',"recognised_by":' || {_RECOGNISED} || ',"share":' || {_SHARE}
           -- written with the row (migration 030), or now for a row whose values were not known then
           || coalesce(r.line_tail, tracer_exit_line_tail(r.chain, r.asset, r.amount, r.hops, r.senders, r.depth,
                                                          r.first_block, r.last_block, r.first_time, r.last_time,
                                                          r.symbol, r.decimals)) AS line,
           -- where a stored Tron address (0x41 + 40 hex) can be in the line: the API shows those as T...
           strpos(concat(r.address, r.asset, r.entity, r.category, r.reason, r.evidence::text, r.symbol), '0x41') > 0
               AS tron
    FROM (SELECT r.*, CASE WHEN t.total > 0 THEN div(r.amount * 2000000000 + t.total, 2 * t.total) END AS q9
          FROM ({RESOLVED} OFFSET 0) r
          LEFT JOIN unnest($4::text[], $5::numeric[]) AS t(asset, total) ON t.asset = r.asset AND r.chain = $6
          OFFSET 0) r"""
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
        f"""WITH l AS ({_LINES})
            -- as bytes: the API sends them as they are (no 100 kB decoded to str and encoded back)
            SELECT convert_to('[' || coalesce(string_agg(line || '{_NO_USD}', ',' ORDER BY {_ORDER}), '') || ']',
                              'UTF8') AS items,
                   coalesce(bool_or(tron), false) AS tron, coalesce(bool_or(no_checksum), false) AS no_checksum,
                   (SELECT json_object_agg(asset, amount::text)::text
                    FROM (SELECT asset, sum(amount) AS amount FROM l GROUP BY asset) s) AS reached
            FROM l""",
        trace_id, asset, category, *_totals(chain, totals))
    assert row is not None
    if row["no_checksum"]:
        return None
    reached = json.loads(row["reached"]) if row["reached"] is not None else {}
    return ExitItems(row["items"], row["tron"], {a: int(x) for a, x in reached.items()})
