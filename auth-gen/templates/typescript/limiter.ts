// Rate limits tied to scopes: GCRA per (scope, subject), with the spec's quotas, computed exactly
// as auth-core's ratelimit module does.
//
// Invariants:
// - One pure function decides (Gcra.decide), in integer microseconds with T = floor(window / burst),
//   so the same sequence of times gives the same decisions, field for field, as the Rust server;
//   every value stays below 2^53, where JavaScript numbers are exact integers.
// - Time comes from the caller, never from the store, so stores on several replicas agree and a
//   fixed test clock gives reproducible decisions.
// - A refused request consumes nothing, and a batch over several scopes is all-or-nothing.
// - A key whose TAT is in the past has a full bucket and can be forgotten without changing any
//   decision: that is how the in-memory store stays bounded.

import { REDIS_GCRA_SCRIPT } from "./gcra-script.js";
import { SCOPE_LIMITS, type RateLimitQuota } from "./spec.js";

/** The outcome of one check, with what the RateLimit, RateLimit-Policy and Retry-After fields need. */
export interface RateDecision {
  /** Whether the request may proceed. */
  readonly allowed: boolean;
  /** The quota's burst. */
  readonly limit: number;
  /** Requests that would still be admitted right now, after this one. */
  readonly remaining: number;
  /** Milliseconds until the bucket is full again (rounded up). */
  readonly resetAfterMs: number;
  /** When refused: milliseconds until a request would be admitted (rounded up); else null. */
  readonly retryAfterMs: number | null;
  /** The quota's window in seconds. */
  readonly windowSecs: number;
}

/** A decision and the new TAT to store (null when refused: a refusal changes nothing). */
export interface GcraOutcome {
  readonly decision: RateDecision;
  readonly newTatUs: number | null;
}

function ceilMs(us: number): number {
  const positive = Math.max(0, us);
  return Math.floor(positive / 1000) + (positive % 1000 !== 0 ? 1 : 0);
}

function ceilSecs(ms: number): number {
  const positive = Math.max(0, ms);
  return Math.floor(positive / 1000) + (positive % 1000 !== 0 ? 1 : 0);
}

/** The GCRA of one quota in integer microseconds: auth-core's `Gcra`. Pure. */
export class Gcra {
  readonly burst: number;
  readonly windowSecs: number;
  /** T, the time one request costs. */
  readonly emissionUs: number;
  /** burst × T: how far ahead of now the TAT may run. */
  readonly capacityUs: number;

  /** A zero burst or window (refused by spec validation) is treated as 1, as in auth-core. */
  constructor(quota: RateLimitQuota) {
    this.burst = Math.max(1, Math.floor(quota.burst));
    this.windowSecs = Math.max(1, Math.floor(quota.perSeconds));
    this.emissionUs = Math.max(1, Math.floor((this.windowSecs * 1_000_000) / this.burst));
    this.capacityUs = this.emissionUs * this.burst;
  }

  /** Decides one request at `nowUs` given the stored TAT (null: never seen, or forgotten). */
  decide(storedTatUs: number | null, nowUs: number): GcraOutcome {
    const tat = storedTatUs === null ? nowUs : Math.max(storedTatUs, nowUs);
    const newTat = tat + this.emissionUs;
    const allowAt = newTat - this.capacityUs;
    if (allowAt > nowUs) {
      return {
        decision: {
          allowed: false,
          limit: this.burst,
          remaining: 0,
          resetAfterMs: ceilMs(tat - nowUs),
          retryAfterMs: ceilMs(allowAt - nowUs),
          windowSecs: this.windowSecs,
        },
        newTatUs: null,
      };
    }
    return {
      decision: {
        allowed: true,
        limit: this.burst,
        remaining: this.#slots(Math.floor((nowUs - allowAt) / this.emissionUs)),
        resetAfterMs: ceilMs(newTat - nowUs),
        retryAfterMs: null,
        windowSecs: this.windowSecs,
      },
      newTatUs: newTat,
    };
  }

  /** The state of a key at `nowUs` without consuming anything. */
  peek(storedTatUs: number | null, nowUs: number): RateDecision {
    const tat = storedTatUs === null ? nowUs : Math.max(storedTatUs, nowUs);
    const freeUs = nowUs + this.capacityUs - tat;
    const available = this.#slots(Math.floor(Math.max(0, freeUs) / this.emissionUs));
    return {
      allowed: available > 0,
      limit: this.burst,
      remaining: available,
      resetAfterMs: ceilMs(tat - nowUs),
      retryAfterMs: available === 0 ? ceilMs(tat + this.emissionUs - this.capacityUs - nowUs) : null,
      windowSecs: this.windowSecs,
    };
  }

  #slots(n: number): number {
    return Math.min(Math.max(n, 0), this.burst);
  }
}

/** One key of a batch, with its GCRA parameters in microseconds. */
export interface GcraCheck {
  readonly key: string;
  /** T: added to the TAT by an admitted request. */
  readonly emissionUs: number;
  /** burst × T: a request is admitted when `max(tat, now) + T - capacity <= now`. */
  readonly capacityUs: number;
}

/**
 * Where the TATs live. The default is MemoryLimiterStore (one process). To share limits between
 * replicas, implement `update` on a shared store, atomically; for Redis, redisLimiterStore does it
 * with any client.
 */
export interface LimiterStore {
  /**
   * Atomically for the whole batch: reads each key's TAT (µs; null when absent); when every key
   * admits the request (`max(tat ?? now, now) + emissionUs - capacityUs <= nowUs`), stores each
   * key's new TAT `max(tat ?? now, now) + emissionUs` (a store may forget it once `nowUs` passes
   * it); when any key refuses, stores nothing. Returns the TATs as read, in the order of `checks`.
   * The decisions are derived from them by Gcra.decide, so they cannot drift between stores.
   * Keys of one batch are distinct.
   */
  update(checks: readonly GcraCheck[], nowUs: number): readonly (number | null)[] | Promise<readonly (number | null)[]>;
}

export { REDIS_GCRA_SCRIPT };

/** Runs a Lua script on Redis (EVAL) with any client, resolving to its reply. */
export type RedisEval = (script: string, keys: string[], args: string[]) => Promise<unknown>;

/**
 * A LimiterStore in Redis, shared by every replica, through your Redis client. One Redis (or a
 * primary with replicas) is expected: a batch touches several keys, which Redis Cluster accepts only
 * within one hash slot. Keys are `${prefix}${scope} ${subject}` (default prefix `auth:rl:`).
 *
 * ```ts
 * // node-redis
 * redisLimiterStore((script, keys, args) => client.eval(script, { keys, arguments: args }));
 * // ioredis
 * redisLimiterStore((script, keys, args) => redis.eval(script, keys.length, ...keys, ...args));
 * ```
 */
export function redisLimiterStore(evaluate: RedisEval, options: { readonly prefix?: string } = {}): LimiterStore {
  const prefix = options.prefix ?? "auth:rl:";
  return {
    async update(checks, nowUs) {
      const args = [String(nowUs)];
      for (const check of checks) args.push(String(check.emissionUs), String(check.capacityUs));
      const reply = await evaluate(REDIS_GCRA_SCRIPT, checks.map((check) => prefix + check.key), args);
      // [allAdmitted, found1, tat1, found2, tat2, ...]: the TATs as they were before.
      if (!Array.isArray(reply) || reply.length !== 1 + 2 * checks.length) throw new Error("unexpected reply from the rate-limit script");
      return checks.map((_, i) => {
        const found = Number(reply[1 + 2 * i]);
        const tat = Number(reply[2 + 2 * i]);
        if ((found !== 0 && found !== 1) || !Number.isSafeInteger(tat)) throw new Error("unexpected reply from the rate-limit script");
        return found === 1 ? tat : null;
      });
    },
  };
}

/** A store may remember this many keys beyond those it kept at its last sweep before sweeping. */
const SWEEP_EVERY = 256;

/**
 * TATs in this process's memory (one replica). Memory stays bounded by the keys active within one
 * window: full buckets are dropped after a number of updates proportional to the size (O(1)
 * amortised), and `sweep` does it on demand.
 */
export class MemoryLimiterStore implements LimiterStore {
  readonly #tats = new Map<string, number>();
  #ops = 0;
  #keptAtLastSweep = 0;

  update(checks: readonly GcraCheck[], nowUs: number): (number | null)[] {
    const stored: (number | null)[] = [];
    let admitted = true;
    for (const check of checks) {
      const tat = this.#tats.get(check.key) ?? null;
      stored.push(tat);
      const base = tat === null ? nowUs : Math.max(tat, nowUs);
      if (base + check.emissionUs - check.capacityUs > nowUs) admitted = false;
    }
    if (admitted) {
      checks.forEach((check, i) => {
        const tat = stored[i]!;
        this.#tats.set(check.key, (tat === null ? nowUs : Math.max(tat, nowUs)) + check.emissionUs);
      });
    }
    if (++this.#ops >= Math.max(SWEEP_EVERY, this.#keptAtLastSweep)) {
      this.#sweepUs(nowUs);
      this.#ops = 0;
      this.#keptAtLastSweep = this.#tats.size;
    }
    return stored;
  }

  /** Drops every key whose bucket is full at `nowMs`; returns how many were dropped. */
  sweep(nowMs: number = Date.now()): number {
    return this.#sweepUs(Math.max(0, nowMs) * 1000);
  }

  /** The number of keys held. */
  get size(): number {
    return this.#tats.size;
  }

  #sweepUs(nowUs: number): number {
    const before = this.#tats.size;
    for (const [key, tat] of this.#tats) if (tat <= nowUs) this.#tats.delete(key);
    return before - this.#tats.size;
  }
}

/** The decision of ScopeLimiter.checkAll and the scope it came from (the policy name). */
export interface ScopeDecision {
  readonly scope: string;
  readonly decision: RateDecision;
}

/** Settings of a ScopeLimiter. */
export interface ScopeLimiterOptions {
  /** Where the TATs live. Default: a new MemoryLimiterStore. */
  readonly store?: LimiterStore | undefined;
  /** The quota of each scope (null or absent: not limited). Default: the spec's SCOPE_LIMITS. */
  readonly quotas?: Readonly<Record<string, RateLimitQuota | null | undefined>> | undefined;
  /** The current time in milliseconds. Default: Date.now. */
  readonly nowMs?: (() => number) | undefined;
}

/** The most restrictive first: a refusal with the longest wait, else the fewest remaining, then the longest reset. */
function moreRestrictive(a: RateDecision, b: RateDecision): boolean {
  if (a.allowed !== b.allowed) return !a.allowed;
  const waitA = a.retryAfterMs ?? 0;
  const waitB = b.retryAfterMs ?? 0;
  if (waitA !== waitB) return waitA > waitB;
  if (a.remaining !== b.remaining) return a.remaining < b.remaining;
  return a.resetAfterMs > b.resetAfterMs;
}

function byteOrder(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Applies per-scope quotas to a subject (the token's `sub`): auth-core's ScopeLimiter. */
export class ScopeLimiter {
  readonly #store: LimiterStore;
  readonly #gcras = new Map<string, Gcra>();
  readonly #nowMs: () => number;

  constructor(options: ScopeLimiterOptions = {}) {
    this.#store = options.store ?? new MemoryLimiterStore();
    this.#nowMs = options.nowMs ?? Date.now;
    const quotas: Readonly<Record<string, RateLimitQuota | null | undefined>> = options.quotas ?? SCOPE_LIMITS;
    for (const [scope, quota] of Object.entries(quotas)) if (quota != null) this.#gcras.set(scope, new Gcra(quota));
  }

  /** The GCRA of a scope's quota, or undefined when the scope is not limited. */
  gcra(scope: string): Gcra | undefined {
    return this.#gcras.get(scope);
  }

  /** The store key of (scope, subject). A scope never holds a space (RFC 6749 section 3.3). */
  static key(scope: string, subject: string): string {
    return `${scope} ${subject}`;
  }

  /**
   * Charges one request of `subject` to every limited scope in `scopes` (duplicates count once),
   * all-or-nothing. Resolves to the most restrictive decision with its scope, or null when no scope
   * is limited.
   */
  checkAll(scopes: readonly string[], subject: string): Promise<ScopeDecision | null> {
    const limited = [...new Set(scopes)].filter((scope) => this.#gcras.has(scope)).sort(byteOrder);
    if (limited.length === 0) return Promise.resolve(null);
    const gcras = limited.map((scope) => this.#gcras.get(scope)!);
    const checks = limited.map((scope, i) => ({
      key: ScopeLimiter.key(scope, subject),
      emissionUs: gcras[i]!.emissionUs,
      capacityUs: gcras[i]!.capacityUs,
    }));
    const nowUs = Math.max(0, Math.floor(this.#nowMs())) * 1000;
    const decide = (stored: readonly (number | null)[]): ScopeDecision => {
      if (stored.length !== checks.length) throw new Error("the limiter store answered for another number of keys");
      const outcomes = gcras.map((gcra, i) => gcra.decide(stored[i]!, nowUs));
      const admitted = outcomes.every((o) => o.newTatUs !== null);
      let best: ScopeDecision | null = null;
      outcomes.forEach((outcome, i) => {
        // When the batch is refused, the scopes that would have admitted report their unconsumed state.
        const decision = admitted || !outcome.decision.allowed ? outcome.decision : gcras[i]!.peek(stored[i]!, nowUs);
        if (best === null || moreRestrictive(decision, best.decision)) best = { scope: limited[i]!, decision };
      });
      return best!;
    };
    try {
      const stored = this.#store.update(checks, nowUs);
      return "then" in stored ? stored.then(decide) : Promise.resolve(decide(stored));
    } catch (error) {
      return Promise.reject(error);
    }
  }
}

/** A Structured Field String (RFC 9651): printable ASCII in quotes, `"` and `\` escaped, anything else `?`. */
function sfString(value: string): string {
  let out = '"';
  for (const c of value) {
    if (c === '"' || c === "\\") out += `\\${c}`;
    else if (c >= " " && c <= "~") out += c;
    else out += "?";
  }
  return `${out}"`;
}

/** `Retry-After` in whole seconds, rounded up; null when the request was admitted. */
export function retryAfterSeconds(decision: RateDecision): number | null {
  return decision.retryAfterMs === null ? null : ceilSecs(decision.retryAfterMs);
}

/** The `t` of the RateLimit field: until the bucket is full again, or when refused the Retry-After delay. */
export function resetSeconds(decision: RateDecision): number {
  return ceilSecs(decision.retryAfterMs ?? decision.resetAfterMs);
}

/** The `RateLimit-Policy` field value, e.g. `"bookings:write";q=30;w=60`. */
export function policyHeader(scope: string, decision: RateDecision): string {
  return `${sfString(scope)};q=${decision.limit};w=${decision.windowSecs}`;
}

/** The `RateLimit` field value, e.g. `"bookings:write";r=12;t=3`. */
export function rateLimitHeader(scope: string, decision: RateDecision): string {
  return `${sfString(scope)};r=${decision.remaining};t=${resetSeconds(decision)}`;
}

/** `ratelimit-policy`, `ratelimit` and, when refused, `retry-after`, as auth-server sends them. */
export function rateLimitHeaders(limit: ScopeDecision): Record<string, string> {
  const headers: Record<string, string> = {
    "ratelimit-policy": policyHeader(limit.scope, limit.decision),
    ratelimit: rateLimitHeader(limit.scope, limit.decision),
  };
  const retry = retryAfterSeconds(limit.decision);
  if (retry !== null) headers["retry-after"] = String(retry);
  return headers;
}
