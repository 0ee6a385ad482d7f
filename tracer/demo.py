"""`tracer demo`: a generated laundering case, traced end to end on embedded parts.

Starts (or reuses) Postgres, serves a generated chain over real JSON-RPC on 127.0.0.1, loads the
scenario's exchange labels, traces from the thieves' wallets with several workers and prints the
report, then checks it against the scenario's ground truth. The launderers use services: a
Tornado-style mixer (whose withdrawals leave de-mixing clues), a DEX swap and a cross-chain
bridge, so the report shows the mixer links with their confidence, the swap legs and the bridge
exit with its destination.

The bridge deposits' destination chains are served too (tracer.devchain.crosschain): each EVM
chain the memos name gets a JSON-RPC devchain of its own where the bridge pays the destinations
(on the first through the router, whose logs name the deposit; on the others by plain transfers
the engine matches by timing), and Bitcoin an Esplora server whose vault pays them with `OUT:`
memos. The workers get all of them, so the trace continues across the bridge to the exchanges on
the far side, and the ground-truth check also measures the continuations and those exits.
"""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import asyncpg

from tracer import truth_check
from tracer.chains.bitcoin import EsploraChain
from tracer.chains.evm import EvmChain
from tracer.chains.feeds import Feed
from tracer.devchain.bitcoin.records import BitcoinScenario
from tracer.devchain.crosschain import CrossChain, destination, with_bitcoin_payouts
from tracer.devchain.esplora import EsploraServer
from tracer.devchain.prices import PricePath, case_paths
from tracer.devchain.scenario import Scenario, ScenarioLabel, ScenarioParams, generate
from tracer.devchain.server import DevChainServer
from tracer.dollars_check import check_dollars
from tracer.domain.labels import Label
from tracer.domain.mixer_links import MixerDeposit
from tracer.domain.transfers import NATIVE
from tracer.domain.verdicts import Reason
from tracer.domain.views import StoredHop
from tracer.engine import bridges
from tracer.engine import report as treport
from tracer.engine.dollars import render_dollars, trace_dollars
from tracer.engine.service import create_trace
from tracer.labels.defaults import load_default_labels
from tracer.labels.vocab import normalize_category
from tracer.runner import run_with_workers
from tracer.store import labels as label_store
from tracer.store import mixers as mixer_store
from tracer.store import prices as price_store
from tracer.store import traces as trace_store
from tracer.store.db import Database
from tracer.store.embedded import DEMO_DATABASE, start_embedded
from tracer.store.urls import redact_url, resolve_database_url


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


async def run_demo(*, size: int, seed: int, workers: int, as_json: bool, database_url: str | None) -> int:
    t0 = time.monotonic()
    embedded = resolve_database_url(database_url) is None
    if embedded:
        # A database of its own, new each run (see DEMO_DATABASE); `tracer serve --demo` serves it.
        database_url = await start_embedded(database=DEMO_DATABASE, fresh=True)
    db = await Database.connect(database_url)
    _say(f"postgres: {'embedded, database ' + DEMO_DATABASE + ' at ' + redact_url(db.url) if embedded else db.url}")
    scenario = generate(ScenarioParams.for_size(size, seed=seed, services=True))
    # Before the home chain is served: the Bitcoin payouts give its memos valid destinations.
    # Seeded by the whole case: Postgres caches transfers by chain name and address, so another
    # case's far chains (same names) must not reuse this one's addresses.
    far = far_chains(scenario, seed=seed * 1_000_003 + size)
    # Chainlink-compatible feeds on every served chain, answering from the generator's price paths.
    paths = case_paths(scenario, [c.scenario for c in far.evm], bitcoin=far.bitcoin, seed=seed)
    server = DevChainServer(scenario, prices=paths[scenario.chain])
    url = await server.start("127.0.0.1", 0)
    _say(f"devchain: {url} ({size} transfers generated, seed {seed})")
    client = EvmChain(url, chain=scenario.chain, expected_chain_id=scenario.chain_id)
    chains: dict[str, EvmChain | EsploraChain] = {scenario.chain: client}
    servers: list[DevChainServer | EsploraServer] = [server]
    try:
        await client.connect()
        for cross in far.evm:
            srv = DevChainServer(cross.chain(), prices=paths.get(cross.scenario.chain, []))
            servers.append(srv)
            dest_url = await srv.start("127.0.0.1", 0)
            chains[cross.scenario.chain] = EvmChain(dest_url, chain=cross.scenario.chain,
                                                    expected_chain_id=cross.scenario.chain_id)
            await chains[cross.scenario.chain].connect()
            _say(f"devchain: {cross.scenario.chain} at {dest_url} (chain id {cross.scenario.chain_id}, "
                 f"bridge payouts of {len(cross.payouts)} deposits)")
        if far.bitcoin is not None:
            esplora = EsploraServer(far.bitcoin)
            servers.append(esplora)
            btc_url = await esplora.start("127.0.0.1", 0)
            chains["bitcoin"] = EsploraChain(btc_url, network=far.bitcoin.network)
            await chains["bitcoin"].connect()
            _say(f"esplora: bitcoin at {btc_url} ({len(far.bitcoin.blocks)} blocks, vault payouts of "
                 f"{len(far.bitcoin.truth.handoffs)} deposits)")
        if far.unserved:
            _say(f"not served (the devchain cannot build them): {', '.join(sorted(far.unserved))}")
        n = await load_scenario_labels(db.pool, scenario)
        for other in far.scenarios():
            n += await load_scenario_labels(db.pool, other)
        await register_case_feeds(db.pool, paths)
        defaults = await load_default_labels(db.pool)
        _say(f"labels: default set {'already loaded' if defaults.skipped else f'{defaults.inserted} loaded'}")
        _say(f"labels: {n} scenario labels loaded (exchange hot wallets, mixer, ...)")
        trace_id = await create_trace(db.pool, client, chain=scenario.chain, seeds=scenario.seeds, policy={},
                                      label=f"demo seed {seed}", created_by="demo")
        _say(f"trace #{trace_id}: {len(scenario.seeds)} seeds, default policy, {workers} workers, "
             f"chains {', '.join(chains)}")
        status = await run_with_workers(db.pool, chains, trace_id, workers=workers)
        rep = await treport.build(db.pool, trace_id)
        check = await truth_check.check_trace(db.pool, trace_id, scenario, far)
        dollars = await trace_dollars(db.pool, trace_id, chains)
        dcheck = check_dollars(scenario, paths[scenario.chain], dollars, rep)
        if as_json:
            print(json.dumps({**rep.to_json(), "truth_check": check.to_json(), "dollars": dollars.to_json(),
                              "dollar_check": {"ok": dcheck.ok, "lines": dcheck.lines,
                                               "mismatches": dcheck.mismatches}}, indent=2))
        else:
            print(treport.render(rep))
            print()
            print(render_dollars(rep, dollars))
            print()
            async with db.pool.acquire() as conn:
                mixer_rows = await mixer_store.mixer_links(conn, trace_id, limit=1000)
                hop_rows = await trace_store.all_hops(conn, trace_id)
            print(_services(rep, list(mixer_rows), [h for h in hop_rows if h.reason == Reason.SWAP]))
            print()
            print(check.render())
            print(dcheck.render())
            rpc = [c for c in chains.values() if isinstance(c, EvmChain)]
            calls = sum(v for c in rpc for k, v in c.request_counts.items() if k != "http")
            esplora_calls = sum(c.request_counts.get("http", 0) for c in chains.values()
                                if isinstance(c, EsploraChain))
            print(f"\n{calls} JSON-RPC calls in {sum(c.request_counts.get('http', 0) for c in rpc)} HTTP requests"
                  + (f" on {len(rpc)} chains" if len(rpc) > 1 else "")
                  + (f", {esplora_calls} Esplora requests" if esplora_calls else "")
                  + f"; {time.monotonic() - t0:.1f}s in all")
            serve = "tracer serve --demo" if embedded else "tracer serve"
            print(f"Explore trace #{trace_id} in the web view: {serve}, then open http://127.0.0.1:8080/ui?trace={trace_id}")
        if not check.ok:
            _say(f"ground truth check FAILED: {len(check.mismatches)} disagreement(s) (listed above)")
        if not dcheck.ok:
            _say(f"dollar check FAILED: {len(dcheck.mismatches)} disagreement(s) (listed above)")
        # Exit 1 when the trace did not finish or disagrees with the truth: the demo is a check.
        return 0 if status == "done" and check.ok and dcheck.ok else 1
    finally:
        for c in chains.values():
            await c.close()
        for running in servers:
            await running.stop()
        await db.close()


# EVM chain names the bridge parsers know, by name: the ids a destination devchain answers with.
_EVM_CHAIN_IDS = {name: chain_id for chain_id, name in bridges.EVM_CHAINS.items()}


@dataclass
class FarChains:
    """The chains a scenario's bridge deposits pay out on, as the devchain builds them."""

    evm: list[CrossChain] = field(default_factory=list)
    bitcoin: BitcoinScenario | None = None
    unserved: set[str] = field(default_factory=set)  # named by memos, but no devchain for them

    def scenarios(self) -> list[Scenario | BitcoinScenario]:
        return [c.scenario for c in self.evm] + ([self.bitcoin] if self.bitcoin is not None else [])


def far_chains(home: Scenario, *, seed: int) -> FarChains:
    """Every destination chain `home`'s bridge memos name that the devchain can build. Changes
    `home` when some memo names Bitcoin (see crosschain.with_bitcoin_payouts): call it before
    serving `home`."""
    named = {b.dest_chain for b in home.truth.bridges}
    far = FarChains()
    if "bitcoin" in named:
        _, far.bitcoin = with_bitcoin_payouts(home, seed=seed)
    for name in sorted(named - {"bitcoin", home.chain}):
        if name not in _EVM_CHAIN_IDS:
            far.unserved.add(name)
        elif not far.evm:
            # Router outbounds naming the deposit in their memo (the first; a decoy payment too).
            far.evm.append(destination(home, name, _EVM_CHAIN_IDS[name], seed=seed))
        else:
            # Plain transfers from the vault, so the demo also shows payouts matched by timing.
            far.evm.append(destination(home, name, _EVM_CHAIN_IDS[name], seed=seed, memos=0, decoys=0))
    return far


class Labelled(Protocol):
    """A generated chain with labelled services: an EVM Scenario or a BitcoinScenario."""

    @property
    def chain(self) -> str: ...

    @property
    def labels(self) -> Sequence[ScenarioLabel]: ...


async def load_scenario_labels(pool: asyncpg.Pool, scenario: Labelled) -> int:
    """The scenario's labelled services (exchange hot wallets, mixer, ...) as labels."""
    labels = []
    for lb in scenario.labels:
        category, extra = normalize_category(lb.category)
        labels.append(Label(
            chain=scenario.chain, address=lb.address, entity=lb.entity, category=category, source="scenario",
            confidence=1.0, evidence=extra or None, created_by="demo"))
    async with pool.acquire() as conn:
        return await label_store.upsert_labels(conn, labels)


def _short(address: str) -> str:
    return f"{address[:8]}…{address[-6:]}" if len(address) > 16 else address


def _units(raw: Any, decimals: int | None, symbol: str | None, asset: str) -> str:
    sym = symbol or ("ETH" if asset == "native" else asset[:10])
    dec = 18 if asset == "native" else decimals
    return f"{treport.format_amount(int(raw), dec, 4)} {sym}"


def _services(rep: treport.Report, mixer_rows: list[MixerDeposit], swap_hops: list[StoredHop]) -> str:
    """Where the money changed form: mixer links (with confidence and why), swap legs, bridge exits."""
    lines = ["Through services:"]
    for r in mixer_rows:
        links = r.links
        denom = _units(r.denomination, r.decimals, r.symbol, r.asset)
        head = f"  mixer  {_short(r.pool)} ({denom} pool): {_short(r.depositor)} deposited"
        followed = r.followed
        if not followed:
            best = f"; best candidate {links[0].confidence:.2f}" if links else ""
            lines.append(f"{head}; entered mixer, amount "
                         f"{_units(r.flagged, r.decimals, r.symbol, r.asset)}, anonymity set "
                         f"{r.anonymity_set} at deposit time, not linked{best}")
            continue
        for lk in followed:
            why = ", ".join(x.heuristic for x in lk.reasons if x.heuristic not in ("anonymity_set", "timing"))
            lines.append(f"{head} -> withdrawn to {_short(lk.recipient)}, confidence "
                         f"{lk.confidence:.2f} ({why or 'timing'}; anonymity set {r.anonymity_set}), carried "
                         f"{_units(lk.carried, r.decimals, r.symbol, r.asset)}")
    # A swap is two hops of one transaction: the wallet pays asset A in and gets asset B back.
    legs: dict[str, list[StoredHop]] = defaultdict(list)
    for h in swap_hops:
        legs[h.tx_hash].append(h)
    wallet_of = {h.transfer_id: w for w, h in truth_check.swap_wallets(swap_hops)}
    for tx, hops in sorted(legs.items(), key=lambda kv: kv[1][0].block_number):
        wallet = wallet_of[hops[0].transfer_id]  # not the pool: it too sends and receives
        paid = [h for h in hops if h.from_addr == wallet]
        got = [h for h in hops if h.to_addr == wallet]
        lines.append(f"  swap   {_short(wallet)} paid "
                     + " + ".join(_units(h.amount, h.decimals, h.symbol, h.asset) for h in paid)
                     + " and got " + " + ".join(_units(h.amount, h.decimals, h.symbol, h.asset)
                                                  for h in got)
                     + f" back (flagged shares, tx {tx[:10]}…)")
    for b in rep.bridges:  # continued deposits are crossings, not exits: read from the bridges
        for d in b.destinations:
            where = (d.get("continue") or {}).get("note") or "not followed on the destination chain"
            symbol, decimals = treport.units(b.chain, str(d.get("asset")), None, None)
            lines.append(f"  bridge {(b.entity or 'bridge')[:18]} ({d.get('protocol')}): "
                         f"{_short(str(d.get('from')))} sent "
                         f"{_units(d.get('amount', 0), decimals, symbol, str(d.get('asset')))} -> {d.get('chain')} "
                         f"{d.get('address')} ({where})")
    if len(lines) == 1:
        lines.append("  (none reached)")
    return "\n".join(lines)


async def register_case_feeds(pool: asyncpg.Pool, paths: dict[str, list[PricePath]]) -> None:
    """The generated tokens' feeds (the shipped list knows real token addresses only)."""
    async with pool.acquire() as conn:
        for chain_paths in paths.values():
            for p in chain_paths:
                if p.asset != NATIVE:
                    await price_store.register_feed(conn, Feed(p.chain, p.asset, p.feed_chain, p.feed, p.pair,
                                                               "generated case: devchain price path"))
