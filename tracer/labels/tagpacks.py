"""GraphSense TagPacks: the YAML packs and the flat CSV made from them.

A TagPack is a YAML document with header fields (title, creator, category, abuse, source,
currency/network, confidence, lastmod, actor, ...) and a `tags` list; a header field applies to
every tag that does not set it. Each tag names an address, a label and a currency (newer packs
also a network). We keep GraphSense's provenance: the tag's source URL, its confidence level,
abuse and actor go into evidence, and the label's source is "graphsense:<pack>" so tags of
different packs stay separate claims.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from tracer.addresses import InvalidAddress
from tracer.domain.labels import Category, Label
from tracer.labels.parsed import LabelImportError, ParsedList
from tracer.labels.vocab import chain_for_asset, normalize_address, normalize_category

# GraphSense confidence levels -> our 0..1 scale. GraphSense scores authority data (OFAC, courts)
# at 60 because it ranks its own ledger facts higher; for screening an authority's list is as good
# as it gets, so it is near the top here.
CONFIDENCE_LEVELS: dict[str, float] = {
    "override": 1.0,
    "ownership": 1.0,
    "ledger_immanent": 1.0,
    "authority_data": 0.95,
    "manual_transaction": 0.9,
    "service_api": 0.8,
    "service_data": 0.8,
    "trusted_provider": 0.7,
    "forensic": 0.7,
    "untrusted_transaction": 0.4,
    "web_crawl": 0.4,
}
DEFAULT_CONFIDENCE = 0.5

# abuse overrides category: a hacked exchange's thief is "hacker", not "exchange".
_ABUSE: dict[str, Category] = {
    "sanction": Category.SANCTIONED,
    "service_hack": Category.HACKER,
    "ransomware": Category.RANSOMWARE,
    "phishing": Category.SCAM,
    "scam": Category.SCAM,
    "ponzi_scheme": Category.SCAM,
    "pyramid_scheme": Category.SCAM,
    "investment_fraud": Category.SCAM,
    "sextortion": Category.SCAM,
}

class NoAliasLoader(yaml.SafeLoader):
    """yaml.SafeLoader without anchors and aliases. A TagPack never needs them, and an alias is
    how a few hundred bytes expand into gigabytes ("billion laughs": each level repeats the one
    below), which no size limit on the file itself can catch."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise yaml.composer.ComposerError(None, None, "anchors and aliases (&name, *name) are not allowed in "
                                              "label files", event.start_mark)
        return super().compose_node(parent, index)


def load_yaml(text: str) -> Any:
    """YAML as the label importers accept it: safe types only, no anchors or aliases."""
    return yaml.load(text, Loader=NoAliasLoader)


_HEADER_FIELDS = ("category", "abuse", "source", "currency", "network", "confidence", "lastmod", "actor",
                  "context", "is_public", "label")
_TAG_COLUMNS = {"tagpack", "address", "currency", "label"}


def tag_to_label(tag: Mapping[str, Any], pack: str, parsed: ParsedList) -> Label | None:
    """One GraphSense tag (header fields already merged in) as a label, or None if unusable."""
    address = str(tag.get("address") or "").strip()
    if not address:
        return None  # entity-level tags (cluster ids) have no address to label
    network = str(tag.get("network") or "").strip()
    currency = str(tag.get("currency") or "").strip()
    chain = chain_for_asset(network or currency or "", address)
    try:
        address = normalize_address(chain, address)
    except InvalidAddress as exc:
        parsed.invalid.append((address, exc.reason))
        return None
    abuse = str(tag.get("abuse") or "").strip().lower()
    upstream_category = str(tag.get("category") or "").strip().lower()
    category, extra = normalize_category(upstream_category)
    if abuse in _ABUSE:
        category, extra = _ABUSE[abuse], {}
    label_text = str(tag.get("label") or "").strip()
    actor = str(tag.get("actor") or "").strip()
    level = str(tag.get("confidence") or "").strip().lower()
    evidence: dict[str, Any] = {"tagpack": pack, "label": label_text, **extra}
    for key, value in (("abuse", abuse), ("actor", actor), ("category", upstream_category),
                       ("source_url", str(tag.get("source") or "").strip()), ("confidence_level", level),
                       ("lastmod", str(tag.get("lastmod") or "").strip()), ("currency", currency)):
        if value:
            evidence[key] = value
    context = tag.get("context")
    if context:
        if isinstance(context, str):
            try:
                context = json.loads(context)
            except ValueError:
                pass
        evidence["context"] = context
    return Label(
        chain=chain, address=address, entity=actor or label_text or pack, category=category,
        source=f"graphsense:{pack}", confidence=CONFIDENCE_LEVELS.get(level, DEFAULT_CONFIDENCE),
        evidence=evidence,
    )


def parse_tagpack_yaml(path: Path) -> ParsedList:
    data = load_yaml(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("tags"), list):
        raise LabelImportError(f"{path}: not a TagPack (no 'tags' list)")
    pack = path.stem
    parsed = ParsedList(format="tagpack", source=f"graphsense:{pack}", scope=None, list_date=None)
    header = {k: data[k] for k in _HEADER_FIELDS if k in data}
    if data.get("title"):
        parsed.notes.append(f"tagpack {data['title']!r} by {data.get('creator', '?')}")
    for tag in data["tags"]:
        if not isinstance(tag, dict):
            continue
        label = tag_to_label({**header, **tag}, pack, parsed)
        if label is not None:
            parsed.labels.append(label)
    return parsed


def parse_tagpack_csv(path: Path) -> ParsedList:
    """The flat CSV (tagpack,address,currency,network,label,category,abuse,actor,source,
    confidence,lastmod,is_public,context): header fields already propagated to every row."""
    parsed = ParsedList(format="tagpack", source="graphsense", scope=None, list_date=None)
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or not _TAG_COLUMNS <= set(reader.fieldnames):
            raise LabelImportError(f"{path}: missing columns {sorted(_TAG_COLUMNS)}")
        for row in reader:
            pack = Path(row.get("tagpack") or path.stem).stem
            label = tag_to_label(row, pack, parsed)
            if label is not None:
                parsed.labels.append(label)
    return parsed
