"""OFAC SDN list parsers: SDN.XML, sdn_advanced.xml, and the derived JSON/CSV/per-asset lists.

OFAC publishes crypto addresses as identity features "Digital Currency Address - <ASSET>" on SDN
entries. Every parser here yields one label per (address, SDN entry): category "sanctioned",
source "ofac-sdn", entity = the entry's primary name, program = its programmes ("CYBER2, DPRK3"),
so the same claim has the same identity whichever format it came from, and a newer list in any
format reconciles against rows an older one created (scope "ofac-sdn").

The large XML files are read with iterparse and cleared element by element: sdn_advanced.xml is
80+ MB and only a few hundred of its parties carry addresses.
"""

from __future__ import annotations

import csv
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from tracer.addresses import InvalidAddress
from tracer.domain.chains import EVM_CHAINS
from tracer.domain.labels import Category, Label
from tracer.labels.parsed import LabelImportError, ParsedList, day, next_day, parse_date
from tracer.labels.vocab import case_insensitive, chain_for_asset, normalize_address, visibly_case_lost

SOURCE = "ofac-sdn"
SCOPE = "ofac-sdn"
FEATURE_PREFIX = "Digital Currency Address - "
# OFAC is the authority on its own list; nothing is more certain than a designation.
CONFIDENCE = 1.0
UNNAMED_ENTITY = "OFAC SDN"


def _local(tag: str) -> str:
    # Both XML files have changed namespace over the years; match on local names only.
    return tag.rsplit("}", 1)[-1]


def _text(elem: ET.Element | None) -> str:
    return (elem.text or "").strip() if elem is not None else ""


def _child(elem: ET.Element, name: str) -> ET.Element | None:
    for c in elem:
        if _local(c.tag) == name:
            return c
    return None


def _children(elem: ET.Element, name: str) -> Iterator[ET.Element]:
    return (c for c in elem if _local(c.tag) == name)


def _descendants(elem: ET.Element, name: str) -> Iterator[ET.Element]:
    return (c for c in elem.iter() if _local(c.tag) == name)


class _Builder:
    """Turns (asset, raw address, entry facts) into labels, sorting out chain and letter case.

    An entry may list one address under several features (an 0x address as ETH and as USDT):
    that is one claim, so such labels are merged with every asset kept in evidence["assets"]."""

    def __init__(self, parsed: ParsedList) -> None:
        self.parsed = parsed
        self.exact: dict[tuple[Any, ...], Label] = {}
        self.lossy: dict[tuple[Any, ...], Label] = {}

    def add(
        self,
        asset: str,
        raw: str,
        entity: str,
        program: str | None,
        evidence: dict[str, Any],
        *,
        valid_from: datetime | None = None,
        valid_to: datetime | None = None,
        lowercased_upstream: bool = False,
        source: str = SOURCE,
    ) -> None:
        raw = raw.strip()
        if not raw:
            return
        chain = chain_for_asset(asset, raw)
        if chain in EVM_CHAINS:
            # OFAC lists one 0x key under several features (ETH, ARB, BSC, ETC, USDT...): one key,
            # one holder, so one claim filed under "ethereum" with every feature in
            # evidence["assets"]. screen() checks an EVM key on every EVM chain anyway, and the
            # formats that keep only one feature per address (the flat CSV) then agree.
            chain = "ethereum"
        try:
            address = normalize_address(chain, raw)
        except InvalidAddress as exc:
            self.parsed.invalid.append((raw, exc.reason))
            return
        label = Label(
            chain=chain, address=address, entity=entity or UNNAMED_ENTITY, category=Category.SANCTIONED,
            source=source, confidence=CONFIDENCE, valid_from=valid_from, valid_to=valid_to,
            program=program or None, evidence={"assets": [asset], **evidence},
        )
        lost = (lowercased_upstream and not case_insensitive(chain, raw)) or visibly_case_lost(chain, raw)
        target = self.lossy if lost else self.exact
        key = (*label.identity, valid_from, valid_to)
        prev = target.get(key)
        if prev is not None and prev.evidence is not None:
            assets = sorted({*prev.evidence.get("assets", []), asset})
            label = replace(prev, evidence={**prev.evidence, "assets": assets})
        target[key] = label

    def finish(self) -> ParsedList:
        self.parsed.labels.extend(self.exact.values())
        self.parsed.case_lost.extend(self.lossy.values())
        return self.parsed


def _programs(names: list[str]) -> str | None:
    seen: list[str] = []
    for n in names:
        for part in n.split(","):
            p = part.strip()
            if p and p not in seen:
                seen.append(p)
    return ", ".join(seen) or None


def _ended_elements(path: Path, root: str) -> Iterator[tuple[str, ET.Element]]:
    """(local name, element) of each element of an XML file as it ends, streamed (the caller
    clears what it is done with); refuses a file whose root element is not `root`."""
    root_seen = False
    for event, elem in ET.iterparse(path, events=("start", "end")):
        name = _local(elem.tag)
        if event == "start":
            if not root_seen:
                root_seen = True
                if name != root:
                    raise LabelImportError(f"{path}: root element is <{name}>, not <{root}>")
            continue
        yield name, elem


# ----------------------------------------------------------------------------------------------
# SDN.XML


def parse_sdn_xml(path: Path) -> ParsedList:
    """The classic SDN.XML: <sdnList><publshInformation><Publish_Date>MM/DD/YYYY ... <sdnEntry>
    with <uid>, <firstName>, <lastName>, <sdnType>, <programList><program>, and <idList><id> whose
    <idType> is "Digital Currency Address - XBT" and <idNumber> the address."""
    parsed = ParsedList(format="sdn-xml", source=SOURCE, scope=SCOPE, list_date=None)
    build = _Builder(parsed)
    for name, elem in _ended_elements(path, "sdnList"):
        if name == "Publish_Date":
            parsed.list_date = parse_date(_text(elem))
        elif name == "sdnEntry":
            _sdn_entry(elem, build)
            elem.clear()
    return build.finish()


def _sdn_entry(entry: ET.Element, build: _Builder) -> None:
    id_list = _child(entry, "idList")
    ids = list(_children(id_list, "id")) if id_list is not None else []
    features = [(i, _text(_child(i, "idType"))) for i in ids]
    features = [(i, t) for i, t in features if t.startswith(FEATURE_PREFIX)]
    if not features:
        return
    first = _text(_child(entry, "firstName"))
    last = _text(_child(entry, "lastName"))
    entity = f"{first} {last}".strip()
    program_list = _child(entry, "programList")
    programs = [_text(p) for p in _children(program_list, "program")] if program_list is not None else []
    akas: list[str] = []
    aka_list = _child(entry, "akaList")
    if aka_list is not None:
        for aka in _children(aka_list, "aka"):
            a_first, a_last = _text(_child(aka, "firstName")), _text(_child(aka, "lastName"))
            akas.append(f"{a_last}, {a_first}" if a_first else a_last)
    evidence: dict[str, Any] = {
        "sdn_uid": _text(_child(entry, "uid")),
        "sdn_type": _text(_child(entry, "sdnType")),
    }
    if akas:
        evidence["akas"] = akas
    for ident, id_type in features:
        asset = id_type[len(FEATURE_PREFIX) :].strip()
        build.add(asset, _text(_child(ident, "idNumber")), entity, _programs(programs), dict(evidence))


# ----------------------------------------------------------------------------------------------
# sdn_advanced.xml


def parse_sdn_advanced(path: Path) -> ParsedList:
    """The advanced format: <Sanctions><DateOfIssue>, <ReferenceValueSets> (FeatureType ids for
    "Digital Currency Address - ..."), <DistinctParties><DistinctParty><Profile ID> with the
    primary <Alias> name and <Feature FeatureTypeID><FeatureVersion><VersionDetail>address, and
    <SanctionsEntries><SanctionsEntry ProfileID> with <EntryEvent><Date> (the listing date, used as
    valid_from) and <SanctionsMeasure><Comment> (the programme)."""
    parsed = ParsedList(format="sdn-advanced", source=SOURCE, scope=SCOPE, list_date=None)
    feature_types: dict[str, str] = {}  # FeatureType ID -> asset, for the digital-currency ones
    name_part_types: dict[str, str] = {}  # NamePartType ID -> "Last Name", ...
    party_types: dict[str, str] = {}  # PartyType ID -> "Individual" | "Entity" | ...
    party_subtypes: dict[str, str] = {}  # PartySubType ID -> PartyType ID
    sanctions_types: dict[str, str] = {}  # SanctionsType ID -> "Program" | "Block" | ...
    profiles: dict[str, dict[str, Any]] = {}  # Profile ID -> facts, only those with addresses
    entries: dict[str, dict[str, Any]] = {}  # Profile ID -> {"programs": [...], "dates": [...]}
    for name, elem in _ended_elements(path, "Sanctions"):
        if name == "DateOfIssue":
            parsed.list_date = _ymd(elem)
        elif name == "FeatureType":
            text = _text(elem)
            if text.startswith(FEATURE_PREFIX):
                feature_types[elem.get("ID", "")] = text[len(FEATURE_PREFIX) :].strip()
        elif name == "NamePartType":
            name_part_types[elem.get("ID", "")] = _text(elem)
        elif name == "PartyType":
            party_types[elem.get("ID", "")] = _text(elem)
        elif name == "PartySubType":
            party_subtypes[elem.get("ID", "")] = elem.get("PartyTypeID", "")
        elif name == "SanctionsType":
            sanctions_types[elem.get("ID", "")] = _text(elem)
        elif name == "DistinctParty":
            for profile in _children(elem, "Profile"):
                facts = _advanced_profile(profile, feature_types, name_part_types)
                if facts is not None:
                    facts["fixed_ref"] = elem.get("FixedRef", "")
                    subtype = profile.get("PartySubTypeID", "")
                    facts["sdn_type"] = party_types.get(party_subtypes.get(subtype, ""), "")
                    profiles[profile.get("ID", "")] = facts
            elem.clear()
        elif name in _BULKY:
            elem.clear()  # locations, ID documents, relationships: megabytes we never read
        elif name == "SanctionsEntry":
            profile_id = elem.get("ProfileID", "")
            if profile_id in profiles:
                entry = entries.setdefault(profile_id, {"programs": [], "dates": []})
                for ev in _descendants(elem, "EntryEvent"):
                    date_elem = _child(ev, "Date")
                    when = _ymd(date_elem) if date_elem is not None else None
                    if when is not None:
                        entry["dates"].append(when)
                for measure in _descendants(elem, "SanctionsMeasure"):
                    kind = sanctions_types.get(measure.get("SanctionsTypeID", ""), "Program")
                    comment = _text(_child(measure, "Comment"))
                    if comment and kind == "Program":
                        entry["programs"].append(comment)
            elem.clear()
    build = _Builder(parsed)
    for profile_id, facts in profiles.items():
        entry = entries.get(profile_id, {"programs": [], "dates": []})
        evidence: dict[str, Any] = {"sdn_uid": facts["fixed_ref"] or profile_id}
        if facts["sdn_type"]:
            evidence["sdn_type"] = facts["sdn_type"]
        if facts["akas"]:
            evidence["akas"] = facts["akas"]
        listed = min(entry["dates"]) if entry["dates"] else None
        if listed is not None:
            evidence["listed"] = listed.date().isoformat()
        for asset, address in facts["addresses"]:
            build.add(
                asset, address, facts["name"], _programs(entry["programs"]), dict(evidence), valid_from=listed
            )
    return build.finish()


_BULKY = frozenset({"Location", "IDRegDocument", "ProfileRelationship", "SanctionsEntryLink"})


def _ymd(elem: ET.Element) -> datetime | None:
    try:
        year = int(_text(_child(elem, "Year")))
        month = int(_text(_child(elem, "Month")) or 1)
        dom = int(_text(_child(elem, "Day")) or 1)
    except ValueError:
        return None
    return day(datetime(year, month, dom))


def _advanced_profile(
    profile: ET.Element, feature_types: dict[str, str], name_part_types: dict[str, str]
) -> dict[str, Any] | None:
    addresses: list[tuple[str, str]] = []
    for feature in _children(profile, "Feature"):
        asset = feature_types.get(feature.get("FeatureTypeID", ""))
        if asset is None:
            continue
        for detail in _descendants(feature, "VersionDetail"):
            if _text(detail):
                addresses.append((asset, _text(detail)))
    if not addresses:
        return None
    primary = ""
    akas: list[str] = []
    for identity in _children(profile, "Identity"):
        group_types = {
            g.get("ID", ""): name_part_types.get(g.get("NamePartTypeID", ""), "")
            for g in _descendants(identity, "NamePartGroup")
        }
        for alias in _children(identity, "Alias"):
            name = _alias_name(alias, group_types)
            if not name:
                continue
            if alias.get("Primary") == "true" and identity.get("Primary", "true") == "true" and not primary:
                primary = name
            else:
                akas.append(name)
    return {"name": primary, "akas": akas, "addresses": addresses}


def _alias_name(alias: ET.Element, group_types: dict[str, str]) -> str:
    # SDN.XML writes individuals as "<firstName> <lastName>"; order the advanced file's name parts
    # the same way (given names first, last name last) so both formats name the same entity.
    given: list[str] = []
    last: list[str] = []
    for value in _descendants(alias, "NamePartValue"):
        text = _text(value)
        if not text:
            continue
        kind = group_types.get(value.get("NamePartGroupID", ""), "")
        (last if kind == "Last Name" else given).append(text)
    return " ".join(given + last)


# ----------------------------------------------------------------------------------------------
# Derived lists (github.com/thomasgregg/crypto-sanctions-list, github.com/0xB10C/ofac-...)


def parse_ofac_json(path: Path) -> ParsedList:
    """sanctioned-addresses.json: {"metadata": {"sdnListDate": "MM/DD/YYYY", ...}, "addresses":
    {address: {"type": "Digital Currency Address - XBT", "entries": [{entity, program, uid,
    akas}]}}}. Its publisher lowercases every address, so base58 ones are marked case-lost."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("addresses"), dict):
        raise LabelImportError(f"{path}: not a sanctioned-addresses JSON (no 'addresses' object)")
    meta = data.get("metadata") or {}
    parsed = ParsedList(
        format="ofac-json", source=SOURCE, scope=SCOPE,
        list_date=parse_date(meta.get("sdnListDate")) or parse_date(meta.get("lastUpdated")),
    )
    build = _Builder(parsed)
    for address, info in data["addresses"].items():
        for entry in info.get("entries") or [{}]:
            feature = entry.get("type") or info.get("type") or ""
            if not feature.startswith(FEATURE_PREFIX):
                continue
            evidence: dict[str, Any] = {"sdn_uid": str(entry.get("uid", ""))}
            if entry.get("akas"):
                evidence["akas"] = list(entry["akas"])
            build.add(
                feature[len(FEATURE_PREFIX) :].strip(), address, str(entry.get("entity", "")),
                entry.get("program"), evidence, lowercased_upstream=True,
            )
    return build.finish()


FLAT_COLUMNS = {"address", "asset", "entity", "program", "sdn_uid", "in_latest"}


def parse_ofac_flat(path: Path) -> ParsedList:
    """sdn_digital_currency_addresses_flat.csv: one row per (address, SDN entry) over the list's
    daily history, with first/last seen and in_latest. A row absent from the latest snapshot was
    delisted: valid_to = the day after the last list that still had it (Tornado Cash: last on the
    list dated 03/20/2025 -> valid_to 2025-03-21). A row present since the history's first
    snapshot has an unknown start (valid_from NULL); a later first sighting gives valid_from."""
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or not FLAT_COLUMNS <= set(rows[0]):
        raise LabelImportError(f"{path}: missing columns {sorted(FLAT_COLUMNS)}")
    first_seen = [parse_date(r.get("first_seen_commit_date")) for r in rows]
    history_start = min((d for d in first_seen if d is not None), default=None)
    last_dates = [
        parse_date(r.get("last_seen_sdn_list_date")) or parse_date(r.get("last_seen_commit_date"))
        for r in rows
    ]
    parsed = ParsedList(
        format="ofac-flat", source=SOURCE, scope=SCOPE,
        list_date=max((d for d in last_dates if d is not None), default=None),
    )
    build = _Builder(parsed)
    for row, seen, last in zip(rows, first_seen, last_dates, strict=True):
        original = (row.get("address_original_case_from_0xB10C") or "").strip()
        in_latest = (row.get("in_latest") or "").strip().lower() == "true"
        valid_from = None
        if seen is not None and seen != history_start:
            valid_from = parse_date(row.get("first_seen_sdn_list_date")) or seen
        valid_to = None if in_latest or last is None else next_day(last)
        evidence: dict[str, Any] = {"sdn_uid": (row.get("sdn_uid") or "").strip()}
        if row.get("akas"):
            evidence["akas"] = [a for a in row["akas"].split("|") if a]
        build.add(
            row["asset"].strip(), original or row["address"], row["entity"].strip(), row.get("program"),
            evidence, valid_from=valid_from, valid_to=valid_to, lowercased_upstream=not original,
        )
    return build.finish()


_ASSET_FILE = re.compile(r"sanctioned_addresses_([A-Za-z0-9]+)\.(txt|json)$")


def parse_asset_list(path: Path, list_date: datetime | None) -> ParsedList:
    """0xB10C's per-asset lists (sanctioned_addresses_<ASSET>.txt / .json): addresses of one
    feature type, original case, no entity names and no date (pass --list-date). Each asset file
    is its own complete list (scope "ofac-sdn:<ASSET>"): importing the ETH file never delists
    a Bitcoin address."""
    match = _ASSET_FILE.search(path.name)
    if match is None:
        raise LabelImportError(f"{path}: expected a name like sanctioned_addresses_ETH.txt")
    asset = match.group(1).upper()
    text = path.read_text(encoding="utf-8")
    if match.group(2) == "json":
        values = json.loads(text)
        if not isinstance(values, list):
            raise LabelImportError(f"{path}: expected a JSON array of addresses")
        addresses = [str(v) for v in values]
    else:
        addresses = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    source = f"{SOURCE}:{asset}"
    parsed = ParsedList(format="ofac-asset-list", source=source, scope=source, list_date=list_date)
    build = _Builder(parsed)
    for a in addresses:
        build.add(asset, a, UNNAMED_ENTITY, None, {"list": path.name}, source=source)
    return build.finish()
