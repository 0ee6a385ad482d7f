// The money-flow graph, drawn by Cytoscape.js and laid out left to right by dagre: one node per
// address (or collapsed peel chain), one edge per sender/recipient/asset, width by the share of
// the seeds' total it carries, exits coloured by entity.

import {amountText} from "./format.js";
import {KINDS, nodeTitle} from "./model.js";

/* global cytoscape, cytoscapeDagre */
cytoscape.use(cytoscapeDagre);

export const KIND_COLOURS = {
  seed: "#e5484d",
  intermediate: "#8da2bd",
  peel: "#dfe6ef",
  group: "#c9d5e3",
  mixer: "#8e4ec6",
  swap: "#12a594",
  bridge: "#f76b15",
  hub: "#7d6b5d",
  stopped: "#b8ad95",
  exit: "#30a46c",
  dust: "#ffffff",
};

const FONT = "Inter, system-ui, Roboto, Helvetica, Arial, sans-serif";

const STYLE = [
  {selector: "node", style: {
    "shape": "data(shape)", "width": "data(size)", "height": "data(size)",
    "background-color": "data(colour)", "border-width": 1.5, "border-color": "data(border)",
    "label": "data(label)", "font-family": FONT, "font-size": 10, "color": "#1c2838",
    "text-valign": "bottom", "text-halign": "center", "text-margin-y": 4,
    "text-background-color": "#ffffff", "text-background-opacity": 0.85, "text-background-padding": 1.5,
    "text-background-shape": "round-rectangle", "min-zoomed-font-size": 6, "text-wrap": "none",
    "transition-property": "opacity, border-width, border-color", "transition-duration": 150,
  }},
  {selector: "node[kind = 'intermediate']", style: {"font-size": 8, "color": "#4b5b70", "min-zoomed-font-size": 9}},
  {selector: "node[kind = 'dust']", style: {"label": "", "border-color": "#aab6c5"}},
  {selector: "node[kind = 'seed']", style: {"font-weight": 700, "font-size": 16, "color": "#9b1c22"}},
  {selector: "node[kind = 'exit']", style: {"font-weight": 700, "font-size": 19, "border-width": 2}},
  {selector: "node[kind = 'peel']", style: {
    "width": "data(width)", "border-style": "dashed", "border-width": 1.5, "font-size": 9, "color": "#3a4b61",
    "text-valign": "center", "text-margin-y": 0, "text-background-opacity": 0}},
  {selector: "node[kind = 'group']", style: {
    "width": "data(width)", "border-style": "double", "border-width": 3, "font-size": 9, "color": "#3a4b61",
    "text-valign": "center", "text-margin-y": 0, "text-background-opacity": 0}},
  {selector: "node[kind = 'mixer'], node[kind = 'swap'], node[kind = 'bridge'], node[kind = 'hub']",
    style: {"font-weight": 600, "font-size": 16}},
  {selector: "edge", style: {
    "curve-style": "bezier", "width": "data(width)", "line-color": "data(colour)",
    "target-arrow-shape": "triangle", "target-arrow-color": "data(colour)", "arrow-scale": 0.7,
    "opacity": 0.8, "label": "data(label)", "font-family": FONT, "font-size": 8, "color": "#3f4e63",
    "text-rotation": "autorotate", "min-zoomed-font-size": 10, "text-background-color": "#ffffff",
    "text-background-opacity": 0.9, "text-background-padding": 1,
    "transition-property": "opacity, line-color", "transition-duration": 150,
  }},
  {selector: "edge[status = 'stopped']", style: {"line-style": "dashed"}},
  {selector: "edge[dust = 1]", style: {"opacity": 0.5, "label": ""}},
  // A bridge deposit's sender to its payout's recipient on the destination chain.
  {selector: "edge[bridge = 1]", style: {"line-style": "dashed", "line-color": "#6f42c1",
    "target-arrow-color": "#6f42c1"}},
  {selector: ".faded", style: {"opacity": 0.25, "text-opacity": 0.35}},
  {selector: "node.on-path", style: {"border-width": 4, "border-color": "#f5a524", "opacity": 1, "z-index": 20}},
  {selector: "edge.on-path", style: {"line-color": "#f5a524", "target-arrow-color": "#f5a524", "opacity": 1,
    "z-index": 20, "min-zoomed-font-size": 4}},
  {selector: "node:selected", style: {"border-width": 4, "border-color": "#1f6feb", "overlay-opacity": 0}},
  {selector: "edge:selected", style: {"line-color": "#1f6feb", "target-arrow-color": "#1f6feb", "opacity": 1}},
];

function darker(hex) {
  const n = parseInt(hex.slice(1), 16);
  const f = (v) => Math.max(0, Math.round(v * 0.62)).toString(16).padStart(2, "0");
  return `#${f(n >> 16)}${f((n >> 8) & 255)}${f(n & 255)}`;
}

export class GraphView {
  constructor(container, {onSelect, onBackground, tooltip}) {
    this.cy = cytoscape({
      container, elements: [], style: STYLE, minZoom: 0.05, maxZoom: 5,
      boxSelectionEnabled: false, selectionType: "single",
    });
    this.userMoved = false;
    this.tooltip = tooltip;
    this.layoutRunning = null;
    this.cy.on("dragpan scrollzoom pinchzoom", () => { this.userMoved = true; });
    this.cy.on("tap", "node", (ev) => onSelect({type: "node", id: ev.target.id()}));
    this.cy.on("tap", "edge", (ev) => onSelect({type: "edge", id: ev.target.id()}));
    this.cy.on("tap", (ev) => { if (ev.target === this.cy) onBackground(); });
    this.cy.on("mouseover", "node, edge", (ev) => this.showTip(ev));
    this.cy.on("mouseout", "node, edge", () => this.hideTip());
    this.cy.on("viewport drag", () => this.hideTip());
    this.cy.on("zoom", () => this.scheduleLabels());
    this.labelFrame = null;
  }

  /** Keep the names that matter (exits, seeds, services) legible when zoomed out to see a whole
   * trace: their font grows as the zoom shrinks, up to a limit, so they render at a readable size. */
  scheduleLabels() {
    if (this.labelFrame) return;
    this.labelFrame = requestAnimationFrame(() => {
      this.labelFrame = null;
      const z = this.cy.zoom();
      const size = (px) => Math.min(px * 3.2, Math.max(px, px / z));
      this.cy.style()
        .selector("node[kind = 'exit']").style("font-size", size(12.5))
        .selector("node[kind = 'seed']").style("font-size", size(11))
        .selector("node[kind = 'mixer'], node[kind = 'swap'], node[kind = 'bridge'], node[kind = 'hub']")
        .style("font-size", size(10.5))
        .selector("edge.on-path").style("font-size", size(10))
        .update();
    });
  }

  /** Draw `view` (from TraceModel.view); returns true when nodes were added or removed. */
  update(view, model, colours) {
    const cy = this.cy;
    const nodes = new Map();
    for (const n of view.nodes) nodes.set(n.id, this.nodeData(n, model, colours));
    const edges = new Map();
    for (const e of view.edges) edges.set(e.id, this.edgeData(e, model, colours));
    let structural = false;
    cy.batch(() => {
      cy.elements().forEach((ele) => {
        if (!(ele.isNode() ? nodes : edges).has(ele.id())) {
          cy.remove(ele);
          if (ele.isNode()) structural = true;
        }
      });
      const add = [];
      for (const [id, data] of nodes) {
        const ele = cy.getElementById(id);
        if (ele.nonempty()) ele.data(data);
        else { add.push({group: "nodes", data}); structural = true; }
      }
      for (const [id, data] of edges) {
        const ele = cy.getElementById(id);
        if (ele.nonempty()) ele.data(data);
        else add.push({group: "edges", data});
      }
      cy.add(add);
    });
    return structural;
  }

  nodeData(n, model, colours) {
    const kind = n.kind;
    let colour = KIND_COLOURS[kind] || "#999";
    if (kind === "exit") colour = colours.get(n.entity);
    let size = {seed: 36, intermediate: 14, peel: 22, group: 24, mixer: 32, swap: 30, bridge: 32, hub: 28, stopped: 14,
      exit: 30, dust: 8}[kind] || 14;
    if (kind === "exit" || kind === "mixer" || kind === "bridge" || kind === "swap") {
      size += Math.min(34, 40 * Math.sqrt(this.received(n.id, model)));
    }
    const label = kind === "peel" ? `peel ×${n.members.length}` : kind === "group" ? `${n.members.length} wallets`
      : nodeTitle(n);
    return {
      id: n.id, kind, label, shape: KINDS[kind]?.shape || "ellipse", colour, border: kind === "dust" ? "#aab6c5" :
        darker(colour === "#ffffff" ? "#cccccc" : colour), size, width: kind === "peel" || kind === "group" ? 58 : size,
      entity: n.entity || "",
    };
  }

  received(id, model) {
    // The largest share of any asset's stolen total that reached this node.
    let best = 0;
    const f = model.flows(id);
    for (const t of f.in) {
      const total = model.totals.get(t.asset)?.raw;
      if (total) best = Math.max(best, Number((t.raw * 10000n) / total) / 10000);
    }
    return best;
  }

  edgeData(e, model, colours) {
    const target = model.nodes.get(e.target);
    const dust = e.status === "stopped" && e.reason === "below_threshold";
    let colour = "#9aabbf";
    if (dust) colour = "#c9d1db";
    else if (e.status === "exit") colour = colours.get(target?.entity);
    else if (e.status === "stopped" && target) colour = KIND_COLOURS[target.kind] || "#b8ad95";
    const width = Math.min(16, 1 + 14 * Math.sqrt(Math.max(0, e.share)));
    let label = amountText(e) + (e.hops.length > 1 ? ` · ${e.hops.length} hops` : "");
    if (e.bridge) {
      const b = e.hops.find((h) => h.kind === "bridge");
      label = `${b.protocol || "bridge"} → ${b.chain}: ${label} (${Math.round((b.confidence ?? 0) * 100)}%)`;
    }
    return {id: e.id, source: e.source, target: e.target, colour, width, label, status: e.status,
      dust: dust ? 1 : 0, bridge: e.bridge ? 1 : 0};
  }

  /**
   * Dagre left to right (one column per hop), then stretched sideways to the container's shape:
   * dagre packs columns tightly, and a wide fan-out would otherwise make a tall, thin picture.
   * Existing nodes glide to their new places; new ones appear in theirs.
   */
  layout({animate = false, fit = true} = {}) {
    const cy = this.cy;
    const nodes = cy.nodes();
    if (!nodes.length) return;
    if (this.layoutRunning) this.layoutRunning.stop();
    const before = new Map();
    nodes.forEach((n) => { if (n.data("placed")) before.set(n.id(), {...n.position()}); });
    const big = nodes.length > 400;
    cy.layout({name: "dagre", rankDir: "LR", nodeSep: big ? 3 : 7, rankSep: 70, edgeSep: 3,
      ranker: "network-simplex", animate: false, fit: false}).run();
    const bb = nodes.boundingBox({includeLabels: false});
    const have = bb.w / Math.max(1, bb.h);
    const want = cy.width() / Math.max(1, cy.height());
    const k = have < want ? Math.min(12, want / Math.max(have, 0.01)) : 1;
    const target = new Map();
    nodes.forEach((n) => {
      const p = n.position();
      target.set(n.id(), {x: bb.x1 + (p.x - bb.x1) * k, y: p.y});
    });
    const moving = animate && before.size && nodes.length < 800;
    cy.batch(() => nodes.forEach((n) => {
      n.position(moving && before.has(n.id()) ? before.get(n.id()) : target.get(n.id()));
      n.data("placed", 1);
    }));
    this.layoutRunning = cy.layout({name: "preset", positions: (n) => target.get(n.id()), animate: moving,
      animationDuration: 350, fit: fit && !this.userMoved, padding: 24});
    this.layoutRunning.run();
  }

  fit() {
    this.userMoved = false;
    this.cy.animate({fit: {eles: this.cy.elements(), padding: 30}}, {duration: 250});
  }

  /** Fade everything but the given nodes/edges, which are drawn as a path. */
  highlight(nodeIds, edgeIds) {
    const cy = this.cy;
    cy.batch(() => {
      cy.elements().removeClass("on-path").addClass("faded");
      for (const id of nodeIds) cy.getElementById(id).removeClass("faded").addClass("on-path");
      for (const id of edgeIds) cy.getElementById(id).removeClass("faded").addClass("on-path");
    });
  }

  /** Fade everything but these nodes and the edges among them and into them. */
  focus(nodeIds) {
    const cy = this.cy;
    const keep = cy.collection(nodeIds.map((id) => cy.getElementById(id)).filter((e) => e.nonempty()));
    cy.batch(() => {
      cy.elements().removeClass("on-path").addClass("faded");
      keep.removeClass("faded");
      keep.incomers().removeClass("faded");
    });
  }

  clearHighlight() {
    this.cy.elements().removeClass("faded on-path");
  }

  select(id, {center = false} = {}) {
    this.cy.elements(":selected").unselect();
    if (!id) return;
    const ele = this.cy.getElementById(id);
    if (ele.nonempty()) {
      ele.select();
      if (center) this.cy.animate({center: {eles: ele}}, {duration: 250});
    }
  }

  /** Screen position of a node centre, relative to the graph container. */
  position(id) {
    const ele = this.cy.getElementById(id);
    return ele.nonempty() ? ele.renderedPosition() : null;
  }

  png() {
    return this.cy.png({output: "blob", full: true, scale: 2, bg: "#ffffff", maxWidth: 12000, maxHeight: 12000});
  }

  showTip(ev) {
    if (!this.tooltip) return;
    const content = this.tooltip.content(ev.target);
    if (!content) return;
    const box = this.tooltip.box;
    box.replaceChildren(...content);
    box.hidden = false;
    const p = ev.renderedPosition || ev.target.renderedPosition?.() || {x: 0, y: 0};
    const w = this.cy.container().clientWidth;
    box.style.left = `${Math.min(p.x + 14, w - box.offsetWidth - 8)}px`;
    box.style.top = `${p.y + 14}px`;
  }

  hideTip() {
    if (this.tooltip) this.tooltip.box.hidden = true;
  }
}

export function legendItems() {
  return Object.entries(KINDS).map(([kind, info]) => ({kind, label: info.label, short: info.short, shape: info.shape,
    colour: KIND_COLOURS[kind]}));
}
