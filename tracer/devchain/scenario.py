"""Deterministic laundering scenarios for the dev chain, and their ground truth.

A `Scenario` is a whole chain history in compact form: blocks of `ScenarioTx` (native transfers,
ERC-20 transfers, batch payouts through a contract, mixer deposits), genesis balances, tokens,
public labels, the seed (flagged) wallets and a `Truth` saying where the flagged money ended.
`generate(ScenarioParams)` builds one from a seed; `ScenarioParams.for_size(n)` scales the knobs to
about n transfers. `reference_haircut()` is the small independent simulation the truth comes from.

The shapes are the ones investigators meet (see shared/docs/DOMAIN.md): a theft of ETH and a
6-decimal stablecoin to 1-3 seed wallets, fan-out and fan-in, peel chains into exchange deposit
addresses that sweep to hot wallets, mixer pool deposits, batch payouts as internal calls, an
unlabelled hub, busy exchange hot wallets, dust, gas top-ups, failed transactions, and noise.
"""

from __future__ import annotations

import gc
import gzip
import json
import math
import random
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from tracer.chains.records import NATIVE

ETHER = 10**18
GWEI = 10**9
USD6 = 10**6

# Kinds of ScenarioTx. Plain ints rather than an Enum: a million of them are compared in hot loops.
KIND_NATIVE = 0  # sender -> to, `value` wei as the transaction value
KIND_TOKEN = 1  # sender calls token.transfer(to, value): one Transfer log, tx.value = 0
KIND_BATCH = 2  # sender calls batch contract `to` with `value` wei; it forwards `payouts` in internal calls
KIND_MIXER = 3  # sender calls mixer pool `to` with `value` wei (the pool's denomination): a Deposit log

SCENARIO_FORMAT = "tracer-devchain-scenario/1"


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building millions of acyclic objects.

    Every few thousand allocations the collector walks all live objects; with a million
    transactions that walk, not the work itself, takes most of the time. Afterwards the survivors
    are frozen (moved out of the collector's sight): a server holding a million-transfer chain
    would otherwise rescan all of it during requests. They are acyclic, so reference counting
    still frees them when dropped.
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was:
            gc.enable()


OfframpKind = Literal["deposit_address", "hot_wallet"]


@dataclass(slots=True)
class ScenarioTx:
    """One transaction, in the compact form the generator writes and the chain expands.

    `to` is the recipient of the value for KIND_NATIVE and KIND_TOKEN (for tokens the chain's
    transaction goes to `token`), the batch contract for KIND_BATCH and the pool for KIND_MIXER.
    A failed transaction (`ok=False`) moves nothing and emits no log.
    """

    kind: int
    sender: str
    to: str
    value: int
    token: str = ""
    payouts: tuple[tuple[str, int], ...] = ()
    ok: bool = True
    gas_price: int = 20 * GWEI

    def transfers(self) -> list[tuple[str, str, str, int]]:
        """(from, to, asset, amount) value movements in execution order; empty for a failed tx."""
        if not self.ok:
            return []
        if self.kind == KIND_TOKEN:
            return [(self.sender, self.to, self.token, self.value)] if self.value else []
        moved = [(self.sender, self.to, NATIVE, self.value)] if self.value else []
        if self.kind == KIND_BATCH:
            moved.extend((self.to, who, NATIVE, amount) for who, amount in self.payouts if amount)
        return moved


@dataclass(slots=True)
class ScenarioBlock:
    number: int
    timestamp: int
    txs: list[ScenarioTx]


@dataclass(frozen=True, slots=True)
class Token:
    address: str
    symbol: str
    decimals: int


@dataclass(frozen=True, slots=True)
class ScenarioLabel:
    address: str
    entity: str
    category: str  # exchange | mixer | dex | bridge | token | victim | ...


@dataclass(frozen=True, slots=True)
class MixerPool:
    address: str
    asset: str
    denomination: int


@dataclass(frozen=True, slots=True)
class OfframpTruth:
    address: str
    entity: str
    asset: str
    amount: int  # flagged raw units received here (haircut model)
    kind: OfframpKind


@dataclass(frozen=True, slots=True)
class MixerTruth:
    address: str  # the pool
    asset: str
    amount: int
    deposits: int  # deposits that carried flagged money


@dataclass(frozen=True, slots=True)
class HubTruth:
    address: str
    asset: str
    amount: int


@dataclass(frozen=True, slots=True)
class ExitTruth:
    """Flagged money that stopped at some other labelled service or terminal (bridges in replays)."""

    address: str
    entity: str
    category: str
    asset: str
    amount: int


@dataclass(slots=True)
class Truth:
    offramps: list[OfframpTruth] = field(default_factory=list)
    noise_offramps: list[str] = field(default_factory=list)  # unrelated customers' deposit addresses
    hubs: list[str] = field(default_factory=list)  # unlabelled hubs where flagged money stopped
    mixer_deposits: list[MixerTruth] = field(default_factory=list)
    stolen: dict[str, int] = field(default_factory=dict)
    hub_receipts: list[HubTruth] = field(default_factory=list)
    other_exits: list[ExitTruth] = field(default_factory=list)
    deposit_addresses: dict[str, str] = field(default_factory=dict)  # every deposit address -> exchange
    launderers: list[str] = field(default_factory=list)  # intermediate wallets of the laundering

    def stopped_total(self, asset: str) -> int:
        """Flagged amount of `asset` that reached any stop (off-ramps, mixers, hubs, other exits)."""
        parts: list[Iterable[Any]] = [self.offramps, self.mixer_deposits, self.hub_receipts, self.other_exits]
        return sum(item.amount for part in parts for item in part if item.asset == asset)


@dataclass(frozen=True)
class ScenarioParams:
    """Every size knob of a generated scenario; the same params and seed give the same scenario."""

    seed: int = 1
    genesis_time: int = 1_700_000_000
    block_time: int = 12
    n_blocks: int = 100  # at least this many blocks; more if the laundering needs them
    # theft
    n_seeds: int = 2  # 1-3 thief wallets
    stolen_eth: int = 3_000 * ETHER
    stolen_usdt: int = 8_000_000 * USD6
    min_hop_share: float = 0.002  # every laundering hop carries at least this share of its asset's theft
    # ETH laundering
    n_fanout: int = 8  # fresh wallets the seeds fan out to
    n_consolidation: int = 2  # wallets the fan-out comes back together in
    n_peel_chains: int = 2
    peel_length: int = 4  # peels per chain
    n_mixer_deposits: int = 4  # flagged deposits into the 10 / 100 ETH pools
    n_batch_payouts: int = 1
    batch_size: int = 4  # recipients per batch payout
    # stablecoin laundering
    n_token_fanout: int = 4
    n_token_peel_chains: int = 1
    # exchanges
    n_exchanges: int = 3
    n_launder_deposits: int = 4  # deposit addresses of the launderers' exchange accounts
    sweep_delay_max: int = 4  # a deposit address sweeps 1..this many blocks after it receives
    max_hop_delay: int = 3  # a laundering wallet moves money on 1..this many blocks after receiving it
    # noise
    n_noise_users: int = 30
    n_customers: int = 10  # noise users with an exchange deposit address
    n_noise_events: int = 150  # unrelated transactions (their sweeps come on top)
    n_mixer_noise: int = 8  # unrelated mixer deposits (the anonymity set)
    n_hub_senders: int = 40  # distinct customers paying the unlabelled hub, once each
    n_dust: int = 3
    gas_topup_rate: float = 0.3  # share of ETH laundering wallets that get a small clean top-up
    n_traps: int = 2  # clean money through wallets touched by the laundering, into noise off-ramps
    failed_rate: float = 0.02  # share of noise transactions that revert

    @classmethod
    def for_size(cls, n_transfers: int, seed: int = 1) -> ScenarioParams:
        """Knobs for about `n_transfers` value transfers (50 for unit tests .. millions for benches).

        The laundering grows slowly with the size (real cases have tens to a few hundred hops and
        every hop must stay above the relative threshold); the rest is noise and exchange traffic.
        """
        n = max(50, n_transfers)
        g = math.sqrt(n / 300)  # growth of the laundering structure

        def k(base: float, power: float, lo: int, hi: int) -> int:
            return max(lo, min(hi, round(base * g**power)))

        laundering = dict(
            n_seeds=1 if n < 150 else (2 if n < 5_000 else 3),
            n_fanout=k(8, 1.0, 3, 150),
            n_consolidation=k(2, 0.5, 1, 12),
            n_peel_chains=k(2, 0.5, 1, 16),
            peel_length=k(4, 0.3, 2, 8),
            n_mixer_deposits=k(4, 0.5, 2, 30),
            n_batch_payouts=k(1, 0.5, 1, 8),
            batch_size=k(4, 0.3, 3, 12),
            n_token_fanout=k(4, 0.7, 2, 60),
            n_token_peel_chains=k(1, 0.5, 1, 8),
            n_exchanges=k(3, 0.25, 2, 10),
            n_launder_deposits=k(4, 0.5, 2, 60),
            n_traps=k(2, 0.3, 1, 10),
            n_dust=k(3, 0.5, 1, 200),
        )
        est = _estimate_laundering_transfers(laundering)
        # A service is recognised by its many distinct payers (tracer's default: 300 senders).
        hub_senders = max(10, min(3_000, n // 8))
        rest = max(10, n - est - hub_senders)
        # A noise event makes ~1.2 transfers on average (deposits add a sweep, batches several calls).
        events = max(10, round(rest / 1.2))
        users = max(8, events // 12)
        return cls(
            seed=seed,
            n_blocks=max(40, n // 100),
            n_noise_events=events,
            n_noise_users=users,
            n_customers=max(3, users // 4),
            n_mixer_noise=max(4, events // 30),
            n_hub_senders=hub_senders,
            **laundering,
        )


def _estimate_laundering_transfers(k: dict[str, int]) -> int:
    eth = (
        2 * k["n_fanout"]
        + k["n_peel_chains"] * (3 * k["peel_length"] + 2)
        + k["n_mixer_deposits"] * 2
        + k["n_batch_payouts"] * (1 + 3 * k["batch_size"])
        + 3 * k["n_consolidation"]
    )
    tok = 4 * k["n_token_fanout"] + k["n_token_peel_chains"] * (3 * 4 + 3) + 6
    return 2 * k["n_seeds"] + eth + tok + 4 * k["n_traps"] + k["n_dust"]


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
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        with gc_paused():
            return _decode(json.loads(raw))


# ---------------------------------------------------------------------------------------------
# persistence: one address table, transactions as parallel columns (loads 1M transfers in seconds)


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
        },
    }


def _decode(data: dict[str, Any]) -> Scenario:
    if data.get("format") != SCENARIO_FORMAT:
        raise ValueError(f"not a devchain scenario (format {data.get('format')!r})")
    table: list[str] = data["addresses"]
    cols = data["txs"]
    failed = set(cols["failed"])
    payouts = {i: tuple((table[a], v) for a, v in p) for i, p in cols["payouts"]}
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


# ---------------------------------------------------------------------------------------------
# ground truth: the haircut model over all transfers in execution order


def reference_haircut(
    txs: Iterable[ScenarioTx],
    genesis_balances: dict[str, dict[str, int]],
    seeds: Iterable[str],
    stops: Iterable[str],
) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], int], dict[str, int]]:
    """Follow flagged money with the haircut model; return what reached each stop.

    Seeds' outflows are fully flagged. Any other address sends flagged/balance of each outflow
    (per asset, balances from genesis, gas ignored). Flagged money reaching a stop stays there
    (stops never pass it on). Returns ({(stop, asset): flagged received}, {(stop, asset): number
    of flagged receipts}, {asset: flagged amount the seeds sent}).

    Deliberately independent of the generator: it knows nothing of roles, only transfers.
    """
    seed_set = set(seeds)
    stop_set = set(stops)
    # Per asset, keyed by address: string keys hash once, tuple keys hash on every lookup.
    balance: dict[str, dict[str, int]] = {}
    flagged: dict[str, dict[str, int]] = {}
    for address, assets in genesis_balances.items():
        for asset, amount in assets.items():
            balance.setdefault(asset, {})[address] = amount
    received: dict[tuple[str, str], int] = {}
    receipts: dict[tuple[str, str], int] = {}
    sent_by_seeds: dict[str, int] = {}
    for tx in txs:
        if not tx.ok:
            continue
        for frm, to, asset, amount in tx.transfers():
            bal = balance.get(asset)
            if bal is None:
                bal = balance[asset] = {}
            fl = flagged.get(asset)
            if fl is None:
                fl = flagged[asset] = {}
            have = bal.get(frm, 0)
            if frm in seed_set:
                out = amount
                sent_by_seeds[asset] = sent_by_seeds.get(asset, 0) + amount
            elif frm in stop_set:
                out = 0
            else:
                f = fl.get(frm, 0)
                out = f * amount // have if f and have else 0
                if out:
                    fl[frm] = f - out
            bal[frm] = have - amount
            bal[to] = bal.get(to, 0) + amount
            if not out or to in seed_set:
                continue
            if to in stop_set:
                key = (to, asset)
                received[key] = received.get(key, 0) + out
                receipts[key] = receipts.get(key, 0) + 1
            else:
                fl[to] = fl.get(to, 0) + out
    return received, receipts, sent_by_seeds


def build_truth(
    sc: Scenario,
    *,
    stolen: dict[str, int],
    deposit_addresses: dict[str, str],
    hubs: Sequence[str],
    noise_offramps: Sequence[str],
    launderers: Sequence[str],
    terminals: dict[str, tuple[str, str]] | None = None,
    stop_at_labels: bool = True,
) -> Truth:
    """Run `reference_haircut` with every service as a stop and sort the receipts into a Truth.

    Stops: deposit addresses (never followed through their sweep), hubs, `terminals` (address ->
    (entity, category), from replayed cases) and, with `stop_at_labels`, every labelled exchange,
    mixer, bridge and dex address. Replays pass False: there a labelled router can sit mid-path.
    """
    label_of = {lb.address: lb for lb in sc.labels}
    stop_categories = {"exchange", "mixer", "bridge", "dex"}
    stops = set(deposit_addresses) | set(hubs)
    if stop_at_labels:
        stops |= {a for a, lb in label_of.items() if lb.category in stop_categories}
    terminals = terminals or {}
    stops |= set(terminals)
    received, receipts, _ = reference_haircut((tx for _, tx in sc.iter_txs()), sc.genesis_balances, sc.seeds, stops)
    truth = Truth(
        stolen=dict(stolen),
        hubs=sorted(set(hubs)),
        noise_offramps=sorted(set(noise_offramps)),
        deposit_addresses=dict(sorted(deposit_addresses.items())),
        launderers=sorted(set(launderers)),
    )
    for (address, asset), amount in sorted(received.items()):
        if address in deposit_addresses:
            truth.offramps.append(OfframpTruth(address, deposit_addresses[address], asset, amount, "deposit_address"))
        elif address in hubs:
            truth.hub_receipts.append(HubTruth(address, asset, amount))
        elif address in label_of and label_of[address].category == "exchange":
            truth.offramps.append(OfframpTruth(address, label_of[address].entity, asset, amount, "hot_wallet"))
        elif address in label_of and label_of[address].category == "mixer":
            truth.mixer_deposits.append(MixerTruth(address, asset, amount, receipts[(address, asset)]))
        elif address in label_of:
            lb = label_of[address]
            truth.other_exits.append(ExitTruth(address, lb.entity, lb.category, asset, amount))
        else:
            entity, category = terminals.get(address, ("", "unknown"))
            truth.other_exits.append(ExitTruth(address, entity, category, asset, amount))
    return truth


# ---------------------------------------------------------------------------------------------
# generator

_ALL = -1  # amount placeholder: the sender's whole balance of the asset when the tx executes

# (kind, sender, to, asset, amount, strict, ok, payouts), kept in per-block lists in planning order
_Event = tuple[int, str, str, str, int, bool, bool, tuple[tuple[str, int], ...]]

EXCHANGE_NAMES = ("Binance", "Coinbase", "Kraken", "OKX", "KuCoin", "Bybit", "Gate.io", "HTX", "Bitfinex", "MEXC")


class _Builder:
    """Executes planned transactions in block order, keeping balances and scheduling sweeps.

    Planned events sit in a list sorted once; sweeps, decided while executing, in a heap. A strict
    event (laundering) that would overdraw is a generator bug; a lenient one (noise) is shrunk or
    dropped, so no balance on the chain ever goes negative.
    """

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.balances: dict[tuple[str, str], int] = {}
        self.genesis: dict[str, dict[str, int]] = {}
        self.events: dict[int, list[_Event]] = {}
        self.deposit_sweeps_to: dict[str, str] = {}  # deposit address -> hot wallet it sweeps to
        self.sweep_delay_max = 4
        self.batch_contract = ""
        self.txs: dict[int, list[ScenarioTx]] = {}
        self.last_block = 0

    def new_address(self) -> str:
        return f"0x{self.rng.getrandbits(160):040x}"

    def fund(self, address: str, asset: str, amount: int) -> None:
        per = self.genesis.setdefault(address, {})
        per[asset] = per.get(asset, 0) + amount
        key = (address, asset)
        self.balances[key] = self.balances.get(key, 0) + amount

    def add(
        self,
        block: int,
        kind: int,
        sender: str,
        to: str,
        asset: str,
        amount: int,
        *,
        strict: bool = True,
        ok: bool = True,
        payouts: tuple[tuple[str, int], ...] = (),
    ) -> None:
        ev = (kind, sender, to, asset, amount, strict, ok, payouts)
        bucket = self.events.get(block)
        if bucket is None:
            self.events[block] = [ev]
        else:
            bucket.append(ev)
        if block > self.last_block:
            self.last_block = block

    def native(self, block: int, sender: str, to: str, amount: int, **kw: Any) -> None:
        self.add(block, KIND_NATIVE, sender, to, NATIVE, amount, **kw)

    def token(self, block: int, token: str, sender: str, to: str, amount: int, **kw: Any) -> None:
        self.add(block, KIND_TOKEN, sender, to, token, amount, **kw)

    def batch(self, block: int, sender: str, payouts: Sequence[tuple[str, int]], **kw: Any) -> None:
        p = tuple(payouts)
        self.add(block, KIND_BATCH, sender, self.batch_contract, NATIVE, sum(v for _, v in p), payouts=p, **kw)

    def mixer(self, block: int, sender: str, pool: str, amount: int, **kw: Any) -> None:
        self.add(block, KIND_MIXER, sender, pool, NATIVE, amount, **kw)

    def run(self) -> dict[int, list[ScenarioTx]]:
        """Execute every planned event, block by block, in planning order within a block.

        Sweeps decided on the way go first in their block, as an exchange's sweeper would.
        """
        events = self.events
        sweeps: dict[int, list[_Event]] = {}
        pending: set[tuple[str, str]] = set()
        # Balances per asset, keyed by address alone: a str caches its hash, a tuple key doesn't.
        per_asset: dict[str, dict[str, int]] = {}
        for (address, asset), amount in self.balances.items():
            per_asset.setdefault(asset, {})[address] = amount
        sweeps_to = self.deposit_sweeps_to
        rand = self.rng.random
        delay_max = self.sweep_delay_max
        out = self.txs
        new_tx = ScenarioTx
        block = 0
        last = max(events, default=0)
        while block < last:
            block += 1
            due = sweeps.pop(block, None)
            for ev in due or ():
                pending.discard((ev[1], ev[3]))
            planned = events.get(block, [])
            batch = (due + planned) if due else planned
            if not batch:
                continue
            txs: list[ScenarioTx] = []
            for kind, sender, to, asset, amount, strict, ok, payouts in batch:
                bal = per_asset.get(asset)
                if bal is None:
                    bal = per_asset[asset] = {}
                have = bal.get(sender, 0)
                if amount == _ALL:
                    amount = have
                    if amount <= 0:
                        continue
                if ok and amount > have:
                    if strict:
                        raise RuntimeError(f"scenario generator overdraws {sender} ({asset}) at block {block}")
                    if kind == KIND_MIXER or kind == KIND_BATCH:
                        continue  # fixed amounts: an unrelated user who cannot afford it just doesn't
                    amount = have // 2
                    if amount <= 0:
                        continue
                gas_price = int((3 + 57 * rand()) * GWEI)
                if kind == KIND_TOKEN:
                    txs.append(new_tx(kind, sender, to, amount, asset, (), ok, gas_price))
                else:
                    txs.append(new_tx(kind, sender, to, amount, "", payouts, ok, gas_price))
                if not ok:
                    continue
                bal[sender] = have - amount
                for who, value in payouts if kind == KIND_BATCH else ((to, amount),):
                    bal[who] = bal.get(who, 0) + value
                    hot = sweeps_to.get(who)
                    if hot is not None and (who, asset) not in pending:
                        # An exchange sweeps a deposit address soon after money lands on it.
                        pending.add((who, asset))
                        when = block + 1 + int(rand() * delay_max)
                        sweep_kind = KIND_NATIVE if asset == NATIVE else KIND_TOKEN
                        sweeps.setdefault(when, []).append((sweep_kind, who, hot, asset, _ALL, False, True, ()))
                        last = max(last, when)
            if txs:
                out[block] = txs
        self.balances = {(a, asset): v for asset, bal in per_asset.items() for a, v in bal.items()}
        if out:
            self.last_block = max(self.last_block, max(out))
        return out


@dataclass
class _World:
    victim: str
    seeds: list[str]
    usdt: str
    tokens: list[Token]
    hot_wallets: dict[str, list[str]]  # exchange -> hot wallets
    launder_deposits: list[tuple[str, str]]  # (deposit address, exchange)
    customer_deposit: dict[str, str]  # noise user -> its deposit address
    deposit_exchange: dict[str, str]  # every deposit address -> exchange
    pools: dict[int, str]  # denomination (ETH) -> pool address
    hub: str
    hub_senders: list[str]
    dex: str
    bridge: str
    batch: str
    dusters: list[str]
    users: list[str]
    launderers: list[str] = field(default_factory=list)
    noise_offramps: list[str] = field(default_factory=list)
    labels: list[ScenarioLabel] = field(default_factory=list)
    contracts: dict[str, str] = field(default_factory=dict)
    trap_candidates: list[str] = field(default_factory=list)  # fan-out wallets that end with nothing
    topped: set[str] = field(default_factory=set)  # laundering wallets that got a gas top-up


def _split(total: int, n: int, rng: random.Random, spread: float = 0.4) -> list[int]:
    """`total` in n random parts that add up exactly (each within +-spread of the mean)."""
    weights = [1 + rng.uniform(-spread, spread) for _ in range(n)]
    s = sum(weights)
    parts = [int(total * w / s) for w in weights]
    parts[-1] += total - sum(parts)
    return parts


def generate(params: ScenarioParams) -> Scenario:
    """Build a scenario deterministically from `params` (same params -> identical scenario)."""
    with gc_paused():
        return _generate(params)


def _generate(p: ScenarioParams) -> Scenario:
    rng = random.Random(p.seed)
    b = _Builder(rng)
    b.sweep_delay_max = max(1, p.sweep_delay_max)
    w = _make_world(b, p)
    t0 = max(8, p.n_blocks // 10)  # theft block; room before it for pre-theft history (a trap)
    _plan_eth(b, p, w, t0)
    _plan_usdt(b, p, w, t0)
    _plan_dust_and_traps(b, p, w, t0)
    n_blocks = max(p.n_blocks, b.last_block + p.sweep_delay_max + 2)
    _plan_noise(b, p, w, n_blocks)
    txs = b.run()
    last = max(n_blocks, max(txs) if txs else 0)
    blocks = [ScenarioBlock(n, p.genesis_time + n * p.block_time, txs.get(n, [])) for n in range(1, last + 1)]
    sc = Scenario(
        genesis_time=p.genesis_time,
        blocks=blocks,
        tokens=w.tokens,
        genesis_balances=b.genesis,
        contracts=w.contracts,
        seeds=list(w.seeds),
        labels=w.labels,
        truth=Truth(),
        mixer_pools=[MixerPool(addr, NATIVE, d * ETHER) for d, addr in sorted(w.pools.items())],
        params=asdict(p),
    )
    sc.truth = build_truth(
        sc,
        stolen={NATIVE: p.stolen_eth, w.usdt: p.stolen_usdt},
        deposit_addresses=w.deposit_exchange,
        hubs=[w.hub],
        noise_offramps=w.noise_offramps,
        launderers=w.launderers,
    )
    return sc


def _make_world(b: _Builder, p: ScenarioParams) -> _World:
    rng = b.rng
    new = b.new_address
    usdt = Token(new(), "USDT", 6)
    usdc = Token(new(), "USDC", 6)
    dai = Token(new(), "DAI", 18)
    tokens = [usdt, usdc, dai]
    labels = [
        ScenarioLabel(t.address, {"USDT": "Tether", "USDC": "Circle", "DAI": "MakerDAO"}[t.symbol], "token")
        for t in tokens
    ]
    contracts = {t.address: "token" for t in tokens}
    victim = new()
    labels.append(ScenarioLabel(victim, "VictimDAO Treasury", "victim"))
    b.fund(victim, NATIVE, p.stolen_eth + 500 * ETHER)
    b.fund(victim, usdt.address, p.stolen_usdt + 1_000_000 * USD6)
    seeds = [new() for _ in range(max(1, min(3, p.n_seeds)))]

    hot: dict[str, list[str]] = {}
    for k in range(max(1, min(len(EXCHANGE_NAMES), p.n_exchanges))):
        name = EXCHANGE_NAMES[k]
        hot[name] = [new() for _ in range(2 if k == 0 else 1)]
        for h in hot[name]:
            labels.append(ScenarioLabel(h, name, "exchange"))
            b.fund(h, NATIVE, 250_000 * ETHER)
            for t in tokens:
                b.fund(h, t.address, 2_000_000_000 * 10**t.decimals)
    names = list(hot)
    deposit_exchange: dict[str, str] = {}

    def deposit_address(exchange: str) -> str:
        d = new()
        deposit_exchange[d] = exchange
        b.deposit_sweeps_to[d] = rng.choice(hot[exchange])
        return d

    launder_deposits = []
    for k in range(max(1, p.n_launder_deposits)):
        ex = names[k % len(names)]
        launder_deposits.append((deposit_address(ex), ex))

    pools = {}
    for denom in (1, 10, 100):
        pools[denom] = pool = new()
        labels.append(ScenarioLabel(pool, f"Tornado Cash {denom} ETH", "mixer"))
        contracts[pool] = "mixer"
    dex, bridge, batch = new(), new(), new()
    labels.append(ScenarioLabel(dex, "Uniswap", "dex"))
    labels.append(ScenarioLabel(bridge, "Across Protocol", "bridge"))
    contracts.update({dex: "dex", bridge: "bridge", batch: "batch"})
    b.batch_contract = batch
    hub = new()  # an unlabelled payment service: many counterparties, no public label
    b.fund(hub, NATIVE, 5_000 * ETHER)
    b.fund(hub, usdt.address, 50_000_000 * USD6)

    hub_senders = [new() for _ in range(p.n_hub_senders)]
    for u in hub_senders:
        b.fund(u, NATIVE, rng.randint(1, 20) * ETHER)
        b.fund(u, usdt.address, rng.randint(100, 5_000) * USD6)
    users = [new() for _ in range(max(2, p.n_noise_users))]
    for u in users:
        b.fund(u, NATIVE, int(rng.lognormvariate(math.log(30), 1.0) * ETHER))
        if rng.random() < 0.7:
            for t in tokens:
                b.fund(u, t.address, int(rng.lognormvariate(math.log(20_000), 1.2) * 10**t.decimals))
    customer_deposit = {}
    for u in users[: max(1, min(len(users), p.n_customers))]:
        customer_deposit[u] = deposit_address(rng.choice(names))
    dusters = [new() for _ in range(2)]
    for d in dusters:
        b.fund(d, NATIVE, 10 * ETHER)
        b.fund(d, usdt.address, 10_000 * USD6)
    return _World(
        victim=victim,
        seeds=seeds,
        usdt=usdt.address,
        tokens=tokens,
        hot_wallets=hot,
        launder_deposits=launder_deposits,
        customer_deposit=customer_deposit,
        deposit_exchange=deposit_exchange,
        pools=pools,
        hub=hub,
        hub_senders=hub_senders,
        dex=dex,
        bridge=bridge,
        batch=batch,
        dusters=dusters,
        users=users,
        noise_offramps=sorted(customer_deposit.values()),
        labels=labels,
        contracts=contracts,
    )


def _any_hot(w: _World, rng: random.Random) -> str:
    return rng.choice(w.hot_wallets[rng.choice(list(w.hot_wallets))])


def _gas_topup(b: _Builder, w: _World, block: int, wallet: str) -> None:
    # Laundering wallets get gas money from somewhere clean: an exchange withdrawal.
    b.native(block, _any_hot(w, b.rng), wallet, b.rng.randint(5, 60) * 10**15)


def _allocate(total: int, jobs: list[tuple[str, float, int]], rng: random.Random) -> list[tuple[str, int]]:
    """Share `total` exactly over jobs (name, weight, minimum): each gets its minimum plus a share.

    When the minimums don't fit, instances of the most repeated job are dropped first, so a big
    scenario keeps every shape and every hop above the relative threshold.
    """
    jobs = list(jobs)
    while len(jobs) > 1 and sum(m for _, _, m in jobs) > total * 0.8:
        names = [name for name, _, _ in jobs]
        most = max(set(names), key=lambda n: (names.count(n), n))
        if names.count(most) == 1:
            break
        del jobs[len(names) - 1 - names[::-1].index(most)]
    minimum = sum(m for _, _, m in jobs)
    if minimum > total:  # still too tight: plain shares by weight
        jobs = [(name, wt, 0) for name, wt, _ in jobs]
        minimum = 0
    weights = [wt * rng.uniform(0.85, 1.15) for _, wt, _ in jobs]
    wsum = sum(weights) or 1.0
    extra = total - minimum
    out = [(name, m + int(extra * wt / wsum)) for (name, _, m), wt in zip(jobs, weights, strict=True)]
    name, amount = out[-1]
    out[-1] = (name, amount + total - sum(a for _, a in out))
    return out


def _plan_eth(b: _Builder, p: ScenarioParams, w: _World, t0: int) -> None:
    rng = b.rng
    S = p.stolen_eth
    min_hop = max(1, int(S * p.min_hop_share))
    d = p.max_hop_delay

    # Mixer deposits first: fixed denominations, at most a quarter of the theft, each above min_hop.
    denoms = [x for x in (100, 10) if x * ETHER >= min_hop] or [100]
    mixer_amounts: list[int] = []
    for k in range(p.n_mixer_deposits):
        denom = denoms[0] if (k % 3 == 0 or len(denoms) == 1) else denoms[1]
        if sum(mixer_amounts) + denom * ETHER > S // 4:
            break
        mixer_amounts.append(denom * ETHER)

    # Jobs the consolidation wallets carry out, with the minimum each needs to keep hops >= min_hop.
    n_cons = max(1, p.n_consolidation)
    jobs: list[tuple[str, float, int]] = []
    for _ in range(p.n_peel_chains):
        jobs.append(("peel", 3.0, int(min_hop * (p.peel_length + 3) * 1.6)))
    for _ in range(p.n_batch_payouts):
        jobs.append(("batch", 2.0, int(min_hop * p.batch_size * 1.3)))
    for _ in range(n_cons):
        jobs.append(("deposit", 1.0, int(min_hop * 1.5)))
    jobs.append(("hub", 0.1, int(min_hop * 1.5)))
    jobs.append(("hot", 0.4, int(min_hop * 1.5)))
    # Consolidation wallets keep ~0.5% dormant: real launderers rarely empty every wallet.
    budget = int((S - sum(mixer_amounts)) * 0.995)
    allocated = _allocate(budget, jobs, rng)
    per_cons: list[list[tuple[str, int]]] = [[] for _ in range(n_cons)]
    for k, job in enumerate(allocated):
        per_cons[k % n_cons].append(job)
    for k, amount in enumerate(mixer_amounts):
        per_cons[k % n_cons].append(("mixer", amount))
    cons = [b.new_address() for _ in range(n_cons)]
    w.launderers.extend(cons)
    needs = [sum(a for _, a in jobs_c) for jobs_c in per_cons]
    # Whatever is left over stays with the first consolidation wallet, dormant.
    needs[0] += S - sum(needs)

    # Fan-out wallets: each consolidation wallet is fed by its own group, sized by what it needs.
    counts = [max(1, min(needs[c] // min_hop, round(max(n_cons, p.n_fanout) * needs[c] / S))) for c in range(n_cons)]
    n_fan = sum(counts)
    group_of = [c for c in range(n_cons) for _ in range(counts[c])]
    fan_amount: list[int] = []
    for c in range(n_cons):
        fan_amount.extend(_split(needs[c], counts[c], rng))
    fans = [b.new_address() for _ in range(n_fan)]
    w.launderers.extend(fans)
    w.trap_candidates = list(fans)
    seed_of = [k % len(w.seeds) for k in range(n_fan)]
    theft = [0] * len(w.seeds)
    for k in range(n_fan):
        theft[seed_of[k]] += fan_amount[k]
    for s, amount in zip(w.seeds, theft, strict=True):
        if amount:
            b.native(t0, w.victim, s, amount)

    cons_ready = [t0] * n_cons
    topped: set[str] = set()
    for k in range(n_fan):
        t_in = t0 + rng.randint(1, d)
        b.native(t_in, w.seeds[seed_of[k]], fans[k], fan_amount[k])
        if k >= 2 and rng.random() < p.gas_topup_rate:  # fans 0-1 stay clean for the traps
            _gas_topup(b, w, t_in, fans[k])
            topped.add(fans[k])
        t_out = t_in + rng.randint(1, d)
        c = group_of[k]
        b.native(t_out, fans[k], cons[c], fan_amount[k])
        cons_ready[c] = max(cons_ready[c], t_out)

    failed_trap_done = False
    for c, jobs_c in enumerate(per_cons):
        t = cons_ready[c] + 1
        rng.shuffle(jobs_c)
        for n_job, (name, amount) in enumerate(jobs_c):
            t_job = t + n_job // 2
            if name == "peel":
                start = t_job
                first = b.new_address()
                w.launderers.append(first)
                b.native(start, cons[c], first, amount)
                _peel_from(b, p, w, first, start, NATIVE, amount, min_hop)
            elif name == "batch":
                size = max(2, min(p.batch_size, amount // max(1, min_hop) - 1))
                recipients = [b.new_address() for _ in range(size)]
                w.launderers.extend(recipients)
                parts = _split(amount, size, rng, 0.2)
                if not failed_trap_done:
                    # A reverted payout right before the real one: it moves nothing.
                    b.batch(t_job, cons[c], list(zip(recipients, parts, strict=True)), ok=False)
                    failed_trap_done = True
                b.batch(t_job, cons[c], list(zip(recipients, parts, strict=True)))
                for r, part in zip(recipients, parts, strict=True):
                    t_r = t_job + rng.randint(1, d)
                    if rng.random() < p.gas_topup_rate:
                        _gas_topup(b, w, t_job, r)
                    b.native(t_r, r, rng.choice(w.launder_deposits)[0], part)
            elif name == "mixer":
                # Through a fresh feeder wallet, as launderers do, then into the pool.
                feeder = b.new_address()
                w.launderers.append(feeder)
                b.native(t_job, cons[c], feeder, amount)
                denom = amount // ETHER
                b.mixer(t_job + rng.randint(1, d), feeder, w.pools[denom], amount)
            elif name == "deposit":
                b.native(t_job, cons[c], rng.choice(w.launder_deposits)[0], amount)
            elif name == "hub":
                b.native(t_job, cons[c], w.hub, amount)
            elif name == "hot":
                b.native(t_job, cons[c], _any_hot(w, rng), amount)
    w.topped |= topped


def _peel_from(
    b: _Builder, p: ScenarioParams, w: _World, first: str, start: int, asset: str, amount: int, min_hop: int
) -> None:
    """Peel chain starting at wallet `first`, which receives `amount` at block `start`."""
    rng = b.rng
    token = asset != NATIVE
    dep_idx = rng.randrange(len(w.launder_deposits))
    wallet = first
    t = start
    remaining = amount
    for _ in range(p.peel_length):
        if remaining < 3 * min_hop:
            break
        if token or rng.random() < p.gas_topup_rate:
            _gas_topup(b, w, t, wallet)
        peel = max(min_hop, int(remaining * rng.uniform(0.03, 0.10)))
        if rng.random() < 0.25:  # the account sometimes changes: another deposit address
            dep_idx = rng.randrange(len(w.launder_deposits))
        dep = w.launder_deposits[dep_idx][0]
        t += rng.randint(1, p.max_hop_delay)
        nxt = b.new_address()
        w.launderers.append(nxt)
        if token:
            b.token(t, asset, wallet, dep, peel)
            b.token(t, asset, wallet, nxt, remaining - peel)
        else:
            b.native(t, wallet, dep, peel)
            b.native(t, wallet, nxt, remaining - peel)
        remaining -= peel
        wallet = nxt
    # The last wallet of the chain cashes out the rest in one deposit.
    if token:
        _gas_topup(b, w, t, wallet)
    t += rng.randint(1, p.max_hop_delay)
    dep = w.launder_deposits[dep_idx][0]
    if token:
        b.token(t, asset, wallet, dep, remaining)
    else:
        b.native(t, wallet, dep, remaining)


def _plan_usdt(b: _Builder, p: ScenarioParams, w: _World, t0: int) -> None:
    rng = b.rng
    S = p.stolen_usdt
    usdt = w.usdt
    min_hop = max(1, int(S * p.min_hop_share))
    d = p.max_hop_delay
    n_fan = max(1, p.n_token_fanout)
    direct = [k for k in range(n_fan) if k % 3 == 2]  # a third go straight to a deposit address
    n_hold = 1 if n_fan < 20 else 2
    holders = [b.new_address() for _ in range(n_hold)]
    w.launderers.extend(holders)
    parts = _split(S, n_fan, rng)
    fans = [b.new_address() for _ in range(n_fan)]
    w.launderers.extend(fans)
    theft = [0] * len(w.seeds)
    for k in range(n_fan):
        theft[k % len(w.seeds)] += parts[k]
    for s, amount in zip(w.seeds, theft, strict=True):
        if amount:
            b.token(t0, usdt, w.victim, s, amount)
    held = [0] * n_hold
    ready = [t0] * n_hold
    for k in range(n_fan):
        t_in = t0 + rng.randint(1, d)
        b.token(t_in, usdt, w.seeds[k % len(w.seeds)], fans[k], parts[k])
        _gas_topup(b, w, t_in, fans[k])  # a token wallet needs ETH for gas before it can move
        t_out = t_in + rng.randint(1, d)
        if k == 0:
            # A transfer of more than the wallet holds reverts: no log, nothing moves.
            b.token(t_out, usdt, fans[k], holders[0], parts[k] * 2, ok=False)
        if k in direct:
            b.token(t_out, usdt, fans[k], rng.choice(w.launder_deposits)[0], parts[k])
        else:
            h = k % n_hold
            b.token(t_out, usdt, fans[k], holders[h], parts[k])
            held[h] += parts[k]
            ready[h] = max(ready[h], t_out)
    for h, total in enumerate(held):
        if not total:
            continue
        t = ready[h] + 1
        _gas_topup(b, w, ready[h], holders[h])
        n_peel = max(1, p.n_token_peel_chains // n_hold + (1 if h < p.n_token_peel_chains % n_hold else 0))
        jobs: list[tuple[str, float, int]] = [("peel", 3.0, int(min_hop * (p.peel_length + 3) * 1.6))] * n_peel
        jobs += [
            ("deposit", 1.5, int(min_hop * 1.5)),
            ("hub", 0.1, int(min_hop * 1.5)),
            ("hot", 0.3, int(min_hop * 1.5)),
        ]
        allocated = _allocate(int(total * 0.995), jobs, rng)
        for n_job, (name, amount) in enumerate(allocated):
            t_job = t + n_job // 2
            if name == "peel":
                first = b.new_address()
                w.launderers.append(first)
                b.token(t_job, usdt, holders[h], first, amount)
                _peel_from(b, p, w, first, t_job, usdt, amount, min_hop)
            elif name == "deposit":
                b.token(t_job, usdt, holders[h], rng.choice(w.launder_deposits)[0], amount)
            elif name == "hub":
                b.token(t_job, usdt, holders[h], w.hub, amount)
            else:
                b.token(t_job, usdt, holders[h], _any_hot(w, rng), amount)


def _plan_dust_and_traps(b: _Builder, p: ScenarioParams, w: _World, t0: int) -> None:
    rng = b.rng
    end = max(b.last_block, t0 + 5)
    for _ in range(p.n_dust):
        # Dust (address poisoning, airdrops) lands on the thieves' wallets: clean and tiny.
        target = rng.choice(w.seeds)
        t = rng.randint(t0 + 1, end)
        if rng.random() < 0.5:
            b.native(t, rng.choice(w.dusters), target, rng.randint(1, 1000) * 10**9)
        else:
            b.token(t, w.usdt, rng.choice(w.dusters), target, rng.randint(1, 999))
    names = list(w.hot_wallets)
    fans = w.trap_candidates
    topped = w.topped
    clean_fans = [f for f in fans if f not in topped]
    for k in range(p.n_traps):
        # A laundering wallet emptied of flagged money later moves clean money of its owner into an
        # unrelated deposit address: taint-insensitive (poison) tracing would report that off-ramp.
        if k >= len(clean_fans):
            break
        f = clean_fans[k]
        dep = b.new_address()
        ex = rng.choice(names)
        w.deposit_exchange[dep] = ex
        b.deposit_sweeps_to[dep] = rng.choice(w.hot_wallets[ex])
        w.noise_offramps.append(dep)
        t = end + rng.randint(2, 6)
        amount = rng.randint(2, 20) * ETHER
        b.native(t, _any_hot(w, rng), f, amount)
        b.native(t + rng.randint(1, 3), f, dep, amount)
    # A consolidation wallet with history before the theft: its earlier deposit is clean.
    cons = [a for a in w.launderers if a not in fans][:1]
    if cons and t0 > 4:
        dep = b.new_address()
        ex = rng.choice(names)
        w.deposit_exchange[dep] = ex
        b.deposit_sweeps_to[dep] = rng.choice(w.hot_wallets[ex])
        w.noise_offramps.append(dep)
        b.native(2, _any_hot(w, rng), cons[0], 3 * ETHER)
        b.native(3, cons[0], dep, 2 * ETHER)


def _plan_noise(b: _Builder, p: ScenarioParams, w: _World, n_blocks: int) -> None:
    # The bulk of a large scenario: plain random arithmetic instead of rng.choice/randint, which
    # cost several times more per call and dominate generation time at a million transfers.
    rand = b.rng.random
    gauss = b.rng.gauss  # log-normal amounts as exp(mu + sigma * gauss): cheaper than lognormvariate
    exp = math.exp
    add = b.add
    users = w.users
    n_users = len(users)
    customers = list(w.customer_deposit)
    n_customers = len(customers)
    deposit_of = w.customer_deposit
    tokens = [t.address for t in w.tokens]
    unit = {t.address: 10**t.decimals for t in w.tokens}
    hots = [h for hs in w.hot_wallets.values() for h in hs]
    n_hots = len(hots)
    usdt = w.usdt
    hub = w.hub
    services = (w.dex, w.bridge)
    failed_rate = p.failed_rate
    N, T, B, M = KIND_NATIVE, KIND_TOKEN, KIND_BATCH, KIND_MIXER
    ln = math.log

    def user() -> str:
        return users[int(rand() * n_users)]

    def hot() -> str:
        return hots[int(rand() * n_hots)]

    def eth(median: float, sigma: float) -> int:
        return int(min(exp(ln(median) + sigma * gauss()), 5_000.0) * ETHER)

    def tok(token: str, median: float, sigma: float) -> int:
        return int(min(exp(ln(median) + sigma * gauss()), 50_000_000.0) * unit[token])

    for _ in range(p.n_noise_events):
        t = 1 + int(rand() * n_blocks)
        r = rand()
        ok = rand() >= failed_rate
        if r < 0.20:  # users paying each other
            add(t, N, user(), user(), NATIVE, eth(0.5, 1.3), strict=False, ok=ok)
        elif r < 0.32:
            tk = tokens[int(rand() * 3)]
            add(t, T, user(), user(), tk, tok(tk, 300, 1.5), strict=False, ok=ok)
        elif r < 0.46:  # customers depositing to their exchange account (the sweep follows)
            u = customers[int(rand() * n_customers)]
            if rand() < 0.6:
                add(t, N, u, deposit_of[u], NATIVE, eth(1.0, 1.2), strict=False)
            else:
                tk = tokens[int(rand() * 3)]
                add(t, T, u, deposit_of[u], tk, tok(tk, 2000, 1.3), strict=False)
        elif r < 0.66:  # exchange withdrawals: large, to anyone
            if rand() < 0.6:
                add(t, N, hot(), user(), NATIVE, eth(3.0, 1.5), strict=False)
            else:
                tk = tokens[int(rand() * 3)]
                add(t, T, hot(), user(), tk, tok(tk, 5000, 1.5), strict=False)
        elif r < 0.69:  # straight into a hot wallet (some services do)
            add(t, N, user(), hot(), NATIVE, eth(2.0, 1.0), strict=False)
        elif r < 0.76:  # the unlabelled hub: payments in
            if rand() < 0.5:
                add(t, N, user(), hub, NATIVE, eth(0.3, 1.0), strict=False)
            else:
                add(t, T, user(), hub, usdt, tok(usdt, 500, 1.0), strict=False)
        elif r < 0.83:  # ... and payouts
            if rand() < 0.5:
                add(t, N, hub, user(), NATIVE, eth(0.3, 1.0), strict=False)
            else:
                add(t, T, hub, user(), usdt, tok(usdt, 500, 1.0), strict=False)
        elif r < 0.92:  # DEX and bridge traffic
            add(t, N, user(), services[int(rand() * 2)], NATIVE, eth(1.0, 1.0), strict=False, ok=ok)
        elif r < 0.95:  # someone else's batch payout
            payouts = tuple((user(), eth(0.2, 0.8)) for _ in range(2 + int(rand() * 5)))
            add(
                t, B, user(), b.batch_contract, NATIVE, sum(v for _, v in payouts), strict=False, ok=ok, payouts=payouts
            )
        else:  # small change between users
            add(t, N, user(), user(), NATIVE, eth(0.05, 1.0), strict=False)
    for u in w.hub_senders:  # each of the hub's many customers pays it once
        t = 1 + int(rand() * n_blocks)
        if rand() < 0.6:
            add(t, N, u, hub, NATIVE, int(ETHER * (0.01 + rand())), strict=False)
        else:
            add(t, T, u, hub, usdt, int(USD6 * (20 + 2_000 * rand())), strict=False)
    denominations = (1, 1, 10, 10, 100)
    for _ in range(p.n_mixer_noise):
        denom = denominations[int(rand() * 5)]
        u = user()
        t = 1 + int(rand() * n_blocks)
        # Unrelated depositors withdraw what they mix from an exchange first, so they can afford it.
        add(max(1, t - 1), N, hot(), u, NATIVE, denom * ETHER, strict=False)
        add(t, M, u, w.pools[denom], NATIVE, denom * ETHER, strict=False)


def params_from_dict(data: dict[str, Any]) -> ScenarioParams:
    """ScenarioParams from a saved scenario's `params` (unknown keys ignored)."""
    names = {f.name for f in fields(ScenarioParams)}
    return ScenarioParams(**{k: v for k, v in data.items() if k in names})
