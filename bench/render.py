"""Render the README's Performance table from the committed result files, so it cannot drift.

Every bench writes `bench/results/<name>.json` (with the machine facts it ran under); this script
reads them and rewrites the table between the README's performance-table markers. Each row says
what the bench measures (an engine run: real workers tracing a devchain over HTTP into Postgres;
or a load on one part: the chain client alone, the store's write path, the API over a trace
synthesised with COPY), the command, the figures and the machine they were measured on.

    python bench/render.py            # rewrite the README's table
    python bench/render.py --check    # exit 1 (printing both versions) if the README differs

tests/integration/test_bench_render.py fails when the README's figures differ from the committed files.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
README = ROOT / "README.md"
START = "<!-- performance-table:start: written by `python bench/render.py` from bench/results/*.json -->"
END = "<!-- performance-table:end -->"

Result = dict[str, Any]


def n(x: float, digits: int = 0) -> str:
    return f"{x:,.{digits}f}"


def sec(ms: float) -> str:
    return f"{ms / 1000:.2f} s"


def _rpc(r: Result) -> tuple[str, str]:
    sc = r["scenario"]
    modes = {m["mode"]: m for m in r["modes"]}
    tf, dbg = modes["trace_filter"], modes["block-scan+debug"]
    what = (f"chain client alone (no engine): JSON-RPC requests per 1,000 transfers found, fetching the laundering "
            f"wallets hop by hop from a {n(sc['transfers'])}-transfer generated chain")
    fig = (f"{n(tf['transfers_found'])} transfers, {tf['addresses_fetched']} addresses, {tf['hops']} hops: "
           f"trace_filter path {tf['requests_per_1000_transfers']:.0f} requests "
           f"({tf['http_posts_per_1000_transfers']:.1f} HTTP posts); "
           f"block-scan + debug path {dbg['requests_per_1000_transfers']:.0f} "
           f"({dbg['http_posts_per_1000_transfers']:.1f} posts)")
    return what, fig


def _endpoint(e: Result) -> str:
    return f"{n(e['requests_per_s'])} req/s, p50 {e['p50_ms']:.0f} ms, p99 {e['p99_ms']:.0f} ms"


def _api(r: Result) -> tuple[str, str]:
    what = (f"API under load, over a trace **synthesised with COPY** (not an engine run): {n(r['hops_in_trace'])} "
            f"hops, {r['clients']} concurrent clients, {r['seconds_per_endpoint']:.0f} s per endpoint")
    res = r["results"]
    side = r.get("side_by_side", {})
    before = side.get("before", {})
    if before:
        what += (f"; side by side with the previous code ({r['versions']['before']['commit'][:7]}) in the same run, "
                 f"load average {res['hops_page']['load_average_before'][0]:.1f} on a shared machine")

    def one(e: Result) -> str:  # CPU per request: what a shared machine's load does not change
        pg = e.get("postgres_cpu_ms_per_request")
        return (f"{_endpoint(e)}, {e['server_cpu_ms_per_request']:.2f} ms server CPU"
                + (f" + {pg:.2f} ms Postgres" if pg is not None else ""))

    def both(key: str) -> str:
        return one(res[key]) + (f" (before: {one(before[key])})" if key in before else "")

    procs = r["versions"].get("after", {}).get("processes", 1)
    fig = f"page of 100 hops {both('hops_page')}" + (f" ({procs} API processes, pages of finished traces kept)"
                                                     if procs > 1 else "")
    if "hops_page_uncached" in res:
        fig += f"; page cache off {both('hops_page_uncached')}"
    if "hops_page_one_process" in res:
        fig += f"; page cache off, one process {both('hops_page_one_process')}"
    if "exits_running" in res:
        fig += f"; exits of a running trace {both('exits_running')}"
    fig += (f"; exits cache off {both('exits_uncached')}; exits cached {both('exits')}; "
            f"{sum(e['errors'] for e in res.values())} errors")
    for key, t in r.get("targets", {}).items():
        goal = " and ".join(x for x in (f"≥ {n(t['requests_per_s_target'])} req/s" if t["requests_per_s_target"]
                                        else "", f"p99 ≤ {t['p99_ms_target']:.0f} ms") if x)
        name = "page" if key == "hops_page" else "running exits"
        fig += f"; target {name} {goal}: **{'met' if t['met'] else 'not met'}**"
    return what, fig


def _alerts(r: Result) -> tuple[str, str]:
    codes = r["codes"]
    steady = any(run.get("warmup_rounds_ms") for run in r["runs"])
    what = ("engine run: block confirmed → signed webhook received (`N×T`: N subscriptions over T watching traces); "
            "worker, monitor and deliverer processes" + ("; figures of the blocks after one warm-up block (the first "
                                                        "after the processes start, shown apart)" if steady else "")
            + (f"; previous code `{codes['before'][:7]}` and this code "
                                                        "side by side, one run" if "before" in codes else ""))
    target = r["target_p99_ms"]
    by: dict[str, dict[str, Result]] = {}
    for run in r["runs"]:
        by.setdefault(run["scenario"], {})[run["code"]] = run
    parts, met, missed = [], [], []
    for scenario, runs in by.items():
        now = runs["after"]
        was = runs.get("before")
        lat, hooks = now["latency_ms"], now["webhooks_per_s"] or 0
        text = f"{scenario.replace('x', '×')}: p99 " + (f"{sec(was['latency_ms']['p99'])} → " if was else "")
        text += f"**{sec(lat['p99'])}**, p50 " + (f"{sec(was['latency_ms']['p50'])} → " if was else "")
        text += f"{sec(lat['p50'])}"
        if now["webhooks_per_s"]:
            text += ", " + (f"{n(was['webhooks_per_s'] or 0)} → " if was else "") + f"{n(hooks)} webhooks/s"
        warm = now.get("warmup_rounds_ms") or []
        if warm:  # the block after the processes start, before the measured ones: said, not hidden
            text += "; warm-up block's last webhook " + (
                f"{sec(was['warmup_rounds_ms'][-1]['last'])} → " if was and was.get("warmup_rounds_ms") else "")
            text += f"{sec(warm[-1]['last'])}"
        text += f" (load {was['load_average_before'][0]:.1f}/{now['load_average_before'][0]:.1f})" if was else \
            f" (load {now['load_average_before'][0]:.1f})"
        parts.append(text)
        (met if lat["p99"] <= target else missed).append(scenario.replace("x", "×"))
    fig = "; ".join(parts)
    fig += f"; target p99 ≤ {sec(target)}: " + ", ".join(
        x for x in (f"met at {', '.join(met)}" if met else "", f"**not met** at {', '.join(missed)}" if missed else "")
        if x)
    bad = sum(x["bad_signatures"] for x in r["runs"])
    dup = sum(x["duplicate_deliveries"] for x in r["runs"])
    fig += f"; {bad} bad signatures, {dup} events delivered twice to one subscription"
    return what, fig


def _mixer(r: Result) -> tuple[str, str]:
    fam = r["family"]
    what = (f"engine run on the mixer scenario family (`tracer/devchain/mixer_family.py`): {len(r['seeds'])} seeds, "
            f"{r['unrelated_users']} unrelated pool users each who also pay market or hand-set gas prices, reuse "
            f"addresses and share wallets; {round(fam['no_clue_share'] * 100)}% of launderers leave no clue; a link "
            f"counts only at the note's exact recipient, followed at confidence ≥ {r['threshold']}")
    h = r["per_heuristic"]

    def pr(name: str) -> str:
        v = h[name]
        p = "-" if v["precision"] is None else f"{v['precision']:.2f}"
        rc = "-" if v["recall"] is None else f"{v['recall']:.2f}"
        return f"{name.replace('_', ' ')} {p} / {rc}"

    fig = (f"{r['found_exact']} of {r['notes']} laundering notes linked to their exact recipient (recall "
           f"{r['recall_notes_with_clue']:.2f} of the {r['notes_with_clue']} notes with a clue, "
           f"{r['recall_all_notes']:.2f} of all); {r['false_links_above_threshold']} false links above "
           f"{r['threshold']} ({r['false_links_from_no_clue_notes']} from the {r['notes_without_clue']} notes without "
           f"a clue), precision {r['precision']:.2f}. Precision / recall per heuristic: "
           + "; ".join(pr(x) for x in ("same_address", "shared_peers", "gas_price", "multi_denomination"))
           + f"; {h['anonymity_set_only']['followed_links']} links on the anonymity set alone")
    return what, fig


def _speed(r: Result) -> tuple[str, str]:
    node = r["node"]
    sc = r["scenario"]
    runs = r["runs"]
    what = (f"engine run: `tracer worker` processes tracing a {n(sc['transfers'])}-transfer generated chain served "
            f"with {node['latency_ms']:.0f} ms latency and a {node['rate_limit_per_s']:.0f} req/s cap, "
            f"{'/'.join(str(x['workers']) for x in runs)} workers")
    first = runs[0]
    parts = [f"{first['hops']:,}-hop trace: {first['workers']} worker {first['wall_seconds']:.0f} s "
             f"({first['hops_per_second']:.0f} hops/s, {first['calls_per_1000_hops']:.0f} JSON-RPC calls and "
             f"{first['posts_per_1000_hops']:.0f} HTTP posts per 1,000 hops: {first['calls_ratio_to_bound']:.1f}× "
             f"the lower bound in calls, {first['posts_ratio_to_bound']:.1f}× in posts, "
             f"{first['wall_ratio_to_bound']:.0f}× in wall time)"]
    parts += [f"{x['workers']} workers {x['wall_seconds']:.0f} s ({x['hops_per_second']:.0f} hops/s)" for x in runs[1:]]
    same = all(x.get("same_hops_and_amounts_as_first", x.get("same_result_as_first")) for x in runs)
    peaks = [p for x in runs for p in (x.get("worker_peak_rss_mb") or [])]
    fig = "; ".join(parts) + (f"; {'identical' if same else 'DIFFERENT'} hops and amounts in all runs")
    if peaks:
        fig += f"; peak worker RSS {min(peaks):.0f}-{max(peaks):.0f} MB"
    pair = r.get("side_by_side_issue22")
    if pair:
        b, a = pair["before"], pair["after"]
        fig += (f". Back to back, 1 worker, before/after headers only for hops (`{b['code']}` / `{a['code']}`): "
                f"{b['calls_per_1000_hops']:.0f} / {a['calls_per_1000_hops']:.0f} calls per 1,000 hops "
                f"(eth_getBlockByNumber {n(b['calls_by_method'].get('eth_getBlockByNumber', 0))} / "
                f"{n(a['calls_by_method'].get('eth_getBlockByNumber', 0))}), {b['wall_seconds']:.0f} / "
                f"{a['wall_seconds']:.0f} s, {'the same' if pair['same_outcome'] else 'a DIFFERENT'} outcome")
    return what, fig


def _ingest(r: Result) -> tuple[str, str]:
    res = {x["path"]: x for x in r["results"]}
    what = (f"store write path vs raw COPY on synthetic rows (no engine): {n(r['rows'])} transfers and hops, best "
            f"of {r['repeats']}")
    store = next(x for p, x in res.items() if p.startswith("transfers: store_transfers"))
    hops = sorted((x for p, x in res.items() if p.startswith("hops: upsert_hops")), key=lambda x: x["path"])
    small = next(x for x in hops if "(64/" in x["path"])
    fig = (f"transfers {n(store['rows_per_second'])}/s through `store_transfers` vs "
           f"{n(res['transfers: COPY']['rows_per_second'])}/s by COPY, **{store['ratio_to_copy']:.2f}× COPY**; hops "
           f"{n(small['rows_per_second'])}/s through `upsert_hops` in a worker's 64-hop commits vs "
           f"{n(res['hops: COPY']['rows_per_second'])}/s by COPY, **{small['ratio_to_copy']:.2f}×** ("
           + ", ".join(f"{x['ratio_to_copy']:.2f}× at {x['path'].split('(')[1].split('/')[0]} per statement"
                       for x in hops if x is not small) + ")")
    return what, fig


def _accuracy_cases(cases: list[Result]) -> str:
    def each(key: str, fmt: str = "{:.2f}") -> str:
        return " / ".join(fmt.format(c[key]) for c in cases)

    return (f"{len(cases)} cases ({each('edges', '{:,}')} edges; {each('terminals', '{:,}')} terminals): terminal "
            f"recall {each('terminal_recall')}, value recall {each('value_recall')}, false exits "
            f"{each('false_exits', '{}')} (of which {each('false_exits_paying_a_terminal', '{}')} pay a terminal of "
            f"the case), {each('hops_per_edge')} hops per case edge. Scoring an exit that pays a terminal as reaching "
            f"it (the same off-ramp one hop early): terminal recall {each('terminal_recall_same_offramp')}, value "
            f"recall {each('value_recall_same_offramp')}")


def _accuracy(r: Result) -> tuple[str, str]:
    what = ("engine run on real cases replayed on the devchain (case folder as argument, never copied), "
            f"{r['policy']} policy")
    fig = _accuracy_cases(r["cases"])
    calls = " / ".join(f"{c['calls_per_1000_hops']:,.0f}" for c in r["cases"] if c.get("calls_per_1000_hops"))
    prev = (r.get("side_by_side_previous_code") or {}).get("cases") or {}
    before = " / ".join(f"{p['calls_per_1000_hops_before']:,.0f}" for p in prev.values())
    if calls:
        fig += f"; {calls} JSON-RPC calls per 1,000 hops"
        if before:
            fig += f" (previous code `{r['side_by_side_previous_code']['previous_code']}`, same run: {before})"
    return what, fig


def _accuracy_anvil(r: Result) -> tuple[str, str]:
    cases = r["anvil_cases"]
    what = "the same cases executed as real transactions on Anvil and traced there"
    seconds = " / ".join(f"{c['anvil_execution_seconds']:.1f}" for c in cases)
    fig = (f"{' / '.join(n(c['anvil_transactions']) for c in cases)} transactions executed in {seconds} s "
           f"({cases[0]['anvil_state']} node); "
           + _accuracy_cases(cases) + f"; {' / '.join(str(c['hops']) for c in cases)} hops, "
           f"{' / '.join(n(c['jsonrpc_calls']) for c in cases)} JSON-RPC calls")
    return what, fig


def _balances(r: Result) -> tuple[str, str]:
    runs = r["runs"]
    what = (f"engine run: a node without old state, prior balances derived from history instead of read "
            f"({n(r['transactions'])}-transaction generated chain, gas charged to balances)")
    parts = []
    for name, x in runs.items():
        calls = sum(v for k, v in x["counts"].items() if k != "http")
        parts.append(f"{name}: {x['seconds']:.1f} s, {n(calls)} JSON-RPC requests, {n(x['counts'].get('http', 0))} "
                     f"HTTP posts, {n(x['hops'])} hops")
    fig = "; ".join(parts) + f"; hops {'identical' if r['hops_identical'] else 'DIFFERENT'} on both nodes"
    return what, fig


def _faults(r: Result) -> tuple[str, str]:
    t = r["totals"]
    nodes = [f for f in r["faults"] if f["kind"] != "worker SIGKILL"]
    kinds = [f for f in nodes if f["kind"] != "all at once"]
    kills = next((f for f in r["faults"] if f["kind"] == "worker SIGKILL"), None)
    what = (f"engine run against faulty nodes and killed workers, each trace on a fresh database (nothing cached), "
            f"hops compared one by one with a healthy node's {t['reference_hops']}-hop trace "
            f"({n(r['scenario']['transfers'])}-transfer chain); malformed API input")
    fig = (f"{n(sum(f['injected'] for f in nodes))} node faults of {len(kinds)} kinds (one kind at a time, then all "
           f"at once)"
           + (f" and {kills['injected']} worker SIGKILLs" if kills else "")
           + f" over {t['traces']} traces ({t['traces_completed']} done, {t['traces_failed_with_reason']} failed with "
           f"the reason, as the reorg must): {t['hops_lost']} hops lost, {t['wrong_hops']} wrong, "
           f"{t['events_duplicated']} hop events announced twice (`exit_reached` is announced once per batch reaching "
           f"an exit: {t['repeated_exit_events']} repeats over these traces, {t['reference_repeated_exit_events']} on "
           f"the one healthy run); "
           f"{n(t['malformed_inputs_tried'])} malformed API inputs and label files: {t['server_errors']} server "
           f"errors, {t['half_written']} half-written")
    return what, fig


def _attacks(r: Result) -> tuple[str, str]:
    probes = r["probes"]
    areas: dict[str, int] = {}
    for x in probes:
        areas[x["area"]] = areas.get(x["area"], 0) + 1
    what = ("attack probes against real `tracer serve` processes (open mode, with keys, node down) on a devchain "
            "and a throwaway database")
    slowest = max(x["seconds"] for x in probes)
    fig = (f"{r['refused']} of {r['total']} probes refused as they must be ("
           + ", ".join(f"{a} {k}" for a, k in areas.items()) + f"); slowest answer {slowest:.2f} s")
    return what, fig


def _memory(r: Result) -> tuple[str, str]:
    w, api = r["worker"], r["api"]
    what = ("peak RSS (VmHWM) of `tracer worker` during the trace-speed runs and of `tracer serve` during the API "
            "bench")
    runs = ", ".join(f"{x['workers']} worker{'s' if x['workers'] > 1 else ''} {x['peak_rss_mb']:.0f} MB"
                     for x in w["runs"] if x["peak_rss_mb"])
    fig = (f"worker peak {w['peak_rss_mb']:.0f} MB ({runs}; {n(w['runs'][0]['hops'])}-hop trace); API "
           f"{api['peak_rss_mb']:.0f} MB ({api['during']})")
    return what, fig


def _screen(r: Result) -> tuple[str, str]:
    what = (f"engine run: `GET /v1/screen` with depth (source of funds walked back) from the deposit addresses that "
            f"received stolen money ({n(r['size'])}-size generated case, seed {r['seed']})")
    fig = "; ".join(
        f"depth {x['depth']}: {x['seconds_median']:.2f} s median, {n(x['walked_median'])} wallets walked, "
        f"{n(x['rpc_requests_median'])} JSON-RPC requests, stolen money found at {x['found_stolen']} of {x['targets']}"
        + (f" ({x['truncated']} cut by the wallet budget)" if x["truncated"] else "")
        for x in r["runs"])
    return what, fig


def _digest(r: Result) -> tuple[str, str]:
    what = ("same hops on the real cases: hop count, exits and a sha256 over every sorted hop (status, reason, "
            "amounts, depth) per case")
    cases = ", ".join(f"{c['case']} {n(c['hops'])} hops / {c['exits']} exits" for c in r["cases"])
    against = r.get("against")
    if against is None:
        return what, f"{cases} (recorded; no earlier run compared)"
    verdict = ("identical, case by case" if against["same"] else
               "DIFFERENT: " + "; ".join(f"{k}: {', '.join(v)}" for k, v in against["differs"].items() if v))
    return what, f"{cases}; against `{str(against['code'])[:7]}`: {verdict}"


def _provider(r: Result) -> tuple[str, str]:
    p, t = r["provider"], r["targets"]
    what = (f"engine run on the real cases (folder as argument, never copied) and a generated chain, behind a "
            f"provider-like cap: {p['calls_per_second']:g} calls/s with batch members counted, -32005 over "
            f"{n(p['max_logs'])} results, {p['latency_ms']:g} ms/request; target ≤ {t['calls_per_1000_hops']} calls "
            f"per 1,000 hops and wall ≤ {t['wall_over_floor']}× the floor (calls ÷ cap)")
    side = "before" in r["versions"]
    if side:
        what += f"; side by side with the previous code (`{r['versions']['before']['commit'][:7]}`) in the same run"

    def one(x: Result) -> str:
        return f"{x['calls_per_1000_hops']:,.0f} calls/1k hops, wall {x['wall_over_floor']:.2f}× floor"

    parts = []
    for c in r["cases"]:
        a = c["after"]
        met = "met" if all(a["meets_target"].values()) else (
            "not met: " + " and ".join(k for k, ok in a["meets_target"].items() if not ok))
        text = f"{c['case']} ({n(a['hops'])} hops): {one(a)}, {met}"
        if "before" in c:
            text += f" (before: {one(c['before'])}; hops {'identical' if c['same_hops'] else 'DIFFER'})"
        parts.append(text)
    return what, "; ".join(parts)


#: Table rows in order: result file, command, renderer.
ROWS: list[tuple[str, str, Callable[[Result], tuple[str, str]]]] = [
    ("rpc_efficiency", "python bench/rpc_efficiency.py", _rpc),
    ("api_latency", "python bench/api_latency.py", _api),
    ("alert_latency", "python bench/alert_latency.py", _alerts),
    ("mixer_linker", "python bench/mixer_linker.py", _mixer),
    ("trace_speed", "python bench/trace_speed.py --transfers 200000", _speed),
    ("ingest", "python bench/ingest.py --rows 200000", _ingest),
    ("accuracy", "python bench/accuracy.py ../shared/data/cases/mftracer", _accuracy),
    ("provider_replay", "python bench/provider_replay.py ../shared/data/cases/mftracer", _provider),
    ("hop_digest", "python bench/hop_digest.py ../shared/data/cases/mftracer --against FILE", _digest),
    ("accuracy_anvil", "python bench/accuracy.py --node anvil ../shared/data/cases/mftracer", _accuracy_anvil),
    ("balances", "python bench/balances.py", _balances),
    ("screen", "python bench/screen.py", _screen),
    ("faults", "python bench/faults.py", _faults),
    ("attacks", "python bench/attacks.py", _attacks),
    ("memory", "python bench/memory.py --reuse-trace-speed --api-args '--hops 200000'", _memory),
]


def machine_line(m: Result) -> str:
    load = "/".join(f"{x:.1f}" for x in m.get("load_average", []))
    return f"{m.get('cpus')} cores, load {load}, `{str(m.get('code', 'unknown'))[:9]}`"


def load_results(results: Path = RESULTS) -> dict[str, Result]:
    out = {}
    for name, _, _ in ROWS:
        path = results / f"{name}.json"
        if not path.exists():
            raise SystemExit(f"{path} is missing: run the bench (the table shows committed results only)")
        out[name] = json.loads(path.read_text())
    return out


def table(results: dict[str, Result]) -> str:
    lines = ["| what it measures | command | figures | measured on (cores, load 1/5/15 min, commit) |",
             "|---|---|---|---|"]
    for name, command, render in ROWS:
        r = results[name]
        what, fig = render(r)
        lines.append(f"| {what} | `{command}` | {fig} | {machine_line(r.get('machine', {}))} |")
    return "\n".join(lines)


def render(readme: str, results: dict[str, Result]) -> str:
    """The README with the table between the markers replaced."""
    try:
        head, rest = readme.split(START, 1)
        _, tail = rest.split(END, 1)
    except ValueError:
        raise SystemExit(f"README.md has no {START} ... {END} markers") from None
    return f"{head}{START}\n{table(results)}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="exit 1 if the README's table differs from the results")
    ap.add_argument("--readme", type=Path, default=README)
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    text = args.readme.read_text()
    new = render(text, load_results(args.results))
    if args.check:
        if new != text:
            print("README.md's Performance table differs from bench/results/*.json; run python bench/render.py",
                  file=sys.stderr)
            return 1
        return 0
    if new != text:
        args.readme.write_text(new)
        print(f"rewrote the Performance table of {args.readme}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
