"""Load the shipped default label set (tracer/data/labels/) into the database, idempotently.

`tracer db migrate` and the engine call `load_default_labels` on every start, so it must be cheap
when nothing changed and harmless when something did: the file's hash is recorded and a second
load of the same file does nothing; rows already in the database are never modified (a newer
sanctions list may have delisted an address the shipped set still shows as listed); the set's
sanctions rows join the "ofac-sdn" scope so the next SDN import reconciles against them, and its
list date is recorded so an older SDN file cannot roll the list back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from tracer.domain.labels import Label
from tracer.labels.csvfile import read_label_csv
from tracer.labels.parsed import parse_date, sha256_file
from tracer.store import label_imports
from tracer.store import labels as store
from tracer.store.sql import Conn

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "data" / "labels"
DEFAULT_CSV = DEFAULT_DIR / "default_labels.csv"
DEFAULT_MANIFEST = DEFAULT_DIR / "manifest.json"
IMPORT_FORMAT = "default"


@dataclass(frozen=True)
class DefaultLoad:
    rows: int  # rows in the file
    inserted: int  # rows new to the database
    skipped: bool  # the same file was loaded before: nothing done
    import_id: int | None


async def load_default_labels(
    conn: Conn | asyncpg.Pool, *, path: Path | None = None, manifest: Path | None = None
) -> DefaultLoad:
    """Insert the default labels that are missing; returns what was done."""
    if isinstance(conn, asyncpg.Pool):
        async with conn.acquire() as c:
            return await load_default_labels(c, path=path, manifest=manifest)
    csv_path = path or DEFAULT_CSV
    manifest_path = manifest or (csv_path.parent / DEFAULT_MANIFEST.name)
    digest = sha256_file(csv_path)
    rows, invalid = read_label_csv(csv_path)
    meta: dict[str, Any] = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.exists() else {}
    async with conn.transaction():
        previous = await label_imports.find_import(conn, digest, None)
        if previous is not None and previous.format == IMPORT_FORMAT:
            return DefaultLoad(rows=len(rows), inserted=0, skipped=True, import_id=previous.id)
        import_id = await label_imports.begin_import(
            conn, source="default", scope=None, format=IMPORT_FORMAT, file_name=csv_path.name,
            file_sha256=digest, list_date=None, created_by="default-set",
        )
        by_scope: dict[str | None, list[Label]] = {}
        for label, scope in rows:
            by_scope.setdefault(scope, []).append(label)
        inserted = 0
        for scope, labels in by_scope.items():
            if scope is not None:
                await label_imports.lock_scope(conn, scope)
            inserted += await store.upsert_labels(
                conn, labels, on_conflict="ignore", scope=scope, import_id=import_id
            )
        # Record each complete list's date as an import of that scope, unless a newer one exists.
        for scope, info in (meta.get("scopes") or {}).items():
            list_date = parse_date(info.get("list_date"))
            latest = await label_imports.latest_list_date(conn, scope)
            if list_date is not None and (latest is None or latest < list_date):
                scope_import = await label_imports.begin_import(
                    conn, source="default", scope=scope, format=IMPORT_FORMAT, file_name=csv_path.name,
                    file_sha256=digest, list_date=list_date, created_by="default-set",
                )
                await label_imports.finish_import(conn, scope_import, {"via": "default set", "import_id": import_id})
        await label_imports.finish_import(
            conn, import_id, {"rows": len(rows), "inserted": inserted, "invalid": len(invalid)}
        )
    return DefaultLoad(rows=len(rows), inserted=inserted, skipped=False, import_id=import_id)
