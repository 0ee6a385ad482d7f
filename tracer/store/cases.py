"""SQL for cases (schemas/migrations/015_cases.sql): the case rows, their traces, notes and tags.

Who sees a case is decided here in SQL, the same way for every read: its key, its team, or
everything (admins, the CLI). The API turns "not visible" into a 404, so a case's existence never
leaks to another team. Writes that touch several rows run in one transaction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from tracer.store.ownership import Owner, Viewer
from tracer.store.sql import Conn

STATUSES = ("open", "closed", "archived")
TARGET_KINDS = ("case", "trace", "address", "hop")


def _visible(n: int, alias: str = "c") -> str:
    """The case-visibility test on alias `alias`, with Viewer.args() as parameters $n..$n+2."""
    return (f"(${n}::boolean OR {alias}.owner_key_id = ${n + 1}::bigint "
            f"OR {alias}.owner_team = ${n + 2}::text)")


@dataclass(frozen=True, slots=True)
class Case:
    id: int
    title: str
    description: str
    status: str
    owner: Owner
    created_by: str | None
    created_at: datetime
    updated_at: datetime
    trace_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Note:
    id: int
    case_id: int
    target_kind: str
    target: str
    body: str
    author: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Tag:
    case_id: int
    target_kind: str
    target: str
    tag: str
    author: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class CaseRef:
    """A case an address appears in, and how: through one of its traces or a note/tag on it."""
    id: int
    title: str
    via: str  # trace | note | tag


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    at: datetime
    kind: str  # case.created | trace.added | trace.created | trace.finished | event | note
    trace_id: int | None
    note_id: int | None
    text: str
    data: dict[str, Any]


class MissingTraces(LookupError):
    def __init__(self, ids: list[int]) -> None:
        super().__init__(f"no trace {', '.join(map(str, ids))}")
        self.ids = ids


_CASE_COLUMNS = """c.id, c.title, c.description, c.status, c.owner_key_id, c.owner_team, c.created_by,
                   c.created_at, c.updated_at,
                   coalesce((SELECT array_agg(ct.trace_id ORDER BY ct.trace_id) FROM case_traces ct
                             WHERE ct.case_id = c.id), '{}') AS trace_ids"""


def _case(r: asyncpg.Record) -> Case:
    return Case(int(r["id"]), r["title"], r["description"], r["status"], Owner(r["owner_key_id"], r["owner_team"]),
                r["created_by"], r["created_at"], r["updated_at"], tuple(int(t) for t in r["trace_ids"]))


async def _check_traces(conn: Conn, trace_ids: list[int]) -> None:
    if not trace_ids:
        return
    found = {int(r["id"]) for r in await conn.fetch("SELECT id FROM traces WHERE id = ANY($1::bigint[])", trace_ids)}
    missing = sorted(set(trace_ids) - found)
    if missing:
        raise MissingTraces(missing)


async def create_case(conn: Conn, *, title: str, description: str, status: str, owner: Owner,
                      created_by: str | None, trace_ids: list[int]) -> Case:
    """A new case with its traces, all or nothing (MissingTraces when a trace does not exist)."""
    async with conn.transaction():
        await _check_traces(conn, trace_ids)
        case_id = int(await conn.fetchval(
            """INSERT INTO cases (title, description, status, owner_key_id, owner_team, created_by)
               VALUES ($1, $2, $3, $4, $5, $6) RETURNING id""",
            title, description, status, owner.key_id, owner.team, created_by))
        await conn.executemany(
            "INSERT INTO case_traces (case_id, trace_id, added_by) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            [(case_id, t, created_by) for t in dict.fromkeys(trace_ids)])
    case = await get_case(conn, case_id, Viewer(everything=True))
    assert case is not None
    return case


async def get_case(conn: Conn, case_id: int, viewer: Viewer) -> Case | None:
    row = await conn.fetchrow(f"SELECT {_CASE_COLUMNS} FROM cases c WHERE c.id = $1 AND {_visible(2)}",
                              case_id, *viewer.args())
    return _case(row) if row is not None else None


async def case_owner(conn: Conn, case_id: int) -> Owner | None:
    row = await conn.fetchrow("SELECT owner_key_id, owner_team FROM cases WHERE id = $1", case_id)
    return Owner(row["owner_key_id"], row["owner_team"]) if row is not None else None


async def list_cases(conn: Conn, viewer: Viewer, *, statuses: list[str] | None, before_id: int | None,
                     limit: int) -> list[Case]:
    """Visible cases, newest first, a keyset page at a time (ids below `before_id`)."""
    rows = await conn.fetch(
        f"""SELECT {_CASE_COLUMNS} FROM cases c
            WHERE {_visible(1)} AND ($4::text[] IS NULL OR c.status = ANY($4::text[]))
              AND ($5::bigint IS NULL OR c.id < $5)
            ORDER BY c.id DESC LIMIT $6""",
        *viewer.args(), statuses, before_id, limit)
    return [_case(r) for r in rows]


async def update_case(conn: Conn, case_id: int, *, title: str | None, description: str | None,
                      status: str | None) -> None:
    await conn.execute(
        """UPDATE cases SET title = coalesce($2, title), description = coalesce($3, description),
                            status = coalesce($4, status), updated_at = now() WHERE id = $1""",
        case_id, title, description, status)


async def delete_case(conn: Conn, case_id: int) -> bool:
    return await conn.fetchval("DELETE FROM cases WHERE id = $1 RETURNING true", case_id) is not None


async def add_traces(conn: Conn, case_id: int, trace_ids: list[int], added_by: str | None) -> None:
    async with conn.transaction():
        await _check_traces(conn, trace_ids)
        await conn.executemany(
            "INSERT INTO case_traces (case_id, trace_id, added_by) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            [(case_id, t, added_by) for t in dict.fromkeys(trace_ids)])
        await conn.execute("UPDATE cases SET updated_at = now() WHERE id = $1", case_id)


async def remove_trace(conn: Conn, case_id: int, trace_id: int) -> bool:
    async with conn.transaction():
        gone = await conn.fetchval("DELETE FROM case_traces WHERE case_id = $1 AND trace_id = $2 RETURNING true",
                                   case_id, trace_id)
        if gone:
            await conn.execute("UPDATE cases SET updated_at = now() WHERE id = $1", case_id)
    return gone is not None


def _note(r: asyncpg.Record) -> Note:
    return Note(int(r["id"]), int(r["case_id"]), r["target_kind"], r["target"], r["body"], r["author"],
                r["created_at"])


async def add_note(conn: Conn, case_id: int, *, target_kind: str, target: str, body: str, author: str | None,
                   author_key_id: int | None) -> Note:
    async with conn.transaction():
        row = await conn.fetchrow(
            """INSERT INTO case_notes (case_id, target_kind, target, body, author, author_key_id)
               VALUES ($1, $2, $3, $4, $5, $6)
               RETURNING id, case_id, target_kind, target, body, author, created_at""",
            case_id, target_kind, target, body, author, author_key_id)
        await conn.execute("UPDATE cases SET updated_at = now() WHERE id = $1", case_id)
    return _note(row)


async def notes(conn: Conn, case_id: int, *, limit: int = 1000) -> list[Note]:
    rows = await conn.fetch(
        """SELECT id, case_id, target_kind, target, body, author, created_at FROM case_notes
           WHERE case_id = $1 ORDER BY id LIMIT $2""", case_id, limit)
    return [_note(r) for r in rows]


async def add_tag(conn: Conn, case_id: int, *, target_kind: str, target: str, tag: str,
                  author: str | None) -> Tag:
    async with conn.transaction():
        row = await conn.fetchrow(
            """INSERT INTO case_tags (case_id, target_kind, target, tag, author) VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT (case_id, target_kind, target, tag) DO UPDATE SET tag = EXCLUDED.tag
               RETURNING case_id, target_kind, target, tag, author, created_at""",
            case_id, target_kind, target, tag, author)
        await conn.execute("UPDATE cases SET updated_at = now() WHERE id = $1", case_id)
    return Tag(int(row["case_id"]), row["target_kind"], row["target"], row["tag"], row["author"], row["created_at"])


async def remove_tag(conn: Conn, case_id: int, *, target_kind: str, target: str, tag: str) -> bool:
    gone = await conn.fetchval(
        """DELETE FROM case_tags WHERE case_id = $1 AND target_kind = $2 AND target = $3 AND tag = $4
           RETURNING true""", case_id, target_kind, target, tag)
    return gone is not None


@dataclass(frozen=True, slots=True)
class TraceNote:
    note: Note
    case_title: str


async def notes_on_trace(conn: Conn, trace_id: int, viewer: Viewer, *, limit: int = 500) -> list[TraceNote]:
    """Notes of the visible cases holding a trace that concern it: on the case itself, on the
    trace, on one of its hops, or on an address the trace reached. Oldest first."""
    rows = await conn.fetch(
        f"""SELECT n.id, n.case_id, n.target_kind, n.target, n.body, n.author, n.created_at, c.title
            FROM case_notes n JOIN cases c ON c.id = n.case_id
            WHERE {_visible(2)} AND EXISTS (SELECT 1 FROM case_traces ct WHERE ct.case_id = c.id AND ct.trace_id = $1)
              AND (n.target_kind = 'case'
                   OR (n.target_kind = 'trace' AND n.target = $1::text)
                   OR (n.target_kind = 'hop' AND split_part(n.target, ':', 1) = $1::text)
                   OR (n.target_kind = 'address' AND EXISTS (
                         SELECT 1 FROM jobs j WHERE j.trace_id = $1 AND j.kind = 'address'
                           AND j.chain = split_part(n.target, ':', 1) AND j.address = split_part(n.target, ':', 2))))
            ORDER BY n.created_at, n.id LIMIT $5""",
        trace_id, *viewer.args(), limit)
    return [TraceNote(_note(r), r["title"]) for r in rows]


async def hop_exists(conn: Conn, trace_id: int, transfer_id: int) -> bool:
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM hops WHERE trace_id = $1 AND transfer_id = $2)",
                                    trace_id, transfer_id))


async def tags(conn: Conn, case_id: int, *, limit: int = 1000) -> list[Tag]:
    rows = await conn.fetch(
        """SELECT case_id, target_kind, target, tag, author, created_at FROM case_tags WHERE case_id = $1
           ORDER BY target_kind, target, tag LIMIT $2""", case_id, limit)
    return [Tag(int(r["case_id"]), r["target_kind"], r["target"], r["tag"], r["author"], r["created_at"])
            for r in rows]


async def shared_addresses(conn: Conn, case_id: int, *, limit: int = 200) -> list[tuple[str, str, list[int]]]:
    """(chain, address, trace ids) of addresses reached by two or more of the case's traces:
    where separate leads meet."""
    rows = await conn.fetch(
        """SELECT j.chain, j.address, array_agg(DISTINCT j.trace_id ORDER BY j.trace_id) AS traces
           FROM case_traces ct JOIN jobs j ON j.trace_id = ct.trace_id AND j.kind = 'address'
           WHERE ct.case_id = $1
           GROUP BY j.chain, j.address HAVING count(DISTINCT j.trace_id) > 1
           ORDER BY count(DISTINCT j.trace_id) DESC, j.chain, j.address LIMIT $2""",
        case_id, limit)
    return [(r["chain"], r["address"], [int(t) for t in r["traces"]]) for r in rows]


async def cases_with_address(conn: Conn, chain: str, address: str, viewer: Viewer, *,
                             limit: int = 100) -> list[CaseRef]:
    """Visible cases the address appears in: reached by one of their traces, or noted or tagged."""
    target = f"{chain}:{address}"
    rows = await conn.fetch(
        f"""SELECT c.id, c.title,
                   CASE WHEN bool_or(x.via = 'trace') THEN 'trace' WHEN bool_or(x.via = 'tag') THEN 'tag'
                        ELSE 'note' END AS via
            FROM cases c JOIN (
                SELECT ct.case_id, 'trace' AS via FROM case_traces ct
                JOIN jobs j ON j.trace_id = ct.trace_id
                WHERE j.chain = $1 AND j.address = $2 AND j.kind = 'address'
                UNION ALL SELECT case_id, 'note' FROM case_notes WHERE target_kind = 'address' AND target = $3
                UNION ALL SELECT case_id, 'tag' FROM case_tags WHERE target_kind = 'address' AND target = $3
            ) x ON x.case_id = c.id
            WHERE {_visible(4)} GROUP BY c.id, c.title ORDER BY c.id DESC LIMIT $7""",
        chain, address, target, *viewer.args(), limit)
    return [CaseRef(int(r["id"]), r["title"], r["via"]) for r in rows]


async def timeline(conn: Conn, case_id: int, *, limit: int) -> list[TimelineEntry]:
    """What happened in the case, oldest first: the case made, traces added, created and finished,
    their events (exits reached, new money while watching), notes written. The newest `limit`."""
    rows = await conn.fetch(
        """SELECT * FROM (
             SELECT c.created_at AS at, 'case.created' AS kind, NULL::bigint AS trace_id, NULL::bigint AS note_id,
                    c.title AS text, NULL::jsonb AS data FROM cases c WHERE c.id = $1
             UNION ALL
             SELECT ct.added_at, 'trace.added', ct.trace_id, NULL, coalesce(t.label, ''), NULL
             FROM case_traces ct JOIN traces t ON t.id = ct.trace_id WHERE ct.case_id = $1
             UNION ALL
             SELECT t.created_at, 'trace.created', t.id, NULL, coalesce(t.label, ''),
                    jsonb_build_object('chain', t.chain, 'seeds', to_jsonb(t.seeds))
             FROM case_traces ct JOIN traces t ON t.id = ct.trace_id WHERE ct.case_id = $1
             UNION ALL
             SELECT t.finished_at, 'trace.finished', t.id, NULL, t.status, NULL
             FROM case_traces ct JOIN traces t ON t.id = ct.trace_id
             WHERE ct.case_id = $1 AND t.finished_at IS NOT NULL
             UNION ALL
             SELECT e.created_at, 'event', e.trace_id, NULL, e.type, e.payload
             FROM case_traces ct JOIN events e ON e.trace_id = ct.trace_id WHERE ct.case_id = $1
             UNION ALL
             SELECT n.created_at, 'note', NULL, n.id, n.body,
                    jsonb_build_object('target_kind', n.target_kind, 'target', n.target, 'author', n.author)
             FROM case_notes n WHERE n.case_id = $1
           ) x ORDER BY at DESC, kind, trace_id, note_id LIMIT $2""",
        case_id, limit)
    out = [TimelineEntry(r["at"], r["kind"], r["trace_id"], r["note_id"], r["text"] or "",
                         _json(r["data"])) for r in rows]
    out.reverse()
    return out


def _json(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    data = json.loads(value) if isinstance(value, str) else value
    return data if isinstance(data, dict) else {"value": data}
