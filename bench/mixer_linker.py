"""How well the mixer linker finds where laundering notes went, through the real engine, measured
against a crowd that imitates the clues (tracer/devchain/mixer_family.py).

Each seed generates a family scenario: mixer pools (1, 10, 100 ETH, Tornado event signatures)
holding unrelated users' notes, and launderer groups whose notes carry one de-mixing clue or none
(the crowd pays market and hand-set gas prices, reuses addresses, shares wallets with recipients;
OTC desks pay launderers' feeders and a few unrelated recipients). It is served over JSON-RPC, a
whole trace runs from the thieves' wallets with the worker (Postgres, EvmChain), and the trace's
mixer links are scored against the generator's ground truth, note by note:

- found: the deposit's followed link (confidence >= 0.5) goes to the note's **exact** recipient;
- false link: a followed link anywhere else (another launderer's recipient counts as false too);
  every followed link of a note that left no clue is false;
- recall = found / notes, over the notes that left a clue (and over all notes);
- precision = found / followed links;
- per heuristic (same address, direct interaction, shared peers, gas price, multi-denomination):
  the followed links it supported (weight above 1), how many went to the exact recipient, and
  the recall of the notes whose clue is that heuristic's.

Prints the tables and writes bench/results/mixer_linker.json.

    python bench/mixer_linker.py                      # 5 seeds, 200 unrelated users each
    python bench/mixer_linker.py --smoke              # 1 seed, 60 users (run by the tests)
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from common import add_common_args, server_url, table, throwaway_database, write_result  # noqa: E402

from tracer.chains.evm import EvmChain  # noqa: E402
from tracer.demo import load_scenario_labels  # noqa: E402
from tracer.devchain.mixer_family import NO_CLUE, MixerFamilyParams, generate_family  # noqa: E402
from tracer.devchain.scenario import Scenario  # noqa: E402
from tracer.devchain.server import DevChainServer  # noqa: E402
from tracer.domain.mixer_links import CandidateWithdrawal, MixerDeposit  # noqa: E402
from tracer.engine.service import create_trace  # noqa: E402
from tracer.runner import run_with_workers  # noqa: E402
from tracer.store import mixers as mixer_store  # noqa: E402
from tracer.store.db import Database  # noqa: E402

NAME = "mixer_linker"
THRESHOLD = 0.5
#: Heuristics that are evidence about a pair (anonymity set and timing only set the odds).
HEURISTICS = ("same_address", "direct_interaction", "shared_peers", "gas_price", "multi_denomination")
#: Links followed on no pair evidence: the pool's anonymity set (and timing) alone.
ANONYMITY_ONLY = "anonymity_set_only"
#: The heuristic each planted clue is meant for.
CLUE_HEURISTIC = {"address": "same_address", "counterparty": "shared_peers", "gas_price": "gas_price",
                  "multi_denomination": "multi_denomination"}


@dataclass
class NoteResult:
    clue: str
    pool: str
    denomination_eth: float
    anonymity_set: int
    followed: bool  # a link at confidence >= THRESHOLD
    exact: bool  # ... to this very note's recipient
    confidence: float  # of the followed link (0 when none)
    heuristics: list[str] = field(default_factory=list)  # evidence behind the followed link


@dataclass
class SeedResult:
    seed: int
    params: dict[str, Any]
    pool_deposits: int
    pool_withdrawals: int
    notes: list[NoteResult]
    stray_links: int  # followed links from flagged deposits the generator did not plan as laundering
    seconds: float

    def as_json(self) -> dict[str, Any]:
        return {"seed": self.seed, "pool_deposits": self.pool_deposits, "pool_withdrawals": self.pool_withdrawals,
                "notes": [n.__dict__ for n in self.notes], "stray_links": self.stray_links,
                "trace_seconds": round(self.seconds, 2), "score": score([self])}


def family(seed: int, users: int) -> MixerFamilyParams:
    return MixerFamilyParams(seed=seed, users=users)


async def run_seed(server: str, seed: int, users: int) -> SeedResult:
    sc = generate_family(family(seed, users))
    pools = {p.address for p in sc.mixer_pools}
    deposits = withdrawals = 0
    for _, tx in sc.iter_txs():
        if tx.to in pools and tx.ok:
            deposits += tx.kind == 3
            withdrawals += tx.kind == 4
    node = DevChainServer(sc)
    url = await node.start("127.0.0.1", 0)
    client = EvmChain(url, chain=sc.chain, expected_chain_id=sc.chain_id)
    try:
        async with throwaway_database(server, "mixer") as db_url:
            db = await Database.connect(db_url)
            try:
                await client.connect()
                await load_scenario_labels(db.pool, sc)
                t0 = time.monotonic()
                trace_id = await create_trace(db.pool, client, chain=sc.chain, seeds=sc.seeds, policy={})
                status = await run_with_workers(db.pool, {sc.chain: client}, trace_id, workers=2, progress=False)
                seconds = time.monotonic() - t0
                if status != "done":
                    error = await db.pool.fetchval("SELECT error FROM traces WHERE id = $1", trace_id)
                    raise RuntimeError(f"trace ended {status}: {error}")
                async with db.pool.acquire() as conn:
                    rows = await mixer_store.mixer_links(conn, trace_id, limit=10_000)
            finally:
                await db.close()
    finally:
        await client.close()
        await node.stop()
    notes, stray = judge(sc, rows)
    return SeedResult(seed, sc.params, deposits, withdrawals, notes, stray, seconds)


def _evidence(link: CandidateWithdrawal) -> list[str]:
    return sorted({r.heuristic for r in link.reasons if r.heuristic in HEURISTICS and r.weight > 1.0})


def judge(sc: Scenario, rows: Sequence[MixerDeposit]) -> tuple[list[NoteResult], int]:
    """Each laundering note against the trace's links: followed where, and on what evidence."""
    truth: dict[tuple[str, str], list[Any]] = {}
    for m in sc.truth.mixer_links:
        truth.setdefault((m.depositor, m.pool), []).append(m)
    notes: list[NoteResult] = []
    stray = 0
    seen: Counter[tuple[str, str]] = Counter()
    for r in rows:
        key = (r.depositor, r.pool)
        followed = [lk for lk in r.followed if lk.confidence >= THRESHOLD]
        planned = truth.get(key)
        if not planned or seen[key] >= len(planned):
            stray += len(followed)
            continue
        m = planned[seen[key]]
        seen[key] += 1
        best = followed[0] if followed else None
        notes.append(NoteResult(
            clue=m.clue, pool=m.pool, denomination_eth=m.denomination / 10**18, anonymity_set=r.anonymity_set,
            followed=best is not None, exact=best is not None and best.recipient == m.recipient,
            confidence=round(best.confidence, 4) if best else 0.0, heuristics=_evidence(best) if best else []))
    for key, planned in truth.items():  # notes the trace never saw as flagged deposits: not found
        for m in planned[seen[key]:]:
            notes.append(NoteResult(m.clue, m.pool, m.denomination / 10**18, 0, False, False, 0.0))
    return notes, stray


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def score(results: list[SeedResult]) -> dict[str, Any]:
    notes = [n for r in results for n in r.notes]
    clued = [n for n in notes if n.clue != NO_CLUE]
    followed = [n for n in notes if n.followed]
    stray = sum(r.stray_links for r in results)
    found = sum(n.exact for n in notes)
    per_heuristic = {}
    for h in (*HEURISTICS, ANONYMITY_ONLY):
        backed = [n for n in followed if (h in n.heuristics if h != ANONYMITY_ONLY else not n.heuristics)]
        meant = [n for n in clued if CLUE_HEURISTIC.get(n.clue) == h]
        per_heuristic[h] = {
            "followed_links": len(backed), "exact": sum(n.exact for n in backed),
            "false_links": sum(not n.exact for n in backed), "precision": _ratio(sum(n.exact for n in backed),
                                                                                 len(backed)),
            "notes_with_this_clue": len(meant), "recall": _ratio(sum(n.exact for n in meant), len(meant))}
    return {
        "notes": len(notes), "notes_with_clue": len(clued), "notes_without_clue": len(notes) - len(clued),
        "found_exact": found, "followed_links": len(followed) + stray,
        "false_links_above_threshold": len(followed) - found + stray,
        "false_links_from_no_clue_notes": sum(n.followed for n in notes if n.clue == NO_CLUE),
        "precision": _ratio(found, len(followed) + stray),
        "recall_notes_with_clue": _ratio(sum(n.exact for n in clued), len(clued)),
        "recall_all_notes": _ratio(found, len(notes)),
        "per_heuristic": per_heuristic,
    }


def tables(results: list[SeedResult], total: dict[str, Any]) -> str:
    out = [table(f"Mixer linker, exact recipient, links followed at confidence >= {THRESHOLD}",
                 ["seed", "deposits", "withdrawals", "notes", "no clue", "found exact", "false links", "precision",
                  "recall (clue)", "trace s"],
                 [[r.seed, r.pool_deposits, r.pool_withdrawals, s["notes"], s["notes_without_clue"], s["found_exact"],
                   s["false_links_above_threshold"], s["precision"], s["recall_notes_with_clue"], r.seconds]
                  for r in results for s in [score([r])]])]
    out.append("")
    out.append(table("Per heuristic (all seeds): followed links it supported, and recall of the notes whose clue "
                     "it is meant for",
                     ["heuristic", "followed", "exact", "false", "precision", "notes with clue", "recall"],
                     [[h, v["followed_links"], v["exact"], v["false_links"], v["precision"],
                       v["notes_with_this_clue"], v["recall"]] for h, v in total["per_heuristic"].items()]))
    return "\n".join(out)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    server = server_url(args.database_url)
    seeds = [1] if args.smoke else list(range(1, args.seeds + 1))
    users = 60 if args.smoke else args.users
    results = []
    for s in seeds:
        r = await run_seed(server, s, users)
        print(f"  seed {s}: {sum(n.exact for n in r.notes)} of {len(r.notes)} notes found exactly, "
              f"{r.seconds:.1f}s", flush=True)
        results.append(r)
    total = score(results)
    print(tables(results, total))
    print(f"\nall seeds: {total['found_exact']} of {total['notes']} notes linked to their exact recipient "
          f"({total['notes_with_clue']} left a clue: recall {total['recall_notes_with_clue']}); "
          f"{total['false_links_above_threshold']} false links above {THRESHOLD} "
          f"({total['false_links_from_no_clue_notes']} from notes without a clue); precision {total['precision']}")
    return {"benchmark": NAME, "smoke": bool(args.smoke), "threshold": THRESHOLD, "unrelated_users": users,
            "family": {k: v for k, v in results[0].params.items() if k != "seed"},
            "seeds": [r.as_json() for r in results], **total}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(ap)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--users", type=int, default=200, help="unrelated pool users per seed")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    report = asyncio.run(main_async(args))
    write_result(NAME, report, args.smoke, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
