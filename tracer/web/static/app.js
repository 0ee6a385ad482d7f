// The investigator page: start or open a trace, watch it grow (server-sent events from
// /v1/traces/{id}/events, or polling where the server has none), explore the graph, read the
// exposure, export, share a link.

import {Api, ApiError, StreamUnsupported, saveBlob} from "./api.js";
import {CasesView} from "./cases.js";
import {renderExposure, renderSankey} from "./exposure.js";
import {sourcesBox} from "./sources.js";
import {
  EntityColours, addressOf, ago, amountText, clear, copyText, el, exactText, pct, ratio, shortAddr, shortHash, timeText,
  unitsOf,
} from "./format.js";
import {GraphView, KIND_COLOURS, legendItems} from "./graph.js";
import {KINDS, TraceModel, nodeTitle} from "./model.js";

const $ = (id) => document.getElementById(id);
const ACTIVE = new Set(["queued", "running", "watching"]);
const FINISHED_EVENTS = new Set(["trace_finished", "trace_failed", "trace_cancelled"]);
const DRAW_LIMIT = 20000; // hops: beyond this the page shows exposure only and points to the exports
const DRAW_TARGET = 1500; // hops drawn at first in a bigger trace (the largest ones)
const ADDRESS = /^0x[0-9a-fA-F]{40}$/;
// Bitcoin: base58 (P2PKH/P2SH) or bech32 in one case; the server checks the checksums.
const TRON_ADDRESS = /^T[1-9A-HJ-NP-Za-km-z]{33}$/;
const BTC_ADDRESS = /^([13mn2][1-9A-HJ-NP-Za-km-z]{24,34}|(bc|tb|bcrt)1[02-9ac-hj-np-z]{6,87}|(BC|TB|BCRT)1[02-9AC-HJ-NP-Z]{6,87})$/;

const api = new Api();
const model = new TraceModel();
let colours = new EntityColours();
const state = {
  traceId: null, live: null, selected: null, paths: null, pathIndex: 0, view: null, history: [],
  refreshing: null, again: false, timer: null, depthTouched: false, laidOut: false, tooLarge: false, loadCost: 0,
  autoMin: false,
  expanded: new Set(), health: null, sankeyAsset: null,
};

const graph = new GraphView($("cy"), {
  onSelect: (t) => (t.type === "node" ? selectNode(t.id) : selectEdge(t.id)),
  onBackground: () => clearSelection(),
  tooltip: {box: $("tooltip"), content: tipContent},
});

const cases = new CasesView({api, openTrace: (id, opts) => openTrace(id, opts), toast: (t, bad) => toast(t, bad)});

// Exposed for debugging from the console and for the end-to-end test.
window.tracerUI = {api, model, graph, state, cases, get cy() { return graph.cy; }};

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ------------------------------------------------------------------ API key and health

function showAuthBanner(err) {
  const banner = $("auth-banner");
  banner.hidden = false;
  banner.textContent = err.status === 403
    ? `Key refused for this action: ${err.detail || err.title}`
    : api.key ? `API key rejected: ${err.detail || err.title}` : "This server needs an API key: paste one here →";
  $("api-key").classList.add("attention");
  if (!api.key) $("api-key").focus();
}

function hideAuthBanner() {
  $("auth-banner").hidden = true;
  $("api-key").classList.remove("attention");
}

api.onAuthError = showAuthBanner;

async function loadHealth() {
  const box = $("health");
  try {
    const r = await fetch("/v1/health", {cache: "no-store"});
    const h = await r.json();
    state.health = h;
    const chains = Object.entries(h.chains || {});
    const ok = h.status === "ok";
    box.className = `health ${ok ? "ok" : "bad"}`;
    box.textContent = !chains.length ? "API ok · read-only (no chain node)"
      : chains.map(([name, c]) => (c.ok ? `${name} head ${c.head}` : `${name} unreachable`)).join(" · ");
    box.title = `tracer ${h.version} · Postgres ${h.postgres?.ok ? "ok" : "down"} · ` +
      `${h.embedded_workers} embedded worker(s)`;
    $("f-submit").disabled = !chains.length;
    $("f-submit").title = chains.length ? "" : "This server has no chain node: it can only show existing traces";
  } catch {
    box.className = "health bad";
    box.textContent = "API unreachable";
  }
}

// ------------------------------------------------------------------ trace list and form

async function loadTraceList() {
  const list = $("trace-list");
  try {
    const page = await api.get("/v1/traces?limit=30");
    hideAuthBanner();
    clear(list);
    if (!page.items.length) list.append(el("li", {class: "muted"}, "No traces yet."));
    for (const t of page.items) {
      list.append(el("li", {class: t.id === state.traceId ? "active" : "", dataset: {traceId: t.id}},
        el("button", {type: "button", onclick: () => openTrace(t.id)},
          el("span", {class: "t-head"}, el("b", {}, `#${t.id}`), " ", t.label || el("i", {class: "muted"}, "unlabelled")),
          el("span", {class: "t-meta"}, el("span", {class: `pill ${t.status}`}, t.status),
            ` ${t.seeds.length} seed${t.seeds.length === 1 ? "" : "s"} · ${ago(t.created_at)}`))));
    }
  } catch (err) {
    clear(list).append(el("li", {class: "muted"}, err instanceof ApiError && err.status === 401
      ? "Enter an API key to list traces." : `Could not list traces: ${err.message}`));
  }
}

async function startTrace(ev) {
  ev.preventDefault();
  const error = $("form-error");
  error.hidden = true;
  const seeds = $("f-seeds").value.split(/[\s,;]+/).map((s) => s.trim()).filter(Boolean);
  const bad = seeds.find((s) => !ADDRESS.test(s) && !BTC_ADDRESS.test(s) && !TRON_ADDRESS.test(s));
  if (!seeds.length || bad) {
    error.textContent = bad ? `Not an address: ${bad}` : "Enter at least one seed address.";
    error.hidden = false;
    return;
  }
  const policy = {max_depth: Number($("f-depth").value) || 40, taint_model: $("f-model").value};
  const minShare = $("f-minshare").value;
  if (minShare !== "") policy.min_share = Number((Number(minShare) / 100).toPrecision(12));
  if ($("f-from").value !== "") policy.from_block = Number($("f-from").value);
  // Bitcoin seeds start a Bitcoin trace, Tron (T...) seeds a Tron trace; anything else is an EVM
  // trace on the default chain.
  const chain = seeds.every((s) => BTC_ADDRESS.test(s)) ? "bitcoin"
    : seeds.every((s) => TRON_ADDRESS.test(s)) ? "tron" : "ethereum";
  const body = {chain, seeds, policy};
  if ($("f-label").value.trim()) body.label = $("f-label").value.trim();
  const button = $("f-submit");
  button.disabled = true;
  button.textContent = "Starting…";
  try {
    const trace = await api.post("/v1/traces", body);
    hideAuthBanner();
    await openTrace(trace.id);
    loadTraceList();
  } catch (err) {
    error.textContent = err instanceof ApiError
      ? `${err.title}${err.field ? ` (${err.field})` : ""}: ${err.detail || ""}` : String(err);
    error.hidden = false;
  } finally {
    button.disabled = false;
    button.textContent = "Start trace";
  }
}

// ------------------------------------------------------------------ opening and refreshing a trace

async function openTrace(id, {push = true} = {}) {
  id = Number(id);
  if (state.live) state.live.stop();
  state.live = null;
  model.clear();
  colours = new EntityColours();
  Object.assign(state, {traceId: id, selected: null, paths: null, view: null, history: [], depthTouched: false,
    laidOut: false, tooLarge: false, expanded: new Set(), sankeyAsset: null, loadCost: 0, autoMin: false});
  $("flt-min").value = "";
  $("flt-time").value = $("flt-time").max;
  graph.cy.elements().remove();
  graph.userMoved = false;
  showTraceSummary();
  for (const li of document.querySelectorAll("#trace-list li")) {
    li.classList.toggle("active", Number(li.dataset.traceId) === id);
  }
  const url = cases.caseId === null ? `/ui?trace=${id}` : `/ui?case=${cases.caseId}&trace=${id}`;
  if (push && location.pathname + location.search !== url) history.pushState({trace: id}, "", url);
  document.title = `tracer · trace #${id}`;
  let trace;
  try {
    trace = await refresh();
  } catch (err) {
    $("trace-title").textContent = `Trace #${id}`;
    $("trace-progress").textContent = err instanceof ApiError ? `${err.title}: ${err.detail || ""}` : String(err);
    return;
  }
  if (trace && ACTIVE.has(trace.status)) {
    state.live = new Live(id);
    state.live.start();
  } else {
    setLive(null);
  }
}

/** Reload the trace, its graph and exits; concurrent callers share one reload (plus one more if
 * something asked while it ran). */
function refresh() {
  if (state.refreshing) {
    state.again = true;
    return state.refreshing;
  }
  state.refreshing = (async () => {
    let trace;
    do {
      state.again = false;
      trace = await load();
    } while (state.again);
    return trace;
  })().finally(() => { state.refreshing = null; });
  return state.refreshing;
}

/** Big traces cost more to fetch and lay out: wait longer between reloads so the page stays usable. */
function pause(base) {
  return Math.max(base, 2 * state.loadCost);
}

function scheduleRefresh(delay = pause(350)) {
  if (state.timer) return;
  state.timer = setTimeout(() => {
    state.timer = null;
    refresh().catch((err) => console.warn("refresh failed", err));
  }, delay);
}

async function load() {
  const id = state.traceId;
  if (id === null) return null;
  const started = performance.now();
  const trace = await api.get(`/v1/traces/${id}`);
  hideAuthBanner();
  if (id !== state.traceId) return trace;
  model.setTrace(trace);
  const hops = trace.progress?.hops ?? 0;
  state.tooLarge = hops > DRAW_LIMIT;
  const [graphJson, exits] = await Promise.all([
    state.tooLarge ? Promise.resolve(null) : api.get(`/v1/traces/${id}/graph?format=json`),
    api.get(`/v1/traces/${id}/exits?sort=usd`),  // largest dollar value first
  ]);
  if (id !== state.traceId) return trace;
  model.setExits(exits);
  const exposure = new Map();
  for (const x of exits.items) exposure.set(x.entity, (exposure.get(x.entity) || 0) + (x.usd_share ?? x.share));
  const entities = [...exposure.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).map(([e]) => e);
  colours.assign(entities);
  const changed = graphJson ? model.setGraph(graphJson) : false;
  if (changed && !state.autoMin) autoMinimum();
  renderTraceBar();
  updateFilterControls();
  if (changed || !state.laidOut) redraw({layout: true});
  drawExposure();
  state.history.push({at: Date.now(), status: trace.status, nodes: model.nodes.size, edges: model.edges.size,
    exits: model.exitCount()});
  if (changed && state.selected) renderSelection({refetch: false});
  state.loadCost = performance.now() - started;
  return trace;
}

/** A trace with thousands of hops is a hairball: start by drawing about the largest DRAW_TARGET
 * hops (a minimum share of the stolen total), and say so. Once per trace; the user can lower it. */
function autoMinimum() {
  const shares = [];
  for (const e of model.edges.values()) if (!(e.status === "stopped" && e.reason === "below_threshold")) shares.push(e.share);
  if (shares.length <= DRAW_TARGET || $("flt-min").value !== "" || $("flt-asset").value) return;
  state.autoMin = true;
  shares.sort((a, b) => b - a);
  const cut = shares[DRAW_TARGET] * 100;
  const digits = Math.max(0, 1 - Math.floor(Math.log10(cut)));
  const value = Math.ceil(cut * 10 ** digits) / 10 ** digits;
  $("flt-min").value = String(value);
  toast(`${shares.length} hops: drawing those of at least ${value}% of the stolen total. Lower "Min" to see more.`);
}

// ------------------------------------------------------------------ live updates

function setLive(mode) {
  const live = $("live");
  live.hidden = !mode;
  live.className = `live ${mode || ""}`;
  live.textContent = {sse: "live · events", poll: "live · polling", connecting: "connecting…",
    paused: "paused (key)"}[mode] || "";
  live.title = {sse: "Updates pushed by the server (GET /v1/traces/{id}/events)",
    poll: "This server has no event stream: the page asks for changes every second"}[mode] || "";
}

class Live {
  constructor(traceId) {
    this.traceId = traceId;
    this.stopped = false;
    this.abort = new AbortController();
    this.lastEventId = null;
    this.mode = null;
    this.events = 0;
  }

  set(mode) {
    this.mode = mode;
    if (!this.stopped) setLive(mode);
  }

  async start() {
    this.set("connecting");
    let failures = 0;
    while (!this.stopped) {
      try {
        this.lastEventId = await api.stream(`/v1/traces/${this.traceId}/events`, {
          signal: this.abort.signal,
          lastEventId: this.lastEventId,
          onOpen: () => { this.set("sse"); failures = 0; },
          onEvent: (ev) => this.onEvent(ev),
        });
        if (this.stopped) return;
        // The server ended the stream: done, or a proxy timeout; look before reconnecting.
        const trace = await refresh();
        if (!trace || !ACTIVE.has(trace.status)) return this.finish();
        await sleep(500);
      } catch (err) {
        if (this.stopped || err.name === "AbortError") return;
        if (err instanceof StreamUnsupported) return this.poll();
        if (err instanceof ApiError && (err.status === 401 || err.status === 403)) return this.set("paused");
        failures += 1;
        if (failures >= 3) return this.poll();
        await sleep(800 * failures);
      }
    }
  }

  onEvent(ev) {
    if (this.stopped) return;
    this.events += 1;
    let type = ev.type;
    if (type === "message") {
      try { type = JSON.parse(ev.data).type || type; } catch { /* plain data */ }
    }
    if (FINISHED_EVENTS.has(type)) {
      refresh().then((t) => { if (!t || !ACTIVE.has(t.status)) this.finish(); });
    } else {
      scheduleRefresh();
    }
  }

  async poll() {
    this.set("poll");
    while (!this.stopped) {
      let trace = null;
      try {
        trace = await refresh();
      } catch (err) {
        if (err instanceof ApiError && (err.status === 401 || err.status === 403)) return this.set("paused");
      }
      if (trace && !ACTIVE.has(trace.status)) return this.finish();
      await sleep(pause(1000));
    }
  }

  finish() {
    if (this.stopped) return;
    this.stop();
    setLive(null);
    loadTraceList();
  }

  stop() {
    this.stopped = true;
    this.abort.abort();
  }
}

// ------------------------------------------------------------------ header of the trace

const BALANCE_METHODS = {
  node_state: "balances from node state",
  derived_from_history: "balances derived from history",
  not_needed: "no balances needed",
};

// Which way the prior balances (clean money that dilutes the taint) were read, and why: a node
// without old state makes the worker derive them, and an investigator should know.
function balanceLine(t) {
  if (!t.balance_method) return null;
  const text = BALANCE_METHODS[t.balance_method] || t.balance_method;
  return el("span", {id: "balance-method", class: `balance-method ${t.balance_method}`,
                     title: t.balance_method_reason || ""}, text);
}

function renderTraceBar() {
  const t = model.trace;
  if (!t) return;
  $("trace-title").textContent = `#${t.id} ${t.label || ""}`.trim();
  $("trace-title").title = `seeds: ${t.seeds.join(", ")}`;
  const pill = $("trace-status");
  pill.hidden = false;
  pill.className = `pill ${t.status}`;
  pill.textContent = t.status;
  $("cancel").hidden = !ACTIVE.has(t.status);
  const p = t.progress || {};
  const stolen = t.totals.map((a) => amountText(a)).join(" + ");
  const box = clear($("trace-progress"));
  // A backward trace asks where the seeds' money came from: its exits are the sources reached.
  const backward = t.direction === "backward";
  const sources = (model.exits?.items || []).length;
  const parts = [
    backward ? el("span", {id: "trace-direction", class: "pill direction",
                           title: "backward trace: inflows walked back to labelled and flagged sources"},
                  "Source of funds") : null,
    backward ? el("span", {title: "what the seeds received in the window"}, "Seeds received ", el("b", {}, stolen || "–"))
      : el("span", {title: "flagged money that left the seeds"}, "Seeds sent ", el("b", {}, stolen || "–")),
    el("span", {}, el("b", {}, p.addresses ?? 0), " addresses"),
    el("span", {}, el("b", {}, p.hops ?? 0), " hops"),
    backward ? el("span", {}, el("b", {}, sources), " sources") : el("span", {}, el("b", {}, p.exits ?? 0), " exits"),
    el("span", {title: "mixers, bridges, swaps, hubs and the depth limit"}, el("b", {}, p.stops ?? 0), " stops"),
    ACTIVE.has(t.status) ? el("span", {title: "addresses still to visit"}, el("b", {}, p.frontier ?? 0), " to visit") : null,
    balanceLine(t),
    t.error ? el("span", {class: "error"}, t.error) : null,
    state.tooLarge ? el("span", {class: "error"}, `over ${DRAW_LIMIT} hops: graph not drawn, use the exports`) : null,
  ];
  box.append(...parts.filter(Boolean));
  for (const b of document.querySelectorAll("[data-export], #share")) b.disabled = false;
}

// ------------------------------------------------------------------ filters and drawing

function updateFilterControls() {
  const s = model.stats();
  const depth = $("flt-depth");
  const max = Math.max(1, s.maxDepth);
  const wasAll = !state.depthTouched || Number(depth.value) >= Number(depth.max);
  depth.max = String(max);
  if (wasAll) depth.value = String(max);
  $("o-depth").textContent = Number(depth.value) >= max ? "all" : depth.value;
  const select = $("flt-asset");
  const assets = model.assets();
  const want = ["", ...assets.map((a) => a.asset)].join(",");
  if ([...select.options].map((o) => o.value).join(",") !== want) {
    const current = select.value;
    clear(select).append(el("option", {value: ""}, "all assets"),
      ...assets.map((a) => el("option", {value: a.asset}, a.symbol || shortAddr(a.asset))));
    select.value = want.split(",").includes(current) ? current : "";
    const sk = $("sankey-asset");
    clear(sk).append(...assets.map((a) => el("option", {value: a.asset}, a.symbol || shortAddr(a.asset))));
    if (!state.sankeyAsset || !assets.some((a) => a.asset === state.sankeyAsset)) {
      state.sankeyAsset = (assets.find((a) => a.asset === "native") || assets[0])?.asset || null;
    }
    if (state.sankeyAsset) sk.value = state.sankeyAsset;
  }
  const asset = model.totals.get(select.value);
  $("flt-min-unit").textContent = asset ? asset.symbol || shortAddr(asset.asset) : "% of stolen";
  const time = $("flt-time");
  $("o-time").textContent = Number(time.value) >= Number(time.max) || !s.tMax ? "all"
    : timeText(new Date(timeAt(s, time.value)).toISOString().replace(/\.\d+Z$/, "Z"));
}

function timeAt(s, v) {
  return s.tMin + ((s.tMax - s.tMin) * Number(v)) / 1000;
}

function filters() {
  const s = model.stats();
  const depth = Number($("flt-depth").value);
  const time = Number($("flt-time").value);
  return {
    maxDepth: depth >= s.maxDepth ? 0 : depth,
    asset: $("flt-asset").value,
    minAmount: $("flt-min").value,
    timeMax: time >= 1000 || !s.tMax ? 0 : timeAt(s, time),
    collapse: $("flt-collapse").checked,
    group: $("flt-group").checked,
    dust: $("flt-dust").checked,
    expanded: state.expanded,
  };
}

function redraw({layout = false} = {}) {
  if (state.tooLarge) return;
  const view = model.view(filters());
  state.view = view;
  const structural = graph.update(view, model, colours);
  $("graph-empty").hidden = view.nodes.length > 0;
  $("graph-empty").textContent = state.traceId === null ? "Start a trace, or open one from the list."
    : model.trace && ACTIVE.has(model.trace.status) ? "Waiting for the first hops…" : "Nothing to draw with these filters.";
  if ((structural || layout) && view.nodes.length) {
    graph.layout({animate: state.laidOut, fit: true});
    state.laidOut = true;
  }
  applyHighlight();
}

function drawExposure() {
  renderExposure({
    model, colours, sankeyAsset: state.sankeyAsset,
    onPickExit: (address, chain) => selectNode(model.idOf(address, chain), {center: true}),
    onPickEntity: (entity) => {
      const ids = [...model.nodes.values()].filter((n) => n.kind === "exit" && n.entity === entity).map((n) => n.id);
      clearSelection();
      graph.focus(ids);
    },
  });
}

// ------------------------------------------------------------------ selection and details

function viewId(address) {
  return state.view?.groupOf.get(address)?.id || address;
}

/** The graph node ids of a path's addresses: each step names its chain (a bridge step its sender's too). */
function pathIds(path) {
  const home = model.trace?.chain;
  return [model.idOf(path.addresses[0], path.steps[0]?.from_chain || path.steps[0]?.chain || home),
    ...path.steps.map((s) => model.idOf(s.to, s.chain || home))];
}

function applyHighlight() {
  if (state.paths && state.paths[state.pathIndex]) {
    const path = state.paths[state.pathIndex];
    const ids = pathIds(path);
    const nodes = ids.map(viewId);
    const edges = path.steps.map((s, i) => `${viewId(ids[i])}>${viewId(ids[i + 1])}>${s.asset}`);
    graph.highlight(nodes, edges);
  } else if (!state.selected) {
    graph.clearHighlight();
  }
}

function clearSelection() {
  state.selected = null;
  state.paths = null;
  graph.select(null);
  graph.clearHighlight();
  showTraceSummary();
}

function selectNode(id, {center = false} = {}) {
  state.selected = {type: "node", id};
  state.paths = null;
  state.pathIndex = 0;
  graph.select(viewId(id), {center});
  graph.clearHighlight();
  renderSelection({refetch: true});
}

function selectEdge(id) {
  state.selected = {type: "edge", id};
  state.paths = null;
  graph.clearHighlight();
  renderSelection({refetch: false});
}

function renderSelection({refetch}) {
  const sel = state.selected;
  if (!sel) return;
  if (sel.type === "edge") return renderEdgeDetails(sel.id);
  if (sel.id.startsWith("peel:") || sel.id.startsWith("group:")) return renderChainDetails(sel.id);
  renderNodeDetails(sel.id, {refetch});
}

function showTraceSummary() {
  const body = clear($("details-body"));
  body.removeAttribute("data-address");
  body.append(el("p", {class: "muted"}, "Click a node to see its labels, the flagged amounts in and out, its hops ",
    "and the paths from the seeds. Click an exposure row to find an exit."));
  const legend = el("div", {class: "legend-list"});
  for (const item of legendItems()) {
    legend.append(el("div", {}, el("i", {class: `shape shape-${item.shape}`, style: {background: item.colour}}),
      item.label));
  }
  body.append(el("h3", {}, "Reading the graph"), legend,
    el("p", {class: "muted small"}, "Edge width: share of the seeds' total the hop carries. Exits and the hops into ",
      "them take their entity's colour. Dashed: money stopped there (mixer, bridge, hub, depth limit). Money flows ",
      "left to right, one column per hop."));
}

function kindChip(kind, colour) {
  return el("span", {class: "chip", style: {background: colour || KIND_COLOURS[kind], color: chipText(kind)}},
    KINDS[kind]?.label || kind);
}

function chipText(kind) {
  return kind === "peel" || kind === "dust" || kind === "intermediate" || kind === "stopped" ? "#1c2838" : "#fff";
}

function amountsList(list) {
  if (!list.length) return el("span", {class: "muted"}, "–");
  return el("span", {class: "amounts"}, ...list.map((t) => {
    const total = model.totals.get(t.asset)?.raw;
    return el("span", {title: exactText(t)}, el("b", {}, amountText(t)),
      total ? el("small", {}, ` ${pct(ratio(t.raw, total))} of stolen`) : null);
  }));
}

function counterparty(id) {
  const n = model.nodes.get(id);
  const on = n?.chainTag ? ` (${n.chainTag})` : "";
  return el("button", {type: "button", class: "link mono", title: id,
    onclick: () => selectNode(id, {center: true})}, (n && n.entity ? `${n.entity} ${shortAddr(id)}` : shortAddr(id)) + on);
}

function hopTable(flows) {
  const rows = [
    ...flows.inEdges.map((e) => ({dir: "in", other: e.source, e})),
    ...flows.outEdges.map((e) => ({dir: "out", other: e.target, e})),
  ].sort((a, b) => a.e.block_number - b.e.block_number || (a.e.key < b.e.key ? -1 : 1));
  const table = el("table", {class: "hops"},
    el("thead", {}, el("tr", {}, el("th", {}, ""), el("th", {}, "Counterparty"), el("th", {class: "num"}, "Amount"),
      el("th", {class: "num"}, "Block"), el("th", {}, "Tx"))));
  const tbody = el("tbody");
  for (const {dir, other, e} of rows.slice(0, 200)) {
    tbody.append(el("tr", {class: e.status},
      el("td", {class: `dir ${dir}`, title: dir === "in" ? "received" : "sent"}, dir === "in" ? "←" : "→"),
      el("td", {}, counterparty(other)),
      el("td", {class: "num", title: exactText(e)}, amountText(e)),
      el("td", {class: "num", title: timeText(e.timestamp)}, e.block_number),
      el("td", {class: "mono", title: `${e.tx_hash} (${e.position}) — ${e.status}: ${e.reason}`}, e.tx_hash.slice(0, 8))));
  }
  table.append(tbody);
  const wrap = el("div", {}, table);
  if (rows.length > 200) wrap.append(el("p", {class: "muted small"}, `${rows.length - 200} more hops: export the CSV.`));
  return wrap;
}

function renderNodeDetails(id, {refetch}) {
  const n = model.nodes.get(id);
  const body = clear($("details-body"));
  // The node id is "<chain>:<address>" on a multichain trace, else the address.
  const address = n?.address || addressOf(id);
  const chain = n?.chain || model.trace?.chain || "ethereum";
  body.dataset.address = address;
  if (!n) {
    body.append(el("p", {class: "muted"}, "This address is not in the trace (yet)."));
    return;
  }
  const flows = model.flows(id);
  const exit = (model.exits?.items || []).filter((x) => x.address === address && (x.chain || chain) === chain);
  const colour = n.kind === "exit" ? colours.get(n.entity) : null;
  body.append(
    el("div", {class: "d-head"}, kindChip(n.kind, colour), el("h2", {}, nodeTitle(n))),
    el("div", {class: "addr mono"}, exit[0]?.address_checksum || address,
      el("button", {type: "button", class: "icon", title: "Copy the address",
        onclick: () => copyText(exit[0]?.address_checksum || address).then(() => toast("Address copied"))}, "copy")),
  );
  const facts = el("dl", {class: "facts"});
  const fact = (k, ...v) => facts.append(el("dt", {}, k), el("dd", {}, ...v));
  if (model.multichain) fact("Chain", chain);
  fact("Verdict", `${n.role}${n.reason && n.reason !== n.role ? ` — ${n.reason.replace(/_/g, " ")}` : ""}`);
  if (n.category) fact("Category", n.category.replace(/_/g, " "));
  fact("Depth", n.depth === null || n.depth === undefined ? "–" : `${n.depth} hop${n.depth === 1 ? "" : "s"} from a seed`);
  if (exit.length) {
    const r = exit[0].recognised_by || {};
    fact("Recognised by", r.method === "behaviour"
      ? `behaviour: ${r.evidence?.heuristic || "sweeps"}${r.evidence?.sweeps ? ` (${r.evidence.sweeps} sweeps` +
        `${r.evidence.confidence ? `, confidence ${Math.round(r.evidence.confidence * 100)}%` : ""})` : ""}`
      : r.method === "event" ? `event: ${r.source}` : `label (${r.source || "?"})`);
    fact("First / last seen", `${timeText(exit[0].first_seen)} / ${timeText(exit[0].last_seen)}`);
  }
  fact("Flagged in", amountsList(flows.in));
  fact("Flagged out", amountsList(flows.out));
  body.append(facts);
  const labels = el("div", {class: "labels", id: "d-labels"}, el("span", {class: "muted"}, "loading labels…"));
  body.append(el("h3", {}, "Labels"), labels);
  const paths = el("div", {id: "d-paths"});
  if (n.kind !== "seed") body.append(el("h3", {}, "Paths from the seeds"), paths);
  body.append(el("h3", {}, `Hops `, el("small", {}, `${flows.inEdges.length} in · ${flows.outEdges.length} out`)),
    hopTable(flows));
  body.append(el("h3", {}, "Source of funds"), sourcesBox(api, chain, address));
  loadLabels(id, address, chain, labels);
  if (n.kind !== "seed") {
    if (refetch || !state.paths) loadPaths(id, address, paths);
    else renderPaths(paths);
  }
}

async function loadLabels(id, address, chain, box) {
  try {
    const info = await api.get(`/v1/addresses/${chain}/${address}`);
    if (state.selected?.id !== id) return;
    clear(box);
    for (const s of info.sanctions) {
      box.append(el("div", {class: "label sanction"}, el("b", {}, "SANCTIONED"), ` ${s.entity}`,
        el("small", {}, ` ${s.program || ""} · ${s.source}`)));
    }
    for (const lb of info.labels) {
      box.append(el("div", {class: `label ${lb.active ? "" : "inactive"}`},
        el("b", {}, lb.entity), ` · ${lb.category.replace(/_/g, " ")}`,
        el("small", {}, ` source ${lb.source} · ${Math.round(lb.confidence * 100)}%${lb.active ? "" : " · expired"}`)));
    }
    if (!info.labels.length && !info.sanctions.length) box.append(el("span", {class: "muted"}, "No label."));
    const others = info.traces.filter((t) => t.trace_id !== state.traceId);
    if (others.length) {
      box.append(el("div", {class: "small muted"}, `Also in ${others.length} other trace(s): `,
        ...others.slice(0, 8).map((t) => el("button", {type: "button", class: "link", onclick: () => openTrace(t.trace_id)},
          `#${t.trace_id} `))));
    }
    const inCases = cases.alsoIn(info);
    if (inCases) box.append(inCases);
  } catch (err) {
    clear(box).append(el("span", {class: "muted"}, `labels unavailable (${err.message})`));
  }
}

async function loadPaths(id, address, box) {
  clear(box).append(el("span", {class: "muted"}, "finding paths…"));
  try {
    const r = await api.get(`/v1/traces/${state.traceId}/paths?to=${address}&limit=5`);
    if (state.selected?.id !== id) return;
    // The address may be on two chains of the trace: keep the paths that end at this node.
    const chain = model.nodes.get(id)?.chain;
    state.paths = model.multichain && chain ? r.paths.filter((p) => !p.steps.length
      || (p.steps[p.steps.length - 1].chain || model.trace.chain) === chain) : r.paths;
    state.pathIndex = 0;
    renderPaths(box);
    applyHighlight();
  } catch (err) {
    clear(box).append(el("span", {class: "muted"}, `paths unavailable (${err.message})`));
  }
}

function renderPaths(box) {
  clear(box);
  const paths = state.paths || [];
  if (!paths.length) {
    box.append(el("span", {class: "muted"}, "No path from a seed (yet)."));
    return;
  }
  if (paths.length > 1) {
    box.append(el("div", {class: "path-tabs"}, ...paths.map((p, i) => el("button", {type: "button",
      class: i === state.pathIndex ? "active" : "", title: p.bottleneck ? `at most ${exactText(p.bottleneck)} along it` : "",
      onclick: () => { state.pathIndex = i; renderPaths(box); applyHighlight(); }},
    `Path ${i + 1} · ${p.hops} hop${p.hops === 1 ? "" : "s"}`))));
  }
  const p = paths[state.pathIndex];
  if (p.bottleneck) {
    box.append(el("p", {class: "small"}, "Narrowest step: ", el("b", {title: exactText(p.bottleneck)},
      amountText(p.bottleneck)), " — the most flagged money that can have taken this whole path."));
  }
  const ol = el("ol", {class: "path", id: "path", dataset: {hops: p.hops}});
  const ids = pathIds(p);
  p.addresses.forEach((a, i) => {
    const n = model.nodes.get(ids[i]);
    const step = i > 0 ? p.steps[i - 1] : null;
    const crossing = step?.from_chain ? ` · bridge ${step.from_chain} → ${step.chain}` : "";
    ol.append(el("li", {dataset: {address: a}, class: n ? n.kind : ""},
      step ? el("div", {class: "step", title: `${step.tx_hash} · block ${step.block_number}`},
        el("span", {class: "arrow"}, "↓ "), el("b", {title: exactText(step)}, amountText(step)),
        el("small", {}, ` ${timeText(step.timestamp)} · tx ${shortHash(step.tx_hash)}${crossing}`)) : null,
      el("div", {class: "stop"}, el("i", {class: "dot", style: {background: n?.kind === "exit"
        ? colours.get(n.entity) : KIND_COLOURS[n?.kind || "intermediate"]}}),
      counterparty(ids[i]), n && n.kind !== "intermediate" ? el("small", {}, ` ${KINDS[n.kind]?.label || ""}`) : null)));
  });
  box.append(ol);
}

function renderChainDetails(id) {
  const node = state.view?.chains.get(id);
  const body = clear($("details-body"));
  body.dataset.address = id;
  if (!node) {
    body.append(el("p", {class: "muted"}, "These wallets are no longer collapsed."));
    return;
  }
  const members = node.members;
  const peel = node.kind === "peel";
  const inside = new Set(members);
  // Money entering from outside the collapsed wallets, and leaving to outside them.
  const entered = [];
  const left = [];
  for (const m of members) {
    for (const e of model.inEdges.get(m) || []) if (!inside.has(e.source)) entered.push(e);
    for (const e of model.outEdges.get(m) || []) if (!inside.has(e.target)) left.push(e);
  }
  const total = (edges) => {
    const m = new Map();
    for (const e of edges) {
      const t = m.get(e.asset) || {asset: e.asset, symbol: e.symbol, decimals: e.decimals, raw: 0n};
      t.raw += e.raw;
      m.set(e.asset, t);
    }
    return [...m.values()].map((t) => ({...t, amount: unitsOf(t.raw, t.decimals)}));
  };
  body.append(
    el("div", {class: "d-head"}, kindChip(node.kind), el("h2", {}, nodeTitle(node))),
    el("p", {class: "small"}, peel
      ? "Each wallet sent its largest outflow to the next, fresh wallet and peeled smaller amounts off elsewhere. "
        + "Drawn as one node; the peels leave from it."
      : "Wallets with the same senders and the same recipients: a fan-out that splits the money and (often) "
        + "gathers it again. Drawn as one node."),
    el("dl", {class: "facts"}, el("dt", {}, "Flagged in"), el("dd", {}, amountsList(total(entered))),
      el("dt", {}, "Flagged out"), el("dd", {}, amountsList(total(left))),
      el("dt", {}, "Hops"), el("dd", {}, `${entered.length} in · ${left.length} out`)),
    el("button", {type: "button", onclick: () => { state.expanded.add(id); clearSelection(); redraw({layout: true}); }},
      peel ? "Expand this chain" : "Expand this group"),
    el("h3", {}, peel ? "Wallets, in order" : "Wallets"),
    el("ol", {class: "chain"}, ...members.map((m) => el("li", {}, counterparty(m)))),
  );
}

function renderEdgeDetails(id) {
  const e = state.view?.edges.find((x) => x.id === id);
  const body = clear($("details-body"));
  if (!e) return;
  const name = (a) => nodeTitle(state.view?.chains.get(a) || model.nodes.get(a) || {id: a});
  body.append(
    el("div", {class: "d-head"}, el("h2", {}, `${name(e.source)} → ${name(e.target)}`)),
    el("dl", {class: "facts"}, el("dt", {}, "Flagged amount"), el("dd", {title: exactText(e)}, el("b", {}, amountText(e)),
      el("small", {}, ` ${pct(e.share)} of stolen`)), el("dt", {}, "Hops"), el("dd", {}, String(e.hops.length)),
    el("dt", {}, "Status"), el("dd", {}, `${e.status} — ${e.reason}`)),
    hopTable({inEdges: [], outEdges: e.hops}),
  );
}

function tipContent(ele) {
  if (ele.isEdge()) {
    const e = state.view?.edges.find((x) => x.id === ele.id());
    if (!e) return null;
    return [el("b", {}, amountText(e)), el("div", {}, `${pct(e.share)} of the seeds' ${e.symbol || ""}`),
      el("div", {class: "muted"}, `${e.hops.length} hop${e.hops.length === 1 ? "" : "s"} · ${e.status}`)];
  }
  const id = ele.id();
  const collapsed = state.view?.chains.get(id);
  if (collapsed) return [el("b", {}, nodeTitle(collapsed)), el("div", {class: "muted"}, "click for the wallets")];
  const n = model.nodes.get(id);
  if (!n) return null;
  const f = model.flows(id);
  return [
    el("b", {}, nodeTitle(n)), el("div", {class: "muted"}, `${KINDS[n.kind]?.label || n.kind} · ${shortAddr(id)}`),
    f.in.length ? el("div", {}, `in ${f.in.map((t) => amountText(t)).join(" + ")}`) : null,
    f.out.length ? el("div", {}, `out ${f.out.map((t) => amountText(t)).join(" + ")}`) : null,
  ].filter(Boolean);
}

// ------------------------------------------------------------------ exports and sharing

async function exportAs(kind) {
  const id = state.traceId;
  if (id === null) return;
  try {
    if (kind === "png") {
      saveBlob(graph.png(), `trace-${id}.png`);
      toast(`Saved trace-${id}.png`);
      return;
    }
    const query = kind === "csv-nodes" ? "format=csv&table=nodes" : `format=${kind}`;
    const name = await api.download(`/v1/traces/${id}/graph?${query}`, `trace-${id}.${kind}`);
    toast(`Saved ${name}`);
  } catch (err) {
    toast(`Export failed: ${err.message}`, true);
  }
}

function shareLink() {
  return `${location.origin}/ui?trace=${state.traceId}`;
}

let toastTimer = null;
function toast(text, bad = false) {
  const t = $("toast");
  t.textContent = text;
  t.className = `toast ${bad ? "bad" : ""}`;
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { t.hidden = true; }, 3500);
}

// ------------------------------------------------------------------ wiring

function renderLegend() {
  const box = clear($("legend"));
  for (const item of legendItems()) {
    if (item.kind === "stopped") continue;
    box.append(el("span", {}, el("i", {class: `shape shape-${item.shape}`, style: {background: item.kind === "exit"
      ? "conic-gradient(#0072b2 0 25%, #d4a300 0 50%, #009e73 0 75%, #cc79a7 0)" : item.colour}}),
    item.short));
  }
  box.append(el("span", {class: "edge-key"}, "edge width: share of stolen · dashed: stopped · hover for amounts"));
}

function init() {
  $("api-key").value = api.key;
  $("key-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    api.setKey($("api-key").value);
    hideAuthBanner();
    toast(api.key ? "API key saved in this browser" : "No API key");
    loadTraceList();
    cases.loadList();
    if (state.traceId !== null) openTrace(state.traceId, {push: false});
  });
  $("key-forget").addEventListener("click", () => {
    api.setKey("");
    $("api-key").value = "";
    toast("API key removed from this browser");
  });
  $("trace-form").addEventListener("submit", startTrace);
  $("traces-refresh").addEventListener("click", loadTraceList);
  for (const id of ["flt-asset", "flt-collapse", "flt-group", "flt-dust"]) {
    $(id).addEventListener("change", () => { updateFilterControls(); redraw({layout: true}); });
  }
  $("flt-min").addEventListener("change", () => redraw({layout: true}));
  $("flt-depth").addEventListener("input", () => { state.depthTouched = true; updateFilterControls(); redraw(); });
  $("flt-depth").addEventListener("change", () => redraw({layout: true}));
  $("flt-time").addEventListener("input", () => { updateFilterControls(); redraw(); });
  $("flt-time").addEventListener("change", () => redraw({layout: true}));
  $("sankey-asset").addEventListener("change", (ev) => {
    state.sankeyAsset = ev.target.value;
    renderSankey(model, colours, state.sankeyAsset);
  });
  $("cancel").addEventListener("click", async () => {
    const id = state.traceId;
    try {
      await api.post(`/v1/traces/${id}/cancel`, {});
      toast(`Trace #${id} cancelled`);
    } catch (err) {
      toast(`Could not cancel: ${err.message}`, true);
    }
    refresh().catch(() => {});
  });
  $("fit").addEventListener("click", () => graph.fit());
  $("relayout").addEventListener("click", () => { graph.userMoved = false; graph.layout({animate: true}); });
  for (const b of document.querySelectorAll("[data-export]")) {
    b.disabled = true;
    b.addEventListener("click", () => exportAs(b.dataset.export));
  }
  $("share").disabled = true;
  $("share").addEventListener("click", async () => {
    const link = shareLink();
    const ok = await copyText(link);
    toast(ok ? `Link copied: ${link}` : link);
  });
  window.addEventListener("popstate", () => {
    const caseId = new URLSearchParams(location.search).get("case");
    if (caseId && /^\d+$/.test(caseId) && Number(caseId) !== cases.caseId) cases.open(caseId, {push: false});
    const id = new URLSearchParams(location.search).get("trace");
    if (id && Number(id) !== state.traceId) openTrace(id, {push: false});
  });
  let resize = null;
  window.addEventListener("resize", () => {
    clearTimeout(resize);
    resize = setTimeout(() => renderSankey(model, colours, state.sankeyAsset), 200);
  });
  renderLegend();
  showTraceSummary();
  loadHealth();
  loadTraceList();
  cases.init();
  cases.loadList();
  const id = new URLSearchParams(location.search).get("trace");
  const caseId = new URLSearchParams(location.search).get("case");
  if (caseId && /^\d+$/.test(caseId)) cases.open(caseId, {traceId: id && /^\d+$/.test(id) ? id : null, push: false});
  else if (id && /^\d+$/.test(id)) openTrace(id, {push: false});
  else redraw();
}

init();
