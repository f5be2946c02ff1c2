import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Message, Ok } from "../../src/index.js";
import { Positions } from "../../src/positions.js";

const EPOCH = "e-aaaaaaaaaaaa";
const ok = (offset: number, fields: Partial<Ok> = {}): Ok => ({
  type: "ok",
  ref: 1,
  offset,
  epoch: EPOCH,
  ...fields,
});
const message = (offset: number, epoch = EPOCH): Message => ({
  type: "message",
  room: "r",
  from: "s-x",
  body: offset,
  offset,
  epoch,
});

describe("positions (recovery bookkeeping)", () => {
  it("start at the join's position and move with each message handed on", () => {
    const positions = new Positions();
    positions.joined("r", ok(4));
    assert.ok(positions.accept(message(5)));
    assert.deepEqual(positions.position("r"), { offset: 5, epoch: EPOCH });
  });

  it("drop a replayed message already handed on, so none comes twice", () => {
    const positions = new Positions();
    positions.joined("r", ok(4));
    assert.ok(positions.accept(message(5)));
    assert.equal(positions.accept(message(5)), false);
    assert.equal(positions.accept(message(3)), false);
  });

  it("count the client's own says, whose messages it never receives", () => {
    const positions = new Positions();
    positions.joined("r", ok(4));
    positions.said("r", ok(6));
    assert.deepEqual(positions.position("r"), { offset: 4, epoch: EPOCH }, "5 is still missing");
    assert.ok(positions.accept(message(5)));
    assert.deepEqual(positions.position("r"), { offset: 6, epoch: EPOCH });
    assert.equal(positions.accept(message(6)), false);
  });

  it("keep the position over a recovered re-join, and take the ok's after one not recovered", () => {
    const positions = new Positions();
    positions.joined("r", ok(4));
    positions.joined("r", ok(9, { recovered: true }));
    assert.deepEqual(positions.position("r"), { offset: 4, epoch: EPOCH });
    positions.joined("r", ok(9, { recovered: false }));
    assert.deepEqual(positions.position("r"), { offset: 9, epoch: EPOCH });
  });

  it("move to a new epoch only on a join's ok, and pass on messages of another epoch", () => {
    const positions = new Positions();
    positions.joined("r", ok(4));
    assert.ok(positions.accept(message(1, "e-bbbbbbbbbbbb")));
    assert.deepEqual(positions.position("r"), { offset: 4, epoch: EPOCH });
    positions.joined("r", { type: "ok", ref: 2, offset: 0, epoch: "e-bbbbbbbbbbbb" });
    assert.deepEqual(positions.position("r"), { offset: 0, epoch: "e-bbbbbbbbbbbb" });
  });

  it("have no position for a room without history, and pass on all its messages", () => {
    const positions = new Positions();
    positions.joined("r", { type: "ok", ref: 1 });
    assert.equal(positions.position("r"), null);
    const plain: Message = { type: "message", room: "r", from: "s-x", body: 1 };
    assert.ok(positions.accept(plain) && positions.accept(plain));
  });

  it("forget a room that was left", () => {
    const positions = new Positions();
    positions.joined("r", ok(4));
    positions.forget("r");
    assert.equal(positions.position("r"), null);
  });
});
