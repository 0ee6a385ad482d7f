"""Each import format, parsed and applied: OFAC JSON, the flat history CSV, 0xB10C per-asset
lists, GraphSense TagPack YAML and flat CSV, plain label CSV; plus the upsert contract."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tracer.addresses import normalize_tron
from tracer.domain.labels import Label
from tracer.labels.importer import detect_format, import_file, parse_file
from tracer.labels.parsed import LabelImportError
from tracer.labels.vocab import chain_for_asset, normalize_address, normalize_category
from tracer.store import labels as store
from tracer.store.db import Database

LAZARUS_ETH = "0x098b716b8aaf21512996dc57eb0615e2383e2f96"
TC_POOL = "0x12d66f87a04a9e220743712ce6d9bb1b5616b8fc"
GARANTEX_TRX = "TNXoiAJ3dct8Fjg4M9fkLFh9S2v9TXc32G"
YAN_XBT = "1Kuf2Rd8mDyAViwBozGTNYnvWL8uYFrkVo"
BECH32 = "bc1q2kp3yzdyaf0ahnfcnpjzs7tnw3y0m6fq4gy8wp"  # a valid bech32 address (checksums are checked)


def day(y: int, m: int, d: int) -> datetime:
    return datetime(y, m, d, tzinfo=UTC)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def ofac_json(list_date: str, addresses: dict[str, tuple[str, str, str, str]]) -> str:
    """sanctioned-addresses.json shape; values are (feature asset, entity, program, uid)."""
    return json.dumps({
        "metadata": {"lastUpdated": "2026-08-22T04:43:26.646Z", "sdnListDate": list_date,
                     "source": "OFAC SDN List", "totalAddresses": len(addresses)},
        "addresses": {
            a: {"type": f"Digital Currency Address - {asset}",
                "entries": [{"entity": entity, "program": program, "type": f"Digital Currency Address - {asset}",
                             "uid": uid, "akas": []}]}
            for a, (asset, entity, program, uid) in addresses.items()
        },
    })


FLAT_HEADER = ("address,asset,entity,program,sdn_uid,akas,first_seen_commit_date,first_seen_sdn_list_date,"
               "last_seen_commit_date,last_seen_sdn_list_date,in_latest,address_original_case_from_0xB10C\n")


def test_vocabulary() -> None:
    assert normalize_category("hot_wallet") == ("exchange", {"wallet": "hot"})
    assert normalize_category("Mixing Service")[0] == "mixer"
    assert normalize_category("whatever")[0] == "other"
    assert chain_for_asset("XBT", YAN_XBT) == "bitcoin"
    assert chain_for_asset("USDT", GARANTEX_TRX) == "tron"
    assert chain_for_asset("USDT", LAZARUS_ETH) == "ethereum"
    assert chain_for_asset("BSC", LAZARUS_ETH) == "bsc"
    assert normalize_address("ethereum", "0x098B716B8Aaf21512996dC57EB0615e2383E2f96") == LAZARUS_ETH
    assert normalize_address("bitcoin", YAN_XBT) == YAN_XBT  # base58: case is data
    assert normalize_address("bitcoin", BECH32.upper()) == BECH32  # bech32: case-insensitive
    with pytest.raises(ValueError):
        Label(chain="ethereum", address=LAZARUS_ETH, entity="x", category="hot_wallet", source="s")


async def test_upsert_is_bulk_idempotent_and_keeps_history(db: Database) -> None:
    a = "0x00000000000000000000000000000000000000a1"
    label = Label(chain="ethereum", address=a, entity="Binance", category="exchange", source="test",
                  confidence=0.8, evidence={"name_tag": "Binance 14"})
    async with db.pool.acquire() as conn:
        assert await store.upsert_labels(conn, [label, label]) == 1  # duplicates in one batch merge
        assert await store.upsert_labels(conn, [label]) == 0  # nothing changed, nothing written
        better = Label(chain="ethereum", address=a, entity="Binance", category="exchange", source="test",
                       confidence=0.9, evidence={"wallet": "hot"})
        assert await store.upsert_labels(conn, [better]) == 1
        (stored,) = (await store.lookup(conn, "ethereum", [a]))[a]
        assert stored.confidence == 0.9
        assert stored.evidence == {"name_tag": "Binance 14", "wallet": "hot"}  # merged, not replaced
        (_, events), = await store.history(conn, "ethereum", a)
        assert [e.event for e in events] == ["added", "changed"]
        assert events[1].details is not None
        assert events[1].details["old"]["confidence"] == 0.8
        # "ignore" never touches an existing row (the default set must not undo an import).
        worse = Label(chain="ethereum", address=a, entity="Binance", category="exchange", source="test",
                      confidence=0.1)
        assert await store.upsert_labels(conn, [worse], on_conflict="ignore") == 0
        assert (await store.lookup(conn, "ethereum", [a]))[a][0].confidence == 0.9
        # Addresses come back under the spelling asked for.
        mixed = "0x00000000000000000000000000000000000000A1"
        assert mixed in await store.lookup(conn, "ethereum", [mixed])


async def test_ofac_json_and_case_lost_addresses(db: Database, tmp_path: Path) -> None:
    # Seed the case-correct spelling of a Tron address from a list that keeps case.
    trx = write(tmp_path, "sanctioned_addresses_TRX.txt", f"{GARANTEX_TRX}\n")
    async with db.pool.acquire() as conn:
        with pytest.raises(LabelImportError, match="--list-date"):
            await import_file(conn, trx)
        r = await import_file(conn, trx, list_date=day(2024, 9, 27))
        assert r.scope == "ofac-sdn:TRX" and r.stats["added"] == 1
        # Stored as Tron's hex (0x41 + 20 bytes), what traces look labels up by.
        garantex = normalize_tron(GARANTEX_TRX)
        hit = await store.lookup(conn, "tron", [garantex])
        assert hit[garantex][0].source == "ofac-sdn:TRX"

    path = write(tmp_path, "sanctioned-addresses.json", ofac_json("08/20/2026", {
        LAZARUS_ETH: ("ETH", "LAZARUS GROUP", "DPRK3", "27307"),
        YAN_XBT.lower(): ("XBT", "Xiaobing YAN", "SDNTK", "25308"),
        BECH32: ("XBT", "Xiaobing YAN", "SDNTK", "25308"),
    }))
    assert detect_format(path) == "ofac-json"
    parsed = parse_file(path)
    assert parsed.list_date == day(2026, 8, 20)
    assert {lb.address for lb in parsed.labels} == {LAZARUS_ETH, BECH32}
    assert [lb.address for lb in parsed.case_lost] == [YAN_XBT.lower()]  # lowercased base58: unusable
    async with db.pool.acquire() as conn:
        r = await import_file(conn, path)
        assert r.stats["added"] == 2 and r.stats["case_lost"] == 1 and r.stats["case_lost_unmatched"] == 1
        assert await store.lookup(conn, "bitcoin", [YAN_XBT.lower()]) == {}


async def test_flat_history_csv(db: Database, tmp_path: Path) -> None:
    rows = [
        # delisted Tornado Cash pool: last on the list dated 03/20/2025
        f"{TC_POOL},ETH,TORNADO CASH,\"CYBER2, DPRK3\",39796,,2024-12-29,,2025-03-21,03/20/2025,False,",
        # listed since before the history starts, original case known
        f"{YAN_XBT.lower()},XBT,Xiaobing YAN,SDNTK,25308,\"ZHOU, William\",2024-12-29,,2026-08-22,08/20/2026,True,"
        f"{YAN_XBT}",
        # added during the history
        f"{LAZARUS_ETH},ETH,LAZARUS GROUP,DPRK3,27307,,2025-05-02,05/01/2025,2026-08-22,08/20/2026,True,",
    ]
    path = write(tmp_path, "sdn_flat.csv", FLAT_HEADER + "\n".join(rows) + "\n")
    assert detect_format(path) == "ofac-flat"
    parsed = parse_file(path)
    by_addr = {lb.address: lb for lb in parsed.labels}
    assert by_addr[TC_POOL].valid_to == day(2025, 3, 21) and by_addr[TC_POOL].valid_from is None
    assert by_addr[YAN_XBT].valid_from is None and by_addr[YAN_XBT].valid_to is None
    assert by_addr[YAN_XBT].evidence is not None and by_addr[YAN_XBT].evidence["akas"] == ["ZHOU, William"]
    assert by_addr[LAZARUS_ETH].valid_from == day(2025, 5, 1)
    assert parsed.list_date == day(2026, 8, 20)
    async with db.pool.acquire() as conn:
        r = await import_file(conn, path)
        # Lazarus and the bech32 address were open from the JSON of the same date: the bech32 one
        # is absent from this file, so it is delisted; Tornado arrives already closed.
        assert r.stats["delisted"] == 1
        hit = await store.screen(conn, "ethereum", [TC_POOL], at=day(2025, 1, 1))
        assert hit[TC_POOL][0].entity == "TORNADO CASH"
        assert await store.screen(conn, "ethereum", [TC_POOL], at=day(2025, 3, 21)) == {}
        assert YAN_XBT in await store.screen(conn, "bitcoin", [YAN_XBT])


TAGPACK = """\
title: Example exchange reserves and a hack
creator: tracer tests
description: Header fields apply to every tag that does not set them.
is_public: true
lastmod: 2022-11-16
category: exchange
confidence: service_data
source: https://example.org/proof-of-reserves
actor: binance
tags:
- address: '34xp4vRoCGJym3xR7yCVPFHoCNxv4Twseo'
  currency: BTC
  label: binance reserve wallets BTC
- address: '0xBE0eB53F46cd790Cd13851d5EFf43D12404d33E8'
  currency: ETH
  label: binance reserve wallets ETH
- address: '0x098B716B8Aaf21512996dC57EB0615e2383E2f96'
  currency: ETH
  network: ETH
  label: Ronin bridge exploiter
  category: user
  abuse: service_hack
  actor: lazarusgroup
  confidence: authority_data
  source: https://home.treasury.gov/news/press-releases/jy0731
- address: 'TV6MuMXfmLbBqPZvBHdwFsDnQeVfnmiuSi'
  currency: TRX
  label: binance reserve wallets USDT
"""


async def test_tagpack_yaml(db: Database, tmp_path: Path) -> None:
    path = write(tmp_path, "exchange-wallets-example.yaml", TAGPACK)
    assert detect_format(path) == "tagpack"
    parsed = parse_file(path)
    by_addr = {lb.address: lb for lb in parsed.labels}
    btc = by_addr["34xp4vRoCGJym3xR7yCVPFHoCNxv4Twseo"]
    assert (btc.chain, btc.category, btc.entity, btc.confidence) == ("bitcoin", "exchange", "binance", 0.8)
    assert btc.source == "graphsense:exchange-wallets-example"
    assert btc.evidence is not None and btc.evidence["source_url"] == "https://example.org/proof-of-reserves"
    hack = by_addr["0x098b716b8aaf21512996dc57eb0615e2383e2f96"]
    assert (hack.category, hack.entity, hack.confidence) == ("hacker", "lazarusgroup", 0.95)
    assert by_addr[normalize_tron("TV6MuMXfmLbBqPZvBHdwFsDnQeVfnmiuSi")].chain == "tron"
    async with db.pool.acquire() as conn:
        r = await import_file(conn, path)
        assert r.scope is None and r.stats["upserted"] == 4
        again = await import_file(conn, path)
        assert again.duplicate_of == r.import_id


async def test_tagpack_flat_csv(tmp_path: Path) -> None:
    text = (
        "tagpack,address,currency,network,label,category,abuse,actor,source,confidence,lastmod,is_public,context\n"
        "packs/ransomware.yaml,1Lud76Q98VRHCUiyK7XUs7AgFofrqXeP78,BTC,,7ev3n,,ransomware,,"
        "https://zenodo.org/record/1238041,forensic,2021-11-14,,\n"
        "packs/mixing_fc2021.yaml,1BitcoinEaterAddressDontSendf59kuE,BTC,,Bitcoin Mixer,mixing_service,,,"
        "https://example.org,forensic,,,\"{\"\"note\"\": \"\"x\"\"}\"\n"
    )
    path = write(tmp_path, "tags.csv", text)
    assert detect_format(path) == "tagpack"
    parsed = parse_file(path)
    ransom, mixer = parsed.labels
    assert (ransom.category, ransom.source, ransom.confidence) == ("ransomware", "graphsense:ransomware", 0.7)
    assert mixer.category == "mixer" and mixer.evidence is not None and mixer.evidence["context"] == {"note": "x"}


async def test_plain_csv(db: Database, tmp_path: Path) -> None:
    text = (
        "# my own labels\n"
        "chain,address,entity,category,source\n"
        "etherscan,0x28C6c06298d514Db089934071355E5743bf21d60,Binance,hot_wallet,analyst\n"
        "bitcoin,bc1qm34lsc65zpw79lxes69zkqmk6ee3ewf0j77s3h,Binance,exchange,analyst\n"
        "ethereum,0xnot-an-address,Nobody,other,analyst\n"
    )
    path = write(tmp_path, "mine.csv", text)
    assert detect_format(path) == "csv"
    async with db.pool.acquire() as conn:
        r = await import_file(conn, path, created_by="alice")
        assert r.stats["upserted"] == 2 and r.stats["invalid"] == 1
        hw = "0x28c6c06298d514db089934071355e5743bf21d60"
        (label,) = (await store.lookup(conn, "ethereum", [hw]))[hw]
        assert (label.category, label.evidence, label.created_by) == ("exchange", {"wallet": "hot"}, "alice")


def test_unknown_formats_are_refused(tmp_path: Path) -> None:
    with pytest.raises(LabelImportError):
        detect_format(write(tmp_path, "x.csv", "a,b,c\n1,2,3\n"))
    with pytest.raises(LabelImportError):
        detect_format(write(tmp_path, "x.xml", "<foo/>"))


def test_one_evm_key_under_several_features_is_one_claim(tmp_path: Path) -> None:
    entry = {"entity": "Hyon Sop SIM", "program": "NPWMD", "uid": "42498", "akas": []}
    doc = {"metadata": {"sdnListDate": "08/20/2026"}, "addresses": {
        "0x4f47bc496083c727c5fbe3ce9cdf2b0f6496270c": {"type": "Digital Currency Address - ETH", "entries": [
            {**entry, "type": f"Digital Currency Address - {asset}"} for asset in ("ETH", "ARB", "BSC")]},
        # Omni USDT on a Bitcoin address, lowercased upstream (so it has letters base58 lacks).
        "3e6zckrrsdpc35cha9eftp1h3dlw18nfnv": {"type": "Digital Currency Address - USDT", "entries": [
            {**entry, "entity": "GARANTEX EUROPE OU", "type": "Digital Currency Address - USDT"}]},
    }}
    parsed = parse_file(write(tmp_path, "sanctioned-addresses.json", json.dumps(doc)))
    (label,) = parsed.labels
    assert label.chain == "ethereum" and label.evidence is not None
    assert label.evidence["assets"] == ["ARB", "BSC", "ETH"]
    (lossy,) = parsed.case_lost
    assert lossy.chain == "bitcoin"
