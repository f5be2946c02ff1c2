// Every error code a client can provoke through the SDK reaches the caller
// as a BrokerError carrying the broker's code, and the client goes on working.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { WebSocket } from "ws";
import { BrokerError, connect, ERROR_CODES, type Client, type ErrorCode } from "../../src/index.js";
import { Broker, hs256, Redis } from "../support/processes.js";

const SECRET = "test-secret-long-enough-for-hs256-and-even-for-hs512-0123456789-";
const provoked = new Set<ErrorCode>();

async function rejectsWith(promise: Promise<unknown>, code: ErrorCode): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof BrokerError, String(error));
    assert.equal(error.code, code);
    assert.ok(error.message.length > 0);
    return true;
  });
  provoked.add(code);
}

describe("error codes", () => {
  const nodes: Broker[] = [];
  const clients: Client[] = [];
  let redis: Redis | undefined;

  const open = async (url: string, token?: string): Promise<Client> => {
    const client = connect(url, { WebSocket, timeout: 10_000, ...(token ? { token } : {}) });
    clients.push(client);
    await client.ready;
    return client;
  };
  const node = async (args: string[]): Promise<Broker> => {
    const started = await Broker.start(args);
    nodes.push(started);
    return started;
  };

  let strict: Broker;
  before(async () => {
    strict = await node([
      "--max-rooms-per-session",
      "1",
      "--say-rate",
      "1",
      "--say-burst",
      "1",
      "--history-size",
      "5",
    ]);
  });

  after(async () => {
    for (const client of clients) client.close();
    await Promise.all(nodes.map((n) => n.stop()));
    await redis?.stop("SIGKILL");
  });

  it("bad_room for a room name outside the rule", async () => {
    const client = await open(strict.url);
    await rejectsWith(client.join("no spaces allowed"), "bad_room");
    assert.deepEqual(client.rooms, []);
  });

  it("not_member for a say, history or presence of a room not joined", async () => {
    const client = await open(strict.url);
    await rejectsWith(client.say("elsewhere", "x"), "not_member");
    await rejectsWith(client.history("elsewhere"), "not_member");
    await rejectsWith(client.presence("elsewhere"), "not_member");
  });

  it("too_many_rooms past --max-rooms-per-session", async () => {
    const client = await open(strict.url);
    await client.join("first");
    await rejectsWith(client.join("second"), "too_many_rooms");
    assert.deepEqual(client.rooms, ["first"]);
  });

  it("rate_limited past the say rate, and the connection stays open", async () => {
    const client = await open(strict.url);
    await client.join("fast");
    await client.say("fast", 1);
    await rejectsWith(client.say("fast", 2), "rate_limited");
    assert.ok((await client.ping()) >= 0);
  });

  it("bad_message for a history limit above --history-size", async () => {
    const client = await open(strict.url);
    await client.join("kept");
    await rejectsWith(client.history("kept", { limit: 6 }), "bad_message");
  });

  it("unauthorized for a refresh on a node that uses no tokens", async () => {
    const client = await open(strict.url);
    await rejectsWith(client.refresh("whatever"), "unauthorized");
  });

  it("forbidden for a room the token grants nothing in", async () => {
    const secured = await node(["--jwt-secret", SECRET]);
    const exp = Math.floor(Date.now() / 1000) + 300;
    const token = hs256(SECRET, {
      sub: "alice",
      exp,
      rooms: [{ pattern: "lobby", rights: ["join"] }],
    });
    const client = await open(secured.url, token);
    assert.equal(client.user, "alice");
    await client.join("lobby");
    await rejectsWith(client.join("vault"), "forbidden");
    await rejectsWith(client.say("lobby", "x"), "forbidden");
  });

  it("internal when Redis never confirms a say, unavailable when Redis is gone", async () => {
    redis = await Redis.start();
    const clustered = await node(["--redis-url", redis.url]);
    const client = await open(clustered.url);
    await client.join("fragile");
    await client.say("fragile", "fine");

    // Stalled past the publisher's 5 s timeout: the outcome is unknown.
    void redis.command("DEBUG SLEEP 5.5", 7000);
    assert.equal(await redis.command("PING", 300), "", "Redis should be stalled");
    await rejectsWith(client.say("fragile", "maybe"), "internal");

    await redis.stop("SIGKILL");
    await rejectsWith(client.say("fragile", "lost"), "unavailable");
    assert.ok((await client.ping()) >= 0);
  });

  it("every error code but bad_json was provoked (the SDK only sends JSON)", () => {
    assert.deepEqual([...provoked, "bad_json"].sort(), [...ERROR_CODES].sort());
  });
});
