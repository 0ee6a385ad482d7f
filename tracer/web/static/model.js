// A trace as the page holds it: the API's graph export (every address and hop), the exits, and
// what is derived for drawing: node kinds, filtered and aggregated edges, collapsed peel chains,
// and the seeds-to-destinations flow used by the Sankey view.

import {addressOf, chainOf, ratio, shortAddr, unitsOf} from "./format.js";

const SWAP_CATEGORIES = new Set(["dex", "swap_service", "swap"]);

/** What a node is drawn as. */
export const KINDS = {
  seed: {label: "Seed (flagged)", short: "Seed", shape: "diamond"},
  intermediate: {label: "Intermediate wallet", short: "Wallet", shape: "ellipse"},
  peel: {label: "Peel chain (collapsed)", short: "Peel chain", shape: "round-rectangle"},
  group: {label: "Parallel wallets (grouped)", short: "Wallet group", shape: "round-rectangle"},
  mixer: {label: "Mixer", short: "Mixer", shape: "hexagon"},
  swap: {label: "Swap / DEX", short: "Swap", shape: "round-triangle"},
  bridge: {label: "Bridge", short: "Bridge", shape: "barrel"},
  hub: {label: "Hub (unlabelled service)", short: "Hub", shape: "octagon"},
  stopped: {label: "Stopped (depth limit)", short: "Depth limit", shape: "ellipse"},
  exit: {label: "Exit (off-ramp)", short: "Exit (colour: entity)", shape: "round-rectangle"},
  dust: {label: "Below threshold", short: "Dust", shape: "ellipse"},
};

export function kindOf(n) {
  if (n.role === "seed" || n.seed) return "seed";
  if (n.role === "exit") return "exit";
  const cat = n.category || "";
  if (cat === "mixer") return "mixer";
  if (SWAP_CATEGORIES.has(cat)) return "swap";
  if (cat === "bridge") return "bridge";
  if (n.role === "stopped") return n.reason === "hub" || cat === "unlabelled_service" ? "hub" : "stopped";
  if (n.role === "followed") return "intermediate";
  return "dust";
}

export function nodeTitle(n) {
  if (n.kind === "peel") return `Peel chain · ${n.members.length} wallets`;
  if (n.kind === "group") return `${n.members.length} parallel wallets`;
  // On a multichain trace every node says its chain: one address may be a node on two chains.
  const on = n.chainTag ? ` · ${n.chainTag}` : "";
  if (n.entity) return n.entity + on;
  if (n.kind === "seed") return `Seed ${shortAddr(n.id)}${on}`;
  return shortAddr(n.id) + on;
}

/** Where money ends, for the flow view: name and what it means. */
export const DESTINATIONS = {
  exits: {name: "Exits", detail: "exchanges, deposit addresses, OTC desks, payment processors"},
  mixer: {name: "Mixers", detail: "entered a mixer"},
  swap: {name: "Swaps", detail: "entered a swap service or DEX"},
  bridge: {name: "Bridges", detail: "entered a bridge"},
  hub: {name: "Hubs", detail: "reached an unlabelled service with very many counterparties"},
  depth: {name: "Depth limit", detail: "the trace stopped at its max_depth"},
  dust: {name: "Dust", detail: "hops below the policy's threshold: recorded, not followed"},
  unresolved: {name: "Unresolved", detail: "not at an exit or service: still in wallets, or moved after the trace's window"},
};

const isDust = (e) => e.status === "stopped" && e.reason === "below_threshold";

export class TraceModel {
  constructor() {
    this.clear();
  }

  clear() {
    this.trace = null;
    this.exits = null;
    this.nodes = new Map();
    this.edges = new Map();
    this.totals = new Map();
    this.inEdges = new Map();
    this.outEdges = new Map();
    this.signature = "";
  }

  setTrace(trace) {
    this.trace = trace;
    this.totals = new Map((trace.totals || []).map((t) => [t.asset, {...t, raw: BigInt(t.amount_raw)}]));
    for (const e of this.edges.values()) e.share = this.shareOf(e, e.raw);
  }

  /** The share of the seeds' total an edge carries: 0 on other chains (their amounts are in other units). */
  shareOf(e, raw) {
    if (!this.isHome(e)) return 0;
    return ratio(raw, this.totals.get(e.asset)?.raw);
  }

  isHome(e) {
    return !e.chain || !this.trace || e.chain === this.trace.chain;
  }

  /** The graph node of an address: on `chain` (default: the trace's own) when the trace spans several. */
  idOf(address, chain) {
    if (!this.multichain) return address;
    const id = `${chain || this.trace?.chain || "ethereum"}:${address}`;
    if (this.nodes.has(id) || chain) return id;
    for (const n of this.nodes.values()) if (n.address === address) return n.id;
    return id;
  }

  /** Replace the graph with a newer export; true when anything drawn changed. */
  setGraph(g) {
    const nodes = new Map();
    this.multichain = g.nodes.some((n) => chainOf(n.id) !== null);
    for (const n of g.nodes) {
      nodes.set(n.id, {...n, kind: kindOf(n), address: addressOf(n.id), chain: n.chain || chainOf(n.id),
        chainTag: this.multichain ? n.chain || chainOf(n.id) : null});
    }
    const edges = new Map();
    for (const e of g.edges) {
      // A bridge edge shares its transaction with the payout hop it stands for: its key names the depositor.
      const key = `${e.kind === "bridge" ? `bridge>${e.source}>` : ""}${e.chain || ""}:${e.tx_hash}:${e.position}`;
      const raw = BigInt(e.amount_raw);
      edges.set(key, {...e, key, raw, time: Date.parse(e.timestamp || "") || 0, share: this.shareOf(e, raw)});
    }
    let roles = "";
    for (const n of nodes.values()) {
      if (n.kind !== "intermediate" && n.kind !== "dust") roles += n.address.slice(2, 8) + (n.chain || "") + n.kind;
    }
    let statuses = 0;
    for (const e of edges.values()) statuses += e.status === "exit" ? 3 : e.status === "stopped" ? 1 : 0;
    const signature = `${nodes.size}/${edges.size}/${statuses}/${roles}`;
    const changed = signature !== this.signature;
    this.nodes = nodes;
    this.edges = edges;
    this.signature = signature;
    this.inEdges = new Map();
    this.outEdges = new Map();
    for (const e of edges.values()) {
      push(this.outEdges, e.source, e);
      push(this.inEdges, e.target, e);
    }
    return changed;
  }

  setExits(exits) {
    this.exits = exits;
  }

  /** The seeds' graph node ids (on the trace's own chain). */
  get seeds() {
    return this.trace ? this.trace.seeds.map((s) => this.idOf(s, this.trace.chain)) : [];
  }

  assets() {
    return [...this.totals.values()];
  }

  stats() {
    let maxDepth = 0;
    let tMin = Infinity;
    let tMax = -Infinity;
    for (const e of this.edges.values()) {
      maxDepth = Math.max(maxDepth, e.depth || 0);
      if (e.time) {
        tMin = Math.min(tMin, e.time);
        tMax = Math.max(tMax, e.time);
      }
    }
    return {maxDepth, tMin: isFinite(tMin) ? tMin : 0, tMax: isFinite(tMax) ? tMax : 0};
  }

  exitCount() {
    let n = 0;
    for (const node of this.nodes.values()) if (node.kind === "exit") n++;
    return n;
  }

  /** Flagged amounts in and out of one address, per asset, and its hops. */
  flows(address) {
    const sum = (list) => {
      const m = new Map();
      for (const e of list) {
        if (e.kind === "bridge") continue; // restates the payout hop into the same wallet
        const t = m.get(e.asset) || {asset: e.asset, symbol: e.symbol, decimals: e.decimals, raw: 0n, count: 0};
        t.raw += e.raw;
        t.count += 1;
        m.set(e.asset, t);
      }
      for (const t of m.values()) t.amount = unitsOf(t.raw, t.decimals);
      return [...m.values()];
    };
    const ins = this.inEdges.get(address) || [];
    const outs = this.outEdges.get(address) || [];
    return {in: sum(ins), out: sum(outs), inEdges: ins, outEdges: outs};
  }

  /**
   * The drawn graph: edges kept by the filters, peel chains collapsed into one node each, wallets
   * that sit side by side (same senders, same recipients: a fan-out) grouped into one node, and
   * parallel hops between two nodes in one asset merged into one edge.
   * filters: {maxDepth, asset, minAmount, timeMax, collapse, group, dust, expanded: Set}
   */
  view(f) {
    const minShare = f.asset ? 0 : (Number(f.minAmount) || 0) / 100;
    const minUnits = f.asset ? Number(f.minAmount) || 0 : 0;
    const kept = [];
    for (const e of this.edges.values()) {
      if (f.maxDepth && e.depth > f.maxDepth) continue;
      if (f.asset && e.asset !== f.asset) continue;
      if (f.timeMax && e.time && e.time > f.timeMax) continue;
      if (!f.dust && isDust(e)) continue;
      // A share of the seeds' total means nothing on another chain (other units): kept.
      if (minShare && this.isHome(e) && e.share < minShare) continue;
      if (minUnits && Number(e.amount) < minUnits) continue;
      kept.push(e);
    }
    const expanded = f.expanded || new Set();
    const groupOf = f.collapse ? this.peelChains(kept, expanded) : new Map();
    if (f.group) this.parallelWallets(kept, groupOf, expanded);
    const nodeIds = new Set(this.seeds.filter((s) => this.nodes.has(s)));
    const merged = new Map();
    for (const e of kept) {
      const s = groupOf.get(e.source)?.id || e.source;
      const t = groupOf.get(e.target)?.id || e.target;
      if (s === t) continue; // inside a collapsed chain
      nodeIds.add(s);
      nodeIds.add(t);
      const id = `${s}>${t}>${e.asset}`;
      let m = merged.get(id);
      if (!m) {
        m = {id, source: s, target: t, asset: e.asset, symbol: e.symbol, decimals: e.decimals, raw: 0n, share: 0,
          hops: [], status: e.status, reason: e.reason, depth: e.depth, chain: e.chain, bridge: false};
        merged.set(id, m);
      }
      m.raw += e.raw;
      m.share += e.share;
      m.hops.push(e);
      if (e.kind === "bridge") m.bridge = true;
      if (e.status === "exit" || (e.status === "stopped" && m.status === "followed")) m.status = e.status;
      if (e.status !== "stopped" || e.reason !== "below_threshold") m.reason = e.reason;
      m.depth = Math.min(m.depth, e.depth);
    }
    for (const m of merged.values()) m.amount = unitsOf(m.raw, m.decimals);
    const chains = new Map();
    for (const c of groupOf.values()) chains.set(c.id, c);
    const nodes = [];
    for (const id of nodeIds) {
      if (chains.has(id)) nodes.push(chains.get(id));
      else if (this.nodes.has(id)) nodes.push(this.nodes.get(id));
    }
    return {nodes, edges: [...merged.values()], chains, groupOf};
  }

  /**
   * Peel chains among the kept edges: runs of intermediate wallets where each sends its largest
   * outflow to a fresh wallet funded by it alone (and peels a little elsewhere). Returns
   * address -> chain for every member of a run of three or more.
   */
  peelChains(kept, expanded) {
    const outs = new Map();
    const ins = new Map();
    for (const e of kept) {
      if (e.source === e.target) continue;
      const o = outs.get(e.source) || new Map();
      o.set(e.target, (o.get(e.target) || 0) + e.share);
      outs.set(e.source, o);
      const i = ins.get(e.target) || new Set();
      i.add(e.source);
      ins.set(e.target, i);
    }
    const wallet = (a) => this.nodes.get(a)?.kind === "intermediate";
    const next = new Map();
    for (const [v, o] of outs) {
      if (!wallet(v) || o.size > 4) continue;
      let best = null;
      let bestShare = -1;
      for (const [w, share] of o) if (share > bestShare) { best = w; bestShare = share; }
      if (best && wallet(best) && ins.get(best)?.size === 1) next.set(v, best);
    }
    const hasPrev = new Set(next.values());
    const groupOf = new Map();
    for (const head of next.keys()) {
      if (hasPrev.has(head)) continue;
      const members = [head];
      const seen = new Set(members);
      let cur = head;
      while (next.has(cur) && !seen.has(next.get(cur))) {
        cur = next.get(cur);
        members.push(cur);
        seen.add(cur);
      }
      if (members.length < 3) continue;
      const id = `peel:${head}`;
      if (expanded.has(id)) continue;
      const depth = Math.min(...members.map((m) => this.nodes.get(m)?.depth ?? 0));
      const chain = {id, kind: "peel", members, depth, role: "peel", entity: null};
      for (const m of members) groupOf.set(m, chain);
    }
    return groupOf;
  }

  /**
   * Fan-outs: intermediate wallets with the same senders and the same recipients (after peel
   * chains are collapsed), three or more of them, become one node. Adds to `groupOf`.
   */
  parallelWallets(kept, groupOf, expanded) {
    const at = (a) => groupOf.get(a)?.id || a;
    const ins = new Map();
    const outs = new Map();
    for (const e of kept) {
      const s = at(e.source);
      const t = at(e.target);
      if (s === t) continue;
      if (!ins.has(t)) ins.set(t, new Set());
      ins.get(t).add(s);
      if (!outs.has(s)) outs.set(s, new Set());
      outs.get(s).add(t);
    }
    const bySignature = new Map();
    for (const [a, senders] of ins) {
      if (groupOf.has(a) || this.nodes.get(a)?.kind !== "intermediate") continue;
      const key = `${[...senders].sort().join(",")}|${[...(outs.get(a) || [])].sort().join(",")}`;
      const list = bySignature.get(key);
      if (list) list.push(a);
      else bySignature.set(key, [a]);
    }
    for (const members of bySignature.values()) {
      if (members.length < 3) continue;
      members.sort();
      const id = `group:${members[0]}`;
      if (expanded.has(id)) continue;
      const depth = Math.min(...members.map((m) => this.nodes.get(m)?.depth ?? 0));
      const group = {id, kind: "group", members, depth, role: "group", entity: null};
      for (const m of members) groupOf.set(m, group);
    }
  }

  /**
   * Where each seed's money went, for one asset: hops into exits and stopping services are
   * attributed to seeds pro rata (the haircut idea, in floating point: a picture, not evidence),
   * walking hops by depth then block. Returns {seeds: [{id, total}], flows: [{seed, group, entity,
   * value}]} in display units.
   */
  destinations(asset) {
    const total = this.totals.get(asset);
    if (!total) return {seeds: [], flows: []};
    const scale = 10 ** (total.decimals || 0);
    const seeds = this.seeds;
    const index = new Map(seeds.map((s, i) => [s, i]));
    const comp = new Map();
    const perSeed = new Float64Array(seeds.length);
    const flows = new Map();
    // Only the trace's own chain: amounts elsewhere are in other units, and a bridge edge
    // restates a payout on the destination chain.
    const edges = [...this.edges.values()].filter((e) => e.asset === asset && this.isHome(e) && e.kind !== "bridge")
      .sort((a, b) => a.depth - b.depth || a.block_number - b.block_number || (a.key < b.key ? -1 : 1));
    for (const e of edges) {
      const value = Number(e.raw) / scale;
      let vec;
      if (index.has(e.source)) {
        if (index.has(e.target)) continue;
        vec = new Float64Array(seeds.length);
        vec[index.get(e.source)] = value;
        perSeed[index.get(e.source)] += value;
      } else {
        const c = comp.get(e.source);
        const sum = c ? c.reduce((a, b) => a + b, 0) : 0;
        vec = new Float64Array(seeds.length);
        for (let i = 0; i < seeds.length; i++) vec[i] = sum > 0 ? (c[i] / sum) * value : value / seeds.length;
      }
      const dest = this.destinationOf(e);
      if (dest) {
        for (let i = 0; i < seeds.length; i++) {
          if (!vec[i]) continue;
          const k = `${i}|${dest.group}|${dest.entity || ""}`;
          const f = flows.get(k) || {seed: seeds[i], group: dest.group, entity: dest.entity, value: 0};
          f.value += vec[i];
          flows.set(k, f);
        }
      } else {
        let c = comp.get(e.target);
        if (!c) comp.set(e.target, (c = new Float64Array(seeds.length)));
        for (let i = 0; i < seeds.length; i++) c[i] += vec[i];
      }
    }
    const reached = new Float64Array(seeds.length);
    for (const f of flows.values()) reached[index.get(f.seed)] += f.value;
    const out = [...flows.values()];
    seeds.forEach((s, i) => {
      const rest = perSeed[i] - reached[i];
      if (rest > perSeed[i] * 0.001) out.push({seed: s, group: "unresolved", entity: null, value: rest});
    });
    return {seeds: seeds.map((s, i) => ({id: s, total: perSeed[i]})).filter((s) => s.total > 0), flows: out};
  }

  destinationOf(e) {
    if (e.status === "followed" && e.reason === "crossing") {
      // A bridge deposit followed on the far chain: it crossed, it did not exit (counted there).
      const n = this.nodes.get(e.target);
      return {group: "bridge", entity: n?.entity || null};
    }
    if (e.status === "exit") {
      const n = this.nodes.get(e.target);
      return {group: "exits", entity: n?.entity || shortAddr(e.target)};
    }
    if (e.status !== "stopped") return null;
    if (e.reason === "below_threshold") return {group: "dust", entity: null};
    const n = this.nodes.get(e.target);
    const kind = n ? n.kind : "stopped";
    const group = ["mixer", "swap", "bridge", "hub"].includes(kind) ? kind : "depth";
    return {group, entity: n?.entity || null};
  }
}

function push(map, key, value) {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}
