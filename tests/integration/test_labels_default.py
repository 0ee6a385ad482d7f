"""The shipped default label set and the `tracer labels` command line."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tracer.labels import cli as labels_cli
from tracer.labels.csvfile import read_label_csv
from tracer.labels.defaults import DEFAULT_CSV, DEFAULT_MANIFEST, load_default_labels
from tracer.store import label_imports
from tracer.store import labels as store
from tracer.store.db import Database

TORNADO_100_ETH = "0xa160cdab225685da1d56aa342ad8841c3b53f291"
BINANCE_14 = "0x28c6c06298d514db089934071355e5743bf21d60"
LAZARUS_RONIN = "0x098b716b8aaf21512996dc57eb0615e2383e2f96"


def test_shipped_file_is_consistent() -> None:
    rows, invalid = read_label_csv(DEFAULT_CSV)
    assert not invalid
    manifest = json.loads(DEFAULT_MANIFEST.read_text(encoding="utf-8"))
    counts = Counter(label.category for label, _ in rows)
    assert dict(counts) == manifest["by_category"] and len(rows) == manifest["rows"] <= 5000
    # Every kind of service the brief asks for is there.
    for category in ("exchange", "mixer", "bridge", "dex", "swap_service", "sanctioned"):
        assert counts[category] > 0, category
    keys = [(lb.chain, lb.address, lb.source, lb.entity, lb.category, lb.valid_from) for lb, _ in rows]
    assert len(keys) == len(set(keys))
    pools = [lb for lb, _ in rows if lb.address == TORNADO_100_ETH and lb.category == "mixer"]
    assert pools and pools[0].evidence is not None and pools[0].evidence["denomination"] == "100"
    assert all(scope == "ofac-sdn" for lb, scope in rows if lb.source == "ofac-sdn")


async def test_default_set_loads_idempotently(db: Database) -> None:
    first = await load_default_labels(db.pool)
    assert not first.skipped and first.inserted == first.rows
    second = await load_default_labels(db.pool)
    assert second.skipped and second.inserted == 0
    async with db.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM labels") == first.rows
        found = await store.lookup(conn, "ethereum", [BINANCE_14, TORNADO_100_ETH])
        assert any(lb.entity == "Binance" and lb.category == "exchange" for lb in found[BINANCE_14])
        categories = {lb.category for lb in found[TORNADO_100_ETH]}
        assert categories == {"mixer", "sanctioned"}
        # Tornado Cash: sanctioned between 2022-08-08 and 2025-03-21, not after.
        t = [TORNADO_100_ETH]
        assert await store.screen(conn, "ethereum", t, at=datetime(2024, 1, 1, tzinfo=UTC))
        assert not await store.screen(conn, "ethereum", t, at=datetime(2025, 6, 1, tzinfo=UTC))
        assert not await store.screen(conn, "ethereum", t, at=datetime(2022, 1, 1, tzinfo=UTC))
        assert await store.screen(conn, "ethereum", [LAZARUS_RONIN])
        # The shipped OFAC list date is recorded: an older SDN file cannot roll it back.
        assert await label_imports.latest_list_date(conn, "ofac-sdn") == datetime(2026, 8, 20, tzinfo=UTC)


async def test_a_changed_default_file_adds_without_overwriting(db: Database, tmp_path: Path) -> None:
    text = DEFAULT_CSV.read_text(encoding="utf-8").splitlines()
    header = next(i for i, line in enumerate(text) if line.startswith("chain,"))
    edited = [line for line in text if BINANCE_14 not in line]
    edited.insert(header + 1, f"ethereum,{BINANCE_14},Binance,exchange,default,0.1,,,,,")
    edited.append(f"ethereum,0x{'ab' * 20},Example,otc,default,1,,,,,")
    path = tmp_path / "default_labels.csv"
    path.write_text("\n".join(edited) + "\n", encoding="utf-8")
    r = await load_default_labels(db.pool, path=path, manifest=DEFAULT_MANIFEST)
    assert not r.skipped and r.inserted == 1
    async with db.pool.acquire() as conn:
        binance = (await store.lookup(conn, "ethereum", [BINANCE_14]))[BINANCE_14]
        assert all(lb.confidence > 0.1 for lb in binance)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tracer")
    labels_cli.register(parser.add_subparsers(dest="command", required=True))
    return parser


async def _run(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.func
    # Handlers run their own event loop, as from the command line.
    return await asyncio.to_thread(handler, args)


async def test_cli_import_show_and_load_default(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trx = tmp_path / "sanctioned_addresses_TRX.txt"
    trx.write_text("TNXoiAJ3dct8Fjg4M9fkLFh9S2v9TXc32G\n", encoding="utf-8")
    url = ["--database-url", database_url]
    assert await _run(["labels", "import", str(trx), *url]) == 1  # no list date
    assert "--list-date" in capsys.readouterr().err
    assert await _run(["labels", "import", str(trx), "--list-date", "2024-09-27", *url]) == 0
    assert "scope=ofac-sdn:TRX" in capsys.readouterr().out
    assert await _run(["labels", "import", str(trx), "--list-date", "2024-09-27", *url]) == 0
    assert "already imported" in capsys.readouterr().out

    assert await _run(["labels", "load-default", *url]) == 0
    assert "already loaded" in capsys.readouterr().out  # the module's database has it from above

    assert await _run(["labels", "show", "0xA160cdAB225685dA1d56aa342Ad8841c3b53f291", *url]) == 0
    out = capsys.readouterr().out
    assert "Tornado Cash" in out and "TORNADO CASH" in out and "2025-03-21" in out
    assert await _run(["labels", "show", TORNADO_100_ETH, "--at", "2025-06-01", "--json", *url]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert {lb["category"] for lb in shown["labels"]} == {"mixer"}
    assert await _run(["labels", "show", "TNXoiAJ3dct8Fjg4M9fkLFh9S2v9TXc32G", *url]) == 0
    assert "ofac-sdn:TRX" in capsys.readouterr().out


# Each protocol launderers bridge through, and the chains whose contracts the default set must
# name (the real addresses, with where they were found: tracer/data/labels/bridge_contracts.csv).
BRIDGE_PROTOCOLS = {
    "THORChain": {"ethereum", "bsc", "avalanche"},
    "Maya Protocol": {"ethereum"},
    "Across Protocol": {"ethereum", "arbitrum", "optimism", "polygon", "base"},
    "Wormhole": {"ethereum", "bsc", "polygon", "avalanche", "arbitrum", "optimism", "base", "fantom", "celo"},
    "Stargate": {"ethereum", "arbitrum", "avalanche", "base", "bsc", "gnosis"},
    "Hop Protocol": {"ethereum", "polygon", "arbitrum", "optimism", "gnosis"},
    "Synapse": {"ethereum", "arbitrum", "avalanche", "bsc", "optimism", "polygon", "base", "fantom"},
    "deBridge": {"ethereum", "bsc", "polygon", "arbitrum", "avalanche", "optimism", "base", "fantom"},
    "Symbiosis": {"ethereum", "bsc", "avalanche", "polygon", "arbitrum", "optimism", "base"},
    "Orbiter Finance": {"ethereum", "arbitrum", "optimism", "base"},
}
REAL_ROUTERS = {("ethereum", "0xd37bbe5744d730a1d98d8dc97c42f0ca46ad7146"),
                ("bsc", "0xb30ec53f98ff5947ede720d32ac2da7e52a5f56b")}


def test_each_bridge_protocol_has_its_contracts_on_each_chain_named() -> None:
    rows, invalid = read_label_csv(DEFAULT_CSV)
    assert not invalid
    found: dict[str, set[str]] = {}
    for label, _ in rows:
        ev = label.evidence or {}
        if label.category == "bridge" and ev.get("protocol"):
            found.setdefault(ev["protocol"], set()).add(label.chain)
            # Provenance: the repository at a commit and the file the address is listed in, and when.
            repo, _, path = str(ev["listed_in"]).partition(":")
            assert "@" in repo and len(repo.split("@")[1]) == 40 and path, ev
            assert datetime.strptime(ev["checked"], "%Y-%m-%d") and ev["role"]
    for protocol, chains in BRIDGE_PROTOCOLS.items():
        assert chains <= found.get(protocol, set()), (protocol, chains - found.get(protocol, set()))
    thorchain = {(lb.chain, lb.address) for lb, _ in rows if (lb.evidence or {}).get("protocol") == "THORChain"}
    assert REAL_ROUTERS <= thorchain
