// The shared vectors that auth-core writes (vectors/*.json, by auth-core/tests/core/shared_vectors.rs),
// replayed through the generated module: the same inputs must give the same answers, field for
// field, in TypeScript as in Rust.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { AccessTokenVerifier, AuthError, bearerToken, Gcra, TOKEN_ERROR_CODES, type RateDecision } from "../gen/index.js";

function vectors<T>(name: string): T {
  const repo = process.env["AUTH_REPO"];
  assert.ok(repo, "AUTH_REPO names the repository");
  return JSON.parse(readFileSync(join(repo, "vectors", name), "utf8")) as T;
}

interface VectorDecision {
  readonly allowed: boolean;
  readonly limit: number;
  readonly remaining: number;
  readonly reset_after_ms: number;
  readonly retry_after_ms: number | null;
  readonly window_secs: number;
}

interface GcraVectors {
  readonly cases: readonly {
    readonly name: string;
    readonly quota: { readonly burst: number; readonly per_secs: number };
    readonly emission_us: number;
    readonly capacity_us: number;
    readonly steps: readonly {
      readonly stored_tat_us: number | null;
      readonly now_us: number;
      readonly peek: VectorDecision;
      readonly decision: VectorDecision;
      readonly new_tat_us: number | null;
    }[];
  }[];
}

const asDecision = (d: VectorDecision): RateDecision => ({
  allowed: d.allowed,
  limit: d.limit,
  remaining: d.remaining,
  resetAfterMs: d.reset_after_ms,
  retryAfterMs: d.retry_after_ms,
  windowSecs: d.window_secs,
});

describe("GCRA (vectors/gcra.json)", () => {
  const { cases } = vectors<GcraVectors>("gcra.json");
  test("the file has cases", () => assert.ok(cases.length >= 5));
  for (const c of cases) {
    test(c.name, () => {
      const gcra = new Gcra({ burst: c.quota.burst, perSeconds: c.quota.per_secs });
      assert.equal(gcra.emissionUs, c.emission_us);
      assert.equal(gcra.capacityUs, c.capacity_us);
      c.steps.forEach((step, i) => {
        assert.deepEqual(gcra.peek(step.stored_tat_us, step.now_us), asDecision(step.peek), `peek of step ${i}`);
        const outcome = gcra.decide(step.stored_tat_us, step.now_us);
        assert.deepEqual(outcome.decision, asDecision(step.decision), `decision of step ${i}`);
        assert.equal(outcome.newTatUs, step.new_tat_us, `TAT of step ${i}`);
      });
    });
  }
});

interface BearerVectors {
  readonly cases: readonly { readonly authorization: string | null; readonly token?: string; readonly code?: string }[];
}

describe("Authorization header (vectors/bearer.json)", () => {
  const { cases } = vectors<BearerVectors>("bearer.json");
  test("the file has cases of both kinds", () => {
    assert.ok(cases.some((c) => c.token !== undefined) && cases.some((c) => c.code !== undefined));
  });
  for (const c of cases) {
    test(JSON.stringify(c.authorization), () => {
      if (c.token !== undefined) {
        assert.equal(bearerToken(c.authorization), c.token);
      } else {
        assert.throws(
          () => bearerToken(c.authorization),
          (e: unknown) => e instanceof AuthError && e.code === c.code,
        );
      }
    });
  }
});

interface VerifierVectors {
  readonly now: number;
  readonly jwks: unknown;
  readonly cases: readonly { readonly name: string; readonly token: string; readonly verdict: string }[];
}

describe("access-token verification (vectors/verifier.json)", () => {
  const { now, jwks, cases } = vectors<VerifierVectors>("verifier.json");
  const verifier = new AccessTokenVerifier({
    jwksUrl: "https://issuer.invalid/jwks.json",
    fetch: async () => new Response(JSON.stringify(jwks), { headers: { "content-type": "application/json" } }),
    now: () => now,
    cacheSize: 0,
  });
  test("every code a module can give has a vector", () => {
    const verdicts = new Set(cases.map((c) => c.verdict));
    for (const code of TOKEN_ERROR_CODES) assert.ok(verdicts.has(code), code);
  });
  for (const c of cases) {
    test(c.name, async () => {
      const verdict = await verifier.verify(c.token).then(
        () => "ok",
        (e: unknown) => (e instanceof AuthError ? e.code : String(e)),
      );
      assert.equal(verdict, c.verdict);
    });
  }
});
