"""tracer.domain: its words are the strings already stored, and it leans on nothing else of tracer."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import tracer.domain
from tracer.domain.chains import native_unit
from tracer.domain.labels import Label
from tracer.domain.verdicts import FOLLOW, HopStatus, Reason, Role, entered, frozen_reason, label_reason

DOMAIN = Path(tracer.domain.__file__).parent


def test_domain_imports_nothing_else_of_tracer() -> None:
    outside = []
    for path in sorted(DOMAIN.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            outside += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "tracer" and
                        not n.startswith("tracer.domain")]
    assert outside == []


def test_words_are_the_stored_strings() -> None:
    # Rows, API JSON and tests/data/golden/same_hops.json hold these exact spellings.
    assert [str(s) for s in HopStatus] == ["followed", "exit", "stopped"]
    assert {str(r) for r in Role} == {"followed", "exit", "stopped", "seed", "reached"}
    assert {str(r) for r in Reason} == {
        "seed", "flagged funds", "below_threshold", "max_depth", "max_hops", "hub", "deposit_address", "swap",
        "bridge", "crossing", "entered mixer", "entered dex", "mixer deposit", "mixer link", "mixer link dropped",
        "change", "entered CoinJoin", "coinjoin link", "source of funds", "mint", "walk_budget",
    }
    assert entered("mixer") == Reason.ENTERED_MIXER
    assert label_reason("ofac-sdn") == "label:ofac-sdn"
    assert frozen_reason(12) == "frozen by issuer at block 12"
    assert FOLLOW.role == "followed" and FOLLOW.reason == "flagged funds"


def test_members_stand_in_for_text() -> None:
    # Rows read back as text find the members in sets and dicts, and formatting prints the value.
    assert "followed" in {HopStatus.FOLLOWED} and {"exit": 1}[HopStatus.EXIT] == 1
    assert f"{Reason.ENTERED_COINJOIN}" == "entered CoinJoin"
    assert ", ".join(HopStatus) == "followed, exit, stopped"


def test_native_units() -> None:
    assert native_unit("ethereum") == ("ETH", 18)
    assert native_unit("bitcoin") == ("BTC", 8)
    assert native_unit("tron") == ("TRX", 6)
    assert native_unit("nowhere") == ("native", 18)


def test_a_label_outside_the_vocabulary_is_refused() -> None:
    with pytest.raises(ValueError, match="vocabulary"):
        Label("ethereum", "0x" + "11" * 20, "Someone", "casino", "test")
