// Tokens: a token function gives a fresh token for every connection, so a
// connection closed with 1008 when its token expires reconnects with a new
// one; `refresh` replaces the token of the open connection.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { WebSocket } from "ws";
import { BrokerError, ClientClosed, connect, type Client } from "../../src/index.js";
import { Recorder } from "../support/events.js";
import { Broker, hs256 } from "../support/processes.js";

const SECRET = "test-secret-long-enough-for-hs256-and-even-for-hs512-0123456789-";
const EVERYWHERE = [{ pattern: "*", rights: ["join", "say"] }];

function token(expiresIn: number, sub = "alice", rooms: unknown[] = EVERYWHERE): string {
  return hs256(SECRET, { sub, exp: Math.floor(Date.now() / 1000) + expiresIn, rooms });
}

describe("tokens", () => {
  let node: Broker;
  const clients: Client[] = [];

  before(async () => {
    node = await Broker.start(["--jwt-secret", SECRET, "--jwt-leeway", "0"]);
  });

  after(async () => {
    for (const client of clients) client.close();
    await node?.stop();
  });

  it("reconnects with a fresh token from the token function after a 1008 for an expired one", async () => {
    const issued: string[] = [];
    const client = connect(node.url, {
      WebSocket,
      token: () => {
        // The first token expires within 2 s; the next ones last.
        issued.push(token(issued.length === 0 ? 2 : 300));
        return issued.at(-1)!;
      },
    });
    clients.push(client);
    const seen = new Recorder(client);
    await client.ready;
    await client.join("renewed");

    const disconnected = await seen.next("disconnected", () => true, 10_000);
    assert.equal(disconnected.code, 1008);
    assert.equal(disconnected.reconnecting, true);
    const reconnected = await seen.next("reconnected");
    assert.deepEqual(reconnected.rooms, ["renewed"]);
    assert.equal(issued.length, 2);
    assert.equal(client.user, "alice");
    assert.ok(client.position("renewed") !== null);
  });

  it("ends after a 1008 when the token is a fixed string", async () => {
    const client = connect(node.url, { WebSocket, token: token(1) });
    clients.push(client);
    const seen = new Recorder(client);
    await client.ready;
    const disconnected = await seen.next("disconnected", () => true, 10_000);
    assert.deepEqual([disconnected.code, disconnected.reconnecting], [1008, false]);
    assert.ok(client.closed);
    await assert.rejects(
      client.ping(),
      (error: unknown) => error instanceof ClientClosed && error.closeCode === 1008,
    );
  });

  it("refresh replaces the token before it expires, from the token function", async () => {
    let calls = 0;
    const client = connect(node.url, {
      WebSocket,
      token: () => token(++calls === 1 ? 2 : 300),
    });
    clients.push(client);
    const seen = new Recorder(client);
    await client.ready;
    await client.join("kept-open");
    await client.refresh();
    assert.equal(calls, 2);
    // The first token's exp passes; the refreshed connection stays open.
    await new Promise((resolve) => setTimeout(resolve, 3000));
    assert.ok((await client.ping()) >= 0);
    assert.equal(seen.events.filter((e) => e.type === "disconnected").length, 0);
  });

  it("refresh with another user's token or one that drops a joined room is refused, and nothing changes", async () => {
    const client = connect(node.url, { WebSocket, token: token(300) });
    clients.push(client);
    await client.ready;
    await client.join("mine");
    await assert.rejects(
      client.refresh(token(300, "mallory")),
      (e: unknown) => e instanceof BrokerError && e.code === "unauthorized",
    );
    const narrower = token(300, "alice", [{ pattern: "other", rights: ["join"] }]);
    await assert.rejects(
      client.refresh(narrower),
      (e: unknown) => e instanceof BrokerError && e.code === "forbidden",
    );
    await client.say("mine", "still here");
  });
});
