"""All SQL about labels: upsert, lookup at a time, screening, and the import/history bookkeeping.

A row of `labels` is one claim (chain, address, source, entity, category) over one validity
interval [valid_from, valid_to); NULL bounds are open. Rows are never deleted by imports: a
delisting closes the interval, and every change is written to `label_events` with the values it
replaced (schemas/migrations/002_labels.sql).

Bulk statements only: every function sends one statement (or a fixed few) whatever the number
of rows, using unnest() over arrays. JSON is passed and read as text so a jsonb codec installed
on the pool (or not) changes nothing here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal, TypeAlias

import asyncpg

from tracer.labels.vocab import CATEGORIES, EVM_CHAINS, Category
from tracer.store.ownership import PUBLIC, Viewer, visible_sql

# A pool hands out proxies, tests use plain connections; both have the same query methods.
Conn: TypeAlias = "asyncpg.Connection[Any] | asyncpg.pool.PoolConnectionProxy[Any]"

_COLUMNS = (
    "chain, address, entity, category, source, confidence, valid_from, valid_to, program, "
    "evidence::text, created_by"
)


@dataclass(frozen=True)
class Label:
    """One claim about an address. `category` is a vocabulary word (tracer.labels.vocab.Category)."""

    chain: str
    address: str
    entity: str
    category: str
    source: str
    confidence: float = 1.0
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    program: str | None = None
    evidence: dict[str, Any] | None = field(default=None, compare=True)
    created_by: str | None = None

    def __post_init__(self) -> None:
        # A Category member is a str already; store the plain value so labels compare, print and
        # serialise the same whether built from the enum or read back from the database.
        object.__setattr__(self, "category", str(self.category))
        # Fail at construction, not in the middle of a bulk statement.
        if self.category not in CATEGORIES:
            raise ValueError(
                f"label category {self.category!r} is not in the vocabulary; "
                "map it with tracer.labels.vocab.normalize_category"
            )
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"label confidence {self.confidence} outside [0, 1]")
        if not self.entity or not self.source or not self.address or not self.chain:
            raise ValueError("label chain, address, entity and source must be non-empty")
        if self.valid_from is not None and self.valid_to is not None and self.valid_to < self.valid_from:
            raise ValueError(f"label valid_to {self.valid_to} before valid_from {self.valid_from}")

    @property
    def identity(self) -> tuple[str, str, str, str, str]:
        """What the label claims, independent of when: the key its intervals share."""
        return (self.chain, self.address, self.source, self.entity, self.category)

    def valid_at(self, at: datetime) -> bool:
        at = _utc(at)
        return (self.valid_from is None or _utc(self.valid_from) <= at) and (
            self.valid_to is None or at < _utc(self.valid_to)
        )


@dataclass(frozen=True)
class StoredLabel:
    id: int
    label: Label
    scope: str | None


@dataclass(frozen=True)
class LabelEvent:
    label_id: int
    event: str
    at: datetime | None
    import_id: int | None
    details: dict[str, Any] | None
    created_at: datetime


@dataclass(frozen=True)
class ImportRecord:
    id: int
    source: str
    scope: str | None
    format: str
    file_name: str | None
    file_sha256: str
    list_date: datetime | None
    stats: dict[str, Any]
    started_at: datetime
    finished_at: datetime | None


def _utc(value: datetime) -> datetime:
    # Naive datetimes in this codebase mean UTC (list dates are calendar days in UTC).
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _opt_utc(value: datetime | None) -> datetime | None:
    return None if value is None else _utc(value)


def _dump(evidence: dict[str, Any] | None) -> str | None:
    return None if evidence is None else json.dumps(evidence, sort_keys=True, default=str)


def _load(text: Any) -> dict[str, Any] | None:
    if text is None:
        return None
    value = json.loads(text) if isinstance(text, str) else text
    return value if isinstance(value, dict) else {"value": value}


def _label(row: asyncpg.Record, offset: int = 0) -> Label:
    r = list(row.values())[offset : offset + 11]
    return Label(
        chain=r[0], address=r[1], entity=r[2], category=r[3], source=r[4], confidence=float(r[5]),
        valid_from=r[6], valid_to=r[7], program=r[8], evidence=_load(r[9]), created_by=r[10],
    )


def _arrays(labels: Sequence[Label]) -> list[list[Any]]:
    return [
        [lb.chain for lb in labels],
        [lb.address for lb in labels],
        [lb.entity for lb in labels],
        [lb.category for lb in labels],
        [lb.source for lb in labels],
        [float(lb.confidence) for lb in labels],
        [_opt_utc(lb.valid_from) for lb in labels],
        [_opt_utc(lb.valid_to) for lb in labels],
        [lb.program for lb in labels],
        [_dump(lb.evidence) for lb in labels],
        [lb.created_by for lb in labels],
    ]


_INPUT = """
    input AS (
        SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                             $6::float8[], $7::timestamptz[], $8::timestamptz[], $9::text[],
                             $10::text[], $11::text[])
            AS t(chain, address, entity, category, source, confidence, valid_from, valid_to,
                 program, evidence, created_by)
    )"""


def _dedupe(labels: Iterable[Label]) -> list[Label]:
    """One row per key: ON CONFLICT cannot touch a row twice in one statement. Later rows win,
    evidence dicts are merged (so two upstreams naming the same wallet keep both notes)."""
    out: dict[tuple[Any, ...], Label] = {}
    for lb in labels:
        key = (*lb.identity, _opt_utc(lb.valid_from))
        prev = out.get(key)
        if prev is not None and prev.evidence and lb.evidence is not None:
            merged = {**prev.evidence, **lb.evidence}
            lb = replace(lb, evidence=merged)
        out[key] = lb
    return list(out.values())


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
    rows = _dedupe(labels)
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
    WITH {_INPUT},
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
    return int(await conn.fetchval(sql, *_arrays(rows), scope, import_id))


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
    rows = _dedupe(labels)
    if not rows:
        return 0
    sql = f"""
    WITH {_INPUT},
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
    return int(await conn.fetchval(sql, *_arrays(rows), scope, import_id, event))


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
    dates = [_utc(c[1]) for c in closures]
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
            [_dump(r[1].evidence) for r in revisions],
            [float(r[1].confidence) for r in revisions],
            [_opt_utc(r[1].valid_from) for r in revisions],
            import_id,
        )
    )


def _key_addresses(chain: str, addresses: Sequence[str]) -> dict[str, list[str]]:
    # The engine hands lowercase EVM addresses; a caller that passes a checksummed one still
    # finds its labels, and gets them back under the spelling it asked with.
    keyed: dict[str, list[str]] = {}
    for a in addresses:
        stored = a.lower() if chain in EVM_CHAINS or a[:2].lower() == "0x" else a
        keyed.setdefault(stored, []).append(a)
    return keyed


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
    keyed = _key_addresses(chain, addresses)
    rows = await conn.fetch(
        f"""SELECT {_COLUMNS} FROM labels
            WHERE chain = $1 AND address = ANY($2::text[])
              AND ($3::timestamptz IS NULL
                   OR ((valid_from IS NULL OR valid_from <= $3) AND (valid_to IS NULL OR valid_to > $3)))
              AND {visible_sql(4)}
            ORDER BY address, confidence DESC, valid_from DESC NULLS LAST, id""",
        chain,
        list(keyed),
        _opt_utc(at),
        *viewer.args(),
    )
    out: dict[str, list[Label]] = {}
    for row in rows:
        label = _label(row)
        for asked in keyed.get(label.address, ()):
            out.setdefault(asked, []).append(label)
    return out


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
    when = _utc(at) if at is not None else datetime.now(UTC)
    keyed = _key_addresses(chain, addresses)
    chains = sorted(EVM_CHAINS) if chain in EVM_CHAINS else [chain]
    rows = await conn.fetch(
        f"""SELECT {_COLUMNS} FROM labels
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
    out: dict[str, list[Label]] = {}
    for row in rows:
        label = _label(row)
        for asked in keyed.get(label.address, ()):
            out.setdefault(asked, []).append(label)
    return out


async def lock_scope(conn: Conn, scope: str) -> None:
    """Serialise imports of one list (two importers diffing the same rows would both delist)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('tracer.labels:' || $1))", scope)


async def labels_in_scope(conn: Conn, scope: str) -> list[StoredLabel]:
    """Every row (open and closed) reconciled against one list, for the importer to diff."""
    rows = await conn.fetch(
        f"SELECT id, {_COLUMNS}, scope FROM labels WHERE scope = $1 ORDER BY id", scope
    )
    return [StoredLabel(id=r["id"], label=_label(r, 1), scope=r["scope"]) for r in rows]


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
        stats=_load(row["stats"]) or {}, started_at=row["started_at"], finished_at=row["finished_at"],
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
            source, scope, format, file_name, file_sha256, _opt_utc(list_date), created_by,
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


async def history(conn: Conn, chain: str, address: str) -> list[tuple[StoredLabel, list[LabelEvent]]]:
    """Every label row of one address with its events, oldest first (for `tracer labels show`)."""
    keyed = _key_addresses(chain, [address])
    rows = await conn.fetch(
        f"""SELECT id, {_COLUMNS}, scope FROM labels WHERE chain = $1 AND address = ANY($2::text[])
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
                details=_load(e["details"]), created_at=e["created_at"],
            )
        )
    return [
        (StoredLabel(id=r["id"], label=_label(r, 1), scope=r["scope"]), by_label.get(r["id"], []))
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
        chain, source_prefix.lower(), program, _opt_utc(at),
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
        f"""SELECT id, {_COLUMNS} FROM labels
            WHERE ($1::text IS NULL OR chain = $1) AND ($2::text IS NULL OR address = $2)
              AND ($3::text IS NULL OR category = $3) AND ($4::text IS NULL OR source = $4)
              AND ($5::text IS NULL OR lower(entity) = lower($5)) AND ($6::bigint IS NULL OR id > $6)
              AND {visible_sql(8)}
            ORDER BY id LIMIT $7""",
        chain, address, category, source, entity, after_id, limit, *viewer.args(),
    )
    return [(r["id"], r["chain"], r["address"], _label(r, 1)) for r in rows]
