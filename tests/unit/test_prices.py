"""USD prices: Chainlink-compatible feeds read with eth_call at blocks (devchain aggregators with
hand-set rounds), the price file importer as hostile input, and a traced case's hops valued at
their blocks' prices (feed, else imported file, else unknown, never 0).

This file holds the tests that need nothing outside the process; those over a devchain, Postgres
or a subprocess are in tests/integration/test_prices.py.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from tracer.chains import feeds
from tracer.domain.transfers import NATIVE
from tracer.engine.price_file import PriceFileError, parse_price_file

ETH_USD = feeds.known_feed("ethereum", NATIVE)
assert ETH_USD is not None




def _write(tmp: Path, name: str, text: str | bytes) -> Path:
    p = tmp / name
    p.write_bytes(text.encode() if isinstance(text, str) else text)
    return p


def test_price_files_csv_and_json(tmp_path: Path) -> None:
    rows = parse_price_file(_write(tmp_path, "p.csv", "date,asset,chain,usd\n2024-03-01,native,ethereum,3401.5\n"
                                                      ",native,ethereum,3402\n".replace(",native,ethereum,3402\n",
                                                                                        "")))
    assert [(r.chain, r.asset, str(r.day), r.usd, r.source) for r in rows] == [
        ("ethereum", "native", "2024-03-01", Decimal("3401.5"), "file")]
    doc = [{"block": 19000000, "asset": feeds.USDT.upper().replace("0X", "0x"), "chain": "ethereum", "usd": "0.9991"},
           {"date": "2024-03-01", "asset": "native", "chain": "bitcoin", "usd": 61000}]
    rows = parse_price_file(_write(tmp_path, "p.json", json.dumps(doc)))
    assert rows[0].asset == feeds.USDT and rows[0].block_number == 19000000 and rows[0].usd == Decimal("0.9991")
    assert rows[1].chain == "bitcoin" and rows[1].usd == 61000


@pytest.mark.parametrize("body", [
    "date,asset,chain,usd\n2024-03-01,native,ethereum,0\n",  # zero is no price
    "date,asset,chain,usd\n2024-03-01,native,ethereum,-3\n",
    "date,asset,chain,usd\n2024-03-01,native,ethereum,NaN\n",
    "date,asset,chain,usd\n2024-03-01,native,ethereum,Infinity\n",
    "date,asset,chain,usd\n2024-02-30,native,ethereum,3000\n",
    "date,asset,chain,usd\n1999-01-01,native,ethereum,3000\n",
    "block,asset,chain,usd\n-5,native,ethereum,3000\n",
    "block,asset,chain,usd\n99999999999999999999999,native,ethereum,3000\n",
    "date,asset,chain,usd\n2024-03-01,<script>alert(1)</script>,ethereum,3000\n",
    "date,asset,chain,usd\n2024-03-01,native,<script>,3000\n",
    "date,asset,chain,usd\n2024-03-01,native,ethereum,3000\n2024-03-01,native,ethereum,3001\n",
    "date,block,asset,chain,usd\n2024-03-01,5,native,ethereum,3000\n",
    "date,asset,usd\n2024-03-01,native,3000\n",
    "date,asset,chain,usd\n2024-03-01,native,ethereum,3000,extra\n",
    "date,asset,chain,usd\n2024-03-01,native,eth\x00ereum,3000\n",
    '{"date": "2024-03-01"}',
    '[{"date": "2024-03-01", "asset": "native", "chain": "ethereum", "usd": {"a": 1}}]',
    "[" * 5000 + "]" * 5000,
    "[]",
])
def test_hostile_price_files_are_refused_whole(tmp_path: Path, body: str) -> None:
    with pytest.raises(PriceFileError):
        parse_price_file(_write(tmp_path, "bad.csv", body))


def test_a_price_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PriceFileError, match="UTF-8"):
        parse_price_file(_write(tmp_path, "bad.csv", b"date,asset,chain,usd\n2024-03-01,\xff,ethereum,1\n"))
