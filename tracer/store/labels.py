"""SQL for label rows: upsert, lookup at a time, screening, an address's history and listings.

A row of `labels` is one claim (chain, address, source, entity, category) over one validity
interval [valid_from, valid_to); NULL bounds are open. Rows are never deleted by imports: a
delisting closes the interval, and every change is written to `label_events` with the values it
replaced (schemas/migrations/002_labels.sql). List imports reconcile intervals through
tracer.store.label_imports.

Bulk statements only: every function sends one statement (or a fixed few) whatever the number
of rows, using unnest() over arrays.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Literal

import asyncpg

from tracer.domain.chains import EVM_CHAINS
from tracer.domain.labels import Category, Label, LabelEvent, StoredLabel, utc
from tracer.store.label_rows import (
    COLUMNS,
    INPUT,
    dedupe,
    key_addresses,
    label_arrays,
    label_from_row,
    load_json,
    opt_utc,
)
from tracer.store.ownership import PUBLIC, Viewer, visible_sql
from tracer.store.sql import Conn


async def upsert_labels(
    conn: Conn,
    labels: Sequence[Label],
    *,
    on_conflict: Literal["update", "ignore"] = "update",
    scope: str | None = None,
    import_id: int | None = None,
) -> int:
    """Insert labels, or refresh an existing claim-interval; returns rows inserted or changed.

    The key is (chain, address, source, entity, category, valid_from). On a conflict, "update"
    refreshes confidence and valid_to, keeps the old program unless a new one is given and merges
    evidence (old keys survive unless the new evidence names them); the replaced values are
    recorded in label_events. "ignore" leaves existing rows untouched (the default set uses it so
    it never undoes what a later import decided). One statement for the whole batch.
    """
    rows = dedupe(labels)
    if not rows:
        return 0
    if on_conflict == "ignore":
        conflict = "DO NOTHING"
    else:
        conflict = """DO UPDATE SET
            confidence = EXCLUDED.confidence,
            valid_to = EXCLUDED.valid_to,
            program = COALESCE(EXCLUDED.program, l.program),
            evidence = CASE WHEN l.evidence IS NULL THEN EXCLUDED.evidence
                            WHEN EXCLUDED.evidence IS NULL THEN l.evidence
                            ELSE l.evidence || EXCLUDED.evidence END,
            scope = COALESCE(l.scope, EXCLUDED.scope),
            updated_at = now()
          WHERE (l.confidence, l.valid_to, l.program, l.evidence)
                IS DISTINCT FROM
                (EXCLUDED.confidence, EXCLUDED.valid_to, COALESCE(EXCLUDED.program, l.program),
                 CASE WHEN l.evidence IS NULL THEN EXCLUDED.evidence
                      WHEN EXCLUDED.evidence IS NULL THEN l.evidence
                      ELSE l.evidence || EXCLUDED.evidence END)"""
    sql = f"""
    WITH {INPUT},
    old AS (
        -- Same snapshot as the upsert below: the values before this statement changed them.
        SELECT l.id, l.confidence, l.valid_to, l.program, l.evidence
        FROM labels l JOIN input i
          ON l.chain = i.chain AND l.address = i.address AND l.source = i.source
         AND l.entity = i.entity AND l.category = i.category
         AND l.valid_from IS NOT DISTINCT FROM i.valid_from
    ),
    up AS (
        INSERT INTO labels AS l (chain, address, entity, category, source, confidence, valid_from,
                                 valid_to, program, evidence, created_by, scope)
        SELECT chain, address, entity, category, source, confidence, valid_from, valid_to, program,
               evidence::jsonb, created_by, $12::text
        FROM input
        ON CONFLICT (chain, address, source, entity, category, valid_from) {conflict}
        RETURNING l.id, (l.xmax = 0) AS inserted, l.valid_from
    ),
    ev AS (
        INSERT INTO label_events (label_id, import_id, event, at, details)
        SELECT up.id, $13::bigint,
               CASE WHEN up.inserted THEN 'added' ELSE 'changed' END,
               CASE WHEN up.inserted THEN up.valid_from END,
               CASE WHEN up.inserted THEN NULL
                    ELSE jsonb_build_object('old', jsonb_build_object(
                        'confidence', old.confidence, 'valid_to', old.valid_to,
                        'program', old.program, 'evidence', old.evidence)) END
        FROM up LEFT JOIN old ON old.id = up.id
        RETURNING 1
    )
    SELECT count(*) FROM up
    """
    return int(await conn.fetchval(sql, *label_arrays(rows), scope, import_id))


async def lookup(
    conn: Conn, chain: str, addresses: Sequence[str], at: datetime | None = None, viewer: Viewer = PUBLIC
) -> dict[str, list[Label]]:
    """Labels of a batch of addresses on one chain, in one query, strongest first.

    `at` given: only labels valid then (valid_from <= at < valid_to, open bounds match).
    `at` None: every label regardless of validity: the caller sees the interval on each label
    (a delisted sanction is still worth showing next to a trace, marked as such).
    Addresses without labels are absent from the result.
    """
    if not addresses:
        return {}
    keyed = key_addresses(chain, addresses)
    rows = await conn.fetch(
        f"""SELECT {COLUMNS} FROM labels
            WHERE chain = $1 AND address = ANY($2::text[])
              AND ($3::timestamptz IS NULL
                   OR ((valid_from IS NULL OR valid_from <= $3) AND (valid_to IS NULL OR valid_to > $3)))
              AND {visible_sql(4)}
            ORDER BY address, confidence DESC, valid_from DESC NULLS LAST, id""",
        chain,
        list(keyed),
        opt_utc(at),
        *viewer.args(),
    )
    return _by_asked(rows, keyed)


async def screen(
    conn: Conn,
    chain: str,
    addresses: Sequence[str],
    at: datetime | None = None,
    categories: Iterable[str] = (Category.SANCTIONED,),
    viewer: Viewer = PUBLIC,
) -> dict[str, list[Label]]:
    """Which addresses were listed (sanctioned by default) at `at` (None: now), in one query.

    An EVM key is the same key on every EVM chain, and a sanction names its holder, not a chain:
    for an EVM chain the labels of every EVM chain are consulted (a label filed under "bsc" flags
    the address on "ethereum" too). Other chains match exactly.
    """
    if not addresses:
        return {}
    when = utc(at) if at is not None else datetime.now(UTC)
    keyed = key_addresses(chain, addresses)
    chains = sorted(EVM_CHAINS) if chain in EVM_CHAINS else [chain]
    rows = await conn.fetch(
        f"""SELECT {COLUMNS} FROM labels
            WHERE chain = ANY($1::text[]) AND address = ANY($2::text[]) AND category = ANY($3::text[])
              AND (valid_from IS NULL OR valid_from <= $4) AND (valid_to IS NULL OR valid_to > $4)
              AND {visible_sql(5)}
            ORDER BY address, confidence DESC, id""",
        chains,
        list(keyed),
        [str(c) for c in categories],
        when,
        *viewer.args(),
    )
    return _by_asked(rows, keyed)


def _by_asked(rows: Iterable[asyncpg.Record], keyed: Mapping[str, Sequence[str]]) -> dict[str, list[Label]]:
    """Labels under the addresses as the caller spelled them (`keyed`: stored key -> those spellings)."""
    out: dict[str, list[Label]] = {}
    for row in rows:
        label = label_from_row(row)
        for asked in keyed.get(label.address, ()):
            out.setdefault(asked, []).append(label)
    return out


async def history(conn: Conn, chain: str, address: str) -> list[tuple[StoredLabel, list[LabelEvent]]]:
    """Every label row of one address with its events, oldest first (for `tracer labels show`)."""
    keyed = key_addresses(chain, [address])
    rows = await conn.fetch(
        f"""SELECT id, {COLUMNS}, scope FROM labels WHERE chain = $1 AND address = ANY($2::text[])
            ORDER BY source, entity, category, valid_from NULLS FIRST, id""",
        chain,
        list(keyed),
    )
    ids = [r["id"] for r in rows]
    events = await conn.fetch(
        """SELECT label_id, event, at, import_id, details::text, created_at FROM label_events
           WHERE label_id = ANY($1::bigint[]) ORDER BY label_id, id""",
        ids,
    )
    by_label: dict[int, list[LabelEvent]] = {}
    for e in events:
        by_label.setdefault(e["label_id"], []).append(
            LabelEvent(
                label_id=e["label_id"], event=e["event"], at=e["at"], import_id=e["import_id"],
                details=load_json(e["details"]), created_at=e["created_at"],
            )
        )
    return [
        (StoredLabel(id=r["id"], label=label_from_row(r, 1), scope=r["scope"]), by_label.get(r["id"], []))
        for r in rows
    ]


async def counts_by_category(conn: Conn, source_prefix: str | None = None) -> dict[str, int]:
    rows = await conn.fetch(
        """SELECT category, count(*) AS n FROM labels
           WHERE $1::text IS NULL OR source LIKE $1 || '%' GROUP BY category ORDER BY category""",
        source_prefix,
    )
    return {r["category"]: int(r["n"]) for r in rows}


async def listed_addresses(
    conn: Conn, chain: str, *, source_prefix: str = "ofac", program: str | None = None, at: datetime | None = None
) -> list[str]:
    """Addresses a sanctions list names on `chain`, optionally of one programme family (`DPRK`
    matches DPRK3, DPRK4, ...), listed at `at` (default: now)."""
    rows = await conn.fetch(
        """SELECT DISTINCT address FROM labels
           WHERE chain = $1 AND category = 'sanctioned' AND source LIKE $2 || '%'
             AND ($3::text IS NULL OR EXISTS (
                   SELECT 1 FROM unnest(string_to_array(coalesce(program, ''), ',')) AS p
                   WHERE upper(trim(p)) LIKE upper($3) || '%'))
             AND (valid_from IS NULL OR valid_from <= coalesce($4, now()))
             AND (valid_to IS NULL OR valid_to > coalesce($4, now()))
           ORDER BY address""",
        chain, source_prefix.lower(), program, opt_utc(at),
    )
    return [r["address"] for r in rows]


async def list_labels(
    conn: Conn,
    *,
    chain: str | None = None,
    address: str | None = None,
    category: str | None = None,
    source: str | None = None,
    entity: str | None = None,
    after_id: int | None = None,
    limit: int = 100,
    viewer: Viewer = PUBLIC,
) -> list[tuple[int, str, str, Label]]:
    """A keyset page of labels (id order) with optional filters: (id, chain, address, label)."""
    rows = await conn.fetch(
        f"""SELECT id, {COLUMNS} FROM labels
            WHERE ($1::text IS NULL OR chain = $1) AND ($2::text IS NULL OR address = $2)
              AND ($3::text IS NULL OR category = $3) AND ($4::text IS NULL OR source = $4)
              AND ($5::text IS NULL OR lower(entity) = lower($5)) AND ($6::bigint IS NULL OR id > $6)
              AND {visible_sql(8)}
            ORDER BY id LIMIT $7""",
        chain, address, category, source, entity, after_id, limit, *viewer.args(),
    )
    return [(r["id"], r["chain"], r["address"], label_from_row(r, 1)) for r in rows]
