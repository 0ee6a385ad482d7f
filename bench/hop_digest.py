"""Same hops on the real cases: replay each case as bench/accuracy.py does (tracer.devchain.replay,
default policy, default and case labels), trace it, and write per case the hop count, the exits
and a sha256 digest over the sorted hops, so two commits can be compared case by case.

    python bench/hop_digest.py ../shared/data/cases/mftracer            # every case in the folder
    python bench/hop_digest.py ../shared/data/cases/mftracer --dump /tmp/hops-old   # full hops too

The cases are read at run time and nothing of them lands in the project: the JSON holds counts,
amounts by asset and digests (the exit addresses only with --addresses). When two runs' digests
differ, rerun both commits with --dump DIR (outside the repo) and diff the files: one hop a line.

A hop in the digest: chain, tx hash, position, from, to, asset, transfer amount, flagged amount,
status, reason, depth; sorted by chain, tx hash and position (database ids follow insertion order,
so they are left out). The result file names the commit it ran on (`code`).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

from accuracy import case_dirs, traced_case
from common import (
    add_common_args,
    code_version,
    slug,
    write_result,
)

from tracer.devchain.replay import load_case, read_case
from tracer.devchain.server import DevChainServer

NAME = "hop_digest"

# Reading the tables directly, as a user's SQL would: the figure must not depend on the code it checks.
_HOPS = """
SELECT h.chain, t.tx_hash, t.position, h.from_addr, h.to_addr, h.asset, t.amount AS transfer_amount,
       h.amount AS taint, h.status, h.reason, h.depth
FROM hops h JOIN transfers t ON t.id = h.transfer_id
WHERE h.trace_id = $1
ORDER BY h.chain, t.tx_hash, t.position"""


def _digest(lines: list[str]) -> str:
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


async def digest_case(case: Path, args: argparse.Namespace) -> dict[str, Any]:
    name, _, _, _ = read_case(case)
    sc = load_case(case, seed=args.seed, noise=args.noise)
    server = DevChainServer(sc)
    url = await server.start("127.0.0.1", 0)
    try:
        async with traced_case(sc, url, args, f"digest_{slug(name)}", f"bench:{NAME}:{name}") as run:
            status = run.status
            rows = await run.db.pool.fetch(_HOPS, run.trace_id)
            calls = dict(sorted((k, v) for k, v in run.client.request_counts.items() if k != "http"))
    finally:
        await server.stop()

    hops = [json.dumps([r["chain"], r["tx_hash"], r["position"], r["from_addr"], r["to_addr"], r["asset"],
                        str(int(r["transfer_amount"])), str(int(r["taint"])), r["status"], r["reason"], r["depth"]])
            for r in rows]
    exits: dict[tuple[str, str, str], int] = {}
    for r in rows:
        if r["status"] == "exit":
            key = (r["chain"], r["to_addr"], r["asset"])
            exits[key] = exits.get(key, 0) + int(r["taint"])
    exit_lines = [json.dumps([*k, str(v)]) for k, v in sorted(exits.items())]
    by_asset: dict[str, int] = {}
    for (_, _, asset), amount in exits.items():
        by_asset[asset] = by_asset.get(asset, 0) + amount
    if args.dump:
        args.dump.mkdir(parents=True, exist_ok=True)
        (args.dump / f"{slug(name)}.hops").write_text("\n".join(hops) + "\n")
        (args.dump / f"{slug(name)}.exits").write_text("\n".join(exit_lines) + "\n")
    out: dict[str, Any] = {
        "case": name,
        "status": status,
        "hops": len(hops),
        "hops_sha256": _digest(hops),
        "exits": len(exits),
        "exit_set_sha256": _digest(exit_lines),
        "exit_amount_by_asset": {a: str(v) for a, v in sorted(by_asset.items())},
        "statuses": {s: sum(1 for r in rows if r["status"] == s) for s in sorted({r["status"] for r in rows})},
        "jsonrpc_calls_by_method": calls,
    }
    if args.addresses:
        out["exit_set"] = [json.loads(x) for x in exit_lines]
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    cases = []
    for case in case_dirs(args.cases):
        result = await digest_case(case, args)
        print(f"{result['case']}: {result['status']}, {result['hops']} hops, {result['exits']} exits, "
              f"hops {result['hops_sha256'][:16]}…, exits {result['exit_set_sha256'][:16]}…", flush=True)
        cases.append(result)
    return {"bench": NAME, "code": code_version(), "cases_path": args.cases.name, "seed": args.seed,
            "noise": args.noise, "workers": args.workers, "cases": cases}


SAME_FIELDS = ("status", "hops", "hops_sha256", "exits", "exit_set_sha256", "exit_amount_by_asset", "statuses")


def compare(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Case by case: the fields of `before` that differ in `after` (none: the same hops)."""
    old = {c["case"]: c for c in before["cases"]}
    cases = {}
    for c in after["cases"]:
        b = old.get(c["case"])
        cases[c["case"]] = (["missing before"] if b is None
                            else [f for f in SAME_FIELDS if b.get(f) != c.get(f)])
    return {"code": before.get("code"), "differs": cases,
            "same": all(not d for d in cases.values()) and set(old) <= set(cases)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", type=Path, help="a case folder or a folder of case folders (mftracer format)")
    parser.add_argument("--noise", type=float, default=1.0, help="replay noise scale (default 1.0, as accuracy.py)")
    parser.add_argument("--seed", type=int, default=0, help="replay noise seed")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per case trace")
    parser.add_argument("--dump", type=Path, help="also write each case's hops and exits, one a line, to this folder")
    parser.add_argument("--addresses", action="store_true", help="put the exit addresses in the JSON")
    parser.add_argument("--against", type=Path,
                        help="an earlier result of this bench (e.g. the committed one, before a refactor): the "
                             "new result says, case by case, whether hops, exits and amounts are the same")
    add_common_args(parser)
    args = parser.parse_args()
    before = json.loads(args.against.read_text()) if args.against else None
    report = asyncio.run(run(args))
    if before is not None:
        report["against"] = compare(before, report)
    write_result(NAME, report, args.smoke, args.out, database_url=args.database_url)


if __name__ == "__main__":
    main()
