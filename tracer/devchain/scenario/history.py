"""`Scenario`: a whole chain history plus its ground truth, and its compact file form.

On disk a scenario is one address table and its transactions as parallel columns, JSON (gzipped
when the name ends in .gz): a million transfers load in seconds.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tracer.devchain.scenario.model import (
    ETHER,
    BridgeTruth,
    ExitTruth,
    HubTruth,
    MixerLinkTruth,
    MixerPool,
    MixerTruth,
    OfframpTruth,
    ScenarioBlock,
    ScenarioLabel,
    ScenarioTx,
    SwapTruth,
    Token,
    Truth,
    gc_paused,
)
from tracer.domain.errors import UserError
from tracer.domain.transfers import NATIVE

SCENARIO_FORMAT = "tracer-devchain-scenario/1"


class ScenarioFileError(UserError, ValueError):
    """A file or folder given as a scenario that is not one: not what `--save` writes, or a case
    folder without its edge table. A ValueError, as these were before they had a name."""


def _broken(exc: BaseException) -> str:
    """What is wrong with a file, in a few words: a KeyError's text is only the key."""
    if isinstance(exc, ScenarioFileError):
        return str(exc)
    if isinstance(exc, KeyError):
        return f"no {exc}"
    return f"{type(exc).__name__}: {exc}"


@dataclass
class Scenario:
    """A whole chain history plus what an investigation of it should find."""

    genesis_time: int
    blocks: list[ScenarioBlock]  # blocks 1..N in order; block 0 is the genesis (balances, no txs)
    tokens: list[Token]
    genesis_balances: dict[str, dict[str, int]]  # address -> asset -> raw amount at block 0
    contracts: dict[str, str]  # address -> role (token, batch, mixer, dex, bridge): has code
    seeds: list[str]
    labels: list[ScenarioLabel]
    truth: Truth
    mixer_pools: list[MixerPool] = field(default_factory=list)
    chain_id: int = 1337
    chain: str = "ethereum"
    params: dict[str, Any] = field(default_factory=dict)  # how it was made (generator knobs or replay)

    # -- inspection --------------------------------------------------------------------------
    def iter_txs(self) -> Iterator[tuple[ScenarioBlock, ScenarioTx]]:
        for block in self.blocks:
            for tx in block.txs:
                yield block, tx

    @property
    def tx_count(self) -> int:
        return sum(len(b.txs) for b in self.blocks)

    def transfer_count(self) -> int:
        """Value movements (native, internal, token) of successful transactions."""
        return sum(len(tx.transfers()) for _, tx in self.iter_txs())

    @property
    def head(self) -> int:
        return self.blocks[-1].number if self.blocks else 0

    def token(self, address_or_symbol: str) -> Token:
        key = address_or_symbol.lower()
        for t in self.tokens:
            if t.address == key or t.symbol.lower() == key:
                return t
        raise KeyError(address_or_symbol)

    def summary(self) -> str:
        """One line for humans: size, theft and what the truth holds."""
        stolen = ", ".join(self._fmt_amount(asset, amount) for asset, amount in sorted(self.truth.stolen.items()))
        return (
            f"chain {self.chain} ({self.chain_id}): {len(self.blocks)} blocks, {self.tx_count} txs, "
            f"{self.transfer_count()} transfers; {len(self.seeds)} seeds; stolen {stolen}; "
            f"{len(self.truth.offramps)} off-ramp receipts, {len(self.truth.mixer_deposits)} mixer pools, "
            f"{len(self.truth.hubs)} hubs, {len(self.truth.noise_offramps)} noise off-ramps"
        )

    def _fmt_amount(self, asset: str, amount: int) -> str:
        if asset == NATIVE:
            return f"{amount / ETHER:,.2f} ETH"
        try:
            tok = self.token(asset)
        except KeyError:
            return f"{amount} {asset}"
        return f"{amount / 10**tok.decimals:,.2f} {tok.symbol}"

    # -- persistence -------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write a compact column-wise JSON document, gzip-compressed when the name ends in .gz."""
        with gc_paused():
            data = _encode(self)
            raw = json.dumps(data, separators=(",", ":")).encode()
        p = Path(path)
        if p.suffix == ".gz":
            # Level 1: benches wait for large scenarios to be written; higher levels gain little.
            with gzip.open(p, "wb", compresslevel=1) as fh:
                fh.write(raw)
        else:
            p.write_bytes(raw)

    @classmethod
    def load(cls, path: str | Path) -> Scenario:
        raw = Path(path).read_bytes()
        try:
            if raw[:2] == b"\x1f\x8b":
                raw = gzip.decompress(raw)
            with gc_paused():
                return _decode(json.loads(raw))
        # Truncated gzip (EOFError, BadGzipFile), text that is not JSON or not UTF-8 (ValueError), JSON
        # of another shape (KeyError, TypeError, IndexError).
        except (OSError, EOFError, ValueError, KeyError, TypeError, IndexError) as exc:
            raise ScenarioFileError(f"{path}: not a scenario saved by `tracer devchain --save` ({_broken(exc)})"
                                    ) from exc


def _encode(sc: Scenario) -> dict[str, Any]:
    txs = [tx for block in sc.blocks for tx in block.txs]
    seen: dict[str, None] = dict.fromkeys(tx.sender for tx in txs)
    seen.update(dict.fromkeys(tx.to for tx in txs))
    seen.update(dict.fromkeys(tx.token for tx in txs if tx.token))
    seen.update(dict.fromkeys(a for tx in txs if tx.payouts for a, _ in tx.payouts))
    table = list(seen)
    index = {a: i for i, a in enumerate(table)}
    kinds = [tx.kind for tx in txs]
    senders = [index[tx.sender] for tx in txs]
    tos = [index[tx.to] for tx in txs]
    values = [tx.value for tx in txs]
    tokens = [index[tx.token] if tx.token else -1 for tx in txs]
    gas = [tx.gas_price for tx in txs]
    failed = [i for i, tx in enumerate(txs) if not tx.ok]
    memos = [[i, tx.memo] for i, tx in enumerate(txs) if tx.memo]
    payouts = [[i, [[index[a], v] for a, v in tx.payouts]] for i, tx in enumerate(txs) if tx.payouts]
    counts = [len(block.txs) for block in sc.blocks]
    truth = asdict(sc.truth)
    return {
        "format": SCENARIO_FORMAT,
        "chain_id": sc.chain_id,
        "chain": sc.chain,
        "genesis_time": sc.genesis_time,
        "params": sc.params,
        "tokens": [asdict(t) for t in sc.tokens],
        "genesis_balances": sc.genesis_balances,
        "contracts": sc.contracts,
        "seeds": sc.seeds,
        "labels": [[lb.address, lb.entity, lb.category] for lb in sc.labels],
        "mixer_pools": [asdict(m) for m in sc.mixer_pools],
        "truth": truth,
        "blocks": {
            "first": sc.blocks[0].number if sc.blocks else 1,
            "timestamps": [b.timestamp for b in sc.blocks],
            "tx_counts": counts,
        },
        "addresses": table,
        "txs": {
            "kind": kinds,
            "sender": senders,
            "to": tos,
            "value": values,
            "token": tokens,
            "gas_price": gas,
            "failed": failed,
            "payouts": payouts,
            "memos": memos,
        },
    }


def _decode(data: dict[str, Any]) -> Scenario:
    shape = data.get("format") if isinstance(data, dict) else type(data).__name__
    if shape != SCENARIO_FORMAT:
        raise ScenarioFileError(f"format {shape!r}, not {SCENARIO_FORMAT!r}")
    table: list[str] = data["addresses"]
    cols = data["txs"]
    failed = set(cols["failed"])
    payouts = {i: tuple((table[a], v) for a, v in p) for i, p in cols["payouts"]}
    memos: dict[int, str] = {i: m for i, m in cols.get("memos", [])}
    empty: tuple[tuple[str, int], ...] = ()
    txs = [
        ScenarioTx(
            kind,
            table[s],
            table[t],
            value,
            table[tok] if tok >= 0 else "",
            payouts.get(i, empty),
            i not in failed,
            gp,
            memos.get(i, ""),
        )
        for i, (kind, s, t, value, tok, gp) in enumerate(
            zip(cols["kind"], cols["sender"], cols["to"], cols["value"], cols["token"], cols["gas_price"], strict=True)
        )
    ]
    blocks: list[ScenarioBlock] = []
    pos = 0
    first = data["blocks"]["first"]
    for k, (ts, count) in enumerate(zip(data["blocks"]["timestamps"], data["blocks"]["tx_counts"], strict=True)):
        blocks.append(ScenarioBlock(first + k, ts, txs[pos : pos + count]))
        pos += count
    t = data["truth"]
    truth = Truth(
        offramps=[OfframpTruth(**o) for o in t["offramps"]],
        noise_offramps=list(t["noise_offramps"]),
        hubs=list(t["hubs"]),
        mixer_deposits=[MixerTruth(**m) for m in t["mixer_deposits"]],
        stolen=dict(t["stolen"]),
        hub_receipts=[HubTruth(**h) for h in t["hub_receipts"]],
        other_exits=[ExitTruth(**e) for e in t["other_exits"]],
        deposit_addresses=dict(t["deposit_addresses"]),
        launderers=list(t["launderers"]),
        # Scenarios saved before the mixer/swap/bridge knobs have none of these.
        mixer_links=[MixerLinkTruth(**m) for m in t.get("mixer_links", [])],
        swaps=[SwapTruth(**x) for x in t.get("swaps", [])],
        bridges=[BridgeTruth(**x) for x in t.get("bridges", [])],
        through_offramps=[OfframpTruth(**o) for o in t.get("through_offramps", [])],
    )
    return Scenario(
        genesis_time=data["genesis_time"],
        blocks=blocks,
        tokens=[Token(**tk) for tk in data["tokens"]],
        genesis_balances={a: dict(v) for a, v in data["genesis_balances"].items()},
        contracts=dict(data["contracts"]),
        seeds=list(data["seeds"]),
        labels=[ScenarioLabel(a, e, c) for a, e, c in data["labels"]],
        truth=truth,
        mixer_pools=[MixerPool(**m) for m in data["mixer_pools"]],
        chain_id=data["chain_id"],
        chain=data["chain"],
        params=data["params"],
    )
