"""How a label travels between Python and SQL: its columns, a row read back as a Label, a batch of
labels as the parallel arrays an unnest() statement takes.

JSON is passed and read as text so a jsonb codec installed on the pool (or not) changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import asyncpg

from tracer.domain.chains import EVM_CHAINS
from tracer.domain.labels import Label, utc

# A pool hands out proxies, tests use plain connections; both have the same query methods.

COLUMNS = (
    "chain, address, entity, category, source, confidence, valid_from, valid_to, program, "
    "evidence::text, created_by"
)


def opt_utc(value: datetime | None) -> datetime | None:
    return None if value is None else utc(value)


def dump_json(evidence: dict[str, Any] | None) -> str | None:
    return None if evidence is None else json.dumps(evidence, sort_keys=True, default=str)


def load_json(text: Any) -> dict[str, Any] | None:
    if text is None:
        return None
    value = json.loads(text) if isinstance(text, str) else text
    return value if isinstance(value, dict) else {"value": value}


def label_from_row(row: asyncpg.Record, offset: int = 0) -> Label:
    r = list(row.values())[offset : offset + 11]
    return Label(
        chain=r[0], address=r[1], entity=r[2], category=r[3], source=r[4], confidence=float(r[5]),
        valid_from=r[6], valid_to=r[7], program=r[8], evidence=load_json(r[9]), created_by=r[10],
    )


def label_arrays(labels: Sequence[Label]) -> list[list[Any]]:
    return [
        [lb.chain for lb in labels],
        [lb.address for lb in labels],
        [lb.entity for lb in labels],
        [lb.category for lb in labels],
        [lb.source for lb in labels],
        [float(lb.confidence) for lb in labels],
        [opt_utc(lb.valid_from) for lb in labels],
        [opt_utc(lb.valid_to) for lb in labels],
        [lb.program for lb in labels],
        [dump_json(lb.evidence) for lb in labels],
        [lb.created_by for lb in labels],
    ]


INPUT = """
    input AS (
        SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                             $6::float8[], $7::timestamptz[], $8::timestamptz[], $9::text[],
                             $10::text[], $11::text[])
            AS t(chain, address, entity, category, source, confidence, valid_from, valid_to,
                 program, evidence, created_by)
    )"""


def dedupe(labels: Iterable[Label]) -> list[Label]:
    """One row per key: ON CONFLICT cannot touch a row twice in one statement. Later rows win,
    evidence dicts are merged (so two upstreams naming the same wallet keep both notes)."""
    out: dict[tuple[Any, ...], Label] = {}
    for lb in labels:
        key = (*lb.identity, opt_utc(lb.valid_from))
        prev = out.get(key)
        if prev is not None and prev.evidence and lb.evidence is not None:
            merged = {**prev.evidence, **lb.evidence}
            lb = replace(lb, evidence=merged)
        out[key] = lb
    return list(out.values())


def key_addresses(chain: str, addresses: Sequence[str]) -> dict[str, list[str]]:
    # The engine hands lowercase EVM addresses; a caller that passes a checksummed one still
    # finds its labels, and gets them back under the spelling it asked with.
    keyed: dict[str, list[str]] = {}
    for a in addresses:
        stored = a.lower() if chain in EVM_CHAINS or a[:2].lower() == "0x" else a
        keyed.setdefault(stored, []).append(a)
    return keyed
