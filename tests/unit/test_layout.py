"""The suite's layout holds: every test file sits in one tier folder, each test carries its tier's
marker, and the unit tier cannot reach a database, a devchain, the network or a subprocess."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path
from types import ModuleType

import pytest
from _pytest.fixtures import FixtureFunctionDefinition

import tests.fixtures_chain
import tests.fixtures_db
from tests.conftest import TESTS, TIERS, tier_of
from tests.unit.conftest import OUTSIDE_FIXTURES, NotInUnitTier

IN_PROCESS_FIXTURES = {"small_scenario"}  # generated in memory, no server behind it


def _test_files() -> list[Path]:
    return sorted(p for p in TESTS.rglob("test_*.py") if "node_modules" not in p.parts)


def test_no_test_file_outside_the_tier_folders() -> None:
    stray = [str(p.relative_to(TESTS)) for p in _test_files() if tier_of(p) is None]
    assert not stray, f"move these into tests/unit/, tests/integration/ or tests/acceptance/: {stray}"
    assert {tier_of(p) for p in _test_files()} == set(TIERS)


def test_a_file_is_in_the_tier_of_its_folder() -> None:
    assert tier_of(TESTS / "unit" / "test_x.py") == "unit"
    assert tier_of(TESTS / "acceptance" / "test_x.py") == "acceptance"
    assert tier_of(TESTS / "test_x.py") is None
    assert tier_of(TESTS / "data" / "x.json") is None


def test_this_test_carries_the_unit_marker_only(request: pytest.FixtureRequest) -> None:
    assert [m.name for m in request.node.iter_markers() if m.name in TIERS] == ["unit"]


def _fixtures(module: ModuleType) -> set[str]:
    return {
        getattr(v, "name", None) or k for k, v in vars(module).items() if isinstance(v, FixtureFunctionDefinition)
    }


def test_every_fixture_that_reaches_outside_the_process_is_refused_here() -> None:
    defined = _fixtures(tests.fixtures_db) | _fixtures(tests.fixtures_chain)
    assert defined - IN_PROCESS_FIXTURES == set(OUTSIDE_FIXTURES)


@pytest.mark.parametrize("name", OUTSIDE_FIXTURES)
def test_a_database_or_devchain_fixture_fails_in_the_unit_tier(request: pytest.FixtureRequest, name: str) -> None:
    with pytest.raises(NotInUnitTier):
        request.getfixturevalue(name)


def test_no_network_and_no_subprocess_in_the_unit_tier() -> None:
    with socket.socket() as s, pytest.raises(NotInUnitTier):
        s.connect(("127.0.0.1", 5432))
    with socket.socket() as s, pytest.raises(NotInUnitTier):
        s.bind(("127.0.0.1", 0))
    with pytest.raises(NotInUnitTier):
        subprocess.run(["true"], check=False)
