// Records a client's events and lets a test await the one it expects
// (resolved by the event itself, never by sleeping).

import type { Client, ClientEvent, EventMap, Message } from "../../src/index.js";

export class Recorder {
  readonly events: ClientEvent[] = [];
  private waiters: { match: (e: ClientEvent) => boolean; resolve: (e: ClientEvent) => void }[] = [];

  constructor(client: Client) {
    for (const type of [
      "message",
      "joined",
      "left",
      "disconnected",
      "reconnected",
      "gap",
    ] as const) {
      client.on(type, (event) => this.push(event));
    }
  }

  /** The bodies of the messages of `room` so far, in order. */
  bodies(room: string): unknown[] {
    return this.events
      .filter((e): e is Message => e.type === "message" && e.room === room)
      .map((e) => e.body);
  }

  /** The first event (recorded or to come) of `type` matching `match`. */
  next<K extends keyof EventMap>(
    type: K,
    match: (event: EventMap[K]) => boolean = () => true,
    timeoutMs = 10_000,
    after = 0,
  ): Promise<EventMap[K]> {
    const test = (e: ClientEvent): boolean => e.type === type && match(e as EventMap[K]);
    const found = this.events.slice(after).find(test);
    if (found) return Promise.resolve(found as EventMap[K]);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            new Error(
              `no ${type} event within ${timeoutMs} ms; got ${JSON.stringify(this.events)}`,
            ),
          ),
        timeoutMs,
      );
      this.waiters.push({
        match: test,
        resolve: (e) => {
          clearTimeout(timer);
          resolve(e as EventMap[K]);
        },
      });
    });
  }

  /** Wait until `room` has `count` messages. */
  async messages(room: string, count: number, timeoutMs = 10_000): Promise<unknown[]> {
    let seen = 0;
    await this.next("message", (e) => e.room === room && ++seen >= count, timeoutMs).catch(() => {
      throw new Error(
        `${room}: ${this.bodies(room).length} of ${count} messages: ${JSON.stringify(this.bodies(room))}`,
      );
    });
    return this.bodies(room);
  }

  private push(event: ClientEvent): void {
    this.events.push(event);
    const waiters = this.waiters;
    this.waiters = [];
    for (const waiter of waiters) {
      if (waiter.match(event)) waiter.resolve(event);
      else this.waiters.push(waiter);
    }
  }
}
