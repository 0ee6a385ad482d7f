"""The report's source-of-funds section for a backward trace: what the seeds received, and from
which sources (flagged ones first), with the share and the path each source's money took."""

from __future__ import annotations

import html

from tracer.domain.labels import RISK_CATEGORIES
from tracer.engine import report as treport


def summary_html(rep: treport.Report) -> str:
    e = html.escape
    out = ["<h2>Source of funds</h2>",
           "<p>A backward trace: where the money the seeds received in the window came from. Inflows were "
           "walked back wallet by wallet with the taint model run in reverse (every wallet a pool, every "
           "outflow taking its share of each coin in it), stopping at labelled sources (exchanges, services, "
           "sanctioned or stolen-funds wallets, mints). Each source's amount is the part of its money that "
           "reached the seeds.</p><p>Received by the seeds: "]
    out.append("; ".join(
        f"<b>{e(treport.format_amount(v, rep.symbols.get(a, (a, None))[1], 6))} "
        f"{e(rep.symbols.get(a, (a[:10], None))[0])}</b>" for a, v in sorted(rep.totals.items())) or "nothing")
    out.append(".</p><table><tr><th>source</th><th>label</th><th>amount</th><th>share</th><th>path</th></tr>")
    lines = sorted(rep.exits, key=lambda x: (x.category not in RISK_CATEGORIES, -x.share, x.address))
    for x in lines:
        flagged = " <b>flagged</b>" if x.category in RISK_CATEGORIES else ""
        path = " → ".join([x.path[0]["from"], *(s["to"] for s in x.path)]) if x.path else ""
        out.append(f"<tr><td><code>{e(x.address)}</code></td><td>{e(x.entity or x.reason or '?')} "
                   f"({e(x.category or 'unlabelled')}){flagged}</td>"
                   f"<td class=n>{e(treport.format_amount(x.amount, x.decimals, 6))} {e(x.symbol)}</td>"
                   f"<td class=n>{x.share:.2%}</td><td><code>{e(path)}</code></td></tr>")
    out.append("</table>")
    return "".join(out)
