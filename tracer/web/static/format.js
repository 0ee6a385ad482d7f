// Formatting and DOM helpers. Amounts arrive as exact decimal strings (see the API's
// serialize.amount); they are shortened for display only, never through floating point, and the
// exact text stays available in a tooltip.

const INT = /^\d+$/;

export function groupDigits(intPart) {
  return intPart.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

/** "2723.323886089415707794" -> "2,723.32" ; "0.000012345" -> "0.00001234" (truncated, not rounded). */
export function shortAmount(amount) {
  const text = String(amount ?? "0");
  const [whole, frac = ""] = text.split(".");
  if (!INT.test(whole) || (frac && !INT.test(frac))) return text;
  let keep;
  if (whole !== "0") {
    keep = whole.length >= 7 ? 0 : whole.length >= 4 ? 2 : 4;
  } else {
    const firstNonZero = frac.search(/[1-9]/);
    keep = firstNonZero < 0 ? 0 : Math.min(frac.length, firstNonZero + 4);
  }
  const shown = frac.slice(0, keep).replace(/0+$/, "");
  return groupDigits(whole) + (shown ? "." + shown : "");
}

export function amountText(a) {
  // a: {amount, symbol, asset}
  return `${shortAmount(a.amount)} ${symbolOf(a)}`;
}

export function exactText(a) {
  const [whole, frac] = String(a.amount).split(".");
  return `${groupDigits(whole)}${frac ? "." + frac : ""} ${symbolOf(a)}`;
}

export function symbolOf(a) {
  if (a.symbol) return a.symbol;
  return a.asset === "native" ? "ETH" : shortAddr(a.asset || "?");
}

/** Display units of a raw amount (BigInt) with `decimals`, exact. */
export function unitsOf(raw, decimals) {
  const d = decimals || 0;
  const s = raw.toString();
  if (!d) return s;
  const padded = s.padStart(d + 1, "0");
  const whole = padded.slice(0, padded.length - d);
  const frac = padded.slice(padded.length - d).replace(/0+$/, "");
  return frac ? `${whole}.${frac}` : whole;
}

/** raw / total as a float in [0, 1], computed in integers first so huge wei amounts stay precise. */
export function ratio(raw, total) {
  if (!total || total <= 0n) return 0;
  return Number((raw * 1000000000n) / total) / 1e9;
}

/** US dollars, whole dollars with thousands separators ("$1,234,567"); "–" when unknown. */
export function usdText(usd) {
  if (usd == null) return "–";
  const n = Number(usd);
  return (n < 0 ? "-$" : "$") + Math.round(Math.abs(n)).toLocaleString("en-US");
}

export function pct(share) {
  if (!share) return "0%";
  const p = share * 100;
  if (p < 0.01) return "<0.01%";
  return (p < 10 ? p.toFixed(2) : p.toFixed(1)) + "%";
}

export function shortAddr(a) {
  a = addressOf(a);
  return a && a.length > 12 ? `${a.slice(0, 6)}…${a.slice(-4)}` : a || "";
}

// A multichain trace's graph names its nodes "<chain>:<address>" (an address on two chains is two nodes).
const QUALIFIED = /^([a-z][a-z0-9-]{0,31}):(0x[0-9a-f]{40}|[123mnT][1-9A-HJ-NP-Za-km-z]{24,34}|(?:bc|tb|bcrt)1[02-9ac-hj-np-z]{6,87})$/;

/** The address of a graph node id (the id itself on a single-chain trace). */
export function addressOf(id) {
  const m = QUALIFIED.exec(id || "");
  return m ? m[2] : id;
}

/** The chain a graph node id names, or null for a plain address. */
export function chainOf(id) {
  const m = QUALIFIED.exec(id || "");
  return m ? m[1] : null;
}

export function shortHash(h) {
  return h ? `${h.slice(0, 10)}…` : "";
}

export function timeText(iso) {
  if (!iso) return "–";
  return iso.replace("T", " ").replace(/:\d\dZ$/, " UTC").replace(/Z$/, " UTC");
}

export function ago(iso) {
  if (!iso) return "";
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (s < 60) return `${Math.round(s)}s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return iso.slice(0, 10);
}

/** el("div", {class: "x", onclick: f, dataset: {k: v}}, "text", child, ...) — text is never parsed as HTML. */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k === "style") Object.assign(node.style, v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

export function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
}

// Entity colours: distinguishable (colour-blind-aware first), and clear of the colours that mean a
// kind of node (seed red, mixer purple, swap teal, bridge orange, hub brown, wallet grey).
const PALETTE = ["#0072b2", "#009e73", "#cc79a7", "#56b4e9", "#d4a300", "#66a61e", "#e7298a", "#393b79",
  "#17becf", "#bcbd22", "#4e79a7", "#af7aa1"];

function hash(text) {
  let h = 2166136261;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 16777619);
  return h >>> 0;
}

/** One colour per entity, chosen from its name (so Binance keeps its colour from trace to trace)
 * unless a larger entity of the same trace took it first. */
export class EntityColours {
  constructor() { this.map = new Map(); }
  /** Assign in the order given (largest exposure first), keeping colours already given. */
  assign(entities) { for (const e of entities) this.get(e); }
  get(entity) {
    const key = entity || "(unknown)";
    if (!this.map.has(key)) {
      const used = new Set(this.map.values());
      const start = hash(key.toLowerCase()) % PALETTE.length;
      let colour = PALETTE[start];
      for (let i = 0; i < PALETTE.length && used.has(colour); i++) colour = PALETTE[(start + i) % PALETTE.length];
      this.map.set(key, colour);
    }
    return this.map.get(key);
  }
}

export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const area = el("textarea", {style: {position: "fixed", opacity: "0"}}, text);
    document.body.append(area);
    area.select();
    const ok = document.execCommand("copy");
    area.remove();
    return ok;
  }
}
