"""Test plugins: real Postgres (system or embedded) and real devchain servers; tiers by folder.

Each test is marked with the folder it sits in, so ``pytest -m unit`` runs the pure tests in
seconds and ``pytest`` still runs everything:

- ``tests/unit/``: pure functions on hand-built inputs; no database, network, subprocess or node.
- ``tests/integration/``: real Postgres, the real HTTP app, devchain servers, short CLI processes.
- ``tests/acceptance/``: end to end: the demo, Anvil runs, faults, browser, PDF, wheel,
  schemathesis, bench smokes.
"""

from __future__ import annotations

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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        tier = tier_of(Path(str(item.path)))
        if tier is not None:
            item.add_marker(getattr(pytest.mark, tier))
