// The bounded queue behind `for await (const event of client)`.
//
// Policy: the connection never waits for the application. When `max` events
// wait and another comes, the oldest waiting room event is dropped (lifecycle
// events only when nothing else is left), counted in `dropped`, and warned
// about once per overflow episode (it ends when the queue is emptied).
// Dropped messages of a room with history come back as one `gap` per room,
// handed out before the queue's next event.

import type { ClientEvent, Gap } from "./events.js";

export class EventQueue implements AsyncIterableIterator<ClientEvent> {
  /** Events dropped unread. */
  dropped = 0;
  private readonly items: ClientEvent[] = [];
  private readonly gaps = new Map<string, Gap>();
  private wake: (() => void) | null = null;
  private overflowing = false;
  private ended = false;
  private error: Error | null = null;

  /**
   * @param max events kept at most (at least 1)
   * @param detach called once when the consumer stops iterating
   */
  constructor(
    private readonly max: number,
    private readonly detach: (queue: EventQueue) => void = () => {},
  ) {}

  get size(): number {
    return this.items.length;
  }

  /** Append `event`, dropping the oldest room event if full. */
  put(event: ClientEvent): void {
    if (this.ended) return;
    if (this.items.length >= this.max) this.dropOldest();
    this.items.push(event);
    this.notify();
  }

  /** Accept no more; iteration ends (or throws `error`) once drained. */
  end(error: Error | null = null): void {
    if (this.ended) return;
    this.ended = true;
    this.error = error;
    this.notify();
  }

  async next(): Promise<IteratorResult<ClientEvent, undefined>> {
    for (;;) {
      const event = this.take();
      if (event) return { value: event, done: false };
      if (this.ended) {
        if (this.error) throw this.error;
        return { value: undefined, done: true };
      }
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }

  async return(): Promise<IteratorResult<ClientEvent, undefined>> {
    this.end();
    this.items.length = 0;
    this.detach(this);
    return { value: undefined, done: true };
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  private take(): ClientEvent | undefined {
    // A gap is only made when an event is dropped to make room for another,
    // so one is pending only while events wait.
    const gap = this.gaps.values().next().value;
    if (gap) {
      this.gaps.delete(gap.room);
      return gap;
    }
    const event = this.items.shift();
    if (this.items.length === 0) this.overflowing = false;
    return event;
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }

  private dropOldest(): void {
    const index = Math.max(
      0,
      this.items.findIndex((e) => e.type !== "disconnected" && e.type !== "reconnected"),
    );
    const [event] = this.items.splice(index, 1);
    this.dropped += 1;
    if (!this.overflowing) {
      this.overflowing = true;
      console.warn(`roomcast: ${this.max} events wait unread; dropping the oldest`);
    }
    if (event?.type !== "message" || event.epoch === undefined) return;
    const offset = event.offset ?? 0;
    const known = this.gaps.get(event.room);
    this.gaps.set(
      event.room,
      known && known.epoch === event.epoch
        ? {
            ...known,
            afterOffset: Math.min(known.afterOffset, offset - 1),
            lastOffset: Math.max(known.lastOffset, offset),
            dropped: known.dropped + 1,
          }
        : {
            type: "gap",
            room: event.room,
            epoch: event.epoch,
            afterOffset: offset - 1,
            lastOffset: offset,
            dropped: 1,
          },
    );
  }
}
