"""Test plugins: real Postgres (system or embedded) and real devchain servers; tiers by folder.

Each test is marked with the folder it sits in, so ``pytest -m unit`` runs the pure tests in
seconds and ``pytest`` still runs everything:

- ``tests/unit/``: pure functions on hand-built inputs; no database, network, subprocess or node.
- ``tests/integration/``: real Postgres, the real HTTP app, devchain servers, short CLI processes.
- ``tests/acceptance/``: end to end: the demo, Anvil runs, faults, browser, PDF, wheel,
  schemathesis, bench smokes.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest_plugins = ["tests.fixtures_db", "tests.fixtures_chain"]

TESTS = Path(__file__).resolve().parent
TIERS = ("unit", "integration", "acceptance")


def tier_of(path: Path) -> str | None:
    """The tier of a test file: the folder under tests/ it sits in (None outside the three)."""
    try:
        parts = path.resolve().relative_to(TESTS).parts
    except ValueError:
        return None
    return parts[0] if len(parts) > 1 and parts[0] in TIERS else None


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Under ``-m`` over tier names only (``unit``, ``not acceptance``...), a tier folder the expression
    rules out is not even imported: ``pytest -m unit`` skips importing the heavy test modules."""
    markexpr = config.getoption("markexpr", "") or ""
    if not markexpr or collection_path.parent != TESTS or collection_path.name not in TIERS:
        return None
    if not set(re.findall(r"\w+", markexpr)) - {"and", "or", "not"} <= set(TIERS):
        return None  # other markers in the expression: collect everything and let -m decide per test
    from _pytest.mark.expression import Expression

    wanted = Expression.compile(markexpr).evaluate(lambda name, **_: name == collection_path.name)
    return True if not wanted else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        tier = tier_of(Path(str(item.path)))
        if tier is not None:
            item.add_marker(getattr(pytest.mark, tier))
