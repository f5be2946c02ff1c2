// The client against a scripted socket: request matching, timeouts, tokens,
// the close rules, re-joining with `since`, replay ordering, heartbeats.

import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
import {
  BrokerError,
  ClientClosed,
  ConnectFailed,
  ConnectionLost,
  RequestTimeout,
  connect,
  type Client,
  type ClientEvent,
  type ConnectOptions,
} from "../../src/index.js";
import { Recorder } from "../support/events.js";
import { FakeSocket, settle } from "../support/fake-socket.js";

const EPOCH = "e-aaaaaaaaaaaa";
let clients: Client[] = [];

function open(urls: string | string[] = "ws://n1/ws", options: ConnectOptions = {}): Client {
  const client = connect(urls, { WebSocket: FakeSocket, random: () => 0, ...options });
  clients.push(client);
  return client;
}

/** A client on its welcomed first socket. */
async function opened(options: ConnectOptions = {}): Promise<[Client, FakeSocket]> {
  const client = open(options.token ? "ws://n1/ws" : ["ws://n1/ws", "ws://n2/ws"], options);
  const socket = await FakeSocket.nth(1);
  socket.welcome();
  await client.ready;
  return [client, socket];
}

beforeEach(() => FakeSocket.reset());
afterEach(() => {
  for (const client of clients) client.close();
  clients = [];
});

describe("requests", () => {
  it("settle on the reply carrying their ref, in any order", async () => {
    const [client, socket] = await opened();
    const first = client.ping();
    const second = client.join("r");
    const [ping, join] = [await socket.frame(1), await socket.frame(2)];
    assert.notEqual(ping.ref, join.ref);
    socket.push({ type: "ok", ref: join.ref, offset: 3, epoch: EPOCH });
    socket.push({ type: "pong", ref: ping.ref });
    assert.deepEqual(await second, { offset: 3, epoch: EPOCH });
    assert.ok((await first) >= 0);
    assert.deepEqual(client.rooms, ["r"]);
  });

  it("reject with a BrokerError carrying the server's code and message", async () => {
    const [client, socket] = await opened();
    const say = client.say("nope", "x");
    const frame = await socket.frame(1);
    assert.deepEqual(frame, { type: "say", room: "nope", body: "x", ref: frame.ref });
    socket.push({ type: "error", ref: frame.ref, code: "not_member", message: "not a member" });
    await assert.rejects(
      say,
      (e: unknown) =>
        e instanceof BrokerError && e.code === "not_member" && e.message === "not a member",
    );
  });

  it("reject with RequestTimeout when no reply comes, and a late ok still counts", async () => {
    const [client, socket] = await opened();
    await assert.rejects(client.join("slow", { timeout: 20 }), RequestTimeout);
    await socket.ok(1, { offset: 0, epoch: EPOCH });
    assert.deepEqual(client.rooms, ["slow"]);
  });

  it("wait for a connection, within their timeout", async () => {
    const client = open();
    const ping = client.ping({ timeout: 30 });
    await assert.rejects(
      ping,
      (e: unknown) => e instanceof RequestTimeout && /connection/.test(e.message),
    );
    const socket = await FakeSocket.nth(1);
    const join = client.join("r");
    socket.welcome();
    await socket.ok(1);
    assert.equal(await join, null, "a room without history has no position");
  });

  it("send history and presence with only the fields given, and return their replies", async () => {
    const [client, socket] = await opened();
    const history = client.history("r", { limit: 2 });
    const request = await socket.frame(1);
    assert.deepEqual(request, { type: "history", room: "r", limit: 2, ref: request.ref });
    const m = { type: "message", room: "r", from: "s-2", body: "a", offset: 7, epoch: EPOCH };
    socket.push({
      type: "history",
      ref: request.ref,
      room: "r",
      offset: 7,
      epoch: EPOCH,
      messages: [m],
    });
    assert.deepEqual(await history, {
      room: "r",
      position: { offset: 7, epoch: EPOCH },
      messages: [m],
    });

    const presence = client.presence("r");
    const asked = await socket.frame(2);
    socket.push({
      type: "presence",
      ref: asked.ref,
      room: "r",
      count: 2,
      users: 1,
      members: [{ session: "s-1" }, { session: "s-2", user: "bob" }],
    });
    assert.deepEqual(await presence, {
      room: "r",
      count: 2,
      users: 1,
      members: [{ session: "s-1" }, { session: "s-2", user: "bob" }],
      truncated: false,
    });
  });
});

describe("connecting", () => {
  it("puts the token in the token query parameter, resolving a path against the page", async () => {
    (globalThis as { location?: { href: string } }).location = { href: "https://app.example/chat" };
    let client: Client;
    try {
      client = open("/ws", { token: "abc.def" });
      await settle();
    } finally {
      delete (globalThis as { location?: unknown }).location;
    }
    assert.equal(client.closed, false);
    const explicit = open("http://n1:8765/ws", { token: () => Promise.resolve("t-1") });
    await settle();
    assert.deepEqual(
      FakeSocket.instances.map((s) => s.url),
      ["wss://app.example/ws?token=abc.def", "ws://n1:8765/ws?token=t-1"],
    );
    explicit.close();
  });

  it("tries each URL once, in order, then ends with ConnectFailed", async () => {
    const client = open(["ws://n1/ws", "ws://n2/ws"]);
    (await FakeSocket.nth(1)).drop(1006);
    (await FakeSocket.nth(2)).drop(1006);
    await assert.rejects(client.ready, ConnectFailed);
    await assert.rejects(client.ping(), ClientClosed);
    assert.deepEqual(
      FakeSocket.instances.map((s) => s.url),
      ["ws://n1/ws", "ws://n2/ws"],
    );
  });

  it("gives up a connection that says no welcome in time", async () => {
    const client = open("ws://n1/ws", { openTimeout: 10 });
    await assert.rejects(client.ready, ConnectFailed);
    assert.equal((await FakeSocket.nth(1)).closedWith, 4000);
  });
});

describe("reconnecting", () => {
  it("after 1001 reconnects at once to the next URL and re-joins its rooms since their positions before sending what waited", async () => {
    const [client, first] = await opened();
    const seen = new Recorder(client);
    const join = client.join("r");
    await first.ok(1, { offset: 4, epoch: EPOCH });
    await join;
    first.push({ type: "message", room: "r", from: "s-2", body: "five", offset: 5, epoch: EPOCH });

    first.drop(1001, "going away");
    const queued = client.say("r", "queued");
    const second = await FakeSocket.nth(2);
    assert.equal(second.url, "ws://n2/ws");
    second.welcome("s-2", "n-2");
    const rejoin = await second.frame(1);
    assert.deepEqual(rejoin, {
      type: "join",
      room: "r",
      since: { offset: 5, epoch: EPOCH },
      ref: rejoin.ref,
    });
    // Replayed before the ok, then live after it: each once, in order.
    second.push({ type: "message", room: "r", from: "s-3", body: "five", offset: 5, epoch: EPOCH });
    second.push({ type: "message", room: "r", from: "s-3", body: "six", offset: 6, epoch: EPOCH });
    await second.ok(1, { offset: 6, epoch: EPOCH, recovered: true });
    second.push({
      type: "message",
      room: "r",
      from: "s-3",
      body: "seven",
      offset: 7,
      epoch: EPOCH,
    });
    assert.equal((await second.frame(2)).body, "queued");
    await second.ok(2, { offset: 8, epoch: EPOCH });
    assert.deepEqual(await queued, { offset: 8, epoch: EPOCH });

    assert.deepEqual(
      seen.events.map((e) => (e.type === "message" ? e.body : e.type)),
      ["five", "disconnected", "reconnected", "six", "seven"],
    );
    const reconnected = seen.events.find((e) => e.type === "reconnected");
    assert.deepEqual(reconnected, {
      type: "reconnected",
      session: "s-2",
      node: "n-2",
      rooms: ["r"],
      failed: {},
      recovered: { r: true },
    });
    assert.deepEqual(client.position("r"), { offset: 8, epoch: EPOCH });
    assert.equal(client.session, "s-2");
  });

  it("says a room was not recovered when the broker says so, and drops a room it refuses", async () => {
    const [client, first] = await opened();
    const seen = new Recorder(client);
    for (const [n, room] of ["a", "b"].entries()) {
      const join = client.join(room);
      await first.ok(n + 1, { offset: 1, epoch: EPOCH });
      await join;
    }
    first.drop(1011);
    const second = await FakeSocket.nth(2);
    second.welcome();
    await second.ok(1, { offset: 9, epoch: EPOCH, recovered: false });
    const refused = await second.frame(2);
    second.push({ type: "error", ref: refused.ref, code: "forbidden", message: "no" });
    const reconnected = await seen.next("reconnected");
    assert.deepEqual(reconnected.rooms, ["a"]);
    assert.deepEqual(reconnected.recovered, { a: false });
    assert.equal(reconnected.failed.b?.code, "forbidden");
    assert.deepEqual(client.rooms, ["a"]);
    assert.deepEqual(client.position("a"), { offset: 9, epoch: EPOCH });
  });

  it("backs off with the policy's jitter after a loss", async () => {
    const draws: number[] = [];
    const [client, first] = await opened({
      reconnect: { initialDelay: 40 },
      random: () => {
        draws.push(1);
        return 1;
      },
    });
    const started = Date.now();
    first.drop(1006);
    await FakeSocket.nth(2);
    assert.ok(Date.now() - started >= 35, "waited the backoff");
    assert.equal(draws.length, 1);
    assert.equal(client.closed, false);
  });

  for (const code of [1003, 1008]) {
    it(`stops after ${code}: the last event says so and requests reject`, async () => {
      const [client, socket] = await opened();
      const seen = new Recorder(client);
      socket.drop(code, "refused");
      assert.deepEqual(seen.events, [
        { type: "disconnected", code, reason: "refused", reconnecting: false },
      ]);
      await assert.rejects(
        client.ping(),
        (e: unknown) => e instanceof ClientClosed && e.closeCode === code,
      );
      await settle();
      assert.equal(FakeSocket.instances.length, 1);
    });
  }

  it("after 1008 with a token function, reconnects at once with a fresh token", async () => {
    let n = 0;
    const [client, first] = await opened({ token: () => `t${++n}` });
    first.drop(1008, "token expired");
    const second = await FakeSocket.nth(2);
    assert.equal(second.url, "ws://n1/ws?token=t2");
    assert.equal(client.closed, false);
  });

  it("rejects a say in flight when the connection drops (it may have been delivered), and counts a leave in flight as done", async () => {
    const [client, socket] = await opened();
    const join = client.join("r");
    await socket.ok(1);
    await join;
    const say = client.say("r", "maybe");
    const leave = client.leave("r");
    await socket.frame(3);
    socket.drop(1006);
    await assert.rejects(say, ConnectionLost);
    await leave;
    assert.deepEqual(client.rooms, []);
  });

  it("drops a connection whose pong does not come, and reconnects", async () => {
    const [client, socket] = await opened({ heartbeat: 20 });
    const seen = new Recorder(client);
    assert.equal((await socket.frame(1)).type, "ping");
    const second = await FakeSocket.nth(2);
    assert.equal(socket.closedWith, 4000);
    assert.deepEqual(seen.events[0], {
      type: "disconnected",
      code: 1006,
      reason: "no pong in time",
      reconnecting: true,
    });
    second.welcome();
    await seen.next("reconnected");
  });
});

describe("events", () => {
  it("come to listeners and, as an async iterator, in order until close", async () => {
    const [client, socket] = await opened();
    const heard: string[] = [];
    const off = client.on("joined", (e) => heard.push(e.session));
    const iterated: ClientEvent[] = [];
    const loop = (async () => {
      for await (const event of client) iterated.push(event);
    })();
    socket.push({ type: "joined", room: "r", session: "s-9" });
    off();
    socket.push({ type: "left", room: "r", session: "s-9" });
    client.close();
    await loop;
    assert.deepEqual(heard, ["s-9"]);
    assert.deepEqual(
      iterated.map((e) => e.type),
      ["joined", "left"],
    );
  });

  it("ignore frames of types this client does not know", async () => {
    const [client, socket] = await opened();
    const seen = new Recorder(client);
    socket.push({ type: "from-the-future", room: "r" });
    socket.onmessage?.({ data: "not json" });
    socket.push({ type: "joined", room: "r", session: "s-9" });
    assert.deepEqual(
      seen.events.map((e) => e.type),
      ["joined"],
    );
  });
});
