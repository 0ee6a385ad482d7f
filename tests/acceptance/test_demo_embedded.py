"""`tracer demo` with no DATABASE_URL, as the README's first command runs it: an embedded Postgres
(in a data dir of the test's own), a database of the demo's own made anew each run, so a second,
different case is as right as the first; `tracer serve --demo` serves what it wrote."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tracer.store.embedded import stop_embedded

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(scope="module")
def data_dir() -> Iterator[Path]:
    # Not under pytest's basetemp: the embedded server opens the folders above its data dir to its
    # own system user, and another pytest session starting meanwhile closes pytest-of-<user> again.
    path = Path(tempfile.mkdtemp(prefix="tracer-demo-data-"))
    try:
        yield path
    finally:
        stop_embedded(path)
        shutil.rmtree(path, ignore_errors=True)


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(TRACER_DATA_DIR=str(data_dir), **extra)
    return env


async def _tracer(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "tracer.cli", *args, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 300)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _found(stdout: str, what: str) -> tuple[int, int]:
    line = next(x for x in stdout.splitlines() if what in x)
    found, total = re.search(r"(\d+) of (\d+)", line).groups()  # type: ignore[union-attr]
    return int(found), int(total)


async def test_two_different_cases_in_a_row_are_both_right(data_dir: Path) -> None:
    for size in ("2000", "1500"):
        code, out, err = await _tracer(_env(data_dir), "demo", "--size", size)
        assert code == 0, err[-3000:]
        assert "embedded, database tracer_demo" in err
        for what in ("exits found with the right amount", "laundering mixer notes linked", "continuations followed"):
            found, total = _found(out, what)
            assert found == total and total > 0, (size, what, found, total)
        assert "exits reported that the truth does not have: 0" in out and "PASSED" in out
        assert "tracer serve --demo" in out
        # Exits in dollars at the time of each hop; with stopped and held they make the seeds' total.
        assert "In dollars at the time of each hop:" in out
        assert "Dollar check against the generator's prices: OK" in out and "MISMATCH" not in out


async def test_serve_demo_serves_the_demo_database(data_dir: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tracer.cli", "serve", "--demo", "--port", "0",
        env=_env(data_dir, TRACER_LOG_LEVEL="INFO"), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    assert proc.stderr is not None
    try:
        seen = ""
        while "listening on" not in seen:
            line = await asyncio.wait_for(proc.stderr.readline(), 60)
            assert line, seen
            seen += line.decode()
        url = re.search(r"listening on (http://\S+)", seen).group(1)  # type: ignore[union-attr]
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(f"{url}/v1/traces/1", timeout=10).read())
        trace = json.loads(body)
        assert trace["status"] == "done" and trace["label"] == "demo seed 7"
    finally:
        proc.terminate()
        await proc.wait()
    code, _, err = await _tracer(_env(data_dir, DATABASE_URL="postgresql://nobody@127.0.0.1:1/none"), "serve", "--demo")
    assert code == 2 and "--demo" in err
