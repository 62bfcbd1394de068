// The Redis limiter store against a real redis-server (started here when `redis-server` is on the
// PATH, or AUTH_TEST_REDIS_URL's when set; skipped otherwise): its decisions equal the in-memory
// store's, field for field, on a pseudo-random sequence of multi-scope checks, and its keys expire
// when their bucket is full again. The client is a minimal RESP implementation over node:net.

import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { connect, createServer, type Socket } from "node:net";
import { after, before, test } from "node:test";
import { MemoryLimiterStore, redisLimiterStore, ScopeLimiter } from "../gen/index.js";

/** Just enough RESP2 for EVAL and a few commands: requests are pipelined, replies parsed in order. */
class Resp {
  readonly #socket: Socket;
  #buffer = Buffer.alloc(0);
  readonly #waiting: Array<{ resolve: (value: unknown) => void; reject: (error: Error) => void }> = [];

  constructor(socket: Socket) {
    this.#socket = socket;
    socket.on("data", (chunk) => {
      this.#buffer = Buffer.concat([this.#buffer, chunk]);
      for (;;) {
        const parsed = this.#parse(0);
        if (parsed === null) break;
        this.#buffer = this.#buffer.subarray(parsed.end);
        const waiter = this.#waiting.shift()!;
        if (parsed.value instanceof Error) waiter.reject(parsed.value);
        else waiter.resolve(parsed.value);
      }
    });
  }

  static async connect(host: string, port: number): Promise<Resp> {
    const socket = connect(port, host);
    await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject));
    return new Resp(socket);
  }

  command(...args: string[]): Promise<unknown> {
    let frame = `*${args.length}\r\n`;
    for (const arg of args) frame += `$${Buffer.byteLength(arg)}\r\n${arg}\r\n`;
    this.#socket.write(frame);
    return new Promise((resolve, reject) => this.#waiting.push({ resolve, reject }));
  }

  close(): void {
    this.#socket.destroy();
  }

  #parse(at: number): { value: unknown; end: number } | null {
    const lineEnd = this.#buffer.indexOf("\r\n", at);
    if (lineEnd < 0) return null;
    const kind = String.fromCharCode(this.#buffer[at]!);
    const line = this.#buffer.toString("utf8", at + 1, lineEnd);
    const next = lineEnd + 2;
    switch (kind) {
      case "+":
        return { value: line, end: next };
      case "-":
        return { value: new Error(line), end: next };
      case ":":
        return { value: Number(line), end: next };
      case "$": {
        const length = Number(line);
        if (length < 0) return { value: null, end: next };
        if (this.#buffer.length < next + length + 2) return null;
        return { value: this.#buffer.toString("utf8", next, next + length), end: next + length + 2 };
      }
      case "*": {
        const count = Number(line);
        const items: unknown[] = [];
        let end = next;
        for (let i = 0; i < count; i++) {
          const item = this.#parse(end);
          if (item === null) return null;
          items.push(item.value);
          end = item.end;
        }
        return { value: count < 0 ? null : items, end };
      }
      default:
        throw new Error(`unexpected RESP type ${kind}`);
    }
  }
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

const fromEnv = process.env.AUTH_TEST_REDIS_URL;
const available = fromEnv !== undefined || spawnSync("redis-server", ["--version"]).status === 0;
let redis: ChildProcess | null = null;
let client: Resp;
const prefix = `auth-ts-test:${process.pid}:`;

before(async () => {
  if (!available) return;
  let host = "127.0.0.1";
  let port: number;
  const url = fromEnv === undefined ? null : new URL(fromEnv);
  if (url !== null) {
    host = url.hostname;
    port = Number(url.port || 6379);
  } else {
    port = await freePort();
    redis = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], { stdio: "ignore" });
  }
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      client = await Resp.connect(host, port);
      if (url?.password) await client.command("AUTH", ...(url.username ? [decodeURIComponent(url.username)] : []), decodeURIComponent(url.password));
      if (url !== null && url.pathname.length > 1) await client.command("SELECT", url.pathname.slice(1));
      if ((await client.command("PING")) === "PONG") break;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
});

after(async () => {
  client?.close();
  if (redis !== null) {
    redis.kill("SIGTERM");
    await new Promise((resolve) => redis!.once("exit", resolve));
  }
});

test("Redis store: the same decisions as the memory store, field for field", { skip: !available && "no redis-server" }, async () => {
  const quotas = { a: { burst: 3, perSeconds: 10 }, b: { burst: 7, perSeconds: 60 }, c: { burst: 50, perSeconds: 1 } };
  let now = 1_700_000_000_000;
  const nowMs = () => now;
  const store = redisLimiterStore((script, keys, args) => client.command("EVAL", script, String(keys.length), ...keys, ...args), { prefix });
  const shared = new ScopeLimiter({ quotas, nowMs, store });
  const local = new ScopeLimiter({ quotas, nowMs, store: new MemoryLimiterStore() });
  let seed = 7;
  const random = () => {
    seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
    return seed / 2 ** 31;
  };
  const scopeSets = [["a"], ["b"], ["a", "b"], ["a", "b", "c"], ["c"], ["b", "c"]];
  let refusals = 0;
  for (let i = 0; i < 400; i++) {
    now += Math.floor(random() * 1500);
    const scopes = scopeSets[Math.floor(random() * scopeSets.length)]!;
    const subject = `user-${Math.floor(random() * 3)}`;
    const [fromRedis, fromMemory] = await Promise.all([shared.checkAll(scopes, subject), local.checkAll(scopes, subject)]);
    assert.deepEqual(fromRedis, fromMemory, `step ${i}`);
    if (!fromRedis!.decision.allowed) refusals++;
  }
  assert.ok(refusals > 20, `the sequence exercises refusals (${refusals})`);
});

test("Redis store: a key expires when its bucket is full again", { skip: !available && "no redis-server" }, async () => {
  const store = redisLimiterStore((script, keys, args) => client.command("EVAL", script, String(keys.length), ...keys, ...args), { prefix });
  const limiter = new ScopeLimiter({ quotas: { s: { burst: 2, perSeconds: 4 } }, store });
  await limiter.checkAll(["s"], "ttl");
  const ttl = Number(await client.command("PTTL", `${prefix}s ttl`));
  assert.ok(ttl > 1_500 && ttl <= 2_000, `PTTL ${ttl}`);
  const stored = Number(await client.command("GET", `${prefix}s ttl`));
  assert.ok(Math.abs(stored - (Date.now() + 2_000) * 1000) < 1_000_000, "the TAT in microseconds");
});
