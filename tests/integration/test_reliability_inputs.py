"""Bad input and abuse: malformed label files are refused with a clear message and leave nothing
half-written; each API key has its own rate limit (429 problem+json with Retry-After)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.api_support import running_api
from tests.fuzz_inputs import VALID_FILES
from tracer.api.auth import RateLimiter
from tracer.api.context import Settings
from tracer.labels.importer import import_file
from tracer.labels.parsed import LabelImportError
from tracer.store import keys as key_store
from tracer.store.db import Database

pytestmark = pytest.mark.asyncio(loop_scope="session")

# The valid files the mutations start from: the ones the label fuzz test uses.
VALID = {name: text for name, (_, text) in VALID_FILES.items()}


def mutations(text: str, rng: random.Random, n: int) -> list[bytes]:
    """Malformed variants: truncated, garbage spliced in, bytes flipped, invalid UTF-8, empty."""
    raw = text.encode()
    out = [b"", b"\x00\xff\xfe garbage", raw[: len(raw) // 3], raw + b"\n\x00\x01{[<", raw.replace(b",", b";")]
    for _ in range(n):
        cut = rng.randrange(1, len(raw))
        kind = rng.randrange(3)
        if kind == 0:
            out.append(raw[:cut])
        elif kind == 1:
            out.append(raw[:cut] + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8))) + raw[cut:])
        else:
            out.append(raw[:cut] + b"\xc3\x28" + raw[cut + 1:])
    return out


async def _counts(db: Database) -> tuple[int, ...]:
    row = await db.pool.fetchrow(
        """SELECT (SELECT count(*) FROM labels) AS labels, (SELECT count(*) FROM label_imports) AS imports,
                  (SELECT count(*) FROM label_events) AS events""")
    return tuple(row)


async def test_malformed_label_files_are_refused_whole(db: Database, tmp_path: Path) -> None:
    rng = random.Random(20261125)
    tried = refused = 0
    for name, text in VALID.items():
        for i, body in enumerate(mutations(text, rng, 12)):
            path = tmp_path / f"{i}-{name}"
            path.write_bytes(body)
            before = await _counts(db)
            tried += 1
            try:
                async with db.pool.acquire() as conn:
                    result = await import_file(conn, path)
            except LabelImportError as exc:
                refused += 1
                assert str(exc).strip(), f"{path.name}: an empty error message"
                assert "Traceback" not in str(exc)
                assert await _counts(db) == before, f"{path.name}: refused but something was written"
            else:
                # Accepted (the damage hit only one row, reported as invalid): then all of it.
                after = await _counts(db)
                assert result.duplicate_of is not None or after[1] == before[1] + 1, path.name
    assert refused >= tried // 3, (refused, tried)


async def test_rate_limiter_buckets_are_per_caller() -> None:  # async: the module's asyncio mark
    now = [0.0]
    limiter = RateLimiter(2.0, 3, clock=lambda: now[0])
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a") == pytest.approx(0.5)
    assert limiter.take("b") == 0.0
    now[0] += 0.5
    assert limiter.take("a") == 0.0


async def test_each_key_has_its_own_rate_limit(db: Database) -> None:
    async with db.pool.acquire() as conn:
        _, hasty = await key_store.create_key(conn, "hasty", ["read"])
        _, calm = await key_store.create_key(conn, "calm", ["read"])
    async with running_api(db, settings=Settings(rate_limit=0.5, rate_limit_burst=3)) as api:
        for _ in range(3):
            await api.call("GET", "/v1/traces", key=hasty, expect=200)
        _, body, headers = await api.call("GET", "/v1/traces", key=hasty, expect=429)
        assert body["title"] == "Too many requests" and "per second" in body["detail"]
        assert int(headers["Retry-After"]) >= 1
        assert headers["Content-Type"].startswith("application/problem+json")
        await api.call("GET", "/v1/traces", key=calm, expect=200)  # another key is not affected
        await api.call("GET", "/v1/health")  # public routes are not limited
