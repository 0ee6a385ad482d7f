"""Label files that expand or bloat: a YAML alias bomb ("billion laughs") is refused at once by
the API and the CLI with nothing written, and so is a label whose evidence is past the cap."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import pytest

from tests.api_support import running_api
from tracer.labels.importer import MAX_EVIDENCE_BYTES
from tracer.store.db import Database

pytestmark = pytest.mark.asyncio(loop_scope="session")
ROOT = Path(__file__).resolve().parents[2]


def alias_bomb(levels: int = 6) -> bytes:
    """A tagpack of a few hundred bytes whose one tag's context expands to 9**levels strings."""
    lines = ['title: t', 'creator: c', 'l0: &l0 "lolololololololololololololololololol"']
    for i in range(1, levels + 1):
        lines.append(f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]")
    lines += ["tags:", "  - address: '0x" + "ab" * 20 + "'", "    label: bomb", "    currency: ETH",
              f"    context: *l{levels}"]
    return ("\n".join(lines) + "\n").encode()


def bloated_pack() -> bytes:
    big = "x" * (MAX_EVIDENCE_BYTES + 10)
    return (f"title: t\ntags:\n  - address: '0x{'cd' * 20}'\n    label: big\n    currency: ETH\n"
            f"    context: '{big}'\n").encode()


async def _counts(db: Database) -> tuple[int, int]:
    return (int(await db.pool.fetchval("SELECT count(*) FROM labels")),
            int(await db.pool.fetchval("SELECT count(*) FROM label_imports")))


async def test_api_refuses_the_alias_bomb_quickly_and_writes_nothing(db: Database) -> None:
    bomb = alias_bomb()
    assert len(bomb) < 600
    before = await _counts(db)
    async with running_api(db) as api:
        started = time.monotonic()
        _, body, _ = await api.call("POST", "/v1/labels/import?filename=bomb.yaml", expect=400, data=bomb,
                                    headers={"Content-Type": "application/yaml"})
        assert time.monotonic() - started < 2
        assert "aliases" in body["detail"], body
        _, body, _ = await api.call("POST", "/v1/labels/import?filename=big.yaml", expect=400, data=bloated_pack(),
                                    headers={"Content-Type": "application/yaml"})
        assert "evidence" in body["detail"] and str(MAX_EVIDENCE_BYTES) in body["detail"], body
        # A plain pack still imports.
        plain = b"title: t\ntags:\n  - address: '0x" + b"ef" * 20 + b"'\n    label: fine\n    currency: ETH\n"
        await api.call("POST", "/v1/labels/import?filename=plain.yaml", expect=201, data=plain,
                       headers={"Content-Type": "application/yaml"})
    after = await _counts(db)
    assert after == (before[0] + 1, before[1] + 1)


async def test_cli_refuses_the_alias_bomb(db: Database, tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_bytes(alias_bomb())
    before = await _counts(db)
    env = dict(os.environ, TRACER_LOG_LEVEL="WARNING")
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tracer.cli", "labels", "import", str(path), "--database-url", db.url, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode != 0, (out, err)
    assert b"aliases" in err + out, (out, err)
    assert time.monotonic() - started < 30  # interpreter start included
    assert await _counts(db) == before
