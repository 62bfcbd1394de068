// Scope limits: auth-core's GCRA vectors reproduced exactly, the in-memory store's bounds, the
// all-or-nothing batch, and the guards end to end with real tokens of a running auth-server
// (the write limit of the booking spec, 30 per minute, refuses the 31st request).

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import {
  Auth,
  Gcra,
  MemoryLimiterStore,
  ScopeLimiter,
  policyHeader,
  rateLimitHeader,
  retryAfterSeconds,
  type GcraCheck,
  type GuardOutcome,
  type LimiterStore,
  type RateDecision,
} from "../gen/index.js";
import { AuthServer, type TokenAnswer } from "./server.js";

const T0 = 1_700_000_000_000;
const quota = (burst: number, perSeconds: number) => ({ burst, perSeconds });

describe("GCRA, as auth-core computes it", () => {
  test("burst, then a refusal with Retry-After", async () => {
    let now = T0;
    const limiter = new ScopeLimiter({ quotas: { k: quota(3, 60) }, nowMs: () => now });
    for (const expected of [2, 1, 0]) {
      const d = (await limiter.checkAll(["k"], "s"))!.decision;
      assert.equal(d.allowed, true);
      assert.equal(d.remaining, expected);
    }
    now = T0 + 1;
    const refused = (await limiter.checkAll(["k"], "s"))!.decision;
    assert.deepEqual(refused, { allowed: false, limit: 3, remaining: 0, resetAfterMs: 59_999, retryAfterMs: 19_999, windowSecs: 60 });
    assert.equal(retryAfterSeconds(refused), 20);
    now = T0 + 20_000;
    assert.equal((await limiter.checkAll(["k"], "s"))!.decision.allowed, true);
  });

  test("exact values of a known sequence", () => {
    const g = new Gcra(quota(30, 60));
    assert.equal(g.emissionUs, 2_000_000);
    let tat: number | null = null;
    const step = (nowMs: number): RateDecision => {
      const o = g.decide(tat, nowMs * 1000);
      if (o.newTatUs !== null) tat = o.newTatUs;
      return o.decision;
    };
    let d = step(T0);
    assert.deepEqual([d.remaining, d.resetAfterMs], [29, 2_000]);
    d = step(T0 + 500);
    assert.deepEqual([d.remaining, d.resetAfterMs], [28, 3_500]);
    d = step(T0 + 4_000);
    assert.deepEqual([d.remaining, d.resetAfterMs], [29, 2_000]);
    assert.equal(rateLimitHeader("bookings:write", d), '"bookings:write";r=29;t=2');
    assert.equal(policyHeader("bookings:write", d), '"bookings:write";q=30;w=60');
  });

  test("T is rounded down to a whole microsecond", () => {
    assert.equal(new Gcra(quota(7, 60)).emissionUs, 8_571_428);
    assert.equal(new Gcra(quota(7, 60)).capacityUs, 59_999_996);
    assert.equal(new Gcra(quota(0, 0)).emissionUs, 1_000_000);
  });

  test("peek consumes nothing", () => {
    const g = new Gcra(quota(2, 10));
    const first = g.decide(null, 0);
    assert.deepEqual(g.peek(first.newTatUs, 0), { allowed: true, limit: 2, remaining: 1, resetAfterMs: 5_000, retryAfterMs: null, windowSecs: 10 });
    const second = g.decide(first.newTatUs, 0);
    const p = g.peek(second.newTatUs, 0);
    assert.deepEqual([p.allowed, p.remaining, p.retryAfterMs], [false, 0, 5_000]);
    assert.equal(p.retryAfterMs, g.decide(second.newTatUs, 0).decision.retryAfterMs);
  });

  test("headers escape and round up", () => {
    const d: RateDecision = { allowed: false, limit: 5, remaining: 0, resetAfterMs: 9_001, retryAfterMs: 1_001, windowSecs: 10 };
    assert.equal(retryAfterSeconds(d), 2);
    assert.equal(rateLimitHeader('a"b\\c', d), '"a\\"b\\\\c";r=0;t=2');
    assert.equal(policyHeader("é", d), '"?";q=5;w=10');
    assert.equal(policyHeader("\u{1F600}", d), '"?";q=5;w=10');
  });

  test("the same pseudo-random sequence gives the same decisions as a direct port of auth-core", () => {
    // A literal transcription of Gcra::decide over BigInt, the reference for the number version.
    const reference = (burst: number, per: number) => {
      const emission = (BigInt(per) * 1_000_000n) / BigInt(burst);
      const capacity = emission * BigInt(burst);
      const ceilMs = (us: bigint) => (us <= 0n ? 0n : us / 1000n + (us % 1000n !== 0n ? 1n : 0n));
      let stored: bigint | null = null;
      return (nowUs: bigint) => {
        const tat: bigint = stored === null ? nowUs : stored > nowUs ? stored : nowUs;
        const newTat = tat + emission;
        const allowAt = newTat - capacity;
        if (allowAt > nowUs) return [false, 0, Number(ceilMs(tat - nowUs)), Number(ceilMs(allowAt - nowUs))];
        stored = newTat;
        const slots = (nowUs - allowAt) / emission;
        return [true, Number(slots > BigInt(burst) ? BigInt(burst) : slots), Number(ceilMs(newTat - nowUs)), null];
      };
    };
    let seed = 42;
    const random = () => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    for (let round = 0; round < 20; round++) {
      const burst = 1 + Math.floor(random() * 50);
      const per = 1 + Math.floor(random() * 120);
      const g = new Gcra(quota(burst, per));
      const ref = reference(burst, per);
      let tat: number | null = null;
      let now = T0;
      for (let i = 0; i < 500; i++) {
        now += Math.floor(random() * 3 * (per * 1000) / burst);
        const o = g.decide(tat, now * 1000);
        if (o.newTatUs !== null) tat = o.newTatUs;
        const d = o.decision;
        assert.deepEqual([d.allowed, d.remaining, d.resetAfterMs, d.retryAfterMs], ref(BigInt(now) * 1000n));
      }
    }
  });
});

describe("stores and the scope limiter", () => {
  test("full buckets are swept, and periodic sweeps bound memory", () => {
    const store = new MemoryLimiterStore();
    const g = new Gcra(quota(10, 10));
    const check = (key: string, gcra = g): GcraCheck => ({ key, emissionUs: gcra.emissionUs, capacityUs: gcra.capacityUs });
    for (let i = 0; i < 100; i++) store.update([check(`k${i}`)], T0 * 1000);
    assert.equal(store.size, 100);
    assert.equal(store.sweep(T0 + 999), 0);
    assert.equal(store.sweep(T0 + 1_000), 100);
    assert.equal(store.size, 0);
    // One key active at a time: the store never holds more than a sweep interval of keys.
    const fast = new Gcra(quota(1, 1));
    for (let i = 0; i < 10_000; i++) store.update([check(`u${i}`, fast)], (T0 + i * 2_000) * 1000);
    assert.ok(store.size <= 256, `held ${store.size} keys`);
  });

  test("a refused batch charges nothing, and reports the unconsumed state of the others", async () => {
    const now = T0;
    const limiter = new ScopeLimiter({ quotas: { wide: quota(10, 10), narrow: quota(1, 10) }, nowMs: () => now });
    const first = (await limiter.checkAll(["wide", "narrow"], "alice"))!;
    assert.deepEqual([first.scope, first.decision.allowed, first.decision.remaining], ["narrow", true, 0]);
    const second = (await limiter.checkAll(["wide", "narrow"], "alice"))!;
    assert.deepEqual([second.scope, second.decision.allowed], ["narrow", false]);
    // "wide" was not charged by the refusal: 10 - 1 - 1 = 8 left after this one.
    assert.equal((await limiter.checkAll(["wide"], "alice"))!.decision.remaining, 8);
  });

  test("the most restrictive decision wins; other subjects have their own buckets", async () => {
    let now = T0;
    const limiter = new ScopeLimiter({ quotas: { read: quota(5, 10), write: quota(2, 10), none: null }, nowMs: () => now });
    assert.equal(await limiter.checkAll(["none"], "alice"), null);
    let d = (await limiter.checkAll(["read", "write", "none"], "alice"))!;
    assert.deepEqual([d.scope, d.decision.remaining], ["write", 1]);
    d = (await limiter.checkAll(["write", "read"], "alice"))!;
    assert.deepEqual([d.scope, d.decision.remaining], ["write", 0]);
    d = (await limiter.checkAll(["read", "write", "write"], "alice"))!;
    assert.equal(d.decision.allowed, false);
    assert.equal(rateLimitHeader(d.scope, d.decision), '"write";r=0;t=5');
    assert.equal((await limiter.checkAll(["read"], "alice"))!.decision.remaining, 2);
    assert.equal((await limiter.checkAll(["write"], "bob"))!.decision.allowed, true);
    now += 5_000;
    assert.equal((await limiter.checkAll(["write"], "alice"))!.decision.allowed, true);
  });

  test("the spec's quotas by default, and keys of the form `scope subject`", async () => {
    const keys: string[][] = [];
    const inner = new MemoryLimiterStore();
    const store: LimiterStore = {
      // An asynchronous store, as a shared one would be.
      async update(checks, nowUs) {
        keys.push(checks.map((c) => c.key));
        return inner.update(checks, nowUs);
      },
    };
    const limiter = new ScopeLimiter({ store, nowMs: () => T0 });
    const d = (await limiter.checkAll(["bookings:write", "bookings:read"], "user-1"))!;
    assert.deepEqual(keys, [["bookings:read user-1", "bookings:write user-1"]]);
    assert.equal(d.scope, "bookings:write");
    assert.equal(policyHeader(d.scope, d.decision), '"bookings:write";q=30;w=60');
    assert.equal(limiter.gcra("bookings:read")!.burst, 120);
  });
});

describe("guards with real tokens", () => {
  let server: AuthServer;
  let user: TokenAnswer;
  let readOnly: TokenAnswer;
  let jwksUrl: string;

  before(async () => {
    ({ server } = await AuthServer.start());
    const name = await server.signUp();
    user = await server.login(name);
    readOnly = await server.login(name, "bookings:read");
    jwksUrl = `${server.url}/.well-known/jwks.json`;
  });

  after(async () => {
    await server?.stop();
  });

  const refusal = (outcome: GuardOutcome) => {
    assert.equal(outcome.ok, false);
    return outcome as Extract<GuardOutcome, { ok: false }>;
  };

  test("the write limit: 30 per minute, the 31st refused, headers exact", async () => {
    const now = T0;
    const auth = new Auth({ jwksUrl, limiter: new ScopeLimiter({ nowMs: () => now }) });
    const write = auth.requireScope("bookings:write");
    assert.deepEqual(write.scopes, ["bookings:write"]);
    for (let i = 1; i <= 30; i++) {
      const outcome = await write(`Bearer ${user.access_token}`);
      assert.equal(outcome.ok, true, `request ${i}`);
      assert.deepEqual(outcome.headers, {
        "ratelimit-policy": '"bookings:write";q=30;w=60',
        ratelimit: `"bookings:write";r=${30 - i};t=${2 * i}`,
      });
    }
    const refused = refusal(await write(`Bearer ${user.access_token}`));
    assert.equal(refused.status, 429);
    assert.deepEqual(refused.headers, {
      "content-type": "application/problem+json",
      "ratelimit-policy": '"bookings:write";q=30;w=60',
      ratelimit: '"bookings:write";r=0;t=2',
      "retry-after": "2",
    });
    assert.deepEqual(refused.body, {
      type: "about:blank",
      title: "Too many requests",
      status: 429,
      code: "ratelimit.exceeded",
      detail: "the limit of scope bookings:write is exhausted",
    });
    // The limit follows the subject: a refreshed token of the same user draws on the same allowance.
    const refreshed = await server.refresh(user.refresh_token!);
    assert.equal(refusal(await write(`Bearer ${refreshed.access_token}`)).status, 429);
  });

  test("guards answer like auth-server: 401, 403, 503, and token codes", async () => {
    const auth = new Auth({ jwksUrl });
    const write = auth.requireScope("bookings:write");
    let r = refusal(await write(undefined));
    assert.equal(r.status, 401);
    assert.deepEqual(r.headers, {
      "content-type": "application/problem+json",
      "www-authenticate": 'Bearer error="invalid_token", error_description="token.missing"',
    });
    assert.deepEqual(r.body, { type: "about:blank", title: "The access token is missing or invalid", status: 401, code: "token.missing" });
    assert.equal(refusal(await write("Basic abc")).code, "token.missing");
    assert.equal(refusal(await write("Bearer   ")).code, "token.missing");
    assert.equal(refusal(await write("Bearer")).code, "token.malformed");
    assert.equal(refusal(await write(`Bearer ${user.access_token}\u00e9`)).code, "token.malformed");
    assert.equal(refusal(await write("Bearer abc")).code, "token.malformed");
    assert.equal((await write(`bEaReR   ${user.access_token}  `)).ok, true);
    r = refusal(await write(`Bearer ${user.access_token.slice(0, -4)}AAAA`));
    assert.equal(r.headers["www-authenticate"], 'Bearer error="invalid_token", error_description="token.bad_signature"');

    r = refusal(await write(`Bearer ${readOnly.access_token}`));
    assert.equal(r.status, 403);
    assert.deepEqual(r.headers, {
      "content-type": "application/problem+json",
      "www-authenticate": 'Bearer error="insufficient_scope", scope="bookings:write"',
    });
    assert.deepEqual(r.body, {
      type: "about:blank",
      title: "The access token lacks a required scope",
      status: 403,
      code: "auth.insufficient_scope",
    });
    const read = await auth.requireScope("bookings:read")(`Bearer ${readOnly.access_token}`);
    assert.equal(read.ok, true);
    assert.match(read.headers.ratelimit!, /^"bookings:read";r=119;t=1$/);

    const offline = new Auth({ jwksUrl: "http://127.0.0.1:9/jwks.json" }).requireScope("bookings:read");
    r = refusal(await offline(`Bearer ${user.access_token}`));
    assert.equal(r.status, 503);
    assert.equal(r.body.code, "jwks.unavailable");
  });

  test("several required scopes: every one must be granted, the most restrictive limit reported", async () => {
    const now = T0;
    const auth = new Auth({ jwksUrl, limiter: new ScopeLimiter({ nowMs: () => now }) });
    const both = auth.requireScope("bookings:read", "bookings:write");
    const outcome = await both(`Bearer ${user.access_token}`);
    assert.equal(outcome.ok, true);
    assert.equal(outcome.headers.ratelimit, '"bookings:write";r=29;t=2');
    const r = refusal(await both(`Bearer ${readOnly.access_token}`));
    assert.equal(r.headers["www-authenticate"], 'Bearer error="insufficient_scope", scope="bookings:read bookings:write"');
    // No scope required: verification only, no limit.
    const any = await auth.requireScope()(`Bearer ${readOnly.access_token}`);
    assert.deepEqual([any.ok, any.headers], [true, {}]);
    // A failing shared store is a 503, never an unlimited pass.
    const broken = new Auth({ jwksUrl, limiterStore: { update: () => Promise.reject(new Error("redis down")) } });
    const failed = refusal(await broken.requireScope("bookings:read")(`Bearer ${user.access_token}`));
    assert.deepEqual([failed.status, failed.code], [503, "ratelimit.backend"]);
  });
});
