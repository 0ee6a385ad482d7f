"""A trace id that names no trace gets one clear line and exit status 2 from the command line, not
a KeyError traceback."""

from __future__ import annotations

import asyncio
import sys

import pytest

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_report_of_an_unknown_trace_says_so(database_url: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tracer.cli", "report", "987654", "--database-url", database_url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert (proc.returncode, out, err.decode().strip()) == (2, b"", "tracer: error: no trace 987654")
