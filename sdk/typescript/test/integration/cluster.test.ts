// Two broker nodes on one Redis, the way a cluster runs: messages cross nodes,
// presence and history are cluster-wide, and a client whose node is killed
// reconnects to the other and recovers what was said meanwhile.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { WebSocket } from "ws";
import { connect, type Client, type ConnectOptions } from "../../src/index.js";
import { Recorder } from "../support/events.js";
import { Broker, Redis } from "../support/processes.js";

describe("two nodes on Redis", () => {
  let redis: Redis;
  let a: Broker;
  let b: Broker;
  const clients: Client[] = [];

  const open = async (urls: string | string[], options: ConnectOptions = {}): Promise<Client> => {
    const client = connect(urls, { WebSocket, timeout: 5000, ...options });
    clients.push(client);
    await client.ready;
    return client;
  };

  before(async () => {
    redis = await Redis.start();
    [a, b] = await Promise.all([
      Broker.start(["--redis-url", redis.url]),
      Broker.start(["--redis-url", redis.url]),
    ]);
  });

  after(async () => {
    for (const client of clients) client.close();
    await Promise.all([a, b].map((node) => node?.stop()));
    await redis?.stop();
  });

  it("delivers a say on one node to a member on the other, with its position", async () => {
    const alice = await open(a.url);
    const bob = await open(b.url);
    const heard = new Recorder(bob);
    assert.notEqual(alice.node, bob.node);
    await alice.join("cross");
    const joinedAt = await bob.join("cross");
    const said = await alice.say("cross", { text: "hi bob" });

    const message = await heard.next("message");
    assert.deepEqual(message.body, { text: "hi bob" });
    assert.equal(message.from, alice.session);
    assert.equal(message.offset, said?.offset);
    assert.equal(said?.offset, (joinedAt?.offset ?? 0) + 1);
    assert.deepEqual(bob.position("cross"), said);
  });

  it("tells members who joined and left, and presence lists both nodes' sessions", async () => {
    const alice = await open(a.url);
    const bob = await open(b.url);
    const seen = new Recorder(alice);
    await alice.join("who");
    await bob.join("who");
    assert.equal((await seen.next("joined", (e) => e.room === "who")).session, bob.session);

    const presence = await alice.presence("who");
    assert.equal(presence.count, 2);
    assert.deepEqual(
      presence.members.map((m) => m.session).sort(),
      [alice.session, bob.session].sort(),
    );
    assert.equal(presence.truncated, false);

    await bob.leave("who");
    assert.equal((await seen.next("left", (e) => e.room === "who")).session, bob.session);
    assert.equal((await alice.presence("who")).count, 1);
    assert.deepEqual(bob.rooms, []);
  });

  it("reads history oldest first, limited and paged back", async () => {
    const alice = await open(a.url);
    const bob = await open(b.url);
    await alice.join("past");
    for (const n of [1, 2, 3, 4]) await alice.say("past", n);
    await bob.join("past");

    const all = await bob.history("past");
    assert.deepEqual(
      all.messages.map((m) => m.body),
      [1, 2, 3, 4],
    );
    assert.equal(all.position?.offset, 4);
    const newest = await bob.history("past", { limit: 2 });
    assert.deepEqual(
      newest.messages.map((m) => m.body),
      [3, 4],
    );
    const older = await bob.history("past", { limit: 2, before: newest.messages[0]!.offset });
    assert.deepEqual(
      older.messages.map((m) => m.body),
      [1, 2],
    );
  });

  it("reconnects to the other node after its node is SIGKILLed and recovers every message said meanwhile", async () => {
    const victim = await Broker.start(["--redis-url", redis.url]);
    try {
      // The jitter source makes the first backoff its full bound (1 s): the
      // says below happen while the client is away.
      const alice = await open([victim.url, b.url], {
        random: () => 1,
        reconnect: { initialDelay: 1000 },
      });
      const bob = await open(b.url);
      const heard = new Recorder(alice);
      await alice.join("keep");
      await bob.join("keep");
      await bob.say("keep", "before");
      await heard.messages("keep", 1);

      await victim.stop("SIGKILL");
      const disconnected = await heard.next("disconnected");
      assert.equal(disconnected.code, 1006);
      assert.equal(disconnected.reconnecting, true);
      const meanwhile = Array.from({ length: 20 }, (_, i) => `while away ${i}`);
      for (const text of meanwhile) await bob.say("keep", text);
      const count = heard.events.length;

      const reconnected = await heard.next("reconnected");
      assert.equal(reconnected.node, bob.node);
      assert.deepEqual(reconnected.rooms, ["keep"]);
      assert.deepEqual(reconnected.recovered, { keep: true });
      assert.ok(
        heard.events.slice(0, count).every((e) => e.type !== "message" || e.body === "before"),
      );
      await bob.say("keep", "live");

      assert.deepEqual(await heard.messages("keep", 22), ["before", ...meanwhile, "live"]);
      const offsets = heard.events.flatMap((e) => (e.type === "message" ? [e.offset] : []));
      assert.deepEqual(
        offsets,
        [...offsets].sort((x, y) => x! - y!),
      );
      assert.equal(new Set(offsets).size, offsets.length);
    } finally {
      await victim.stop("SIGKILL");
    }
  });
});
