"""Replay a real laundering case (mftracer CSV format) as a dev-chain Scenario, with noise added.

A case folder holds `<name>.csv` with `Timestamp,Block,Tx_hash,From,From_label,To,To_label,
Value_in_USD`, plus `source_addresses.csv` and `terminal_addresses.csv` (one address a line).
Every edge becomes a transfer of a 6-decimal USD stablecoin, in block order and, inside a block,
in an order where a wallet receives before it sends on. Blocks are renumbered densely (two filler
blocks after each case block, for noise and sweeps); timestamps are the case's own.

Around the case we add what a real chain has: clean inflows into intermediate wallets (exchange
withdrawals), gas money in and out (ETH), busy exchange hot wallets with unrelated customers, and
sweeps from terminals labelled as deposit addresses to their exchange's hot wallet. Wallets that
sent more than they received in the case (swaps, price moves) get the difference as a genesis
balance, so no balance goes negative. The truth: seeds = sources; stops = terminals and deposit
addresses; amounts from the same haircut simulation as generated scenarios.

Case files carry no licence: they are read at run time, never copied into the repository.
"""

from __future__ import annotations

import csv
import hashlib
import random
import re
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from tracer.devchain.scenario import (
    ETHER,
    KIND_NATIVE,
    KIND_TOKEN,
    USD6,
    Scenario,
    ScenarioBlock,
    ScenarioLabel,
    Token,
    Truth,
    build_truth,
    gc_paused,
    reference_haircut,
)
from tracer.devchain.scenario.builder import Builder
from tracer.devchain.scenario.history import ScenarioFileError
from tracer.domain.transfers import NATIVE

FILLER_BLOCKS = 2  # blocks after each case block, for noise, gas money and sweeps
TAIL_BLOCKS = 6

_EXCHANGES = (
    "binance", "coinbase", "kraken", "okx", "okex", "kucoin", "bybit", "gate", "huobi", "htx", "bitfinex", "mexc",
    "bitget", "exch", "changenow", "changehero", "fixedfloat", "sideshift", "simpleswap", "stake.com", "rollbit",
    "bitpay", "sellix", "crypto.com", "bitstamp", "gemini", "poloniex", "hitbtc", "upbit", "bithumb", "whitebit",
    "swft", "otc",
)  # fmt: skip
_BRIDGES = (
    "bridge", "portal", "spoke pool", "thorchain", "hop", "symbiosis", "li.fi", "lifi", "across", "stargate",
    "wormhole", "synapse", "orbiter", "multichain", "celer", "railgun",
)  # fmt: skip
_DEXES = ("uniswap", "sushiswap", "1inch", "cow protocol", "paraswap", "curve", "balancer", "kyber", "seaport", "0x:")


@dataclass(frozen=True, slots=True)
class CaseEdge:
    timestamp: int
    block: int
    tx_hash: str
    sender: str
    sender_label: str
    to: str
    to_label: str
    usd: float


def classify_label(label: str) -> tuple[str, str] | None:
    """(category, entity) of a case label, or None for labels that name no service.

    "deposit" marks an exchange deposit address (kept unlabelled on the chain, as in reality);
    names like transit_*, Hacker, Exploiter or ENS names are not services.
    """
    text = label.strip()
    low = text.lower()
    if not low:
        return None
    base = re.sub(r"\s+\d+$", "", text.split(":")[0].strip())
    if "deposit" in low:
        return "deposit", re.split(r"[_:\s]", text)[0]
    if "tornado" in low:
        return "mixer", "Tornado Cash"
    if low == "null address":
        return "burn", "Null Address"
    if any(k in low for k in _BRIDGES):
        return "bridge", base
    if any(k in low for k in _DEXES):
        return "dex", base
    if any(k in low for k in _EXCHANGES):
        return "exchange", base
    if ":" in text and "token" in low:
        return "token", base
    return None


def _read_addresses(path: Path) -> list[str]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().split():
        line = line.strip().strip(",").lower()
        if line.startswith("0x") and len(line) == 42:
            out.append(line)
    return out


def read_case(case_dir: str | Path) -> tuple[str, list[CaseEdge], list[str], list[str]]:
    """(name, edges, sources, terminals) of an mftracer case folder (ScenarioFileError if it is none)."""
    d = Path(case_dir)
    if not d.is_dir():
        raise ScenarioFileError(f"{d}: no such folder (an mftracer case: an edge CSV beside "
                                "source/terminal_addresses.csv)")
    tables = [p for p in sorted(d.glob("*.csv")) if p.name not in ("source_addresses.csv", "terminal_addresses.csv")]
    if len(tables) != 1:
        raise ScenarioFileError(f"{d}: expected one edge CSV beside source/terminal_addresses.csv, found "
                                f"{len(tables)}")
    try:
        edges = _read_edges(tables[0])
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        # A missing column (KeyError), an unreadable time or number (ValueError), a short row
        # (None where text was: TypeError, AttributeError).
        what = f"no column {exc}" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}"
        raise ScenarioFileError(f"{tables[0]}: not an mftracer edge table ({what})") from exc
    return (
        tables[0].stem,
        edges,
        _read_addresses(d / "source_addresses.csv"),
        _read_addresses(d / "terminal_addresses.csv"),
    )


def _read_edges(table: Path) -> list[CaseEdge]:
    edges = []
    with table.open(newline="") as fh:
        for row in csv.DictReader(fh):
            ts = datetime.strptime(row["Timestamp"].strip(), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
            edges.append(
                CaseEdge(
                    timestamp=int(ts.timestamp()),
                    block=int(row["Block"]),
                    tx_hash=row["Tx_hash"].strip().lower(),
                    sender=row["From"].strip().lower(),
                    sender_label=(row.get("From_label") or "").strip(),
                    to=row["To"].strip().lower(),
                    to_label=(row.get("To_label") or "").strip(),
                    usd=float(row["Value_in_USD"] or 0),
                )
            )
    return edges


_T = TypeVar("_T")


def _flow_order(
    items: Sequence[_T],
    senders: Callable[[_T], set[str]],
    receivers: Callable[[_T], set[str]],
    key: Callable[[_T], Hashable],
) -> list[_T]:
    """Items ordered so that one whose sender another item pays comes after it (stable by key).

    Cycles (A pays B and B pays A in one block) are broken by the key order.
    """
    remaining = sorted(items, key=key)  # type: ignore[arg-type]
    out: list[_T] = []
    while remaining:
        incoming: set[str] = set()
        for it in remaining:
            incoming |= receivers(it)
        pick = next((it for it in remaining if not (senders(it) & (incoming - receivers(it)))), remaining[0])
        remaining.remove(pick)
        out.append(pick)
    return out


def _ordered_edges(edges: list[CaseEdge]) -> list[tuple[int, list[CaseEdge]]]:
    """Edges grouped by block (ascending), each block's edges in execution order."""
    by_block: dict[int, dict[str, list[CaseEdge]]] = {}
    for e in edges:
        by_block.setdefault(e.block, {}).setdefault(e.tx_hash, []).append(e)
    out = []
    for block in sorted(by_block):
        txs = list(by_block[block].values())
        ordered_txs = _flow_order(
            txs,
            senders=lambda es: {e.sender for e in es},
            receivers=lambda es: {e.to for e in es},
            key=lambda es: es[0].tx_hash,
        )
        flat: list[CaseEdge] = []
        for es in ordered_txs:
            flat.extend(
                _flow_order(es, senders=lambda e: {e.sender}, receivers=lambda e: {e.to}, key=lambda e: es.index(e))
            )
        out.append((block, flat))
    return out


def _address(tag: str) -> str:
    return "0x" + hashlib.sha3_256(tag.encode()).hexdigest()[:40]


def load_case(case_dir: str | Path, *, seed: int = 0, noise: float = 1.0) -> Scenario:
    """A Scenario replaying the case in `case_dir`, with `noise` scaling the unrelated traffic."""
    with gc_paused():
        return _load_case(case_dir, seed=seed, noise=noise)


def _load_case(case_dir: str | Path, *, seed: int, noise: float) -> Scenario:
    name, edges, sources, terminals = read_case(case_dir)
    rng = random.Random(seed)
    b = Builder(rng)
    b.sweep_delay_max = FILLER_BLOCKS
    usd = Token(_address(f"replay-usd-{name}"), "USDT", 6)
    b.batch_contract = _address(f"replay-batch-{name}")

    labels_of: dict[str, str] = {}
    for e in edges:
        for address, label in ((e.sender, e.sender_label), (e.to, e.to_label)):
            if label and address not in labels_of:
                labels_of[address] = label
    kinds = {a: classify_label(lb) for a, lb in labels_of.items()}
    deposit_addresses = {a: c[1] for a, c in kinds.items() if c and c[0] == "deposit"}
    services = {a: c for a, c in kinds.items() if c and c[0] != "deposit"}
    labels = [ScenarioLabel(usd.address, "Tether", "token")]
    labels += [ScenarioLabel(a, entity, category) for a, (category, entity) in sorted(services.items())]

    # One hot wallet per exchange entity: the case's own labelled one if any, else a made-up one.
    hot_of: dict[str, str] = {}
    for a, (category, entity) in sorted(services.items()):
        if category == "exchange":
            hot_of.setdefault(entity, a)
    for entity in sorted(set(deposit_addresses.values()) | {"Binance", "Coinbase"}):
        if entity not in hot_of:
            hot_of[entity] = _address(f"replay-hot-{name}-{entity}")
            labels.append(ScenarioLabel(hot_of[entity], entity, "exchange"))
    hots = sorted(set(hot_of.values()))
    for h in hots:
        b.fund(h, NATIVE, 500_000 * ETHER)
        b.fund(h, usd.address, 10_000_000_000 * USD6)

    # Blocks: each case block, then filler blocks; a few noise blocks before the first one.
    grouped = _ordered_edges(edges)
    lead = 3
    number_of: dict[int, int] = {}
    timestamps: dict[int, int] = {}
    prev_ts = (min(e.timestamp for e in edges) if edges else 1_700_000_000) - 12 * (lead + 1)
    genesis_time = prev_ts
    for k in range(1, lead + 1):
        timestamps[k] = prev_ts + 12 * k
    prev_ts = timestamps.get(lead, prev_ts)
    n = lead
    for i, (block, es) in enumerate(grouped):
        n += 1
        number_of[block] = n
        ts = max(max(e.timestamp for e in es), prev_ts + 1)
        timestamps[n] = ts
        next_ts = max(grouped[i + 1][1][0].timestamp, ts + FILLER_BLOCKS + 1) if i + 1 < len(grouped) else ts + 12 * 40
        step = max(1, min(12, (next_ts - ts) // (FILLER_BLOCKS + 1)))
        for j in range(1, FILLER_BLOCKS + 1):
            n += 1
            timestamps[n] = ts + j * step
        prev_ts = timestamps[n]
    for _ in range(TAIL_BLOCKS):
        n += 1
        timestamps[n] = prev_ts + 12
        prev_ts = timestamps[n]
    last = n

    # Case edges, with genesis balances covering whatever a wallet sent beyond what it received.
    running: dict[str, int] = {}
    deficit: dict[str, int] = {}
    first_in: dict[str, int] = {}
    first_out: dict[str, int] = {}
    inflow: dict[str, int] = {}
    for block, es in grouped:
        at = number_of[block]
        for e in es:
            amount = round(e.usd * USD6)
            if amount <= 0:
                continue
            bal = running.get(e.sender, 0) - amount
            running[e.sender] = bal
            if bal < 0:
                deficit[e.sender] = max(deficit.get(e.sender, 0), -bal)
            running[e.to] = running.get(e.to, 0) + amount
            inflow[e.to] = inflow.get(e.to, 0) + amount
            first_in.setdefault(e.to, at)
            first_out.setdefault(e.sender, at)
            b.token(at, usd.address, e.sender, e.to, amount)
    for a, amount in deficit.items():
        b.fund(a, usd.address, amount)

    terminal_set = set(terminals)
    seed_set = set(sources)
    special = terminal_set | seed_set | set(services) | set(deposit_addresses) | set(hots)
    intermediates = sorted(a for a in set(first_in) | set(first_out) if a not in special)

    # Terminals labelled as deposit addresses sweep to their exchange's hot wallet.
    for a, entity in deposit_addresses.items():
        if a in terminal_set and a not in first_out:
            b.deposit_sweeps_to[a] = hot_of[entity]

    users = [_address(f"replay-user-{name}-{seed}-{k}") for k in range(max(4, int(40 * noise)))]
    for u in users:
        b.fund(u, NATIVE, rng.randint(5, 200) * ETHER)
        b.fund(u, usd.address, rng.randint(1_000, 200_000) * USD6)
    customer_deposits = []
    for k in range(max(1, int(5 * noise))):
        dep = _address(f"replay-customer-deposit-{name}-{seed}-{k}")
        entity = rng.choice(sorted(hot_of))
        b.deposit_sweeps_to[dep] = hot_of[entity]
        customer_deposits.append((dep, entity))
    for a in intermediates:
        arrive = first_in.get(a, first_out.get(a, lead + 1))
        if rng.random() < 0.5 * min(1.0, noise) and a in inflow:
            # A clean inflow: the wallet's owner also withdrew a little from an exchange.
            part = max(USD6, int(inflow[a] * rng.uniform(0.005, 0.05)))
            b.token(min(last, arrive + 1), usd.address, rng.choice(hots), a, part, strict=False)
        if rng.random() < 0.6 * min(1.0, noise):
            # Gas money in (ETH) and, later, some of it out to a fresh wallet.
            gas = rng.randint(10, 80) * 10**15
            b.native(max(1, arrive - 1) if arrive > 1 else 1, rng.choice(hots), a, gas, strict=False)
            b.native(min(last, arrive + 2), a, _address(f"replay-gas-{name}-{a}"), gas // 3, strict=False)
    # Busy hot wallets and unrelated customers.
    for _ in range(int(max(50, 2 * len(edges)) * noise)):
        t = rng.randint(1, last)
        hot = rng.choice(hots)
        u = rng.choice(users)
        r = rng.random()
        if r < 0.3:
            b.token(t, usd.address, hot, u, rng.randint(100, 500_000) * USD6, strict=False)
        elif r < 0.5:
            b.native(t, hot, u, int(rng.lognormvariate(0.5, 1.5) * ETHER), strict=False)
        elif r < 0.7:
            b.native(t, u, hot, int(rng.lognormvariate(0.0, 1.0) * ETHER), strict=False)
        elif r < 0.85:
            dep, _ = rng.choice(customer_deposits)
            b.token(t, usd.address, u, dep, rng.randint(100, 50_000) * USD6, strict=False)
        else:
            b.add(
                t,
                KIND_NATIVE if rng.random() < 0.5 else KIND_TOKEN,
                u,
                rng.choice(users),
                NATIVE if r < 0.92 else usd.address,
                rng.randint(1, 5_000) * (ETHER // 100 if r < 0.92 else USD6),
                strict=False,
            )
    txs = b.run()
    top = max([last, *txs]) if txs else last
    for k in range(last + 1, top + 1):
        timestamps[k] = timestamps[k - 1] + 12
    blocks = [ScenarioBlock(k, timestamps[k], txs.get(k, [])) for k in range(1, top + 1)]
    contracts = {usd.address: "token"}
    for a, (category, _) in services.items():
        if category in ("mixer", "bridge", "dex", "token"):
            contracts[a] = category
    sc = Scenario(
        genesis_time=genesis_time,
        blocks=blocks,
        tokens=[usd],
        genesis_balances=b.genesis,
        contracts=contracts,
        seeds=sorted(seed_set),
        labels=labels,
        truth=Truth(),
        params={"replay": name, "edges": len(edges), "seed": seed, "noise": noise},
    )
    term_info: dict[str, tuple[str, str]] = {}
    for a in terminal_set:
        kind = kinds.get(a)
        term_info[a] = (kind[1], kind[0]) if kind else ("", "unknown")
    _, _, sent = reference_haircut((tx for blk in blocks for tx in blk.txs), sc.genesis_balances, sc.seeds, [])
    sc.truth = build_truth(
        sc,
        stolen={usd.address: sent.get(usd.address, 0)},
        deposit_addresses={**deposit_addresses, **dict(customer_deposits)},
        hubs=[],
        noise_offramps=[d for d, _ in customer_deposits],
        launderers=intermediates,
        terminals=term_info,
        stop_at_labels=False,
    )
    return sc
