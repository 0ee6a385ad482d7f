"""OFAC's Tron addresses through both list formats: the flat history CSV keeps their case, the
sanctioned-addresses.json lowercases them; the lowercased copy must confirm the stored (hex) row,
not leave it delisted."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.test_labels_import import FLAT_HEADER, day, ofac_json, write
from tracer.addresses import normalize_tron
from tracer.labels.importer import import_file
from tracer.store import labels as store
from tracer.store.db import Database

pytestmark = pytest.mark.asyncio(loop_scope="session")

GARANTEX_TRX = "TNXoiAJ3dct8Fjg4M9fkLFh9S2v9TXc32G"


async def test_a_lowercased_tron_address_confirms_its_stored_row(db: Database, tmp_path: Path) -> None:
    flat = write(tmp_path, "sdn_flat.csv", FLAT_HEADER + (
        f"{GARANTEX_TRX.lower()},TRX,GARANTEX EUROPE,CYBER2,40456,,2024-12-29,,2026-08-22,08/20/2026,True,"
        f"{GARANTEX_TRX}\n"))
    listed = write(tmp_path, "sanctioned-addresses.json", ofac_json("08/20/2026", {
        GARANTEX_TRX.lower(): ("TRX", "GARANTEX EUROPE", "CYBER2", "40456")}))
    async with db.pool.acquire() as conn:
        r = await import_file(conn, flat)
        assert r.stats["added"] == 1
        r = await import_file(conn, listed)
        assert r.stats["case_lost"] == 1 and r.stats["case_lost_unmatched"] == 0, r.stats
        assert r.stats["delisted"] == 0, r.stats
        hit = await store.screen(conn, "tron", [normalize_tron(GARANTEX_TRX)], at=day(2026, 8, 21))
        assert [lb.entity for lb in hit[normalize_tron(GARANTEX_TRX)]] == ["GARANTEX EUROPE"]
