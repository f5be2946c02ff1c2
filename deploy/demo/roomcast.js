// roomcast browser SDK: an ES module, no dependencies, no build step.
//
//   import { connect } from "./roomcast.js";
//   const client = connect("/ws", { token });
//   client.addEventListener("message", (e) => console.log(e.detail.body));
//   await client.join("lobby");
//   await client.say("lobby", { text: "hi" });
//
// Speaks protocol version 1 (PROTOCOL.md). Invariants:
// - every request carries a fresh integer `ref`; its promise settles on the
//   one reply with that ref, or rejects with code "timeout";
// - requests wait in `outbox` until a connection has said `welcome`; after a
//   reconnect the rooms joined so far are joined again before anything else
//   is sent, so a queued `say` lands in a room the new session is in;
// - a `say` that was on the wire when the connection dropped rejects with
//   "disconnected" (it may or may not have been delivered: at most once);
//   `join`, `leave` and `ping` are idempotent and are sent again.

/** The protocol version this SDK speaks. */
export const PROTOCOL_VERSION = 1;

/** Close codes after which reconnecting cannot help (PROTOCOL.md; broker/close_codes.py). */
const NO_RECONNECT = new Set([
  1003, // unsupported data: a client bug
  1008, // policy violation: credentials refused or expired
]);
const GOING_AWAY = 1001; // the node shuts down or drains: reconnect elsewhere at once
const GIVE_UP = 4000; // our own code: no welcome or pong in time, the link is dead

/** A failed request or connection; `code` is a protocol error code or one of
 * "timeout", "disconnected", "closed". */
export class RoomcastError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {object} [request] the request that failed, if any
   */
  constructor(code, message, request = undefined) {
    super(message);
    this.name = "RoomcastError";
    this.code = code;
    this.request = request;
  }
}

/**
 * Open a client; it connects at once and keeps reconnecting until `close()`.
 * @param {string} url ws:// or wss:// URL, or a path such as "/ws" (resolved
 *   against the page, http -> ws, https -> wss)
 * @param {object} [options] see RoomcastClient
 * @returns {RoomcastClient}
 */
export function connect(url, options = {}) {
  const client = new RoomcastClient(url, options);
  client.open();
  return client;
}

/** Resolve `url` against the page and turn http(s) into ws(s). */
function resolveUrl(url) {
  const base = globalThis.location ? globalThis.location.href : undefined;
  const resolved = new URL(url, base);
  if (resolved.protocol === "http:") resolved.protocol = "ws:";
  if (resolved.protocol === "https:") resolved.protocol = "wss:";
  return resolved;
}

/**
 * A connection to a roomcast cluster that survives the loss of its node.
 *
 * Events (CustomEvent, data in `event.detail`):
 * - `welcome`: every new connection's welcome frame ({session, node, protocol})
 * - `message`: {room, from, body}; `joined`, `left`: {room, session}
 * - `disconnected`: {code, reason, reconnect, delay}: delay in ms, or null
 * - `reconnected`: {welcome, rooms, failed}: after the rooms were joined again
 * - `error`: a server error that answers no request of ours
 */
export class RoomcastClient extends EventTarget {
  /**
   * @param {string} url
   * @param {object} [options]
   * @param {string|(() => string|Promise<string>)} [options.token] sent as ?token=
   * @param {number} [options.requestTimeout=10000] ms before a request rejects
   * @param {number} [options.connectTimeout=10000] ms from dialing to welcome
   * @param {boolean} [options.reconnect=true]
   * @param {number} [options.backoffInitial=500] ms, first backoff ceiling
   * @param {number} [options.backoffMax=15000] ms, largest backoff ceiling
   * @param {number} [options.heartbeatInterval=0] ms between pings (0: off);
   *   a missing pong closes the connection and reconnects
   * @param {typeof WebSocket} [options.WebSocket] for tests and other runtimes
   * @param {() => number} [options.random=Math.random] jitter source
   */
  constructor(url, options = {}) {
    super();
    this.url = url;
    this.options = {
      token: undefined,
      requestTimeout: 10000,
      connectTimeout: 10000,
      reconnect: true,
      backoffInitial: 500,
      backoffMax: 15000,
      heartbeatInterval: 0,
      WebSocket: globalThis.WebSocket,
      random: Math.random,
      ...options,
    };
    /** "idle" | "connecting" | "open" | "reconnecting" | "closed" */
    this.state = "idle";
    /** The current connection's welcome frame, or null. */
    this.welcome = null;
    this._rooms = new Set(); // rooms to be in, joined again after a reconnect
    this._outbox = []; // requests waiting for a welcomed connection
    this._inflight = new Map(); // ref -> request, sent on the current socket
    this._nextRef = 1;
    this._epoch = 0; // welcomed connections so far
    this._attempt = 0; // failed dials since the last welcome
    this._ws = null;
    this._timers = new Set();
  }

  /** The node the client is connected to (`welcome.node`), or null. */
  get node() {
    return this.welcome ? this.welcome.node : null;
  }

  /** This connection's session id, or null. */
  get session() {
    return this.welcome ? this.welcome.session : null;
  }

  /** The rooms this client is in, or is joining. */
  get rooms() {
    return [...this._rooms];
  }

  /** Subscribe to an event; returns a function that unsubscribes. */
  on(type, listener) {
    const handler = (event) => listener(event.detail, event);
    this.addEventListener(type, handler);
    return () => this.removeEventListener(type, handler);
  }

  /** Start connecting (connect() calls this). */
  open() {
    if (this.state === "idle") {
      this.state = "connecting";
      this._dial();
    }
  }

  /**
   * Join `room`; resolves when the server said ok. The room stays in `rooms`,
   * and is joined again after every reconnect, until leave() or an error
   * reply (a timeout does not remove it: the join may yet have happened).
   */
  join(room, options = {}) {
    this._rooms.add(room);
    return this._request({ type: "join", room }, options);
  }

  /** Leave `room`; it is no longer joined again after reconnects. */
  leave(room, options = {}) {
    this._rooms.delete(room);
    return this._request({ type: "leave", room }, options);
  }

  /** Say `body` (any JSON value) to `room`; resolves once the cluster accepted it. */
  say(room, body, options = {}) {
    return this._request({ type: "say", room, body }, options);
  }

  /** Application-level ping; resolves with the pong. */
  ping(options = {}) {
    return this._request({ type: "ping" }, options);
  }

  /** Close for good: rejects what is pending with "closed". */
  close(code = 1000, reason = "") {
    if (this.state === "closed") return;
    this.state = "closed";
    this._clearTimers();
    const ws = this._ws;
    this._ws = null;
    if (ws) {
      this._detach(ws);
      ws.close(code, reason);
    }
    this._failAll("closed", "client closed");
  }

  // --- requests ------------------------------------------------------------

  _request(frame, { timeout = this.options.requestTimeout } = {}) {
    if (this.state === "closed") {
      return Promise.reject(new RoomcastError("closed", "client closed", frame));
    }
    const { promise, request } = this._newRequest(frame, timeout);
    this._outbox.push(request);
    if (this.state === "open") this._flush();
    return promise;
  }

  _newRequest(frame, timeout) {
    const request = { frame, epoch: this._epoch, timer: null };
    const promise = new Promise((resolve, reject) => {
      request.resolve = resolve;
      request.reject = reject;
    });
    request.timer = setTimeout(() => {
      this._forget(request);
      request.reject(
        new RoomcastError("timeout", `no reply to ${frame.type} in ${timeout} ms`, frame),
      );
    }, timeout);
    return { promise, request };
  }

  _forget(request) {
    clearTimeout(request.timer);
    const index = this._outbox.indexOf(request);
    if (index >= 0) this._outbox.splice(index, 1);
    if (request.ref !== undefined) this._inflight.delete(request.ref);
  }

  _flush() {
    while (this._outbox.length > 0 && this.state === "open") {
      const request = this._outbox.shift();
      request.ref = this._nextRef++;
      this._inflight.set(request.ref, request);
      this._ws.send(JSON.stringify({ ...request.frame, ref: request.ref }));
    }
  }

  _settle(frame) {
    const request = this._inflight.get(frame.ref);
    if (!request) return false;
    this._inflight.delete(frame.ref);
    clearTimeout(request.timer);
    if (frame.type === "error") {
      // A leave re-sent after a reconnect reaches a session that never was in
      // the room: its goal is met.
      const stale = request.frame.type === "leave" && request.epoch < this._epoch;
      if (stale && frame.code === "not_member") {
        request.resolve({ type: "ok", ref: frame.ref });
        return true;
      }
      if (request.frame.type === "join") this._rooms.delete(request.frame.room);
      request.reject(new RoomcastError(frame.code, frame.message, request.frame));
    } else {
      request.resolve(frame);
    }
    return true;
  }

  _failAll(code, message) {
    const requests = [...this._inflight.values(), ...this._outbox];
    this._inflight.clear();
    this._outbox = [];
    for (const request of requests) {
      clearTimeout(request.timer);
      request.reject(new RoomcastError(code, message, request.frame));
    }
  }

  // --- connection ----------------------------------------------------------

  async _dial() {
    let url;
    try {
      url = resolveUrl(this.url);
      const token =
        typeof this.options.token === "function" ? await this.options.token() : this.options.token;
      if (token) url.searchParams.set("token", token);
    } catch (error) {
      this._lost(1006, `cannot build the URL: ${error.message}`, false);
      return;
    }
    if (this.state === "closed") return;
    let ws;
    try {
      ws = new this.options.WebSocket(url.toString());
    } catch (error) {
      this._lost(1006, `cannot connect: ${error.message}`, false);
      return;
    }
    this._ws = ws;
    const deadline = this._timer(() => {
      if (this._ws === ws && !this.welcome) this._abandon(ws, GIVE_UP, "no welcome in time");
    }, this.options.connectTimeout);
    ws.onmessage = (event) => this._receive(ws, event.data, deadline);
    ws.onclose = (event) => {
      if (this._ws !== ws) return;
      this._ws = null;
      this._lost(event.code, event.reason, event.code === GOING_AWAY);
    };
    // A failed dial also fires `close` (code 1006), which does the work.
    ws.onerror = () => {};
  }

  _receive(ws, data, deadline) {
    if (this._ws !== ws) return;
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return; // not ours to fix: the protocol only sends JSON objects
    }
    if (frame === null || typeof frame !== "object") return;
    switch (frame.type) {
      case "welcome":
        this._clearTimer(deadline);
        this._welcomed(frame);
        break;
      case "ok":
      case "pong":
        this._settle(frame);
        break;
      case "error":
        if (!this._settle(frame)) this._emit("error", frame);
        break;
      case "message":
      case "joined":
      case "left":
        this._emit(frame.type, frame);
        break;
      default:
        break; // later protocol versions may add types: ignore them
    }
  }

  _welcomed(welcome) {
    const again = this._epoch > 0;
    this.welcome = welcome;
    this._epoch += 1;
    this._attempt = 0;
    this.state = "open";
    this._emit("welcome", welcome);
    this._startHeartbeat();
    // Rooms first, so that queued says land in rooms this session is in.
    const queuedJoins = new Set(
      this._outbox.filter((r) => r.frame.type === "join").map((r) => r.frame.room),
    );
    const rooms = [...this._rooms].filter((room) => !queuedJoins.has(room));
    const rejoins = rooms.map((room) =>
      this._newRequest({ type: "join", room }, this.options.requestTimeout),
    );
    this._outbox = [...rejoins.map((r) => r.request), ...this._outbox];
    this._flush();
    Promise.allSettled(rejoins.map((r) => r.promise)).then((results) => {
      if (!again) return;
      const failed = [];
      results.forEach((result, i) => {
        if (result.status === "rejected") failed.push({ room: rooms[i], error: result.reason });
      });
      this._emit("reconnected", {
        welcome,
        rooms: rooms.filter((_, i) => results[i].status === "fulfilled"),
        failed,
      });
    });
  }

  _lost(code, reason, goingAway) {
    this.welcome = null;
    this._clearTimers();
    // What was on the wire: says may or may not have arrived; the rest is
    // idempotent and goes out again, ahead of what was queued after it.
    const resend = [];
    for (const request of this._inflight.values()) {
      if (request.frame.type === "say") {
        clearTimeout(request.timer);
        request.reject(new RoomcastError("disconnected", "connection lost", request.frame));
      } else {
        delete request.ref;
        resend.push(request);
      }
    }
    this._inflight.clear();
    this._outbox = [...resend, ...this._outbox];
    if (this.state === "closed") return;
    const reconnect = this.options.reconnect && !NO_RECONNECT.has(code);
    if (!reconnect) {
      this.state = "closed";
      this._failAll("closed", `connection closed with ${code}${reason ? `: ${reason}` : ""}`);
      this._emit("disconnected", { code, reason, reconnect: false, delay: null });
      return;
    }
    this.state = "reconnecting";
    const delay = goingAway && this._attempt === 0 ? 0 : this._backoff();
    this._attempt += 1;
    this._emit("disconnected", { code, reason, reconnect: true, delay });
    this._timer(() => {
      if (this.state === "reconnecting") this._dial();
    }, delay);
  }

  /** Full jitter: uniform in [0, min(max, initial * 2^attempt)). */
  _backoff() {
    const { backoffInitial, backoffMax, random } = this.options;
    const ceiling = Math.min(backoffMax, backoffInitial * 2 ** this._attempt);
    return Math.floor(random() * ceiling);
  }

  /** Give up on `ws` now, without waiting for a closing handshake that may never come. */
  _abandon(ws, code, reason) {
    this._detach(ws);
    try {
      ws.close(code, reason);
    } catch {
      // already closing: nothing more to do with it
    }
    if (this._ws === ws) {
      this._ws = null;
      this._lost(code, reason, false);
    }
  }

  _detach(ws) {
    ws.onmessage = null;
    ws.onclose = null;
    ws.onerror = null;
  }

  _startHeartbeat() {
    const interval = this.options.heartbeatInterval;
    if (!interval) return;
    const ws = this._ws;
    const beat = () => {
      if (this._ws !== ws || this.state !== "open") return;
      this.ping({ timeout: Math.min(this.options.requestTimeout, interval) }).then(
        () => this._timer(beat, interval),
        (error) => {
          if (error.code === "timeout") this._abandon(ws, GIVE_UP, "no pong in time");
        },
      );
    };
    this._timer(beat, interval);
  }

  // --- helpers -------------------------------------------------------------

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  _timer(fn, ms) {
    const id = setTimeout(() => {
      this._timers.delete(id);
      fn();
    }, ms);
    this._timers.add(id);
    return id;
  }

  _clearTimer(id) {
    clearTimeout(id);
    this._timers.delete(id);
  }

  _clearTimers() {
    for (const id of this._timers) clearTimeout(id);
    this._timers.clear();
  }
}
