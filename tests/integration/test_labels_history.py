"""Sanctions lists over time: import, re-import a newer list, delisting, relisting, screening.

The files are small hand-made documents in OFAC's published schemas (SDN.XML and
sdn_advanced.xml) with real public entries (Tornado Cash, Lazarus Group, Roman Semenov). The tests
of this module run in order on one database, like an operator importing lists as they appear.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from tracer.labels.importer import detect_format, import_file
from tracer.labels.parsed import LabelImportError
from tracer.store import label_imports
from tracer.store import labels as store
from tracer.store.db import Database

TORNADO_ROUTER = "0xd90e2f925DA726b50C4Ed8D0Fb90Ad053324F31b"
TORNADO_100 = "0xA160cdAB225685dA1d56aa342Ad8841c3b53f291"
RONIN_EXPLOITER = "0x098B716B8Aaf21512996dC57EB0615e2383E2f96"
SEMENOV_ETH = "0xdcbEfFBECcE100cCE9E4b153C4e15cB885643193"
YAN_XBT = "1Kuf2Rd8mDyAViwBozGTNYnvWL8uYFrkVo"


def day(y: int, m: int, d: int) -> datetime:
    return datetime(y, m, d, tzinfo=UTC)


def sdn_xml(publish_date: str, *, tornado: bool = True, semenov: bool = True) -> str:
    """SDN.XML as OFAC publishes it (namespace, publshInformation typo and all)."""
    tornado_entry = f"""
  <sdnEntry>
    <uid>39796</uid>
    <lastName>TORNADO CASH</lastName>
    <sdnType>Entity</sdnType>
    <programList>
      <program>CYBER2</program>
      <program>DPRK3</program>
    </programList>
    <idList>
      <id>
        <uid>182520</uid>
        <idType>Website</idType>
        <idNumber>https://tornado.cash</idNumber>
      </id>
      <id>
        <uid>182521</uid>
        <idType>Digital Currency Address - ETH</idType>
        <idNumber>{TORNADO_ROUTER}</idNumber>
      </id>
      <id>
        <uid>182522</uid>
        <idType>Digital Currency Address - ETH</idType>
        <idNumber>{TORNADO_100}</idNumber>
      </id>
    </idList>
  </sdnEntry>""" if tornado else ""
    semenov_entry = f"""
  <sdnEntry>
    <uid>44718</uid>
    <firstName>Roman</firstName>
    <lastName>SEMENOV</lastName>
    <sdnType>Individual</sdnType>
    <programList>
      <program>CYBER2</program>
      <program>DPRK3</program>
    </programList>
    <idList>
      <id>
        <uid>183001</uid>
        <idType>Digital Currency Address - ETH</idType>
        <idNumber>{SEMENOV_ETH}</idNumber>
      </id>
    </idList>
    <akaList>
      <aka>
        <uid>67001</uid>
        <type>a.k.a.</type>
        <category>strong</category>
        <lastName>SEMENOV</lastName>
        <firstName>Roman Sergeevich</firstName>
      </aka>
    </akaList>
  </sdnEntry>""" if semenov else ""
    return f"""<?xml version="1.0" standalone="yes"?>
<sdnList xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
         xmlns="https://sanctionslistservice.ofac.treas.gov/api/PublicationPreview/exports/XML">
  <publshInformation>
    <Publish_Date>{publish_date}</Publish_Date>
    <Record_Count>3</Record_Count>
  </publshInformation>
  <sdnEntry>
    <uid>27307</uid>
    <lastName>LAZARUS GROUP</lastName>
    <sdnType>Entity</sdnType>
    <programList>
      <program>DPRK3</program>
    </programList>
    <idList>
      <id>
        <uid>172610</uid>
        <idType>Digital Currency Address - ETH</idType>
        <idNumber>{RONIN_EXPLOITER}</idNumber>
      </id>
    </idList>
  </sdnEntry>
  <sdnEntry>
    <uid>25308</uid>
    <firstName>Xiaobing</firstName>
    <lastName>YAN</lastName>
    <sdnType>Individual</sdnType>
    <programList>
      <program>SDNTK</program>
    </programList>
    <idList>
      <id>
        <uid>130001</uid>
        <idType>Digital Currency Address - XBT</idType>
        <idNumber>{YAN_XBT}</idNumber>
      </id>
    </idList>
  </sdnEntry>{tornado_entry}{semenov_entry}
</sdnList>
"""


def sdn_advanced_xml() -> str:
    """sdn_advanced.xml of 2022-08-09: reference values, parties with features, sanctions entries."""
    return f"""<?xml version="1.0" encoding="utf-8"?>
<Sanctions xmlns:xsd="http://www.w3.org/2001/XMLSchema"
           xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
           xmlns="https://sanctionslistservice.ofac.treas.gov/api/PublicationPreview/exports/ADVANCED_XML">
  <DateOfIssue>
    <Year>2022</Year>
    <Month>8</Month>
    <Day>9</Day>
  </DateOfIssue>
  <ReferenceValueSets>
    <FeatureTypeValues>
      <FeatureType ID="8" FeatureTypeGroupID="1">Website</FeatureType>
      <FeatureType ID="345" FeatureTypeGroupID="1">Digital Currency Address - ETH</FeatureType>
      <FeatureType ID="344" FeatureTypeGroupID="1">Digital Currency Address - XBT</FeatureType>
    </FeatureTypeValues>
    <NamePartTypeValues>
      <NamePartType ID="1520">Last Name</NamePartType>
      <NamePartType ID="1521">First Name</NamePartType>
      <NamePartType ID="1525">Entity Name</NamePartType>
    </NamePartTypeValues>
    <PartySubTypeValues>
      <PartySubType ID="3" PartyTypeID="2">Unknown</PartySubType>
      <PartySubType ID="4" PartyTypeID="1">Unknown</PartySubType>
    </PartySubTypeValues>
    <PartyTypeValues>
      <PartyType ID="1">Individual</PartyType>
      <PartyType ID="2">Entity</PartyType>
    </PartyTypeValues>
    <SanctionsTypeValues>
      <SanctionsType ID="1">Program</SanctionsType>
      <SanctionsType ID="2">Block</SanctionsType>
    </SanctionsTypeValues>
  </ReferenceValueSets>
  <Locations />
  <IDRegDocuments />
  <DistinctParties>
    <DistinctParty FixedRef="36">
      <Profile ID="36" PartySubTypeID="3">
        <Identity ID="4000" FixedRef="36" Primary="true" False="false">
          <Alias FixedRef="36" AliasTypeID="1403" Primary="true" LowQuality="false">
            <DocumentedName ID="5000" FixedRef="36" DocNameStatusID="1">
              <DocumentedNamePart>
                <NamePartValue NamePartGroupID="6000" ScriptID="215">AEROCARIBBEAN AIRLINES</NamePartValue>
              </DocumentedNamePart>
            </DocumentedName>
          </Alias>
        </Identity>
      </Profile>
    </DistinctParty>
    <DistinctParty FixedRef="39796">
      <Profile ID="39796" PartySubTypeID="3">
        <Identity ID="41000" FixedRef="39796" Primary="true" False="false">
          <Alias FixedRef="39796" AliasTypeID="1403" Primary="true" LowQuality="false">
            <DocumentedName ID="42000" FixedRef="39796" DocNameStatusID="1">
              <DocumentedNamePart>
                <NamePartValue NamePartGroupID="43000" ScriptID="215">TORNADO CASH</NamePartValue>
              </DocumentedNamePart>
            </DocumentedName>
          </Alias>
          <NamePartGroups>
            <MasterNamePartGroup>
              <NamePartGroup ID="43000" NamePartTypeID="1525" />
            </MasterNamePartGroup>
          </NamePartGroups>
        </Identity>
        <Feature ID="36618" FeatureTypeID="8">
          <FeatureVersion ID="34336" ReliabilityID="1560">
            <VersionDetail DetailTypeID="1432">https://tornado.cash</VersionDetail>
          </FeatureVersion>
        </Feature>
        <Feature ID="36619" FeatureTypeID="345">
          <FeatureVersion ID="34337" ReliabilityID="1560">
            <Comment />
            <VersionDetail DetailTypeID="1432">{TORNADO_ROUTER}</VersionDetail>
          </FeatureVersion>
          <IdentityReference IdentityID="41000" IdentityFeatureLinkTypeID="1" />
        </Feature>
        <Feature ID="36620" FeatureTypeID="345">
          <FeatureVersion ID="34338" ReliabilityID="1560">
            <VersionDetail DetailTypeID="1432">{TORNADO_100}</VersionDetail>
          </FeatureVersion>
        </Feature>
      </Profile>
    </DistinctParty>
    <DistinctParty FixedRef="25308">
      <Profile ID="25308" PartySubTypeID="4">
        <Identity ID="26000" FixedRef="25308" Primary="true" False="false">
          <Alias FixedRef="25308" AliasTypeID="1403" Primary="true" LowQuality="false">
            <DocumentedName ID="27000" FixedRef="25308" DocNameStatusID="1">
              <DocumentedNamePart>
                <NamePartValue NamePartGroupID="28001" ScriptID="215">YAN</NamePartValue>
              </DocumentedNamePart>
              <DocumentedNamePart>
                <NamePartValue NamePartGroupID="28002" ScriptID="215">Xiaobing</NamePartValue>
              </DocumentedNamePart>
            </DocumentedName>
          </Alias>
          <Alias FixedRef="25308" AliasTypeID="1400" Primary="false" LowQuality="false">
            <DocumentedName ID="27001" FixedRef="25308" DocNameStatusID="2">
              <DocumentedNamePart>
                <NamePartValue NamePartGroupID="28001" ScriptID="215">ZHOU</NamePartValue>
              </DocumentedNamePart>
              <DocumentedNamePart>
                <NamePartValue NamePartGroupID="28002" ScriptID="215">William</NamePartValue>
              </DocumentedNamePart>
            </DocumentedName>
          </Alias>
          <NamePartGroups>
            <MasterNamePartGroup>
              <NamePartGroup ID="28001" NamePartTypeID="1520" />
            </MasterNamePartGroup>
            <MasterNamePartGroup>
              <NamePartGroup ID="28002" NamePartTypeID="1521" />
            </MasterNamePartGroup>
          </NamePartGroups>
        </Identity>
        <Feature ID="30001" FeatureTypeID="344">
          <FeatureVersion ID="30002" ReliabilityID="1560">
            <VersionDetail DetailTypeID="1432">{YAN_XBT}</VersionDetail>
          </FeatureVersion>
        </Feature>
      </Profile>
    </DistinctParty>
  </DistinctParties>
  <ProfileRelationships />
  <SanctionsEntries>
    <SanctionsEntry ID="36" ProfileID="36" ListID="1550">
      <EntryEvent ID="36" EntryEventTypeID="1" LegalBasisID="1">
        <Date CalendarTypeID="1"><Year>1986</Year><Month>1</Month><Day>1</Day></Date>
      </EntryEvent>
      <SanctionsMeasure ID="1" SanctionsTypeID="1"><Comment>CUBA</Comment></SanctionsMeasure>
    </SanctionsEntry>
    <SanctionsEntry ID="39796" ProfileID="39796" ListID="1550">
      <EntryEvent ID="39796" EntryEventTypeID="1" LegalBasisID="1">
        <Date CalendarTypeID="1"><Year>2022</Year><Month>8</Month><Day>8</Day></Date>
        <Comment />
      </EntryEvent>
      <SanctionsMeasure ID="2" SanctionsTypeID="2"><Comment /></SanctionsMeasure>
      <SanctionsMeasure ID="3" SanctionsTypeID="1"><Comment>CYBER2</Comment></SanctionsMeasure>
      <SanctionsMeasure ID="4" SanctionsTypeID="1"><Comment>DPRK3</Comment></SanctionsMeasure>
    </SanctionsEntry>
    <SanctionsEntry ID="25308" ProfileID="25308" ListID="1550">
      <EntryEvent ID="25308" EntryEventTypeID="1" LegalBasisID="1">
        <Date CalendarTypeID="1"><Year>2018</Year><Month>8</Month><Day>21</Day></Date>
      </EntryEvent>
      <SanctionsMeasure ID="5" SanctionsTypeID="1"><Comment>SDNTK</Comment></SanctionsMeasure>
    </SanctionsEntry>
  </SanctionsEntries>
  <SanctionsEntryLinks />
</Sanctions>
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def lower(a: str) -> str:
    return a.lower()


async def test_advanced_xml_sets_listing_dates(db: Database, tmp_path: Path) -> None:
    path = write(tmp_path, "sdn_advanced.xml", sdn_advanced_xml())
    assert detect_format(path) == "sdn-advanced"
    async with db.pool.acquire() as conn:
        result = await import_file(conn, path)
        assert result.list_date == day(2022, 8, 9)
        assert result.stats["added"] == 3 and result.stats["delisted"] == 0
        found = await store.lookup(conn, "ethereum", [lower(TORNADO_ROUTER)])
        (tc,) = found[lower(TORNADO_ROUTER)]
        assert (tc.entity, tc.category, tc.source, tc.program) == ("TORNADO CASH", "sanctioned", "ofac-sdn",
                                                                   "CYBER2, DPRK3")
        assert tc.valid_from == day(2022, 8, 8) and tc.valid_to is None
        assert tc.evidence is not None and tc.evidence["sdn_uid"] == "39796"
        # Individuals are named "<given> <last>", as SDN.XML names them, and keep their a.k.a.s.
        (yan,) = (await store.lookup(conn, "bitcoin", [YAN_XBT]))[YAN_XBT]
        assert yan.entity == "Xiaobing YAN" and yan.valid_from == day(2018, 8, 21)
        assert yan.evidence is not None and yan.evidence["akas"] == ["William ZHOU"]
        # Base58 keeps its case: the lowercased spelling is a different (invalid) address.
        assert await store.lookup(conn, "bitcoin", [YAN_XBT.lower()]) == {}


async def test_same_bytes_again_is_a_noop(db: Database, tmp_path: Path) -> None:
    path = write(tmp_path, "sdn_advanced.xml", sdn_advanced_xml())
    async with db.pool.acquire() as conn:
        result = await import_file(conn, path)
    assert result.duplicate_of is not None and result.import_id is None


async def test_newer_sdn_xml_adds_with_the_list_date(db: Database, tmp_path: Path) -> None:
    path = write(tmp_path, "SDN.XML", sdn_xml("03/20/2025"))
    assert detect_format(path) == "sdn-xml"
    async with db.pool.acquire() as conn:
        result = await import_file(conn, path)
        assert result.list_date == day(2025, 3, 20)
        # Lazarus and Semenov are new; Tornado and Yan were already listed (same claim, any format).
        assert result.stats["added"] == 2
        assert result.stats["delisted"] == 0
        (semenov,) = (await store.lookup(conn, "ethereum", [lower(SEMENOV_ETH)]))[lower(SEMENOV_ETH)]
        assert semenov.entity == "Roman SEMENOV" and semenov.valid_from == day(2025, 3, 20)
        # A known listing date is never moved by a list that does not carry one.
        (tc,) = (await store.lookup(conn, "ethereum", [lower(TORNADO_100)]))[lower(TORNADO_100)]
        assert tc.valid_from == day(2022, 8, 8)


async def test_delisting_tornado_cash_and_screening_at_two_dates(db: Database, tmp_path: Path) -> None:
    path = write(tmp_path, "SDN-2025-03-21.XML", sdn_xml("03/21/2025", tornado=False))
    async with db.pool.acquire() as conn:
        result = await import_file(conn, path)
        assert result.stats["delisted"] == 2 and result.stats["added"] == 0
        addresses = [lower(TORNADO_ROUTER), lower(RONIN_EXPLOITER)]
        # Lazarus entered this database with the 2025-03-20 list (valid_from = that list's date).
        before = await store.screen(conn, "ethereum", addresses, at=datetime(2025, 3, 20, 15, tzinfo=UTC))
        after = await store.screen(conn, "ethereum", addresses, at=day(2025, 4, 1))
        assert set(before) == {lower(TORNADO_ROUTER), lower(RONIN_EXPLOITER)}
        assert set(after) == {lower(RONIN_EXPLOITER)}
        # Listed from 2022-08-08: a 2021 transfer to the router was not to a sanctioned address.
        assert await store.screen(conn, "ethereum", addresses[:1], at=day(2021, 6, 1)) == {}
        # The row is kept, closed; lookup without a time shows it with its interval.
        (tc,) = (await store.lookup(conn, "ethereum", addresses[:1]))[addresses[0]]
        assert (tc.valid_from, tc.valid_to) == (day(2022, 8, 8), day(2025, 3, 21))
        assert (await store.lookup(conn, "ethereum", addresses[:1], at=day(2025, 4, 1))) == {}
        history = await store.history(conn, "ethereum", TORNADO_ROUTER)  # checksummed input is fine
        events = [e.event for _, evs in history for e in evs]
        assert events == ["added", "delisted"]
        assert history[0][1][1].at == day(2025, 3, 21)


async def test_screen_consults_every_evm_chain(db: Database) -> None:
    async with db.pool.acquire() as conn:
        hit = await store.screen(conn, "arbitrum", [lower(RONIN_EXPLOITER)], at=day(2025, 4, 1))
        assert hit[lower(RONIN_EXPLOITER)][0].entity == "LAZARUS GROUP"
        assert await store.lookup(conn, "arbitrum", [lower(RONIN_EXPLOITER)]) == {}


async def test_older_list_is_refused(db: Database, tmp_path: Path) -> None:
    path = write(tmp_path, "SDN-old.XML", sdn_xml("01/02/2024"))
    async with db.pool.acquire() as conn:
        with pytest.raises(LabelImportError, match="older"):
            await import_file(conn, path)
        # Nothing was recorded for the refused file.
        assert all(r.file_name != "SDN-old.XML" for r in await label_imports.imports(conn))


async def test_relisting_opens_a_new_interval(db: Database, tmp_path: Path) -> None:
    path = write(tmp_path, "SDN-2025-06-02.XML", sdn_xml("06/02/2025"))
    async with db.pool.acquire() as conn:
        result = await import_file(conn, path)
        assert result.stats["relisted"] == 2
        a = lower(TORNADO_100)
        assert await store.screen(conn, "ethereum", [a], at=day(2025, 4, 1)) == {}
        assert a in await store.screen(conn, "ethereum", [a], at=day(2025, 7, 1))
        assert a in await store.screen(conn, "ethereum", [a], at=day(2023, 1, 1))
        rows = (await store.lookup(conn, "ethereum", [a]))[a]
        assert sorted((r.valid_from, r.valid_to) for r in rows) == [
            (day(2022, 8, 8), day(2025, 3, 21)),
            (day(2025, 6, 2), None),
        ]
