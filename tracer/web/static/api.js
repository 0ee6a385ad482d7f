// The page's client for the /v1 API: the key in a header (kept in localStorage), problem+json
// errors as ApiError, downloads as blobs, and a server-sent-events reader over fetch (EventSource
// cannot send the X-API-Key header).

const KEY_STORE = "tracer.apiKey";

export class ApiError extends Error {
  constructor(status, title, detail, field) {
    super(detail ? `${title}: ${detail}` : title);
    this.status = status;
    this.title = title;
    this.detail = detail;
    this.field = field;
  }
}

export class StreamUnsupported extends Error {}

export class Api {
  constructor(base = "") {
    this.base = base;
    this.key = localStorage.getItem(KEY_STORE) || "";
    this.onAuthError = () => {};
  }

  setKey(key) {
    this.key = (key || "").trim();
    if (this.key) localStorage.setItem(KEY_STORE, this.key);
    else localStorage.removeItem(KEY_STORE);
  }

  headers(extra = {}) {
    const h = {Accept: "application/json", ...extra};
    if (this.key) h["X-API-Key"] = this.key;
    return h;
  }

  async fail(r) {
    let body = null;
    try { body = await r.json(); } catch { /* not JSON */ }
    const err = new ApiError(r.status, body?.title || r.statusText || "HTTP error", body?.detail, body?.field);
    if (r.status === 401 || r.status === 403) this.onAuthError(err);
    throw err;
  }

  async get(path) {
    const r = await fetch(this.base + path, {headers: this.headers(), cache: "no-store"});
    if (!r.ok) await this.fail(r);
    return r.json();
  }

  async post(path, body) {
    const r = await fetch(this.base + path, {
      method: "POST", headers: this.headers({"Content-Type": "application/json"}), body: JSON.stringify(body),
    });
    if (!r.ok) await this.fail(r);
    return r.json();
  }

  /** Fetch with the key and save the body as a file, named as the server says. */
  async download(path, fallbackName) {
    const r = await fetch(this.base + path, {headers: this.headers({Accept: "*/*"}), cache: "no-store"});
    if (!r.ok) await this.fail(r);
    const disposition = r.headers.get("Content-Disposition") || "";
    const name = /filename="([^"]+)"/.exec(disposition)?.[1] || fallbackName;
    saveBlob(await r.blob(), name);
    return name;
  }

  /**
   * Read a text/event-stream. Resolves when the server ends the stream; rejects with
   * StreamUnsupported when the endpoint is missing (the caller falls back to polling).
   */
  async stream(path, {onOpen, onEvent, signal, lastEventId}) {
    const headers = this.headers({Accept: "text/event-stream"});
    if (lastEventId) headers["Last-Event-ID"] = lastEventId;
    const r = await fetch(this.base + path, {headers, signal, cache: "no-store"});
    const type = r.headers.get("Content-Type") || "";
    if (r.status === 204) return lastEventId || null; // nothing more will come: the trace is over
    if (r.status === 404 || r.status === 405 || r.status === 406 || r.status === 501) {
      throw new StreamUnsupported(`${r.status}`);
    }
    if (!r.ok) await this.fail(r);
    if (!type.startsWith("text/event-stream") || !r.body) throw new StreamUnsupported(type);
    onOpen?.();
    const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let data = [];
    let type_ = "message";
    let id = lastEventId || null;
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buffer += value;
      let nl;
      while ((nl = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, nl).replace(/\r$/, "");
        buffer = buffer.slice(nl + 1);
        if (line === "") {
          if (data.length) onEvent({type: type_, data: data.join("\n"), id});
          data = [];
          type_ = "message";
          continue;
        }
        if (line.startsWith(":")) continue; // comment / keep-alive
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const val = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "data") data.push(val);
        else if (field === "event") type_ = val || "message";
        else if (field === "id") id = val;
      }
    }
    return id;
  }
}

export function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
