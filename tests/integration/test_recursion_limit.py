"""A deeply nested JSON document (a hostile node answer, an API body) raises RecursionError in a
tracer process, never kills it with SIGSEGV: importing web3 must not leave the recursion limit at
py_ecc's 100,000."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import json, sys
import tracer.chains.evm, tracer.api.app, web3  # everything a worker or the API imports
assert sys.getrecursionlimit() <= 10_000, sys.getrecursionlimit()
try:
    json.loads("[" * 200_000 + "]" * 200_000)
except RecursionError:
    print("refused")
"""


def test_nested_json_raises_instead_of_crashing_the_process() -> None:
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert proc.stdout.strip() == "refused"
