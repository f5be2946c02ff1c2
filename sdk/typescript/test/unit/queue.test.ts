import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { ClientEvent, Message } from "../../src/index.js";
import { EventQueue } from "../../src/queue.js";

const message = (offset: number, room = "r"): Message => ({
  type: "message",
  room,
  from: "s-x",
  body: offset,
  offset,
  epoch: "e-1",
});
const disconnected: ClientEvent = {
  type: "disconnected",
  code: 1006,
  reason: "",
  reconnecting: true,
};

async function drain(queue: EventQueue): Promise<ClientEvent[]> {
  queue.end();
  const events: ClientEvent[] = [];
  for await (const event of queue) events.push(event);
  return events;
}

describe("event queue", () => {
  it("hands events out in order", async () => {
    const queue = new EventQueue(10);
    queue.put(message(1));
    queue.put(message(2));
    assert.deepEqual(await drain(queue), [message(1), message(2)]);
  });

  it("drops the oldest room event when full, counts it, and reports it as a gap first", async (t) => {
    const warn = t.mock.method(console, "warn", () => {});
    const queue = new EventQueue(2);
    queue.put(message(1));
    queue.put(message(2));
    queue.put(message(3));
    queue.put(message(4));
    assert.equal(queue.dropped, 2);
    assert.equal(warn.mock.callCount(), 1, "one warning per overflow episode");
    assert.deepEqual(await drain(queue), [
      { type: "gap", room: "r", epoch: "e-1", afterOffset: 0, lastOffset: 2, dropped: 2 },
      message(3),
      message(4),
    ]);
  });

  it("keeps lifecycle events while room events can be dropped instead", async (t) => {
    t.mock.method(console, "warn", () => {});
    const queue = new EventQueue(2);
    queue.put(disconnected);
    queue.put(message(1));
    queue.put(message(2));
    const events = await drain(queue);
    assert.deepEqual(
      events.map((e) => e.type),
      ["gap", "disconnected", "message"],
    );
  });

  it("wakes a waiting reader and ends it once drained", async () => {
    const queue = new EventQueue(5);
    const next = queue.next();
    queue.put(message(7));
    assert.deepEqual(await next, { value: message(7), done: false });
    const last = queue.next();
    queue.end();
    assert.deepEqual(await last, { value: undefined, done: true });
  });

  it("throws the error it ended with once drained", async () => {
    const queue = new EventQueue(5);
    queue.put(message(1));
    queue.end(new Error("ended"));
    assert.deepEqual((await queue.next()).value, message(1));
    await assert.rejects(queue.next(), /ended/);
  });

  it("detaches when the loop breaks", async () => {
    let detached = 0;
    const queue = new EventQueue(5, () => detached++);
    queue.put(message(1));
    for await (const _ of queue) break;
    assert.equal(detached, 1);
  });
});
