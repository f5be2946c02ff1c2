// The client: one logical connection to a roomcast cluster that outlives the
// WebSocket connections under it (the Python SDK's semantics, roomcast_client).
//
// Invariants:
// - Requests are sent only on a connection that said `welcome` and re-joined
//   the client's rooms (`ready`); before that they wait, within their timeout.
// - Refs come from one counter and are never reused, so a late reply is never
//   taken for another request's. A request stays in `pending` until its reply
//   or its connection's end, even after a timeout: a late `ok` to a join or a
//   leave still updates `rooms`.
// - `rooms` holds the rooms the broker confirmed and that were not left; a
//   reconnect re-joins exactly these, each `since` its position. While it does,
//   room events are held; `reconnected` is emitted first, then they are handed
//   on in order, duplicates (offsets already handed on) dropped.
// - `end` runs once: every waiting and later request then rejects.

import { backoffDelay, DEFAULT_RECONNECT, reconnectRule, type ReconnectPolicy } from "./backoff.js";
import {
  BrokerError,
  ClientClosed,
  ConnectFailed,
  ConnectionLost,
  RequestTimeout,
} from "./errors.js";
import type { ClientEvent, EventMap, HistoryPage, Reconnected, RoomPresence } from "./events.js";
import type {
  ClientMessage,
  ErrorCode,
  HistoryReply,
  Joined,
  Left,
  Message,
  Ok,
  Position,
  PresenceReply,
  ServerMessage,
  Welcome,
} from "./generated/protocol.js";
import { positionOf, Positions } from "./positions.js";
import { EventQueue } from "./queue.js";

/** A token, or a function giving a fresh one for every connection. */
export type TokenSource = string | (() => string | Promise<string>);

/** A WHATWG WebSocket class: the browser's, or `WebSocket` from the `ws` package. */
export type WebSocketClass = new (url: string) => unknown;

/** Options of {@link connect}; every duration is in milliseconds. */
export interface ConnectOptions {
  /** A JSON Web Token, or a function returning one (called for every connection). */
  token?: TokenSource;
  /** Default time a request may take, including any wait for a reconnect. Default 10000. */
  timeout?: number;
  /** Time allowed to open a connection and get `welcome`. Default 10000. */
  openTimeout?: number;
  /** `false`: end when the connection ends; or a policy (merged with the defaults). Default `true`. */
  reconnect?: boolean | Partial<ReconnectPolicy>;
  /** Events kept for `for await` at most; the oldest are dropped beyond. Default 1000. */
  maxQueue?: number;
  /** Interval of a `ping` that checks the link; a missing `pong` drops it. Default 0 (off). */
  heartbeat?: number;
  /** The WebSocket class; default `globalThis.WebSocket` (pass `ws`'s on Node 20). */
  WebSocket?: WebSocketClass;
  /** Source of randomness for the backoff's jitter. Default `Math.random`. */
  random?: () => number;
}

/** Per-request options. */
export interface RequestOptions {
  /** Time allowed for this request; the client's `timeout` by default. */
  timeout?: number;
}

interface Socket {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
}

type Kind = ClientMessage["type"];
type Frame = ClientMessage extends infer M ? (M extends unknown ? Omit<M, "ref"> : never) : never;
type Reply = Ok | HistoryReply | PresenceReply | { type: "pong"; ref: unknown };

interface Request {
  frame: Frame;
  ref?: number;
  ws?: Socket;
  settled: boolean;
  timer?: ReturnType<typeof setTimeout>;
  resolve(reply: Reply): void;
  reject(error: Error): void;
}

const OPEN = 1;

/**
 * Open a client of a roomcast broker. It connects at once (trying each URL
 * once, in order), and after a loss reconnects to the next URL in turn.
 *
 * @param urls `ws://host:port/ws`, a path such as `/ws` (resolved against
 *   the page), or several nodes of one cluster.
 */
export function connect(urls: string | string[], options: ConnectOptions = {}): Client {
  return new Client(typeof urls === "string" ? [urls] : urls, options);
}

/** A client of a roomcast broker; create it with {@link connect}. */
export class Client implements AsyncIterable<ClientEvent> {
  /** Resolves with the first connection's `welcome`; rejects with `ConnectFailed`. */
  readonly ready: Promise<Welcome>;
  /** Successful reconnects so far. */
  reconnects = 0;

  private readonly urls: string[];
  private readonly WebSocket: WebSocketClass;
  private token: TokenSource | undefined;
  private readonly timeout: number;
  private readonly openTimeout: number;
  private readonly policy: ReconnectPolicy | null;
  private readonly maxQueue: number;
  private readonly heartbeat: number;
  private readonly random: () => number;

  private readonly positions = new Positions();
  private readonly joinedRooms = new Set<string>();
  private readonly pending = new Map<number, Request>();
  private waiting: Request[] = [];
  private readonly listeners = new Map<string, Set<(event: never) => void>>();
  private queue: EventQueue | null = null;
  private nextRef = 1;
  private nextUrl = 0;
  private ws: Socket | null = null;
  private welcome: Welcome | null = null;
  private lastWelcome: Welcome | null = null;
  private connected_ = false;
  private everConnected = false;
  private held: (Message | Joined | Left)[] | null = null;
  private failures = 0;
  private now = false;
  private readonly unrecovered = new Set<string>();
  private timer: ReturnType<typeof setTimeout> | undefined;
  private ended: ClientClosed | null = null;
  private endedQuietly = false;
  private settleReady!: [(welcome: Welcome) => void, (error: Error) => void];

  constructor(urls: string[], options: ConnectOptions = {}) {
    const WebSocket = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketClass }).WebSocket;
    if (!urls.length) throw new TypeError("roomcast: at least one URL is needed");
    if (!WebSocket) throw new TypeError("roomcast: no WebSocket here: pass options.WebSocket");
    this.urls = urls;
    this.WebSocket = WebSocket;
    this.token = options.token;
    this.timeout = options.timeout ?? 10_000;
    this.openTimeout = options.openTimeout ?? 10_000;
    const reconnect = options.reconnect ?? true;
    this.policy =
      reconnect === false
        ? null
        : { ...DEFAULT_RECONNECT, ...(reconnect === true ? {} : reconnect) };
    this.maxQueue = options.maxQueue ?? 1000;
    this.heartbeat = options.heartbeat ?? 0;
    this.random = options.random ?? Math.random;
    this.ready = new Promise((resolve, reject) => (this.settleReady = [resolve, reject]));
    this.ready.catch(() => {}); // rejections surface through requests too
    void this.dial();
  }

  // --- state -----------------------------------------------------------------

  /** The current (or last) session id, from `welcome`. */
  get session(): string | undefined {
    return this.lastWelcome?.session;
  }

  /** The node serving the current (or last) session. */
  get node(): string | undefined {
    return this.lastWelcome?.node;
  }

  /** The authenticated user (the token's `sub`); undefined when anonymous. */
  get user(): string | undefined {
    return this.lastWelcome?.user;
  }

  /** Whether requests are sent right now (welcomed, rooms re-joined). */
  get connected(): boolean {
    return this.connected_;
  }

  /** Whether the client has ended. */
  get closed(): boolean {
    return this.ended !== null;
  }

  /** The rooms joined: re-joined after every reconnect. */
  get rooms(): string[] {
    return [...this.joinedRooms];
  }

  /** Events dropped unread from the `for await` queue. */
  get dropped(): number {
    return this.queue?.dropped ?? 0;
  }

  /**
   * Where the client stands in `room`: every message up to this offset, in
   * this epoch, came before the join, was said by this client, or was handed
   * on. A reconnect recovers from here. `null`: not joined, or no history.
   */
  position(room: string): Position | null {
    return this.positions.position(room);
  }

  // --- requests --------------------------------------------------------------

  /** Become a member of `room`; resolves with its position then (`null`: no history). */
  async join(room: string, options?: RequestOptions): Promise<Position | null> {
    return positionOf((await this.request({ type: "join", room }, options)) as Ok);
  }

  /** Stop being a member of `room` (a connection lost meanwhile counts as done). */
  async leave(room: string, options?: RequestOptions): Promise<void> {
    await this.request({ type: "leave", room }, options);
  }

  /**
   * Publish `body` (any JSON value) to every other member of `room`; resolves
   * once the broker accepted it, with the position it got (`null`: no history).
   */
  async say(room: string, body: unknown, options?: RequestOptions): Promise<Position | null> {
    return positionOf((await this.request({ type: "say", room, body }, options)) as Ok);
  }

  /** Ask for a `pong`; resolves with the round trip in ms. */
  async ping(options?: RequestOptions): Promise<number> {
    const started = Date.now();
    await this.request({ type: "ping" }, options);
    return Date.now() - started;
  }

  /** Read the messages `room` keeps, oldest first (the newest `limit`, those `before` an offset). */
  async history(
    room: string,
    options: RequestOptions & { limit?: number; before?: number } = {},
  ): Promise<HistoryPage> {
    const { limit, before } = options;
    const reply = (await this.request(
      {
        type: "history",
        room,
        ...(limit === undefined ? {} : { limit }),
        ...(before === undefined ? {} : { before }),
      },
      options,
    )) as HistoryReply;
    return {
      room,
      position:
        reply.epoch === undefined ? null : { offset: reply.offset ?? 0, epoch: reply.epoch },
      messages: reply.messages ?? [],
    };
  }

  /**
   * Who is in `room` on every node. Keep it current with `joined` and `left`,
   * and read it again after `reconnected` (membership events are not replayed).
   */
  async presence(room: string, options?: RequestOptions): Promise<RoomPresence> {
    const reply = (await this.request({ type: "presence", room }, options)) as PresenceReply;
    return {
      room,
      count: reply.count,
      users: reply.users,
      members: reply.members ?? [],
      truncated: reply.truncated === true,
    };
  }

  /**
   * Replace the connection's token before it expires: `token`, or a fresh
   * one from the token function. Later reconnects present it too.
   */
  async refresh(token?: string, options?: RequestOptions): Promise<void> {
    const source = this.token;
    const fresh = token ?? (typeof source === "function" ? await source() : undefined);
    if (fresh === undefined) throw new TypeError("roomcast: refresh needs a token");
    await this.request({ type: "refresh", token: fresh }, options);
    if (typeof source !== "function") this.token = fresh;
  }

  /** End the client: requests waiting reject with `ClientClosed`, iteration ends. */
  close(): void {
    this.end(new ClientClosed("the client was closed"), true);
  }

  // --- events ----------------------------------------------------------------

  /** Call `listener` with every event of `type`; returns a function that unsubscribes. */
  on<K extends keyof EventMap>(type: K, listener: (event: EventMap[K]) => void): () => void {
    let set = this.listeners.get(type);
    if (!set) this.listeners.set(type, (set = new Set()));
    set.add(listener as (event: never) => void);
    return () => set.delete(listener as (event: never) => void);
  }

  /**
   * The events as an async iterator, from now on, in a queue of at most
   * `maxQueue` (the oldest dropped beyond, counted, as `gap`s). One queue at a
   * time: it ends when the loop breaks, or after the last event of the client.
   */
  events(): AsyncIterableIterator<ClientEvent> {
    if (!this.queue) {
      const queue = new EventQueue(this.maxQueue, (q) => {
        if (this.queue === q) this.queue = null;
      });
      if (this.ended) queue.end(this.endedQuietly ? null : this.ended);
      else this.queue = queue;
      return queue;
    }
    return this.queue;
  }

  [Symbol.asyncIterator](): AsyncIterator<ClientEvent> {
    return this.events();
  }

  private emit(event: ClientEvent): void {
    for (const listener of this.listeners.get(event.type) ?? []) {
      try {
        (listener as (event: ClientEvent) => void)(event);
      } catch (error) {
        setTimeout(() => {
          throw error;
        });
      }
    }
    this.queue?.put(event);
  }

  private roomEvent(event: Message | Joined | Left): void {
    if (this.held) this.held.push(event);
    else if (event.type !== "message" || this.positions.accept(event)) this.emit(event);
  }

  // --- requests and replies --------------------------------------------------

  private request(frame: Frame, options?: RequestOptions): Promise<Reply> {
    const limit = options?.timeout ?? this.timeout;
    return this.newRequest(frame, limit, (request) => {
      const ws = this.ws;
      if (this.connected_ && ws && ws.readyState === OPEN) this.send(request, ws);
      else this.waiting.push(request);
    });
  }

  /** Send on `ws` whether or not it is ready (re-joins and heartbeats use it). */
  private exchange(ws: Socket, frame: Frame, limit = this.timeout): Promise<Reply> {
    return this.newRequest(frame, limit, (request) => this.send(request, ws));
  }

  private newRequest(
    frame: Frame,
    limit: number,
    start: (request: Request) => void,
  ): Promise<Reply> {
    if (this.ended) return Promise.reject(this.closedError());
    return new Promise<Reply>((resolve, reject) => {
      const request: Request = {
        frame,
        settled: false,
        resolve: (reply) => {
          request.settled = true;
          clearTimeout(request.timer);
          resolve(reply);
        },
        reject: (error) => {
          request.settled = true;
          clearTimeout(request.timer);
          reject(error);
        },
      };
      request.timer = setTimeout(() => {
        this.waiting = this.waiting.filter((r) => r !== request);
        const what = request.ws ? "reply" : "connection to the broker";
        request.reject(new RequestTimeout(`${frame.type}: no ${what} within ${limit} ms`));
      }, limit);
      start(request);
    });
  }

  private send(request: Request, ws: Socket): void {
    const ref = this.nextRef++;
    request.ref = ref;
    request.ws = ws;
    this.pending.set(ref, request);
    ws.send(JSON.stringify({ ...request.frame, ref }));
  }

  private flush(): void {
    const ws = this.ws;
    while (this.waiting.length && this.connected_ && ws && ws.readyState === OPEN) {
      this.send(this.waiting.shift()!, ws);
    }
  }

  private reply(
    frame: Reply | { type: "error"; ref: unknown; code: string; message: string },
  ): void {
    const request = typeof frame.ref === "number" ? this.pending.get(frame.ref) : undefined;
    if (!request) return; // a late reply of a request whose connection ended, or an error for none
    this.pending.delete(request.ref!);
    const sent = request.frame;
    if (frame.type === "error") {
      if (!request.settled) request.reject(new BrokerError(frame.code as ErrorCode, frame.message));
      return;
    }
    if (frame.type === "ok" && "room" in sent) {
      if (sent.type === "join") {
        this.joinedRooms.add(sent.room);
        this.positions.joined(sent.room, frame);
      } else if (sent.type === "leave") {
        this.forget(sent.room);
      } else if (sent.type === "say") {
        this.positions.said(sent.room, frame);
      }
    }
    if (!request.settled) request.resolve(frame);
  }

  private forget(room: string): void {
    this.joinedRooms.delete(room);
    this.positions.forget(room);
  }

  private closedError(): ClientClosed {
    const ended = this.ended!;
    return new ClientClosed(ended.message, ended.closeCode);
  }

  // --- connections -----------------------------------------------------------

  private async dial(): Promise<void> {
    const url = this.urls[this.nextUrl]!;
    this.nextUrl = (this.nextUrl + 1) % this.urls.length;
    let ws: Socket;
    try {
      const source = this.token;
      const token = typeof source === "function" ? await source() : source;
      if (this.ended) return;
      ws = new this.WebSocket(resolveUrl(url, token)) as Socket;
    } catch (error) {
      this.attemptFailed(1006, `cannot connect to ${url}: ${String(error)}`);
      return;
    }
    this.ws = ws;
    this.timer = setTimeout(() => {
      if (this.ws === ws && !this.welcome) this.abandon(ws, "no welcome in time");
    }, this.openTimeout);
    ws.onmessage = (event) => this.receive(ws, event.data);
    ws.onclose = (event) => this.lost(ws, event.code, event.reason);
    ws.onerror = () => {}; // a failed dial also fires `close`, which does the work
  }

  private receive(ws: Socket, data: unknown): void {
    if (this.ws !== ws) return;
    let frame: ServerMessage;
    try {
      frame = JSON.parse(String(data)) as ServerMessage;
    } catch {
      return; // the protocol sends JSON objects only
    }
    switch (frame?.type) {
      case "welcome":
        if (this.welcome) return;
        clearTimeout(this.timer);
        this.welcome = this.lastWelcome = frame;
        void this.rejoin(ws, frame);
        return;
      case "message":
      case "joined":
      case "left":
        this.roomEvent(frame);
        return;
      case "ok":
      case "pong":
      case "error":
      case "history":
      case "presence":
        this.reply(frame);
        return;
      default:
      // later protocol versions may add types: ignore them
    }
  }

  /** Re-join every room `since` its position on the new `ws`, then make it ready. */
  private async rejoin(ws: Socket, welcome: Welcome): Promise<void> {
    this.held = [];
    const rooms = [...this.joinedRooms].sort();
    const since = rooms.map((room) => this.positions.position(room));
    const results = await Promise.allSettled(
      rooms.map((room, i) => {
        const position = since[i];
        return this.exchange(ws, { type: "join", room, ...(position ? { since: position } : {}) });
      }),
    );
    if (this.ws !== ws) return;
    const failed: Record<string, BrokerError> = {};
    for (const [i, result] of results.entries()) {
      const room = rooms[i]!;
      if (result.status === "fulfilled") {
        const ok = result.value as Ok;
        const from = since[i];
        // A room not recovered stays so until a `reconnected` reports it,
        // even if this attempt fails and the next recovers from the reset position.
        if (!(from && ok.recovered === true && ok.epoch === from.epoch)) this.unrecovered.add(room);
      } else if (result.reason instanceof BrokerError) {
        failed[room] = result.reason;
        this.forget(room);
      } else {
        this.abandon(ws, "re-joining failed");
        return;
      }
    }
    this.connected_ = true;
    this.failures = 0;
    const held = this.held;
    this.held = null;
    if (this.everConnected) {
      this.reconnects += 1;
      const rejoined = rooms.filter((room) => !(room in failed));
      const recovered: Record<string, boolean> = {};
      for (const room of rejoined) recovered[room] = !this.unrecovered.has(room);
      this.unrecovered.clear();
      const event: Reconnected = {
        type: "reconnected",
        session: welcome.session,
        node: welcome.node,
        rooms: rejoined,
        failed,
        recovered,
      };
      this.emit(event);
    } else {
      this.everConnected = true;
      this.settleReady[0](welcome);
    }
    for (const event of held) this.roomEvent(event);
    this.flush();
    this.beat(ws);
  }

  /** `ws` closed (or was abandoned) with `code`. */
  private lost(ws: Socket, code: number, reason: string): void {
    if (this.ws !== ws) return;
    ws.onmessage = ws.onclose = ws.onerror = null;
    this.ws = this.welcome = this.held = null;
    clearTimeout(this.timer);
    const wasReady = this.connected_;
    this.connected_ = false;
    for (const [ref, request] of this.pending) {
      if (request.ws !== ws) continue;
      this.pending.delete(ref);
      const sent = request.frame;
      if (sent.type === "leave") {
        // The broker removes a disconnected session from every room: the leave has happened.
        this.forget(sent.room);
        request.resolve({ type: "ok", ref });
      } else {
        request.reject(
          new ConnectionLost(`${sent.type}: the connection ended before the broker answered`),
        );
      }
    }
    if (this.ended) return;
    if (!wasReady) {
      this.attemptFailed(code, reason);
      return;
    }
    const rule = reconnectRule(code, typeof this.token === "function");
    if (rule === "stop" || !this.policy) {
      const why = rule === "stop" ? "the broker refused this client" : "reconnect is off";
      this.end(
        new ClientClosed(`connection closed with ${code}; ${why}`, code),
        false,
        code,
        reason,
      );
      return;
    }
    this.emit({ type: "disconnected", code, reason, reconnecting: true });
    this.failures = 0;
    this.now = rule === "at_once";
    this.schedule();
  }

  private attemptFailed(code: number, reason: string): void {
    if (this.ended) return;
    this.failures += 1;
    if (!this.everConnected) {
      // The first connection tries each URL once, in order.
      if (this.failures < this.urls.length) void this.dial();
      else
        this.end(
          new ConnectFailed(
            `cannot connect to ${this.urls.join(", ")} (${code} ${reason})`.trim(),
            code,
          ),
          false,
        );
      return;
    }
    const policy = this.policy!;
    if (this.failures >= policy.maxAttempts) {
      this.end(
        new ClientClosed(`gave up reconnecting after ${this.failures} attempts`, code),
        false,
        code,
        reason,
      );
      return;
    }
    this.schedule();
  }

  private schedule(): void {
    const { failures, now } = this;
    const delay =
      now && failures === 0
        ? 0
        : backoffDelay(this.policy!, now ? failures - 1 : failures, this.random);
    this.timer = setTimeout(() => void this.dial(), delay);
  }

  /** Give up on `ws` now, without waiting for a closing handshake that may never come. */
  private abandon(ws: Socket, reason: string): void {
    try {
      ws.close(4000, reason);
    } catch {
      // already closing
    }
    this.lost(ws, 1006, reason);
  }

  private beat(ws: Socket): void {
    const interval = this.heartbeat;
    if (!interval) return;
    this.timer = setTimeout(() => {
      if (this.ws !== ws) return;
      this.exchange(ws, { type: "ping" }, Math.min(this.timeout, interval)).then(
        () => this.beat(ws),
        (error: unknown) => {
          if (error instanceof RequestTimeout && this.ws === ws)
            this.abandon(ws, "no pong in time");
        },
      );
    }, interval);
  }

  private end(error: ClientClosed, quiet: boolean, code?: number, reason = ""): void {
    if (this.ended) return;
    this.ended = error;
    this.endedQuietly = quiet;
    clearTimeout(this.timer);
    const requests = [...this.waiting, ...this.pending.values()];
    this.waiting = [];
    this.pending.clear();
    for (const request of requests) request.reject(this.closedError());
    this.settleReady[1](error);
    if (code !== undefined) this.emit({ type: "disconnected", code, reason, reconnecting: false });
    this.queue?.end(quiet ? null : error);
    const ws = this.ws;
    this.ws = null;
    this.connected_ = false;
    if (ws) {
      ws.onmessage = ws.onclose = ws.onerror = null;
      try {
        ws.close(1000);
      } catch {
        // already closing
      }
    }
  }
}

/** `url` resolved against the page (http becomes ws), with `token` as `?token=`. */
function resolveUrl(url: string, token: string | undefined): string {
  const resolved = new URL(url, (globalThis as { location?: { href: string } }).location?.href);
  resolved.protocol = resolved.protocol.replace(/^http/, "ws");
  if (token) resolved.searchParams.set("token", token);
  return resolved.toString();
}
