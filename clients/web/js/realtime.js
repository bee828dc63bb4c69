// The WebSocket connection (docs/protocol.md, "WebSocket GET /ws"): auth in the first
// frame, requests with ids, topics with `seq`, and reconnecting by itself.
//
// After a drop it reconnects with growing pauses and subscribes again to every topic with
// `since` = the last `seq` applied, so a page catches up without reloading. It never
// reconnects after 4001/4003 (the token is expired or revoked) or 4008 "too many
// connections" / "flooding" (reconnecting would only repeat it).

/** How often a page that shows something says it is still there (presence.heartbeat). */
export const HEARTBEAT_MS = 30000;

const NO_RETRY_PREFIXES = ["too many connections", "flooding"];

/** A refused request: `code` is the protocol's error code ("offline" when not connected). */
export class RequestError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

/**
 * Events (on the object itself): "status" with detail {status}, one of "connecting",
 * "online", "reconnecting", "signedout", "closed"; "push" with a push that names no
 * topic as detail.
 */
export class Realtime extends EventTarget {
  /**
   * @param {() => string|null} getToken
   * @param {string} [path]  the gateway's path: "/ws", or "/rooms/ws" for the session
   *   and networking pages, which a proxy sends to the node that runs the rooms
   */
  constructor(getToken, path = "/ws") {
    super();
    this.getToken = getToken;
    this.path = path;
    this.ws = null;
    this.status = "connecting";
    this.nextId = 1;
    this.pending = new Map();
    this.topics = new Map(); // topic -> {handler, seq}
    this.attempt = 0;
    this.timer = null;
    this.keepalive = null;
    this.user = null;
  }

  /** Open the connection (again). */
  connect() {
    clearTimeout(this.timer);
    this._setStatus(this.attempt ? "reconnecting" : "connecting");
    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${this.path}`;
    const ws = new WebSocket(url);
    this.ws = ws;
    ws.addEventListener("open", () => {
      ws.send(JSON.stringify({ type: "auth", token: this.getToken() }));
    });
    ws.addEventListener("message", (event) => this._onMessage(ws, event.data));
    ws.addEventListener("close", (event) => this._onClose(ws, event));
  }

  /** Close for good (no reconnect). */
  close() {
    clearTimeout(this.timer);
    clearInterval(this.keepalive);
    this._setStatus("closed");
    if (this.ws) this.ws.close(1000);
  }

  /**
   * Send a request; resolves with its result `data`, rejects with RequestError.
   * @param {string} type
   * @param {object} [fields]
   */
  request(type, fields = {}) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN || this.status !== "online") {
      return Promise.reject(new RequestError("offline", "not connected"));
    }
    return this._send(type, fields);
  }

  _send(type, fields) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.ws.send(JSON.stringify({ id, type, ...fields }));
    });
  }

  /**
   * Follow a topic. `handler(kind, data)` is called with kind "snapshot" (data: the
   * subscribe result, with `reset` and `missed`; `first` is true the first time) and with
   * kind "push" for each push. Pushes with a `seq` at or below the last one applied are
   * dropped, as the protocol's client rule says.
   */
  subscribe(topic, handler) {
    this.topics.set(topic, { handler, seq: null });
    if (this.status === "online") return this._subscribe(topic);
    return Promise.resolve(null);
  }

  async _subscribe(topic) {
    const entry = this.topics.get(topic);
    if (!entry) return null;
    const fields = { topic };
    if (entry.seq !== null) fields.since = entry.seq;
    const first = entry.seq === null;
    try {
      const data = await this._send("subscribe", fields);
      entry.seq = data.seq;
      entry.handler("snapshot", { ...data, first });
      return data;
    } catch (error) {
      entry.handler("error", error);
      return null;
    }
  }

  _onMessage(ws, raw) {
    if (ws !== this.ws) return;
    let msg;
    try {
      msg = JSON.parse(raw);
    } catch {
      return;
    }
    if (msg.type === "auth.ok") {
      this.user = msg.user;
      this.attempt = 0;
      this._setStatus("online");
      clearInterval(this.keepalive);
      // The server closes a connection silent for 90 s; a ping every 30 s keeps an idle
      // page (no video playing, nothing typed) connected.
      this.keepalive = setInterval(() => this.request("ping").catch(() => {}), 30000);
      for (const topic of this.topics.keys()) this._subscribe(topic);
      return;
    }
    if (msg.type === "result" || msg.type === "error") {
      const waiter = this.pending.get(msg.id);
      if (!waiter) return;
      this.pending.delete(msg.id);
      if (msg.type === "result") waiter.resolve(msg.data);
      else waiter.reject(new RequestError(msg.code, msg.message));
      return;
    }
    if (!msg.topic) {
      // A push about no topic, to this connection only (networking's network.table,
      // network.paired, …): an event on this object, "push" with the message as detail.
      this.dispatchEvent(new CustomEvent("push", { detail: msg }));
      return;
    }
    const entry = this.topics.get(msg.topic);
    if (!entry) return;
    if (typeof msg.seq === "number") {
      if (entry.seq !== null && msg.seq <= entry.seq) return;
      entry.seq = msg.seq;
    }
    entry.handler("push", msg);
  }

  _onClose(ws, event) {
    if (ws !== this.ws) return;
    clearInterval(this.keepalive);
    for (const waiter of this.pending.values()) {
      waiter.reject(new RequestError("offline", "connection closed"));
    }
    this.pending.clear();
    if (this.status === "closed") return;
    const reason = event.reason || "";
    if (event.code === 4001 || event.code === 4003) {
      this._setStatus("signedout", { code: event.code, reason });
      return;
    }
    if (event.code === 4008 && NO_RETRY_PREFIXES.some((p) => reason.startsWith(p))) {
      this._setStatus("closed", { code: event.code, reason });
      return;
    }
    this.attempt += 1;
    // 0.5 s, 1 s, 2 s, … up to 15 s, with jitter so a restarted server is not hit by
    // every page in the same instant.
    const base = Math.min(15000, 500 * 2 ** Math.min(this.attempt - 1, 5));
    const delay = base / 2 + Math.random() * (base / 2);
    this._setStatus("reconnecting", { delay });
    this.timer = setTimeout(() => this.connect(), delay);
  }

  _setStatus(status, detail = {}) {
    this.status = status;
    this.dispatchEvent(new CustomEvent("status", { detail: { status, ...detail } }));
  }
}
