// Whether and when to reconnect. Whether: the protocol's close-rule table,
// generated from the schema export (never written again here). When: an
// exponential backoff with full jitter, so that many clients dropped at once
// do not come back at once.

import { CLOSE_RULES, type ReconnectRule } from "./generated/protocol.js";

/** How a client reconnects (every delay in ms). */
export interface ReconnectPolicy {
  /** Upper bound of the first pause. Default 250. */
  initialDelay: number;
  /** Cap of every pause. Default 10000. */
  maxDelay: number;
  /** Growth of the bound per failed attempt. Default 2. */
  factor: number;
  /** Consecutive failed attempts after which the client ends; `Infinity` tries forever. Default 100. */
  maxAttempts: number;
}

/** The default reconnect policy (the Python SDK's). */
export const DEFAULT_RECONNECT: Readonly<ReconnectPolicy> = {
  initialDelay: 250,
  maxDelay: 10_000,
  factor: 2,
  maxAttempts: 100,
};

/** The largest pause after `failures` consecutive failed attempts. */
export function backoffBound(policy: ReconnectPolicy, failures: number): number {
  return Math.min(policy.maxDelay, policy.initialDelay * policy.factor ** failures);
}

/** A pause after `failures` consecutive failed attempts: uniform in [0, bound). */
export function backoffDelay(
  policy: ReconnectPolicy,
  failures: number,
  random: () => number = Math.random,
): number {
  return random() * backoffBound(policy, failures);
}

/**
 * What to do after a close with `code` (the schema's table; unknown codes
 * back off). With a token function, 1008 (policy: the token expired or was
 * refused) reconnects at once with a fresh token instead of stopping.
 */
export function reconnectRule(code: number, freshToken = false): ReconnectRule {
  if (code === 1008 && freshToken) return "at_once";
  return CLOSE_RULES[code] ?? "backoff";
}
