"""Every `tracer` command starts by building the whole parser, and `tracer --help` ends there: that
must not import web3, eth_abi, aiohttp or asyncio (together ~1.2 s of every start before). Each
command's handler imports what it runs.

A fresh interpreter per check (a subprocess, hence this tier): the test process has them all loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = {"web3", "eth_abi", "aiohttp", "asyncio"}


def _heavy_loaded(code: str) -> set[str]:
    """The HEAVY packages loaded after running `code` in a fresh interpreter (SystemExit allowed)."""
    script = (f"import json, sys\ntry:\n    {code}\nexcept SystemExit:\n    pass\n"
              "print(json.dumps(sorted(sys.modules)), file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stderr.strip().splitlines()[-1])
    return {name.split(".")[0] for name in loaded} & HEAVY


def test_building_the_parser_imports_no_heavy_package() -> None:
    assert _heavy_loaded("from tracer.cli import build_parser; build_parser()") == set()


@pytest.mark.parametrize("argv", [["--help"], ["db", "--help"], ["keys", "create", "--help"], ["serve", "--help"],
                                  ["labels", "show", "0x00", "--at", "2024-01-01", "--help"]])
def test_help_imports_no_heavy_package(argv: list[str]) -> None:
    assert _heavy_loaded(f"from tracer.cli import main; main({argv!r})") == set()
