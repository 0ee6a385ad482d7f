"""SQL for importing label lists: opening, closing and revising claim-intervals, and the bookkeeping
of each import (which file, which list date), so a list re-imported is a no-op and an older list
cannot roll a newer one back.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

import asyncpg

from tracer.domain.labels import ImportRecord, Label, StoredLabel, utc
from tracer.store.label_rows import (
    COLUMNS,
    INPUT,
    dedupe,
    dump_json,
    label_arrays,
    label_from_row,
    load_json,
    opt_utc,
)
from tracer.store.sql import Conn


async def insert_intervals(
    conn: Conn,
    labels: Sequence[Label],
    *,
    scope: str | None,
    import_id: int | None,
    event: Literal["added", "relisted"] = "added",
) -> int:
    """Open new claim-intervals found by a list import (never updates an existing row).

    A row that already exists with the same key is left alone; the count says how many were new.
    A label that arrives already closed (valid_to set, e.g. from a list's history) also gets its
    'delisted' event, so the history reads the same whichever way it was learnt.
    """
    rows = dedupe(labels)
    if not rows:
        return 0
    sql = f"""
    WITH {INPUT},
    ins AS (
        INSERT INTO labels (chain, address, entity, category, source, confidence, valid_from,
                            valid_to, program, evidence, created_by, scope)
        SELECT chain, address, entity, category, source, confidence, valid_from, valid_to, program,
               evidence::jsonb, created_by, $12::text
        FROM input
        ON CONFLICT (chain, address, source, entity, category, valid_from) DO NOTHING
        RETURNING id, valid_from, valid_to
    ),
    ev AS (
        INSERT INTO label_events (label_id, import_id, event, at)
        SELECT id, $13::bigint, $14::text, valid_from FROM ins
        UNION ALL
        SELECT id, $13::bigint, 'delisted', valid_to FROM ins WHERE valid_to IS NOT NULL
        RETURNING 1
    )
    SELECT count(*) FROM ins
    """
    return int(await conn.fetchval(sql, *label_arrays(rows), scope, import_id, event))


async def close_intervals(
    conn: Conn, closures: Sequence[tuple[int, datetime]], *, import_id: int | None
) -> int:
    """Delist: set valid_to on open rows (id, date) and record a 'delisted' event for each.

    valid_to never goes below valid_from (a list dated before the row's own listing date would
    otherwise make an empty, inverted interval)."""
    if not closures:
        return 0
    sql = """
    WITH input AS (
        SELECT * FROM unnest($1::bigint[], $2::timestamptz[]) AS t(id, at)
    ),
    upd AS (
        UPDATE labels l SET valid_to = GREATEST(i.at, l.valid_from), updated_at = now()
        FROM input i WHERE l.id = i.id AND l.valid_to IS NULL
        RETURNING l.id, l.valid_to
    ),
    ev AS (
        INSERT INTO label_events (label_id, import_id, event, at)
        SELECT id, $3::bigint, 'delisted', valid_to FROM upd
        RETURNING 1
    )
    SELECT count(*) FROM upd
    """
    ids = [c[0] for c in closures]
    dates = [utc(c[1]) for c in closures]
    return int(await conn.fetchval(sql, ids, dates, import_id))


async def revise_intervals(
    conn: Conn, revisions: Sequence[tuple[int, Label]], *, import_id: int | None
) -> int:
    """Update descriptive fields of existing rows (program, evidence, confidence, and valid_from
    only where it was unknown), recording the replaced values in a 'changed' event.

    Used when a newer list still lists an address but says more about it (a programme added,
    a listing date learnt from sdn_advanced.xml). A known valid_from is never moved."""
    if not revisions:
        return 0
    sql = """
    WITH input AS (
        SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::float8[], $5::timestamptz[])
            AS t(id, program, evidence, confidence, valid_from)
    ),
    old AS (
        SELECT l.id, l.program, l.evidence, l.confidence, l.valid_from
        FROM labels l JOIN input i ON l.id = i.id
    ),
    upd AS (
        UPDATE labels l SET
            program = COALESCE(i.program, l.program),
            evidence = CASE WHEN l.evidence IS NULL THEN i.evidence::jsonb
                            WHEN i.evidence IS NULL THEN l.evidence
                            ELSE l.evidence || i.evidence::jsonb END,
            confidence = i.confidence,
            valid_from = COALESCE(l.valid_from, i.valid_from),
            updated_at = now()
        FROM input i WHERE l.id = i.id
        RETURNING l.id
    ),
    ev AS (
        INSERT INTO label_events (label_id, import_id, event, details)
        SELECT old.id, $6::bigint, 'changed', jsonb_build_object('old', jsonb_build_object(
                   'program', old.program, 'evidence', old.evidence,
                   'confidence', old.confidence, 'valid_from', old.valid_from))
        FROM old JOIN upd ON upd.id = old.id
        RETURNING 1
    )
    SELECT count(*) FROM upd
    """
    ids = [r[0] for r in revisions]
    return int(
        await conn.fetchval(
            sql,
            ids,
            [r[1].program for r in revisions],
            [dump_json(r[1].evidence) for r in revisions],
            [float(r[1].confidence) for r in revisions],
            [opt_utc(r[1].valid_from) for r in revisions],
            import_id,
        )
    )


async def lock_scope(conn: Conn, scope: str) -> None:
    """Serialise imports of one list (two importers diffing the same rows would both delist)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('tracer.labels:' || $1))", scope)


async def labels_in_scope(conn: Conn, scope: str) -> list[StoredLabel]:
    """Every row (open and closed) reconciled against one list, for the importer to diff."""
    rows = await conn.fetch(
        f"SELECT id, {COLUMNS}, scope FROM labels WHERE scope = $1 ORDER BY id", scope
    )
    return [StoredLabel(id=r["id"], label=label_from_row(r, 1), scope=r["scope"]) for r in rows]


async def latest_list_date(conn: Conn, scope: str) -> datetime | None:
    """The newest list date already imported for a scope (to refuse going back in time)."""
    value = await conn.fetchval(
        "SELECT max(list_date) FROM label_imports WHERE scope = $1 AND finished_at IS NOT NULL", scope
    )
    return value if isinstance(value, datetime) else None


async def find_import(conn: Conn, file_sha256: str, scope: str | None) -> ImportRecord | None:
    """A finished import of the same bytes into the same scope, if any (re-import is a no-op)."""
    row = await conn.fetchrow(
        """SELECT id, source, scope, format, file_name, file_sha256, list_date, stats::text,
                  started_at, finished_at
           FROM label_imports
           WHERE file_sha256 = $1 AND scope IS NOT DISTINCT FROM $2 AND finished_at IS NOT NULL
           ORDER BY id DESC LIMIT 1""",
        file_sha256,
        scope,
    )
    return _import(row) if row is not None else None


def _import(row: asyncpg.Record) -> ImportRecord:
    return ImportRecord(
        id=row["id"], source=row["source"], scope=row["scope"], format=row["format"],
        file_name=row["file_name"], file_sha256=row["file_sha256"], list_date=row["list_date"],
        stats=load_json(row["stats"]) or {}, started_at=row["started_at"], finished_at=row["finished_at"],
    )


async def begin_import(
    conn: Conn,
    *,
    source: str,
    scope: str | None,
    format: str,
    file_name: str | None,
    file_sha256: str,
    list_date: datetime | None,
    created_by: str | None,
) -> int:
    return int(
        await conn.fetchval(
            """INSERT INTO label_imports
                   (source, scope, format, file_name, file_sha256, list_date, created_by)
               VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id""",
            source, scope, format, file_name, file_sha256, opt_utc(list_date), created_by,
        )
    )


async def finish_import(conn: Conn, import_id: int, stats: dict[str, Any]) -> None:
    await conn.execute(
        "UPDATE label_imports SET stats = $2::text::jsonb, finished_at = now() WHERE id = $1",
        import_id,
        json.dumps(stats, sort_keys=True, default=str),
    )


async def imports(conn: Conn, limit: int = 50) -> list[ImportRecord]:
    rows = await conn.fetch(
        """SELECT id, source, scope, format, file_name, file_sha256, list_date, stats::text,
                  started_at, finished_at
           FROM label_imports ORDER BY id DESC LIMIT $1""",
        limit,
    )
    return [_import(r) for r in rows]


