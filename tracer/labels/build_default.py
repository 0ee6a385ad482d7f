"""Build the shipped default label set from the public data in ../shared/data.

    python -m tracer.labels.build_default [--data ../shared/data] [--out tracer/data/labels]

Writes `default_labels.csv` (the label CSV format of tracer.labels.csvfile, every column) and
`manifest.json` (list dates per scope, row counts, upstream commits). Only MIT / public-domain
folders are read (see tracer/data/labels/SOURCES.md); `cases/` is never touched. The output is
deterministic (sorted), so a rebuild from the same data gives the same bytes.

What goes in, and why each filter:
- OFAC SDN addresses (flat history CSV, original case from the 0xB10C lists): every address with
  exact spelling, with programme and validity; lowercased base58 addresses whose case cannot be
  restored are left out (a wrong-case Bitcoin address matches nothing and misleads).
- Tornado Cash pools and contracts (mixer, with token and denomination).
- Exchange wallets of major exchanges: explorer name tags that are the exchange's numbered, hot,
  cold or deposit-funder wallets (not its token contracts or deployers), and GraphSense
  proof-of-reserve packs.
- Instant swap services, OTC desks, payment processors, bridges, DEX routers: explorer tags.
- Bitcoin mixers and DPRK/Ronin attacker addresses from GraphSense packs.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tracer.addresses import InvalidAddress, show_tron
from tracer.domain.labels import Category, Label
from tracer.labels.csvfile import write_label_csv
from tracer.labels.ofac import SCOPE as OFAC_SCOPE
from tracer.labels.ofac import parse_ofac_flat
from tracer.labels.vocab import chain_for_asset, normalize_address, normalize_chain

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPO.parent / "shared" / "data"
DEFAULT_OUT = REPO / "tracer" / "data" / "labels"
CSV_NAME = "default_labels.csv"
MANIFEST_NAME = "manifest.json"
SOURCE = "default"  # every curated non-OFAC row; the upstream is in evidence["upstream"]

# Tornado Cash was designated on 2022-08-08 (OFAC press release jy0916); the flat history only
# starts in Dec 2024, so without this its pools would look listed "since forever".
TORNADO_DESIGNATED = datetime(2022, 8, 8, tzinfo=UTC)

# Known chains only: a row filed under a ticker we cannot place (e.g. "usdt" on Kusama) is noise.
KNOWN_CHAINS = frozenset({
    "ethereum", "bsc", "arbitrum", "optimism", "polygon", "base", "avalanche", "fantom", "gnosis", "celo",
    "ethereum-classic", "bitcoin", "tron", "litecoin", "bitcoin-cash", "bitcoin-sv", "bitcoin-gold",
    "dogecoin", "dash", "zcash", "monero", "ripple", "solana", "verge",
})

ServiceTable = dict[str, tuple[tuple[str, ...], tuple[str, ...]]]
SERVICE_NAMES = Path(__file__).resolve().parents[1] / "data" / "labels" / "service_names.json"


def _service_names(kind: str, path: Path = SERVICE_NAMES) -> ServiceTable:
    """Canonical service name -> the explorer name-tag prefixes and GraphSense actors that mean it.
    Data, not code: adding an exchange is one line of service_names.json."""
    table = json.loads(path.read_text(encoding="utf-8"))[kind]
    return {name: (tuple(v["name_tags"]), tuple(v["graphsense_actors"])) for name, v in table.items()}


EXCHANGES = _service_names("exchange")
SWAP_SERVICES = _service_names("swap_service")
# The suffixes of a service's own wallets on explorers: "Binance 14", "Binance: Hot Wallet 2".
_WALLET_SUFFIX = re.compile(
    r"^(?:\s+(?P<n>\d+)|\s*:?\s*(?P<kind>Hot Wallet|Cold Wallet|Old Address|Deposit Funder|Deposit Supplier|"
    r"MultiSig|C-Chain Hot Wallet|Wallet)(?:\s+\d+)?)?$"
)
_WALLET_KIND = {
    "Hot Wallet": "hot", "C-Chain Hot Wallet": "hot", "Cold Wallet": "cold", "Old Address": "old",
    "Deposit Funder": "deposit_funder", "Deposit Supplier": "deposit_funder", "MultiSig": "multisig",
    "Wallet": "hot",
}

_EXCLUDE_CONTRACTS = re.compile(
    r"Deployer|Token|Admin|Governor|Governance|Timelock|Vesting|Owner|Config|Implementation|Relayer|"
    r"MiniChef|Oracle|Verifier|Registry|Fee|Multisig|MultiSig|Sandbox|Allowance|Flash Wallet|Staking|"
    r"Zap|Furo|Aggregator$|Treasury|Airdrop|Distributor|Old |Executor|Utils|Handler|Event Bridge|"
    r"^DeFi Basket|^InstaDapp|^0x:.*Bridge",
)
_DEX_NAME = re.compile(
    r"Router|Aggregation Router|Exchange Proxy$|Settlement$|Swap Router|Universal Router|MetaSwap"
)
_DEX_SLUGS = frozenset({
    "dex", "uniswap", "sushiswap", "1inch", "0x-protocol", "kyberswap", "pancakeswap", "cow-protocol",
    "balancer", "quickswap", "trader-joe", "camelot", "spookyswap", "spiritswap", "metamask", "paraswap",
    "okx", "dodo", "mdex", "dxdao", "sudoswap", "curve-fi", "bancor", "wigoswap", "hyperjump",
    "lydia-finance", "alchemist-coin",
})
_BRIDGE_NAME = re.compile(r"Bridge|Gateway|Portal|Inbox|Spoke Pool|Hub Pool|deBridgeGate|Deposit Box|Router V\d")
_L2_SLUGS = frozenset({"bridge", "layer-2", "arbitrum", "arbitrum-one", "arbitrum-nova", "optimism",
                       "polygon-matic", "polygon", "zksync", "starknet", "scroll", "base", "multichain",
                       "hop-protocol", "across-protocol", "synapse", "wormhole", "celer-network",
                       "connext", "nitro", "optics", "omg-network", "loopring"})


@dataclass
class Row:
    label: Label
    scope: str | None = None
    upstream: set[str] = field(default_factory=set)


class Collector:
    """Deduplicates by (chain, address, category, entity) and remembers every upstream."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, ...], Row] = {}
        self.skipped: Counter[str] = Counter()

    def add(self, label: Label, upstream: str, scope: str | None = None) -> None:
        if label.chain not in KNOWN_CHAINS:
            self.skipped[f"unknown chain {label.chain}"] += 1
            return
        key = (label.chain, label.address, label.category, label.entity, label.source,
               str(label.valid_from), str(label.valid_to))
        row = self.rows.get(key)
        if row is None:
            self.rows[key] = Row(label, scope, {upstream})
            return
        row.upstream.add(upstream)
        if row.label.evidence is not None and label.evidence is not None:
            merged = {**label.evidence, **row.label.evidence}  # first writer wins per key
            row.label = replace(row.label, evidence=merged, confidence=max(row.label.confidence, label.confidence))

    def has_address(self, chain: str, address: str, categories: Iterable[str]) -> bool:
        wanted = set(categories)
        return any(k[0] == chain and k[1] == address and k[2] in wanted for k in self.rows)

    def finish(self) -> list[tuple[Label, str | None]]:
        out: list[tuple[Label, str | None]] = []
        for row in self.rows.values():
            label = row.label
            if label.source == SOURCE:
                label = replace(label, evidence={**(label.evidence or {}), "upstream": sorted(row.upstream)})
            out.append((label, row.scope))
        out.sort(key=lambda r: (r[0].category, r[0].entity.casefold(), r[0].chain, r[0].address, r[0].source,
                                str(r[0].valid_from)))
        return out


def _csv(path: Path) -> Iterator[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        yield from csv.DictReader(fh)


def _label(chain: str, address: str, entity: str, category: str, confidence: float,
           evidence: dict[str, Any], source: str = SOURCE) -> Label | None:
    try:
        address = normalize_address(chain, address)
    except InvalidAddress:
        return None
    return Label(chain=chain, address=address, entity=entity, category=category, source=source,
                 confidence=confidence, evidence=evidence)




def _match_service(name_tag: str, table: ServiceTable) -> tuple[str, str | None] | None:
    """(canonical name, wallet kind) if the tag names one of the service's own wallets."""
    tag = name_tag.strip()
    for canonical, (prefixes, _) in table.items():
        for prefix in sorted(prefixes, key=len, reverse=True):
            if tag == prefix or tag.startswith((prefix + " ", prefix + ":")):
                m = _WALLET_SUFFIX.match(tag[len(prefix):])
                if m is not None:
                    kind = m.group("kind")
                    return canonical, (_WALLET_KIND.get(kind) if kind else None)
    return None


def _explorer_tags(data: Path) -> Iterator[tuple[str, str, str, set[str], str]]:
    """(chain, address, name tag, slugs, upstream) from both explorer label dumps."""
    for row in _csv(data / "labels/etherscan-labels/combined_account_labels_all_chains.csv"):
        yield (normalize_chain(row["chain"]), row["address"], row["name_tag"], set(row["labels"].split("|")),
               "brianleect/etherscan-labels@923aba7")
    for row in _csv(data / "labels/eth-labels/accounts_by_chain_label.csv"):
        yield (normalize_chain(row["chain"]), row["address"], row["name_tag"], {row["label"]},
               "dawsbot/eth-labels@98b046a")


def add_ofac(c: Collector, data: Path) -> str:
    parsed = parse_ofac_flat(data / "ofac/sdn-entities/sdn_digital_currency_addresses_flat.csv")
    upstream = "thomasgregg/crypto-sanctions-list@14d1d71"
    for label in parsed.labels:
        if label.entity == "TORNADO CASH" and label.valid_from is None:
            label = replace(label, valid_from=TORNADO_DESIGNATED)
        c.add(replace(label, evidence={**(label.evidence or {}), "upstream": upstream}), upstream, OFAC_SCOPE)
    c.skipped["ofac base58 address with lost letter case"] += len(parsed.case_lost)
    assert parsed.list_date is not None
    return parsed.list_date.date().isoformat()


def add_tornado(c: Collector, data: Path) -> None:
    for row in _csv(data / "labels/tornado-cash/tornado_addresses_consolidated.csv"):
        chain = normalize_chain(row["chain"]) if not row["chain"].startswith("unknown") else "ethereum"
        evidence: dict[str, Any] = {"name_tags": [t for t in row["name_tags"].split("|") if t]}
        if row["token"]:
            evidence["token"] = row["token"]
        if row["denomination"]:
            evidence["denomination"] = row["denomination"]
        if row["ofac_sdn_listed_2022"] == "True":
            evidence["ofac_listed"] = "2022-08-08"
            evidence["ofac_delisted"] = "2025-03-21"
        label = _label(chain, row["address"], "Tornado Cash", Category.MIXER, 1.0, evidence)
        if label is not None:
            c.add(label, "tornado-cash-consolidated (derived, see SOURCE.txt)")


def add_explorer_services(c: Collector, data: Path) -> None:
    for chain, address, tag, slugs, upstream in _explorer_tags(data):
        if not tag:
            continue
        for table, category, confidence in ((EXCHANGES, Category.EXCHANGE, 0.9),
                                            (SWAP_SERVICES, Category.SWAP_SERVICE, 0.85)):
            hit = _match_service(tag, table)
            if hit is not None:
                entity, kind = hit
                evidence: dict[str, Any] = {"name_tag": tag}
                if kind:
                    evidence["wallet"] = kind
                label = _label(chain, address, entity, category, confidence, evidence)
                if label is not None:
                    c.add(label, upstream)
                break
        else:
            _add_other_service(c, chain, address, tag, slugs, upstream)


def _entity_of(tag: str) -> str:
    name = tag.split(":", 1)[0] if ":" in tag else re.sub(r"\s+\d+$", "", tag)
    # "Uniswap V3", "1inch v5" -> one entity per protocol, whatever the contract version.
    return re.sub(r"\s+[vV]\d+(\.\d+)?$", "", name.strip()).strip()


def _add_other_service(c: Collector, chain: str, address: str, tag: str, slugs: set[str], upstream: str) -> None:
    category: str | None = None
    confidence = 0.8
    if "tornado-cash" in slugs:
        return  # the consolidated Tornado list covers these with denominations
    if "otc" in slugs and not _EXCLUDE_CONTRACTS.search(tag):
        category = Category.OTC
    elif {"payments", "fiat-gateway"} & slugs and not _EXCLUDE_CONTRACTS.search(tag):
        category, confidence = Category.PAYMENT_PROCESSOR, 0.7
    elif tag.startswith("Coinbase: Commerce") or tag == "Coinbase: Coinbase Commerce":
        category = Category.PAYMENT_PROCESSOR
    elif (slugs & _L2_SLUGS) and _BRIDGE_NAME.search(tag) and not _EXCLUDE_CONTRACTS.search(tag):
        category = Category.BRIDGE
    elif (slugs & _DEX_SLUGS) and _DEX_NAME.search(tag) and not _EXCLUDE_CONTRACTS.search(tag):
        category = Category.DEX
    if category is None:
        return
    entity = "Coinbase Commerce" if tag.startswith("Coinbase:") else _entity_of(tag)
    label = _label(chain, address, entity, category, confidence, {"name_tag": tag})
    if label is not None:
        c.add(label, upstream)


_RESERVE_PACKS = re.compile(r"packs/exchange-wallets-")
_MIXER_PACKS = {"packs/mixing_fc2021.yaml", "packs/blender_io.yaml", "packs/sinbad_io.yaml"}
_HACKER_PACKS = {"packs/lazarus.yaml", "packs/lazarus2.yaml", "packs/ronin_bridge.yaml"}


def add_graphsense(c: Collector, data: Path) -> None:
    upstream = "graphsense/graphsense-tagpacks@29ff93c"
    actors = {a: name for name, (_, acts) in EXCHANGES.items() for a in acts}
    swap_actors = {a: name for name, (_, acts) in SWAP_SERVICES.items() for a in acts}
    for row in _csv(data / "labels/graphsense-tagpacks/tagpacks_flat.csv"):
        pack = row["tagpack"]
        chain = chain_for_asset(row["network"] or row["currency"], row["address"])
        evidence: dict[str, Any] = {"label": row["label"], "tagpack": pack, "source_url": row["source"]}
        label: Label | None = None
        if _RESERVE_PACKS.match(pack) and row["actor"] in actors:
            evidence["wallet"] = "reserve"
            label = _label(chain, row["address"], actors[row["actor"]], Category.EXCHANGE, 0.85, evidence)
        elif pack == "packs/etherscan-wordcloud-exchange.yaml" and row["actor"] in actors:
            if _match_service(row["label"], EXCHANGES) is not None:
                label = _label(chain, row["address"], actors[row["actor"]], Category.EXCHANGE, 0.85, evidence)
        elif row["actor"] in swap_actors:
            label = _label(chain, row["address"], swap_actors[row["actor"]], Category.SWAP_SERVICE, 0.85, evidence)
        elif pack in _MIXER_PACKS or (pack == "packs/walletexplorer.yaml" and row["category"] == "mixing_service"):
            entity = {"blenderio": "Blender.io", "sinbadio": "Sinbad.io", "helixmixer": "Helix Mixer",
                      "bitcoinfog": "Bitcoin Fog", "bitlaundercom": "BitLaunder"}.get(row["actor"], row["label"])
            label = _label(chain, row["address"], entity, Category.MIXER, 0.7, evidence)
        elif pack in _HACKER_PACKS:
            entity = "Lazarus Group" if "lazarus" in pack or "ronin" in pack else row["label"]
            label = _label(chain, row["address"], entity, Category.HACKER, 0.9, evidence)
        if label is not None:
            c.add(label, upstream)
    # walletexplorer mixers live in the flat file with category mixing_service; handled above.


BRIDGE_CONTRACTS = Path(__file__).resolve().parents[1] / "data" / "labels" / "bridge_contracts.csv"


def add_bridge_contracts(c: Collector, path: Path = BRIDGE_CONTRACTS) -> None:
    """The bridges launderers use, from the curated list beside the default set (each row names the
    public repository and file the address is listed in, and when it was read there). A contract an
    explorer tag already names keeps that row, with the protocol, role and source added to it."""
    with path.open(newline="", encoding="utf-8") as fh:
        lines = [line for line in fh if not line.startswith("#")]
    for r in csv.DictReader(lines):
        label = _label(r["chain"], r["address"], r["protocol"], Category.BRIDGE, 0.95, {
            "protocol": r["protocol"], "role": r["role"], "listed_in": f"{r['upstream']}:{r['path']}",
            "checked": r["checked"]})
        if label is None:
            continue
        upstream = r["upstream"].split("@")[0] + "@" + r["upstream"].split("@")[1][:7] if "@" in r["upstream"] else (
            r["upstream"])
        same = [row for key, row in c.rows.items() if key[0] == label.chain and key[1] == label.address
                and key[2] == Category.BRIDGE]
        if same:
            for row in same:
                row.upstream.add(upstream)
                row.label = replace(row.label, confidence=max(row.label.confidence, label.confidence),
                                    evidence={**(row.label.evidence or {}), **(label.evidence or {})})
            continue
        c.add(label, upstream)


def build(data: Path) -> tuple[list[tuple[Label, str | None]], dict[str, Any], Counter[str]]:
    c = Collector()
    ofac_date = add_ofac(c, data)
    add_tornado(c, data)
    add_explorer_services(c, data)
    add_graphsense(c, data)
    add_bridge_contracts(c)
    rows = c.finish()
    manifest: dict[str, Any] = {
        "file": CSV_NAME,
        "rows": len(rows),
        "scopes": {OFAC_SCOPE: {"list_date": ofac_date}},
        "by_category": dict(sorted(Counter(lb.category for lb, _ in rows).items())),
        "by_chain": dict(sorted(Counter(lb.chain for lb, _ in rows).items())),
        "upstreams": {
            "ofac": "thomasgregg/crypto-sanctions-list@14d1d71fe63d1982d59ac3f9eb5fad4b648bb55c (MIT; data: "
                    "OFAC SDN, public domain); case from 0xB10C/ofac-sanctioned-digital-currency-addresses@"
                    "f2aee2265956bf28ce71824c2c2c8cab02c2e173 (MIT)",
            "etherscan-labels": "brianleect/etherscan-labels@923aba72c7e2d0682f7ae6194b6140bd90668dc9 (MIT)",
            "eth-labels": "dawsbot/eth-labels@98b046a66254a24eb10ed18ac221d83333ae293d (MIT)",
            "graphsense": "graphsense/graphsense-tagpacks@29ff93c8ab0db37370453a290b7becba429b73f8 (MIT)",
            "tornado-cash": "derived from the above (see SOURCES.md)",
            "bridge-contracts": "bridge_contracts.csv: each row's public repository, file and date (see SOURCES.md)",
        },
    }
    return rows, manifest, c.skipped


def render_csv(rows: list[tuple[Label, str | None]]) -> str:
    """The shipped file's text. Tron addresses are written as people know them (T...), as every
    export shows them; the loader stores them in tracer's 0x41 form either way."""
    out = io.StringIO(newline="")
    out.write("# tracer default label set; built by python -m tracer.labels.build_default; see SOURCES.md\n")
    write_label_csv(rows, out)
    return show_tron(out.getvalue())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tracer.labels.build_default", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: %(default)s)")
    args = parser.parse_args(argv)
    if not (args.data / "ofac").is_dir():
        print(f"no OFAC data under {args.data}; pass --data", file=sys.stderr)
        return 2
    rows, manifest, skipped = build(args.data)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / CSV_NAME).write_text(render_csv(rows), encoding="utf-8", newline="")
    (args.out / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"{manifest['rows']} rows -> {args.out / CSV_NAME}")
    for category, n in manifest["by_category"].items():
        print(f"  {category:18} {n}")
    for reason, n in sorted(skipped.items()):
        print(f"  skipped: {reason}: {n}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
