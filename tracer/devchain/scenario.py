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
# Kinds below only appear when a scenario turns its mixer/swap/bridge knobs on.
KIND_WITHDRAW = 4  # sender (relayer or recipient) calls pool `to`; it pays `payouts` (recipient, then relayer fee)
KIND_SWAP = 5  # sender pays `value` of `token` into DEX pair `to`; it pays `payouts` in native (a V2 Swap log)
KIND_BRIDGE = 6  # sender pays `value` wei into bridge router `to` with `memo`; it forwards `payouts` to the vault

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
    transaction goes to `token`), the batch contract for KIND_BATCH, the pool for KIND_MIXER and
    KIND_WITHDRAW, the DEX pair for KIND_SWAP and the bridge router for KIND_BRIDGE. Contracts pay
    `payouts` out of their own balance in internal calls. A failed transaction (`ok=False`) moves
    nothing and emits no log.
    """

    kind: int
    sender: str
    to: str
    value: int
    token: str = ""
    payouts: tuple[tuple[str, int], ...] = ()
    ok: bool = True
    gas_price: int = 20 * GWEI
    memo: str = ""  # KIND_BRIDGE: the THORChain-style memo naming the destination

    def transfers(self) -> list[tuple[str, str, str, int]]:
        """(from, to, asset, amount) value movements in execution order; empty for a failed tx."""
        if not self.ok:
            return []
        kind = self.kind
        if kind == KIND_TOKEN:
            return [(self.sender, self.to, self.token, self.value)] if self.value else []
        if kind == KIND_WITHDRAW:
            return [(self.to, who, NATIVE, amount) for who, amount in self.payouts if amount]
        if kind == KIND_SWAP:
            moved = [(self.sender, self.to, self.token, self.value)] if self.value else []
        else:
            moved = [(self.sender, self.to, NATIVE, self.value)] if self.value else []
        if kind == KIND_BATCH or kind >= KIND_SWAP:
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


@dataclass(frozen=True, slots=True)
class MixerLinkTruth:
    """One laundering note through a mixer pool: who deposited it and who withdrew it.

    `clue` names what the withdrawal gives away (address | gas_price | counterparty |
    multi_denomination); `flagged` is the flagged part of the deposit (haircut), so a certain link
    carries min(flagged, denomination - fee) to the recipient.
    """

    pool: str
    denomination: int
    depositor: str
    deposit_block: int
    recipient: str
    withdrawal_block: int
    relayer: str  # "" when the recipient sent the withdrawal itself
    fee: int
    clue: str
    flagged: int


@dataclass(frozen=True, slots=True)
class SwapTruth:
    """A laundering swap on the DEX pair: the wallet pays `asset_in` and gets `asset_out` back."""

    wallet: str
    block: int
    asset_in: str
    amount_in: int
    flagged_in: int
    asset_out: str
    amount_out: int
    flagged_out: int  # flagged_in converted at the swap's own rate


@dataclass(frozen=True, slots=True)
class BridgeTruth:
    """A laundering deposit into a bridge router and where its memo sends the money."""

    router: str
    sender: str
    block: int
    asset: str
    amount: int
    flagged: int
    memo: str
    dest_chain: str
    dest_address: str


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
    # With the mixer/swap/bridge knobs on: what following money through them should find. Kept apart
    # from `offramps` (which stop at every service), so uncertain links never blur those amounts.
    mixer_links: list[MixerLinkTruth] = field(default_factory=list)
    swaps: list[SwapTruth] = field(default_factory=list)
    bridges: list[BridgeTruth] = field(default_factory=list)
    through_offramps: list[OfframpTruth] = field(default_factory=list)  # reached only through a mixer or swap

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
    # mixers, swaps and bridges: off by default, so scenarios made before them stay identical
    mixer_withdrawals: bool = False  # launderers withdraw their mixer notes, each leaving a de-mixing clue
    n_mixer_users: int = 0  # unrelated users who deposit into the pools and withdraw later (the anonymity set)
    n_swaps: int = 0  # laundering USDT -> ETH swaps on a Uniswap-V2-like pair (USDT in, ETH out internally)
    n_swap_users: int = 0  # unrelated swaps on the same pair
    n_bridges: int = 0  # laundering ETH deposits into a THORChain-like router, with destination memos
    n_bridge_users: int = 0  # unrelated bridge deposits

    @classmethod
    def for_size(cls, n_transfers: int, seed: int = 1, *, services: bool = False) -> ScenarioParams:
        """Knobs for about `n_transfers` value transfers (50 for unit tests .. millions for benches).

        The laundering grows slowly with the size (real cases have tens to a few hundred hops and
        every hop must stay above the relative threshold); the rest is noise and exchange traffic.
        `services` adds mixer withdrawals with de-mixing clues, DEX swaps and bridge deposits (and
        unrelated users of each) on top; without it the scenario is exactly what it always was.
        """
        n = max(50, n_transfers)
        g = math.sqrt(n / 300)  # growth of the laundering structure

        def k(base: float, power: float, lo: int, hi: int) -> int:
            return max(lo, min(hi, round(base * g**power)))

        laundering: dict[str, Any] = dict(
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
        extra: dict[str, Any] = {}
        if services:
            extra = dict(
                mixer_withdrawals=True,
                n_mixer_users=max(40, min(2_000, n // 40)),
                n_swaps=k(1, 0.3, 1, 4),
                n_swap_users=max(12, min(500, n // 200)),
                n_bridges=k(2, 0.3, 2, 6),
                n_bridge_users=max(8, min(300, n // 300)),
            )
        return cls(
            seed=seed,
            n_blocks=max(40, n // 100),
            n_noise_events=events,
            n_noise_users=users,
            n_customers=max(3, users // 4),
            n_mixer_noise=max(4, events // 30),
            n_hub_senders=hub_senders,
            **laundering,
            **extra,
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
    if data.get("format") != SCENARIO_FORMAT:
        raise ValueError(f"not a devchain scenario (format {data.get('format')!r})")
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

# Optional extras of a planned transaction: (memo, fixed gas price or 0, tag or ""). A tag names the
# executed ScenarioTx in `_Builder.tagged`, so ground truth can point at it after `run()`.
_Extra = tuple[str, int, str]
# (kind, sender, to, asset, amount, strict, ok, payouts, extra), in per-block lists in planning order
_Event = tuple[int, str, str, str, int, bool, bool, tuple[tuple[str, int], ...], _Extra | None]

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
        self.tagged: dict[str, tuple[int, ScenarioTx]] = {}  # tag -> (block, executed transaction)
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
        extra: _Extra | None = None,
    ) -> None:
        ev = (kind, sender, to, asset, amount, strict, ok, payouts, extra)
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

    def withdraw(self, block: int, sender: str, pool: str, payouts: Sequence[tuple[str, int]], **kw: Any) -> None:
        p = tuple(payouts)
        self.add(block, KIND_WITHDRAW, sender, pool, NATIVE, sum(v for _, v in p), payouts=p, **kw)

    def swap(self, block: int, sender: str, pair: str, token: str, amount_in: int, recipient: str, amount_out: int,
             **kw: Any) -> None:
        self.add(block, KIND_SWAP, sender, pair, token, amount_in, payouts=((recipient, amount_out),), **kw)

    def bridge(self, block: int, sender: str, router: str, vault: str, amount: int, **kw: Any) -> None:
        self.add(block, KIND_BRIDGE, sender, router, NATIVE, amount, payouts=((vault, amount),), **kw)

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
            for kind, sender, to, asset, amount, strict, ok, payouts, extra in batch:
                if kind >= KIND_WITHDRAW:
                    # Contract payouts (mixer, swap, bridge): rare, so a general path is fine here.
                    tx = self._service_tx(block, kind, sender, to, asset, amount, strict, ok, payouts, extra,
                                          per_asset)
                    if tx is not None:
                        txs.append(tx)
                        for frm, who, moved_asset, _ in tx.transfers():
                            if frm != sender and who in sweeps_to and (who, moved_asset) not in pending:
                                pending.add((who, moved_asset))
                                when = block + 1 + int(rand() * delay_max)
                                sweep_kind = KIND_NATIVE if moved_asset == NATIVE else KIND_TOKEN
                                sweeps.setdefault(when, []).append(
                                    (sweep_kind, who, sweeps_to[who], moved_asset, _ALL, False, True, (), None))
                                last = max(last, when)
                    continue
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
                if extra is not None and extra[1]:
                    gas_price = extra[1]  # a gas price the plan chose (a de-mixing clue, a wallet default)
                if kind == KIND_TOKEN:
                    tx = new_tx(kind, sender, to, amount, asset, (), ok, gas_price)
                else:
                    tx = new_tx(kind, sender, to, amount, "", payouts, ok, gas_price)
                txs.append(tx)
                if extra is not None and extra[2]:
                    self.tagged[extra[2]] = (block, tx)
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
                        sweeps.setdefault(when, []).append((sweep_kind, who, hot, asset, _ALL, False, True, (), None))
                        last = max(last, when)
            if txs:
                out[block] = txs
        self.balances = {(a, asset): v for asset, bal in per_asset.items() for a, v in bal.items()}
        if out:
            self.last_block = max(self.last_block, max(out))
        return out

    def _service_tx(
        self,
        block: int,
        kind: int,
        sender: str,
        to: str,
        asset: str,
        amount: int,
        strict: bool,
        ok: bool,
        payouts: tuple[tuple[str, int], ...],
        extra: _Extra | None,
        per_asset: dict[str, dict[str, int]],
    ) -> ScenarioTx | None:
        """Execute a withdrawal, swap or bridge deposit: every debit must be covered, else the
        transaction is a generator bug (strict) or is skipped (noise)."""
        memo, gas, tag = extra if extra is not None else ("", 0, "")
        if kind == KIND_SWAP:
            tx = ScenarioTx(kind, sender, to, amount, asset, payouts, ok, 0, memo)
        else:
            tx = ScenarioTx(kind, sender, to, amount, "", payouts, ok, 0, memo)
        tx.gas_price = gas or int((3 + 57 * self.rng.random()) * GWEI)
        moves = ScenarioTx(kind, sender, to, amount, tx.token, payouts, True, 0, memo).transfers()
        if ok:
            # Debits are checked in execution order: a router forwards what it has just received.
            delta: dict[tuple[str, str], int] = {}
            for frm, who, moved_asset, value in moves:
                have = per_asset.get(moved_asset, {}).get(frm, 0) + delta.get((frm, moved_asset), 0)
                if value > have:
                    if strict:
                        raise RuntimeError(f"scenario generator overdraws {frm} ({moved_asset}) at block {block}")
                    return None
                delta[(frm, moved_asset)] = delta.get((frm, moved_asset), 0) - value
                delta[(who, moved_asset)] = delta.get((who, moved_asset), 0) + value
            for (who, moved_asset), value in delta.items():
                bal = per_asset.setdefault(moved_asset, {})
                bal[who] = bal.get(who, 0) + value
        if tag:
            self.tagged[tag] = (block, tx)
        return tx


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
    # mixers, swaps, bridges (only with their knobs on)
    pair: str = ""  # Uniswap-V2-like USDT/WETH pair
    router: str = ""  # THORChain-like router
    vault: str = ""  # the router forwards deposits to this vault
    relayers: list[str] = field(default_factory=list)  # Tornado relayers: send withdrawals for a fee
    gas_station: str = ""  # a clean wallet of the launderers that pays gas to their fresh wallets
    mixer_jobs: list[tuple[str, int, int]] = field(default_factory=list)  # (funder, amount, block) to mix
    note_plans: list[tuple[str, str, str, int, str, str]] = field(default_factory=list)  # see _plan_mixer
    swap_plans: list[tuple[str, str]] = field(default_factory=list)  # (wallet, swap tag)
    bridge_plans: list[tuple[str, str, str, str]] = field(default_factory=list)  # (tag, memo, chain, address)
    through_deposits: list[str] = field(default_factory=list)  # off-ramps reached only through a service


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
    if _has_services(p):
        _make_services(b, p, w)
    t0 = max(8, p.n_blocks // 10)  # theft block; room before it for pre-theft history (a trap)
    _plan_eth(b, p, w, t0)
    _plan_usdt(b, p, w, t0)
    _plan_dust_and_traps(b, p, w, t0)
    n_blocks = max(p.n_blocks, b.last_block + p.sweep_delay_max + 2)
    _plan_noise(b, p, w, n_blocks)
    if _has_services(p):
        _plan_mixer_notes(b, p, w)
        _plan_service_users(b, p, w, n_blocks)
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
    if _has_services(p):
        _through_truth(sc, b, w)
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
    for _ in range(p.n_bridges):
        jobs.append(("bridge", 1.0, int(min_hop * 1.5)))
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
            elif name == "mixer" and p.mixer_withdrawals:
                w.mixer_jobs.append((cons[c], amount, t_job))  # _plan_mixer_notes takes it from here
            elif name == "bridge":
                _bridge_job(b, p, w, cons[c], amount, t_job)
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
        jobs += [("swap", 0.5, int(min_hop * 1.5))] * (p.n_swaps // n_hold + (1 if h < p.n_swaps % n_hold else 0))
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
            elif name == "swap":
                _swap_job(b, p, w, holders[h], amount, t_job)
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


# ---------------------------------------------------------------------------------------------
# mixers, swaps and bridges (only with their knobs on)

_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
# THORChain memo assets the generated bridge deposits ask for: (memo asset, chain name)
_THOR_TARGETS = (("BTC.BTC", "bitcoin"), ("AVAX.AVAX", "avalanche"), ("BSC.BNB", "bsc"))


def _has_services(p: ScenarioParams) -> bool:
    return bool(p.mixer_withdrawals or p.n_mixer_users or p.n_swaps or p.n_swap_users or p.n_bridges
                or p.n_bridge_users)


def _make_services(b: _Builder, p: ScenarioParams, w: _World) -> None:
    """The DEX pair, the bridge router and its vault, mixer relayers and the launderers' gas station."""
    new = b.new_address
    w.pair, w.router, w.vault = new(), new(), new()
    w.labels.append(ScenarioLabel(w.pair, "Uniswap V2: USDT-WETH", "dex"))
    w.labels.append(ScenarioLabel(w.router, "THORChain Router", "bridge"))
    w.contracts[w.pair] = "dex"
    w.contracts[w.router] = "bridge"
    # Deep liquidity: every planned swap is paid out, whatever the noise does.
    b.fund(w.pair, NATIVE, 1_000_000 * ETHER)
    b.fund(w.pair, w.usdt, 2_000_000_000 * USD6)
    w.relayers = [new() for _ in range(4)]
    w.gas_station = new()
    b.fund(w.gas_station, NATIVE, 50 * ETHER)


def _round_gas(rng: random.Random) -> int:
    # What wallets and relayers suggest: whole gwei, so many transactions share each value.
    return rng.randint(8, 40) * GWEI


def _btc_address(rng: random.Random) -> str:
    return "bc1q" + "".join(rng.choice(_BECH32) for _ in range(38))


def _through_deposit(b: _Builder, w: _World) -> str:
    """A fresh exchange deposit address reached only through a mixer or a swap: its amounts are
    ground truth of following money through them, kept apart from the plain off-ramps."""
    dep = b.new_address()
    ex = b.rng.choice(list(w.hot_wallets))
    w.deposit_exchange[dep] = ex
    b.deposit_sweeps_to[dep] = b.rng.choice(w.hot_wallets[ex])
    w.through_deposits.append(dep)
    return dep


def _swap_job(b: _Builder, p: ScenarioParams, w: _World, holder: str, amount: int, t: int) -> None:
    """A fresh wallet takes USDT, swaps all of it for ETH on the pair and cashes the ETH out."""
    rng = b.rng
    wallet = b.new_address()
    w.launderers.append(wallet)
    b.token(t, w.usdt, holder, wallet, amount)
    t_swap = t + rng.randint(1, p.max_hop_delay)
    price = rng.randint(1_900, 2_100)  # USDT per ETH; the pair keeps a 0.3 % fee
    out = amount * 10**12 * 997 // (1000 * price)
    tag = f"swap:{len(w.swap_plans)}"
    b.swap(t_swap, wallet, w.pair, w.usdt, amount, wallet, out, extra=("", 0, tag))
    b.native(t_swap + rng.randint(1, p.max_hop_delay), wallet, _through_deposit(b, w), _ALL)
    w.swap_plans.append((wallet, tag))


def _bridge_job(b: _Builder, p: ScenarioParams, w: _World, funder: str, amount: int, t: int) -> None:
    """A fresh wallet takes ETH and deposits it into the router with a memo naming where it goes."""
    rng = b.rng
    k = len(w.bridge_plans)
    sender = b.new_address()
    w.launderers.append(sender)
    b.native(t, funder, sender, amount)
    asset, chain = _THOR_TARGETS[k % len(_THOR_TARGETS)]
    dest = _btc_address(rng) if chain == "bitcoin" else b.new_address()
    # Both memo spellings THORChain accepts, one with a trade limit / streaming suffix.
    memo = f"=:{asset}:{dest}" if k % 2 == 0 else f"SWAP:{asset}:{dest}:0/1/0"
    tag = f"bridge:{k}"
    b.bridge(t + rng.randint(1, p.max_hop_delay), sender, w.router, w.vault, amount, extra=(memo, 0, tag))
    w.bridge_plans.append((tag, memo, chain, dest))


_CLUES = ("gas_price", "address", "counterparty")


def _plan_mixer_notes(b: _Builder, p: ScenarioParams, w: _World) -> None:
    """Deposit the launderers' mixer money and withdraw it, each note leaving one published
    de-mixing clue (Tutela; Wang et al. 2023): the first few notes come from one wallet and go to
    one recipient (multi-denomination), the rest cycle through an unusual gas price shared by
    deposit and withdrawal, withdrawing to the depositing address itself, and a gas station that
    pays both the depositor and the recipient."""
    rng = b.rng
    d = p.max_hop_delay
    jobs = list(w.mixer_jobs)
    if not jobs:
        return
    groups: list[tuple[str, list[tuple[str, int, int]]]] = []
    first = 0
    if len(jobs) >= 4:
        first = 3 if len(jobs) >= 6 else 2
        groups.append(("multi_denomination", jobs[:first]))
    groups.extend((_CLUES[k % len(_CLUES)], [job]) for k, job in enumerate(jobs[first:]))
    for g, (clue, members) in enumerate(groups):
        feeder = b.new_address()
        w.launderers.append(feeder)
        funded = max(t for _, _, t in members)
        for funder, amount, t in members:
            b.native(t, funder, feeder, amount)
        if clue == "counterparty":
            b.native(funded, w.gas_station, feeder, rng.randint(10, 40) * 10**15)
        t_dep = funded + rng.randint(1, d)
        # Not a whole gwei: a gas price set by hand, which almost nobody else uses.
        unusual = int((12 + 40 * rng.random()) * GWEI) + rng.randint(1, 999_999) if clue == "gas_price" else 0
        recipient = feeder if clue == "address" else b.new_address()
        if recipient != feeder:
            w.launderers.append(recipient)
        t_w = t_dep + rng.randint(4, 30)
        if clue == "counterparty":
            b.native(t_w - 1, w.gas_station, recipient, rng.randint(10, 40) * 10**15)
        for j, (_, amount, _) in enumerate(members):
            pool = w.pools[amount // ETHER]
            dep_tag, wd_tag = f"note:{g}:{j}:d", f"note:{g}:{j}:w"
            b.mixer(t_dep, feeder, pool, amount, extra=("", unusual or _round_gas(rng), dep_tag))
            if clue == "gas_price":
                # The recipient sends its withdrawal itself, with the gas price it deposited with.
                b.withdraw(t_w + j, recipient, pool, [(recipient, amount)], extra=("", unusual, wd_tag))
            else:
                relayer = rng.choice(w.relayers)
                fee = amount * rng.choice((10, 20, 30)) // 10_000
                b.withdraw(t_w + j, relayer, pool, [(recipient, amount - fee), (relayer, fee)],
                           extra=("", _round_gas(rng), wd_tag))
            w.note_plans.append((clue, pool, dep_tag, amount, wd_tag, recipient))
        b.native(t_w + len(members) + rng.randint(1, d), recipient, _through_deposit(b, w), _ALL)


def _plan_service_users(b: _Builder, p: ScenarioParams, w: _World, n_blocks: int) -> None:
    """Unrelated users of the pools, the pair and the router: the crowd the laundering hides in."""
    rng = b.rng
    new = b.new_address
    top = max(5, n_blocks)
    denominations = (1, 1, 1, 10, 10, 10, 100)
    for _ in range(p.n_mixer_users):
        u = new()
        notes = [rng.choice(denominations)]
        if rng.random() < 0.15:  # some mix two notes and withdraw both to one address
            notes.append(notes[0] if rng.random() < 0.5 else rng.choice(denominations))
        b.fund(u, NATIVE, (sum(notes) + 1) * ETHER)
        t = rng.randint(1, top)
        gas = _round_gas(rng)
        for denom in notes:
            b.mixer(t, u, w.pools[denom], denom * ETHER, extra=("", gas, ""))
        r = rng.random()
        recipient = new() if r < 0.65 else (u if r < 0.80 else rng.choice(w.users))
        t_w = t + rng.randint(1, max(10, top // 2))
        for j, denom in enumerate(notes):
            amount = denom * ETHER
            if rng.random() < 0.7:
                relayer = rng.choice(w.relayers)
                fee = amount * rng.choice((10, 20, 30)) // 10_000
                b.withdraw(t_w + j, relayer, w.pools[denom], [(recipient, amount - fee), (relayer, fee)],
                           extra=("", _round_gas(rng), ""))
            else:
                b.withdraw(t_w + j, recipient, w.pools[denom], [(recipient, amount)], extra=("", _round_gas(rng), ""))
        if recipient != u and recipient not in w.users and rng.random() < 0.5:
            b.native(t_w + len(notes) + rng.randint(1, 5), recipient, _any_hot(w, rng), _ALL)
    for _ in range(p.n_swap_users):
        u = new()
        amount = int(rng.lognormvariate(math.log(3_000), 1.0) * USD6) + USD6
        b.fund(u, w.usdt, amount)
        b.fund(u, NATIVE, ETHER // 10)
        price = rng.randint(1_900, 2_100)
        b.swap(rng.randint(1, top), u, w.pair, w.usdt, amount, u, amount * 10**12 * 997 // (1000 * price))
    for _ in range(p.n_bridge_users):
        u = new()
        amount = rng.randint(1, 50) * ETHER // 10
        b.fund(u, NATIVE, amount + ETHER // 10)
        memo = f"=:BTC.BTC:{_btc_address(rng)}"
        b.bridge(rng.randint(1, top), u, w.router, w.vault, amount, extra=(memo, 0, ""))


@dataclass
class ThroughFlows:
    """What `reference_through` found: flagged receipts at stops, and per transaction (by id()) the
    flagged value its sender put into a pool, pair or router, and the flagged value a swap paid out."""

    received: dict[tuple[str, str], int]
    put_in: dict[int, int]
    swapped_out: dict[int, int]


def reference_through(
    txs: Iterable[ScenarioTx],
    genesis_balances: dict[str, dict[str, int]],
    seeds: Iterable[str],
    stops: Iterable[str],
    note_links: dict[int, int],
) -> ThroughFlows:
    """`reference_haircut` that also follows money through services with certainty.

    A swap's payout carries the flagged share of what was swapped in (the swap's own rate); a
    withdrawal listed in `note_links` (id of the withdrawal tx -> id of the deposit tx) pays its
    recipient the deposit's flagged amount, capped by what the recipient got (the relayer's fee
    is not followed): what a certain link carries in tracer's engine. Everything else stops at
    stops, as in `reference_haircut`.
    """
    seed_set = set(seeds)
    stop_set = set(stops)
    balance: dict[tuple[str, str], int] = {}
    flagged: dict[tuple[str, str], int] = {}
    for address, assets in genesis_balances.items():
        for asset, amount in assets.items():
            balance[(address, asset)] = amount
    linked_deposits = set(note_links.values())
    notes: dict[int, int] = {}
    flows = ThroughFlows({}, {}, {})

    def credit(to: str, asset: str, out: int) -> None:
        if not out or to in seed_set:
            return
        if to in stop_set:
            flows.received[(to, asset)] = flows.received.get((to, asset), 0) + out
        else:
            flagged[(to, asset)] = flagged.get((to, asset), 0) + out

    for tx in txs:
        if not tx.ok:
            continue
        key = id(tx)
        moves = tx.transfers()
        if tx.kind == KIND_WITHDRAW and key in note_links:
            note = notes.pop(note_links[key], 0)
            for i, (frm, to, asset, amount) in enumerate(moves):
                balance[(frm, asset)] = balance.get((frm, asset), 0) - amount
                balance[(to, asset)] = balance.get((to, asset), 0) + amount
                if i == 0:
                    credit(to, asset, min(note, amount))
            continue
        swapped_in = 0
        for i, (frm, to, asset, amount) in enumerate(moves):
            have = balance.get((frm, asset), 0)
            if tx.kind == KIND_SWAP and i > 0:
                out = swapped_in * amount // tx.value if tx.value else 0
                flows.swapped_out[key] = flows.swapped_out.get(key, 0) + out
            elif frm in seed_set:
                out = amount
            elif frm in stop_set:
                out = 0
            else:
                f = flagged.get((frm, asset), 0)
                out = f * amount // have if f and have else 0
                if out:
                    flagged[(frm, asset)] = f - out
            balance[(frm, asset)] = have - amount
            balance[(to, asset)] = balance.get((to, asset), 0) + amount
            if i == 0 and tx.kind in (KIND_MIXER, KIND_SWAP, KIND_BRIDGE):
                flows.put_in[key] = out
                swapped_in = out
                if key in linked_deposits:
                    notes[key] = out
            credit(to, asset, out)
    return flows


def _through_truth(sc: Scenario, b: _Builder, w: _World) -> None:
    """Ground truth of the mixer links, swaps and bridge deposits, from `reference_through`."""
    truth = sc.truth
    tagged = b.tagged
    note_links = {id(tagged[wd][1]): id(tagged[dep][1]) for _, _, dep, _, wd, _ in w.note_plans}
    label_of = {lb.address: lb for lb in sc.labels}
    stops = set(truth.deposit_addresses) | set(truth.hubs)
    stops |= {a for a, lb in label_of.items() if lb.category in ("exchange", "mixer", "bridge", "dex")}
    flows = reference_through((tx for _, tx in sc.iter_txs()), sc.genesis_balances, sc.seeds, stops, note_links)
    for clue, pool, dep_tag, amount, wd_tag, recipient in w.note_plans:
        dep_block, dep_tx = tagged[dep_tag]
        wd_block, wd_tx = tagged[wd_tag]
        relayer, fee = (wd_tx.payouts[1][0], wd_tx.payouts[1][1]) if len(wd_tx.payouts) > 1 else ("", 0)
        truth.mixer_links.append(MixerLinkTruth(
            pool=pool, denomination=amount, depositor=dep_tx.sender, deposit_block=dep_block, recipient=recipient,
            withdrawal_block=wd_block, relayer=relayer, fee=fee, clue=clue, flagged=flows.put_in.get(id(dep_tx), 0),
        ))
    for wallet, tag in w.swap_plans:
        block, tx = tagged[tag]
        truth.swaps.append(SwapTruth(
            wallet=wallet, block=block, asset_in=tx.token, amount_in=tx.value, flagged_in=flows.put_in.get(id(tx), 0),
            asset_out=NATIVE, amount_out=sum(v for _, v in tx.payouts), flagged_out=flows.swapped_out.get(id(tx), 0),
        ))
    for tag, memo, chain, dest in w.bridge_plans:
        block, tx = tagged[tag]
        truth.bridges.append(BridgeTruth(
            router=tx.to, sender=tx.sender, block=block, asset=NATIVE, amount=tx.value,
            flagged=flows.put_in.get(id(tx), 0), memo=memo, dest_chain=chain, dest_address=dest,
        ))
    through = set(w.through_deposits)
    for (address, asset), amount in sorted(flows.received.items()):
        if address in through and amount:
            truth.through_offramps.append(
                OfframpTruth(address, truth.deposit_addresses[address], asset, amount, "deposit_address"))
