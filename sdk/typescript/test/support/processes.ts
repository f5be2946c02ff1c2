// Real processes for the integration tests: redis-server and broker nodes
// (`$ROOMCAST_PYTHON -m broker serve`), each on a free loopback port, waited
// for until ready, and stopped by its PID.

import { spawn, type ChildProcess } from "node:child_process";
import { createHmac } from "node:crypto";
import { createServer, Socket } from "node:net";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const PYTHON = process.env.ROOMCAST_PYTHON ?? "python3";
const REDIS = process.env.ROOMCAST_REDIS_SERVER ?? "redis-server";
// ROOMCAST_REPO: run the broker of another checkout (default: this one).
const REPO = process.env.ROOMCAST_REPO ?? new URL("../../../../..", import.meta.url).pathname;

/** A TCP port nothing listens on right now. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

async function until(
  what: string,
  ready: () => Promise<boolean>,
  timeoutMs = 20_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await ready())) {
    if (Date.now() > deadline) throw new Error(`${what} not ready within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** A process of ours; `stop` sends it SIGTERM (or `signal`) by its PID and waits for its exit. */
export class Proc {
  readonly exited: Promise<number | null>;
  output = "";

  constructor(
    readonly child: ChildProcess,
    readonly name: string,
  ) {
    child.stdout?.on("data", (chunk: Buffer) => (this.output += chunk.toString()));
    child.stderr?.on("data", (chunk: Buffer) => (this.output += chunk.toString()));
    this.exited = new Promise((resolve) => child.once("exit", (code) => resolve(code)));
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  async stop(signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    if (this.running && this.child.pid !== undefined) process.kill(this.child.pid, signal);
    await this.exited;
  }
}

/** A redis-server on a free port, persisting nothing. */
export class Redis extends Proc {
  constructor(
    child: ChildProcess,
    readonly port: number,
  ) {
    super(child, `redis:${port}`);
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}/0`;
  }

  static async start(): Promise<Redis> {
    const port = await freePort();
    const child = spawn(
      REDIS,
      [
        "--port",
        String(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--protected-mode",
        "no",
        "--dir",
        tmpdir(),
        "--enable-debug-command",
        "local",
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    const redis = new Redis(child, port);
    await until(redis.name, async () => (await redis.command("PING")).startsWith("+PONG"));
    return redis;
  }

  /** Send one inline command; resolves with the raw reply (or "" if none in 2 s). */
  command(line: string, timeoutMs = 2000): Promise<string> {
    return new Promise((resolve) => {
      const socket = new Socket();
      let reply = "";
      const done = (): void => {
        socket.destroy();
        resolve(reply);
      };
      socket.setTimeout(timeoutMs, done);
      socket.once("error", done);
      socket.connect(this.port, "127.0.0.1", () => socket.write(`${line}\r\n`));
      socket.on("data", (chunk) => {
        reply += chunk.toString();
        done();
      });
    });
  }
}

/** A broker node (`python -m broker serve`) on a free port. */
export class Broker extends Proc {
  constructor(
    child: ChildProcess,
    readonly port: number,
    readonly args: string[],
  ) {
    super(child, `broker:${port}`);
  }

  get url(): string {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  static async start(args: string[] = [], port?: number): Promise<Broker> {
    const chosen = port ?? (await freePort());
    const child = spawn(
      PYTHON,
      [
        "-m",
        "broker",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        String(chosen),
        "--log-level",
        "warning",
        ...args,
      ],
      { cwd: REPO, stdio: ["ignore", "pipe", "pipe"] },
    );
    const broker = new Broker(child, chosen, args);
    await until(broker.name, async () => {
      if (!broker.running) throw new Error(`${broker.name} exited: ${broker.output}`);
      return (await health(chosen)) === 200;
    });
    return broker;
  }

  /** Start a node like this one again, on its port. */
  restart(): Promise<Broker> {
    return Broker.start(this.args, this.port);
  }
}

async function health(port: number): Promise<number> {
  try {
    return (await fetch(`http://127.0.0.1:${port}/healthz`)).status;
  } catch {
    return 0;
  }
}

/** A fresh temporary directory. */
export function tempDir(): string {
  return mkdtempSync(join(tmpdir(), "roomcast-ts-"));
}

/** An HS256 JSON Web Token of `claims`, signed with `secret`. */
export function hs256(secret: string, claims: Record<string, unknown>): string {
  const part = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString("base64url");
  const body = `${part({ alg: "HS256", typ: "JWT" })}.${part(claims)}`;
  return `${body}.${createHmac("sha256", secret).update(body).digest("base64url")}`;
}
