import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  backoffBound,
  backoffDelay,
  CLOSE_RULES,
  DEFAULT_RECONNECT,
  reconnectRule,
} from "../../src/index.js";

describe("backoff", () => {
  const policy = { ...DEFAULT_RECONNECT, initialDelay: 100, maxDelay: 1000, factor: 2 };

  it("doubles its bound with every failure up to the cap", () => {
    assert.deepEqual(
      [0, 1, 2, 3, 4, 5, 50].map((n) => backoffBound(policy, n)),
      [100, 200, 400, 800, 1000, 1000, 1000],
    );
  });

  it("draws each pause uniformly below the bound (full jitter)", () => {
    assert.equal(
      backoffDelay(policy, 2, () => 0),
      0,
    );
    assert.equal(
      backoffDelay(policy, 2, () => 0.5),
      200,
    );
    assert.equal(
      backoffDelay(policy, 2, () => 0.999),
      399.6,
    );
  });
});

describe("close rules", () => {
  it("come from the schema's table: 1001 at once, 1003 and 1008 stop, the rest back off", () => {
    assert.equal(reconnectRule(1001), "at_once");
    assert.equal(reconnectRule(1003), "stop");
    assert.equal(reconnectRule(1008), "stop");
    for (const code of [1000, 1002, 1006, 1007, 1009, 1011, 1013])
      assert.equal(reconnectRule(code), "backoff");
    assert.equal(Object.keys(CLOSE_RULES).length, 10);
  });

  it("back off for a code the table does not know", () => {
    assert.equal(reconnectRule(4321), "backoff");
  });

  it("reconnect at once after 1008 when a token function can give a fresh token", () => {
    assert.equal(reconnectRule(1008, true), "at_once");
    assert.equal(reconnectRule(1003, true), "stop");
  });
});
