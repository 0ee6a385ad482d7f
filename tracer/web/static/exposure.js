// The exposure panel: how much of the seeds' total reached each exit entity (bars and a table, from
// GET /v1/traces/{id}/exits, exact amounts) and a Sankey flow from the seeds to where the money went
// (laid out by d3-sankey from the trace's hops).

import {amountText, clear, el, exactText, pct, shortAddr, timeText, unitsOf, usdText} from "./format.js";
import {KIND_COLOURS} from "./graph.js";
import {DESTINATIONS} from "./model.js";

/* global d3 */

const SVG = "http://www.w3.org/2000/svg";
const GROUP_COLOURS = {
  exits: "#30a46c", mixer: KIND_COLOURS.mixer, swap: KIND_COLOURS.swap, bridge: KIND_COLOURS.bridge,
  hub: KIND_COLOURS.hub, depth: "#b8ad95", dust: "#c9d1db", unresolved: "#aab6c5",
};

/** Exit lines grouped by entity, chain and asset, largest share first ("native" is another coin on
 * each chain a trace continued into). */
export function byEntity(exits) {
  const groups = new Map();
  for (const x of exits?.items || []) {
    const key = `${x.entity || "?"}|${x.chain || ""}|${x.asset}`;
    let g = groups.get(key);
    if (!g) {
      g = {entity: x.entity || "(unnamed)", chain: x.chain || null, asset: x.asset, symbol: x.symbol,
        decimals: x.decimals, raw: 0n, share: 0, usd: 0, usdKnown: true, addresses: [], categories: new Set()};
      groups.set(key, g);
    }
    g.raw += BigInt(x.amount_raw);
    g.share += x.share;
    if (x.usd == null) g.usdKnown = false; else g.usd += Number(x.usd);
    g.addresses.push(x.address);
    if (x.category) g.categories.add(x.category);
  }
  for (const g of groups.values()) g.amount = unitsOf(g.raw, g.decimals);
  // Largest dollar value first (one scale across assets and chains); unknown values last.
  const key = (g) => (g.usdKnown ? g.usd : -1);
  return [...groups.values()].sort((a, b) => key(b) - key(a) || b.share - a.share || (a.entity < b.entity ? -1 : 1));
}

function how(x) {
  const r = x.recognised_by || {};
  if (r.method === "behaviour") {
    const c = r.evidence?.confidence;
    return {text: "sweeps", title: `recognised by behaviour: ${r.evidence?.heuristic || "sweeps to one exchange"}` +
      (c ? ` (confidence ${Math.round(c * 100)}%)` : "")};
  }
  if (r.method === "label") return {text: `label`, title: `labelled (source: ${r.source})`};
  if (r.method === "event") return {text: "event", title: `recognised by its event: ${r.source}`};
  return {text: r.source || x.reason || "–", title: x.reason || ""};
}

export function renderExposure({model, colours, onPickExit, onPickEntity, sankeyAsset}) {
  const exits = model.exits;
  const summary = clear(document.getElementById("exp-summary"));
  const usd = exits?.usd;
  if (usd && usd.seeds != null) {
    summary.append(el("div", {class: "exp-total", title: "US dollars at the price of each asset at the block of each hop"},
      el("span", {class: "asset"}, "USD"),
      el("span", {class: "meter"}, el("span", {style: {width: `${Math.min(100, (usd.exits_share || 0) * 100)}%`}})),
      el("span", {}, el("b", {}, usdText(usd.exits)), ` of ${usdText(usd.seeds)} reached exits · `,
        el("b", {}, usd.exits_share == null ? "?" : pct(usd.exits_share)))));
  }
  for (const line of exits?.totals || []) {
    summary.append(el("div", {class: "exp-total", title: `${exactText(line.reached_exits)} of ${exactText(line.total)}`},
      el("span", {class: "asset"}, line.total.symbol || shortAddr(line.total.asset)),
      el("span", {class: "meter"}, el("span", {style: {width: `${Math.min(100, line.share * 100)}%`}})),
      el("span", {}, el("b", {}, amountText(line.reached_exits)), ` of ${amountText(line.total)} reached exits · `,
        el("b", {}, pct(line.share)))));
  }
  if (!exits || !exits.items.length) {
    summary.append(el("div", {class: "muted"}, model.trace && ["done", "failed", "cancelled"].includes(model.trace.status)
      ? "No exit reached." : "No exit reached yet."));
  }

  const bars = clear(document.getElementById("exp-bars"));
  const groups = byEntity(exits);
  const home = model.trace?.chain;
  const elsewhere = (chain) => (chain && home && chain !== home ? ` · ${chain}` : "");
  const top = Math.max(...groups.map((g) => (g.usdKnown && usd?.seeds ? g.usd / Number(usd.seeds) : g.share)), 1e-12);
  for (const g of groups) {
    const colour = colours.get(g.entity);
    bars.append(el("div", {class: "bar-row", dataset: {entity: g.entity}, title: `${g.entity}: ${exactText(g)} ` +
        `(${pct(g.share)} of the seeds' ${g.symbol}) at ${g.addresses.length} address(es)`,
      onclick: () => onPickEntity(g.entity)},
      el("span", {class: "bar-label"}, el("i", {class: "swatch", style: {background: colour}}), g.entity + elsewhere(g.chain),
        el("small", {}, ` ${[...g.categories].join(", ").replace(/_/g, " ")}`)),
      el("span", {class: "bar-track"}, el("span", {class: "bar-fill",
        style: {width: `${Math.max(0.5, ((g.usdKnown && usd?.seeds ? g.usd / Number(usd.seeds) : g.share) / top) * 100)}%`,
          background: colour}})),
      el("span", {class: "bar-value"}, el("b", {}, g.usdKnown ? usdText(g.usd) : pct(g.share)), " ", amountText(g))));
  }

  const body = clear(document.querySelector("#exp-table tbody"));
  for (const x of exits?.items || []) {
    const h = how(x);
    body.append(el("tr", {dataset: {address: x.address}, onclick: () => onPickExit(x.address, x.chain),
      title: `${x.address_checksum} — click to show it in the graph`},
    el("td", {}, el("i", {class: "swatch", style: {background: colours.get(x.entity)}}), (x.entity || "–") + elsewhere(x.chain)),
    el("td", {class: "mono"}, shortAddr(x.address_checksum || x.address)),
    el("td", {title: h.title}, h.text),
    el("td", {class: "num", title: exactText(x)}, amountText(x)),
    el("td", {class: "num", title: x.usd_source ? `price: ${x.usd_source}` : "no price known"}, usdText(x.usd)),
    el("td", {class: "num"}, pct(x.usd_share ?? x.share)),
    el("td", {class: "nowrap"}, timeText(x.first_seen))));
  }

  renderSankey(model, colours, sankeyAsset);
}

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

// Sankey values are pro rata estimates: four significant digits say so better than exact decimals.
const approx = new Intl.NumberFormat("en-US", {maximumSignificantDigits: 4});
const approxText = (v) => (v >= 10000 ? Math.round(v).toLocaleString("en-US") : approx.format(v));

export function renderSankey(model, colours, asset) {
  const box = clear(document.getElementById("sankey"));
  const total = model.totals.get(asset);
  if (!total || typeof d3 === "undefined" || !d3.sankey) return;
  const sym = total.symbol || shortAddr(asset);
  const {seeds, flows} = model.destinations(asset);
  const grand = seeds.reduce((a, s) => a + s.total, 0);
  if (!grand) {
    box.append(el("div", {class: "muted"}, "No flow yet."));
    return;
  }
  // Many seeds: the largest seven by name, the rest as one node.
  const sorted = [...seeds].sort((a, b) => b.total - a.total);
  const named = new Set(sorted.slice(0, sorted.length > 8 ? 7 : 8).map((s) => s.id));
  const others = sorted.length - named.size;
  const seedNode = (id) => (named.has(id) ? `s:${id}` : "s:others");
  const nodes = new Map();
  const links = new Map();
  const addNode = (id, name, colour, detail) => { if (!nodes.has(id)) nodes.set(id, {id, name, colour, detail}); };
  const addLink = (s, t, v) => {
    const k = `${s}→${t}`;
    links.set(k, {source: s, target: t, value: (links.get(k)?.value || 0) + v});
  };
  const minValue = grand * 0.001;
  for (const f of flows) {
    if (f.value < minValue) continue;
    const s = seedNode(f.seed);
    addNode(s, s === "s:others" ? `${others} other seeds` : `Seed ${shortAddr(f.seed)}`, KIND_COLOURS.seed, f.seed);
    const g = `g:${f.group}`;
    const dest = DESTINATIONS[f.group];
    addNode(g, dest.name, GROUP_COLOURS[f.group], `(${dest.detail})`);
    addLink(s, g, f.value);
    if (f.entity) {
      const t = `e:${f.group}:${f.entity}`;
      addNode(t, f.entity, f.group === "exits" ? colours.get(f.entity) : GROUP_COLOURS[f.group]);
      addLink(g, t, f.value);
    }
  }
  const width = Math.max(320, box.clientWidth || 520);
  const height = Math.max(200, box.clientHeight || 260);
  // Room on the right for the last column's labels (about 6.3 px per character at 11 px).
  const inflow = new Map();
  for (const l of links.values()) inflow.set(l.target, (inflow.get(l.target) || 0) + l.value);
  const sinks = [...nodes.values()].filter((n) => n.id.startsWith("e:"));
  for (const n of nodes.values()) {
    if (n.name.length > 22) {
      n.detail = `${n.name}${n.detail ? " " + n.detail : ""}`;
      n.name = `${n.name.slice(0, 21)}…`;
    }
  }
  const longest = Math.max(0, ...sinks.map((n) => `${n.name} ${approxText(inflow.get(n.id) || 0)} ${sym}`.length));
  const margin = Math.min(width * 0.45, Math.max(120, longest * 6.4 + 20));
  const layout = d3.sankey().nodeId((d) => d.id).nodeAlign(d3.sankeyLeft).nodeWidth(10).nodePadding(12)
    .extent([[1, 6], [width - margin, height - 6]]);
  let graph;
  try {
    graph = layout({nodes: [...nodes.values()].map((d) => ({...d})), links: [...links.values()].map((d) => ({...d}))});
  } catch (err) {
    box.append(el("div", {class: "muted"}, `Flow view unavailable: ${err.message}`));
    return;
  }
  const root = svg("svg", {width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": `flow of ${sym} from the seeds to where it went`});
  const linkPath = d3.sankeyLinkHorizontal();
  const gl = svg("g", {fill: "none"});
  for (const l of graph.links) {
    gl.append(svg("path", {d: linkPath(l), stroke: l.target.colour, "stroke-opacity": 0.38,
      "stroke-width": Math.max(1, l.width)},
    svg("title", {}, `${l.source.name} → ${l.target.name}: ≈${approxText(l.value)} ${sym} ` +
      `(${pct(l.value / grand)})`)));
  }
  root.append(gl);
  // Labels of small neighbouring bars would overlap: push them apart, column by column.
  const labelY = new Map();
  const columns = new Map();
  for (const n of graph.nodes) {
    const list = columns.get(n.x0) || [];
    list.push(n);
    columns.set(n.x0, list);
  }
  for (const list of columns.values()) {
    list.sort((a, b) => a.y0 + a.y1 - b.y0 - b.y1);
    let last = -Infinity;
    for (const n of list) {
      const y = Math.max((n.y0 + n.y1) / 2, last + 13);
      labelY.set(n, y);
      last = y;
    }
    const overflow = last - (height - 4);
    if (overflow > 0) {
      let next = Infinity;
      for (const n of [...list].reverse()) {
        const y = Math.min(labelY.get(n) - overflow, next - 13);
        labelY.set(n, y);
        next = y;
      }
    }
  }
  const gn = svg("g", {});
  for (const n of graph.nodes) {
    const h = Math.max(1, n.y1 - n.y0);
    gn.append(svg("rect", {x: n.x0, y: n.y0, width: n.x1 - n.x0, height: h, fill: n.colour, rx: 1.5},
      svg("title", {}, `${n.name}${n.detail ? " " + n.detail : ""}: ≈${approxText(n.value)} ${sym}`)));
    // Every label to the right of its bar; the last column's go into the margin kept for them.
    // Tall seed bars take two lines, which keeps the first column's labels narrow.
    const value = `${approxText(n.value)} ${sym}`;
    const x = n.x1 + 5;
    const y = labelY.get(n);
    if (n.id.startsWith("s:") && h >= 30) {
      gn.append(svg("text", {x, y, dy: "-0.25em", class: "sankey-label"}, n.name,
        svg("tspan", {x, dy: "1.2em", class: "sankey-value"}, value)));
    } else {
      gn.append(svg("text", {x, y, dy: "0.35em", class: "sankey-label"}, `${n.name} `,
        svg("tspan", {class: "sankey-value"}, value)));
    }
  }
  root.append(gn);
  box.append(root);
}
