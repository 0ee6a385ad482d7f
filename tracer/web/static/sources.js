// Source of funds in the address panel: on demand, GET /v1/screen?depth=N walks the address's
// inflows back and the panel lists the flagged share per category and entity and the largest
// sources with the path their money took. Entity names come from labels: text nodes only.

import {clear, el, pct, shortAddr} from "./format.js";

export const SOURCE_DEPTH = 4;

function amountsText(list) {
  return list.map((a) => `${a.amount} ${a.symbol || shortAddr(a.asset)}`).join(" + ");
}

export function sourcesBox(api, chain, address) {
  const box = el("div", {class: "sources"});
  const button = el("button", {type: "button", class: "ghost", id: "d-sources-go",
    title: `Walk this address's inflows ${SOURCE_DEPTH} hops back (GET /v1/screen?depth=${SOURCE_DEPTH})`},
  "Where did its money come from?");
  button.addEventListener("click", () => load(api, chain, address, box));
  box.append(button);
  return box;
}

async function load(api, chain, address, box) {
  clear(box).append(el("span", {class: "muted"}, "walking inflows back…"));
  try {
    const r = await api.get(`/v1/screen?chain=${chain}&address=${address}&depth=${SOURCE_DEPTH}`);
    const e = r.exposure;
    clear(box);
    box.append(el("div", {class: "small muted"}, `Received ${amountsText(e.received) || "nothing"} · ` +
      `${e.walked} wallets walked${e.truncated ? " (cut by the size limit)" : ""}`));
    if (!e.flagged.length) box.append(el("div", {class: "label"}, "No flagged source within " +
      `${e.depth} hops.`));
    for (const f of e.flagged) {
      box.append(el("div", {class: "label sanction flagged-source"}, el("b", {}, f.category.replace(/_/g, " ")),
        ` ${f.entity}: `, f.amounts.map((a) => `${a.amount} ${a.symbol || shortAddr(a.asset)} (${pct(a.share)})`)
          .join(", ")));
    }
    const list = el("ul", {class: "source-list"});
    for (const s of e.sources.slice(0, 8)) {
      list.append(el("li", {title: s.path.join(" → ")},
        el("span", {class: "mono"}, shortAddr(s.address)), " ",
        el("small", {}, s.entity ? `${s.entity} (${s.category}) · ` : `${s.how} · `),
        amountsText(s.amounts), el("small", {}, ` · ${s.path.length - 1} hop${s.path.length === 2 ? "" : "s"}`)));
    }
    box.append(list);
  } catch (err) {
    clear(box).append(el("span", {class: "muted"}, `sources unavailable (${err.message})`));
  }
}
