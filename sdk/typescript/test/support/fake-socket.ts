// A scripted WebSocket for unit tests: the test plays the broker, frame by
// frame, and awaits what the client does (a new connection, a sent frame).

type Frame = Record<string, unknown>;

export class FakeSocket {
  static instances: FakeSocket[] = [];
  private static waiters: ((socket: FakeSocket) => void)[] = [];

  readyState = 1;
  readonly sent: Frame[] = [];
  closedWith: number | undefined;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  onclose: ((event: { code: number; reason: string }) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;
  private sentWaiters: (() => void)[] = [];

  constructor(readonly url: string) {
    FakeSocket.instances.push(this);
    const waiters = FakeSocket.waiters;
    FakeSocket.waiters = [];
    for (const wake of waiters) wake(this);
  }

  /** Forget every socket (between tests). */
  static reset(): void {
    FakeSocket.instances = [];
    FakeSocket.waiters = [];
  }

  /** The `n`-th socket ever opened (from 1), once it is. */
  static async nth(n: number): Promise<FakeSocket> {
    while (FakeSocket.instances.length < n) {
      await new Promise<FakeSocket>((resolve) => FakeSocket.waiters.push(resolve));
    }
    return FakeSocket.instances[n - 1]!;
  }

  send(data: string): void {
    this.sent.push(JSON.parse(data) as Frame);
    const waiters = this.sentWaiters;
    this.sentWaiters = [];
    for (const wake of waiters) wake();
  }

  close(code = 1000): void {
    this.closedWith = code;
    this.readyState = 3;
  }

  /** The `n`-th frame the client sent (from 1), once it is. */
  async frame(n: number): Promise<Frame> {
    while (this.sent.length < n)
      await new Promise<void>((resolve) => this.sentWaiters.push(resolve));
    return this.sent[n - 1]!;
  }

  /** Deliver `frame` to the client. */
  push(frame: Frame): void {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }

  welcome(session = "s-1", node = "n-1"): void {
    this.push({ type: "welcome", session, node, protocol: 1 });
  }

  /** Answer the client's `n`-th frame with `ok` (and `fields`). */
  async ok(n: number, fields: Frame = {}): Promise<Frame> {
    const request = await this.frame(n);
    this.push({ type: "ok", ref: request.ref, ...fields });
    return request;
  }

  /** The connection ends with `code`. */
  drop(code = 1006, reason = ""): void {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
}

/** Let pending promise callbacks and zero-delay timers run. */
export function settle(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}
