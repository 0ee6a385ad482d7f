// Cases in the investigator page: the list in the sidebar, and the open case beside the graph
// (its traces, the addresses two of them share, its notes with a form to add one). Titles and
// notes are written by API callers: they reach the DOM only as text (el() makes text nodes).

import {ApiError} from "./api.js";
import {ago, clear, el, shortAddr, timeText} from "./format.js";

const $ = (id) => document.getElementById(id);

export class CasesView {
  constructor({api, openTrace, toast}) {
    this.api = api;
    this.openTrace = openTrace;
    this.toast = toast;
    this.caseId = null;
    this.current = null;
  }

  init() {
    $("cases-refresh").addEventListener("click", () => this.loadList());
    $("case-form").addEventListener("submit", (ev) => this.create(ev));
    $("case-close").addEventListener("click", () => this.close());
    $("note-form").addEventListener("submit", (ev) => this.addNote(ev));
    $("case-add-trace").addEventListener("click", () => this.addOpenTrace());
  }

  async loadList() {
    const list = $("case-list");
    try {
      const page = await this.api.get("/v1/cases?limit=30");
      clear(list);
      if (!page.items.length) list.append(el("li", {class: "muted"}, "No cases yet."));
      for (const c of page.items) {
        list.append(el("li", {class: c.id === this.caseId ? "active" : "", dataset: {caseId: c.id}},
          el("button", {type: "button", onclick: () => this.open(c.id)},
            el("span", {class: "t-head"}, el("b", {}, `#${c.id}`), " ", c.title),
            el("span", {class: "t-meta"}, el("span", {class: `pill ${c.status}`}, c.status),
              ` ${c.traces.length} trace${c.traces.length === 1 ? "" : "s"} · ${ago(c.updated_at)}`))));
      }
    } catch (err) {
      clear(list).append(el("li", {class: "muted"}, err instanceof ApiError && err.status === 401
        ? "Enter an API key to list cases." : `Could not list cases: ${err.message}`));
    }
  }

  async create(ev) {
    ev.preventDefault();
    const title = $("case-title-input").value.trim();
    if (!title) return;
    try {
      const c = await this.api.post("/v1/cases", {title});
      $("case-title-input").value = "";
      await this.loadList();
      await this.open(c.id);
    } catch (err) {
      this.toast(`Could not open a case: ${err.message}`, true);
    }
  }

  /** Show case `id` beside the graph and open its first trace when none of its traces is open. */
  async open(id, {traceId = null, push = true} = {}) {
    this.caseId = Number(id);
    for (const li of document.querySelectorAll("#case-list li")) {
      li.classList.toggle("active", Number(li.dataset.caseId) === this.caseId);
    }
    if (push) {
      const url = `/ui?case=${this.caseId}${traceId ? `&trace=${traceId}` : ""}`;
      if (location.pathname + location.search !== url) history.pushState({case: this.caseId}, "", url);
    }
    await this.render();
    const first = this.current?.traces?.[0];
    if (traceId) await this.openTrace(traceId, {push: false});
    else if (first) await this.openTrace(first, {push: false});
  }

  close() {
    this.caseId = null;
    this.current = null;
    $("case-panel").hidden = true;
    for (const li of document.querySelectorAll("#case-list li")) li.classList.remove("active");
  }

  async render() {
    const panel = $("case-panel");
    panel.hidden = false;
    const body = clear($("case-body"));
    try {
      this.current = await this.api.get(`/v1/cases/${this.caseId}`);
    } catch (err) {
      this.current = null;
      body.append(el("p", {class: "error"}, err instanceof ApiError && err.status === 404
        ? `No case #${this.caseId} for this key.` : `Could not load the case: ${err.message}`));
      return;
    }
    const c = this.current;
    document.title = `tracer · case #${c.id}`;
    $("case-heading").textContent = `Case #${c.id}: ${c.title}`;
    body.append(el("div", {class: "t-meta"}, el("span", {class: `pill ${c.status}`}, c.status),
      ` updated ${ago(c.updated_at)}`));
    if (c.description) body.append(el("p", {class: "case-desc"}, c.description));
    const traces = el("ul", {class: "case-traces"});
    for (const t of c.traces) {
      traces.append(el("li", {}, el("button", {type: "button", class: "link", onclick: () => this.openTrace(t)},
        `trace #${t}`)));
    }
    if (!c.traces.length) traces.append(el("li", {class: "muted"}, "No traces yet."));
    body.append(el("h3", {}, "Traces"), traces);
    if (c.shared_addresses.length) {
      const shared = el("ul", {class: "case-shared"});
      for (const s of c.shared_addresses.slice(0, 10)) {
        shared.append(el("li", {class: "mono", title: `${s.chain}:${s.address}`},
          `${shortAddr(s.address)} `, el("small", {}, `in traces ${s.traces.map((t) => `#${t}`).join(", ")}`)));
      }
      if (c.shared_addresses.length > 10) shared.append(el("li", {class: "muted"}, `and ${c.shared_addresses.length - 10} more`));
      body.append(el("h3", {}, "Where its traces meet"), shared);
    }
    const notes = el("ul", {class: "case-notes", id: "case-notes"});
    for (const n of c.notes) notes.append(noteItem(n));
    if (!c.notes.length) notes.append(el("li", {class: "muted"}, "No notes yet."));
    body.append(el("h3", {}, "Notes"), notes);
    if (c.tags.length) {
      body.append(el("h3", {}, "Tags"), el("div", {class: "case-tags"},
        ...c.tags.map((t) => el("span", {class: "pill", title: targetText(t.target)}, t.tag))));
    }
  }

  async addNote(ev) {
    ev.preventDefault();
    if (this.caseId === null) return;
    const text = $("note-text").value.trim();
    if (!text) return;
    const about = $("note-about").value;
    const body = {text};
    const selected = window.tracerUI?.state?.selected;
    const traceId = window.tracerUI?.state?.traceId;
    if (about === "address" && selected?.id) {
      const address = selected.id.includes(":") ? selected.id.split(":").pop() : selected.id;
      body.target = {kind: "address", chain: window.tracerUI.model.trace?.chain || "ethereum", address};
    } else if (about === "trace" && traceId) {
      body.target = {kind: "trace", trace_id: traceId};
    }
    try {
      await this.api.post(`/v1/cases/${this.caseId}/notes`, body);
      $("note-text").value = "";
      await this.render();
    } catch (err) {
      this.toast(`Could not add the note: ${err.message}`, true);
    }
  }

  async addOpenTrace() {
    const traceId = window.tracerUI?.state?.traceId;
    if (this.caseId === null || !traceId) {
      this.toast("Open a case and a trace first", true);
      return;
    }
    try {
      await this.api.post(`/v1/cases/${this.caseId}/traces`, {traces: [traceId]});
      this.toast(`Trace #${traceId} added to case #${this.caseId}`);
      await this.render();
      this.loadList();
    } catch (err) {
      this.toast(`Could not add the trace: ${err.message}`, true);
    }
  }

  /** "Also in case N" lines for the address panel: the cases (other than the open one) it is in. */
  alsoIn(info) {
    const others = (info.cases || []).filter((c) => c.case_id !== this.caseId);
    if (!others.length) return null;
    return el("div", {class: "small also-in-case"}, "Also in case ",
      ...others.slice(0, 8).map((c) => el("button", {type: "button", class: "link", title: `${c.title} (via ${c.via})`,
        onclick: () => this.open(c.case_id)}, `#${c.case_id} ${c.title} `)));
  }
}

function targetText(t) {
  if (t.kind === "trace") return `trace #${t.trace_id}`;
  if (t.kind === "address") return `${t.chain}:${t.address}`;
  if (t.kind === "hop") return `hop ${t.transfer_id} of trace #${t.trace_id}`;
  return "the case";
}

function noteItem(n) {
  return el("li", {class: "case-note"},
    el("div", {class: "t-meta"}, `${n.author || "?"} · ${timeText((n.created_at || "").replace(/\.\d+/, ""))}`,
      n.target.kind === "case" ? null : el("small", {}, ` · on ${targetText(n.target)}`)),
    el("div", {class: "note-text"}, n.text));
}
