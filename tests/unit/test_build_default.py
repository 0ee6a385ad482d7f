"""The default label build's service names come from tracer/data/labels/service_names.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tracer.labels import build_default as bd

pytestmark = pytest.mark.unit


def test_service_names_read_from_the_data_file() -> None:
    assert bd.EXCHANGES["Binance"] == (("Binance", "Binance US"), ("binance",))
    assert bd.SWAP_SERVICES["SideShift"] == (("SideShift", "sideshift.ai"), ("sideshift",))
    assert "Binance" not in bd.SWAP_SERVICES and "ChangeNOW" not in bd.EXCHANGES


@pytest.mark.parametrize(("tag", "expected"), [
    ("Binance 14", ("Binance", None)),
    ("Binance US: Hot Wallet 2", ("Binance", "hot")),
    ("OKEx: Cold Wallet", ("OKX", "cold")),
    ("Binance: Deployer", None),  # not one of the exchange's own wallets
    ("Crypto.com Arena", None),
])
def test_explorer_tags_matched_to_their_exchange(tag: str, expected: tuple[str, str | None] | None) -> None:
    assert bd._match_service(tag, bd.EXCHANGES) == expected


def test_a_service_added_to_the_file_is_recognised(tmp_path: Path) -> None:
    doc = json.loads(bd.SERVICE_NAMES.read_text(encoding="utf-8"))
    doc["exchange"]["Examplex"] = {"name_tags": ["Examplex"], "graphsense_actors": ["examplex"]}
    path = tmp_path / "service_names.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    table = bd._service_names("exchange", path)
    assert bd._match_service("Examplex 3", table) == ("Examplex", None)
    assert len(table) == len(bd.EXCHANGES) + 1
