// Replays one golden fixture (fixtures/recorded/<version>/<spec>/, named by AUTH_FIXTURE_DIR)
// through the TypeScript module generated from that folder's own spec.toml (../gen):
// - every recorded verdict: the recorded token verified at the recorded instant against the
//   recorded JWKS (token cache off), by `verify` and by `verifySync` after `loadKeys`, must give the
//   recorded result, and an accepted token the recorded claims;
// - every rate-limit decision of the `rate-limits` step, replayed at the recorded instants through
//   a fresh ScopeLimiter per scope (and through Gcra.decide alone), must match field for field,
//   headers included;
// - every recorded token's claims must fit the module's claim types: UserClaims for the password
//   and refresh grants, ClientClaims for client credentials, and no claim the types do not name.
// The harness (auth-gen/tests/generator/typescript.rs) also type-checks each recorded claim set
// against those interfaces at compile time (tests/claims/<step>.ts).
//
// A failure names the fixture folder, the step and the field: `<folder> [<step>] <what>`.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import {
  ALGORITHM,
  AccessTokenVerifier,
  AuthError,
  CUSTOM_CLAIMS,
  Gcra,
  SCOPE_LIMITS,
  SPEC_HASH,
  ScopeLimiter,
  rateLimitHeaders,
  type AccessClaims,
  type FetchLike,
  type RateDecision,
  type RateLimitQuota,
} from "../gen/index.js";

const FOLDER = process.env.AUTH_FIXTURE_DIR ?? "";
if (FOLDER === "") throw new Error("set AUTH_FIXTURE_DIR to a recorded fixture folder (fixtures/recorded/<version>/<spec>)");
/** How messages name the folder. */
const LABEL = process.env.AUTH_FIXTURE ?? FOLDER;
/** The subject the recorder charges in its rate-limit burst (auth-gen/src/fixtures/record.rs). */
const RATE_SUBJECT = "fixture-subject";

/** scenario.json, as auth-gen/src/fixtures/mod.rs writes it. */
interface Issued {
  readonly grant: string;
  readonly token: string;
  readonly header: Record<string, unknown>;
  readonly claims: Record<string, unknown>;
}
interface Verdict {
  readonly token: string;
  readonly at: number;
  readonly jwks: number;
  readonly result: string;
}
interface RateRecord {
  readonly scope: string;
  readonly at_ms: number;
  readonly allowed: boolean;
  readonly remaining: number;
  readonly reset_after_ms: number;
  readonly retry_after_ms: number | null;
  readonly policy_header: string;
  readonly ratelimit_header: string;
}
interface Step {
  readonly name: string;
  readonly at: number;
  readonly jwks: number;
  readonly issued?: Issued;
  readonly verdicts?: readonly Verdict[];
  readonly rate_limits?: readonly RateRecord[];
}
interface Scenario {
  readonly jwks: readonly unknown[];
  readonly steps: readonly Step[];
}

function readJson<T>(name: string): T {
  return JSON.parse(readFileSync(join(FOLDER, name), "utf8")) as T;
}

const scenario = readJson<Scenario>("scenario.json");
const manifest = readJson<{ spec_hash: string; generator_version: string }>("manifest.json");

/** `<folder> [<step>] <what>` */
function where(step: string, what: string): string {
  return `${LABEL} [${step}] ${what}`;
}

/** Fails with every difference found, one per line. */
function noDifferences(differences: readonly string[]): void {
  if (differences.length > 0) assert.fail(`${differences.length} difference(s):\n${differences.join("\n")}`);
}

const show = (value: unknown): string => (value === undefined ? "absent" : JSON.stringify(value));

// ---------------------------------------------------------------------------------------------
// Verdicts

/** A fetch that serves one recorded JWKS, whatever the URL. */
function serving(jwks: unknown): FetchLike {
  return () => Promise.resolve(new Response(JSON.stringify(jwks), { status: 200, headers: { "content-type": "application/json" } }));
}

async function outcome(verify: () => Promise<AccessClaims> | AccessClaims): Promise<{ result: string; claims?: AccessClaims }> {
  try {
    return { result: "ok", claims: await verify() };
  } catch (error) {
    if (error instanceof AuthError) return { result: error.code };
    throw error;
  }
}

/** The claims the verifier returned against the recorded ones, claim by claim. */
function claimDifferences(got: Record<string, unknown>, recorded: Record<string, unknown>): string[] {
  const names = [...new Set([...Object.keys(recorded), ...Object.keys(got)])].sort();
  return names
    .filter((name) => JSON.stringify(got[name]) !== JSON.stringify(recorded[name]))
    .map((name) => `claim \`${name}\`: the verifier returned ${show(got[name])}, recorded ${show(recorded[name])}`);
}

test(`${LABEL}: every recorded verdict`, async (t) => {
  let count = 0;
  for (const step of scenario.steps) {
    for (const verdict of step.verdicts ?? []) {
      count++;
      await t.test(`[${step.name}] token of \`${verdict.token}\` at ${verdict.at}, jwks ${verdict.jwks}: ${verdict.result}`, async () => {
        const subject = `verdict of the token of \`${verdict.token}\` at ${verdict.at} against jwks ${verdict.jwks}`;
        const issued = scenario.steps.find((s) => s.name === verdict.token)?.issued;
        const jwks = scenario.jwks[verdict.jwks];
        if (issued === undefined || jwks === undefined) {
          assert.fail(where(step.name, `${subject}: the fixture records no such token or JWKS`));
        }
        const options = { now: () => verdict.at, fetch: serving(jwks), cacheSize: 0 };
        const differences: string[] = [];
        const asynchronous = await outcome(() => new AccessTokenVerifier(options).verify(issued.token));
        const loaded = new AccessTokenVerifier(options);
        await loaded.loadKeys();
        const synchronous = await outcome(() => loaded.verifySync(issued.token));
        for (const [path, got] of [
          ["verify", asynchronous],
          ["verifySync", synchronous],
        ] as const) {
          if (got.result !== verdict.result) {
            differences.push(where(step.name, `${subject} (${path}): result: expected ${verdict.result}, got ${got.result}`));
          } else if (got.claims !== undefined) {
            for (const difference of claimDifferences(got.claims as unknown as Record<string, unknown>, issued.claims)) {
              differences.push(where(step.name, `${subject} (${path}): ${difference}`));
            }
          }
        }
        noDifferences(differences);
      });
    }
  }
  assert.ok(count > 0, where("scenario", "no verdict is recorded"));
});

// ---------------------------------------------------------------------------------------------
// Rate limits

const QUOTAS = SCOPE_LIMITS as Readonly<Record<string, RateLimitQuota | null>>;
const LIMITED = Object.keys(QUOTAS)
  .filter((scope) => QUOTAS[scope] != null)
  .sort();

/** The recorded decisions of each scope, in recorded order; the recorder starts each scope afresh. */
function runsByScope(records: readonly RateRecord[]): Map<string, RateRecord[]> {
  const runs = new Map<string, RateRecord[]>();
  for (const record of records) {
    const run = runs.get(record.scope) ?? [];
    run.push(record);
    runs.set(record.scope, run);
  }
  return runs;
}

function decisionDifferences(what: string, record: RateRecord, scope: string, decision: RateDecision): string[] {
  const headers = rateLimitHeaders({ scope, decision });
  const fields: Array<[string, unknown, unknown]> = [
    ["allowed", record.allowed, decision.allowed],
    ["remaining", record.remaining, decision.remaining],
    ["reset_after_ms", record.reset_after_ms, decision.resetAfterMs],
    ["retry_after_ms", record.retry_after_ms, decision.retryAfterMs],
    ["policy_header", record.policy_header, headers["ratelimit-policy"]],
    ["ratelimit_header", record.ratelimit_header, headers["ratelimit"]],
  ];
  return fields
    .filter(([, expected, got]) => expected !== got)
    .map(([field, expected, got]) => where("rate-limits", `${what}: ${field}: expected ${show(expected)}, got ${show(got)}`));
}

test(`${LABEL}: every recorded rate-limit decision`, async (t) => {
  const step = scenario.steps.find((s) => s.name === "rate-limits");
  if (step === undefined) {
    // The recorder writes the step only when the spec limits a scope.
    assert.deepEqual(LIMITED, [], where("rate-limits", `the step is not recorded, but the module limits ${LIMITED.join(", ")}`));
    t.diagnostic("no scope of this spec is rate-limited: nothing to replay");
    return;
  }
  const runs = runsByScope(step.rate_limits ?? []);
  const missing = LIMITED.filter((scope) => !runs.has(scope));
  assert.deepEqual(missing, [], where("rate-limits", `no decision is recorded for the module's limited scope(s) ${missing.join(", ")}`));
  for (const [scope, records] of runs) {
    await t.test(`[rate-limits] ${scope}: ${records.length} decisions`, async () => {
      const quota = QUOTAS[scope];
      if (quota == null) assert.fail(where("rate-limits", `${scope}: recorded decisions, but the module's SCOPE_LIMITS has no limit for it`));
      const differences: string[] = [];
      let nowMs = records[0]!.at_ms;
      const limiter = new ScopeLimiter({ nowMs: () => nowMs });
      const gcra = new Gcra(quota);
      let tatUs: number | null = null;
      for (const [i, record] of records.entries()) {
        const what = `${scope} decision ${i + 1} of ${records.length} at_ms ${record.at_ms}`;
        nowMs = record.at_ms;
        const limited = await limiter.checkAll([scope], RATE_SUBJECT);
        if (limited === null) {
          differences.push(where("rate-limits", `${what} (ScopeLimiter): the scope is not limited`));
        } else {
          if (limited.scope !== scope) differences.push(where("rate-limits", `${what} (ScopeLimiter): scope: got ${limited.scope}`));
          differences.push(...decisionDifferences(`${what} (ScopeLimiter)`, record, scope, limited.decision));
        }
        const pure = gcra.decide(tatUs, record.at_ms * 1000);
        if (pure.newTatUs !== null) tatUs = pure.newTatUs;
        differences.push(...decisionDifferences(`${what} (Gcra.decide)`, record, scope, pure.decision));
      }
      noDifferences(differences);
    });
  }
});

// ---------------------------------------------------------------------------------------------
// Claim types

/** The registered claims of StandardClaims, and how each must look; `nbf` is optional. */
const isString = (value: unknown): boolean => typeof value === "string";
const isInteger = (value: unknown): boolean => typeof value === "number" && Number.isInteger(value);
const isStringArray = (value: unknown): boolean => Array.isArray(value) && value.every(isString);
const STANDARD: Readonly<Record<string, { readonly type: string; readonly fits: (value: unknown) => boolean }>> = {
  iss: { type: "string", fits: isString },
  sub: { type: "string", fits: isString },
  aud: { type: "string or string_array", fits: (value) => isString(value) || isStringArray(value) },
  exp: { type: "integer", fits: isInteger },
  iat: { type: "integer", fits: isInteger },
  nbf: { type: "integer", fits: isInteger },
  jti: { type: "string", fits: isString },
  client_id: { type: "string", fits: isString },
  scope: { type: "string", fits: isString },
};
const OPTIONAL_STANDARD = new Set(["nbf"]);
const USER_GRANTS = new Set(["password", "refresh_token"]);
const CLIENT_GRANTS = new Set(["client_credentials"]);

/** The JSON type of a value, in CUSTOM_CLAIMS' words where one applies. */
function jsonType(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return value.every(isString) ? "string_array" : "array";
  if (typeof value === "number") return Number.isInteger(value) ? "integer" : "number";
  return typeof value;
}

function claimTypeDifferences(step: string, issued: Issued): string[] {
  const claims = issued.claims;
  const user = USER_GRANTS.has(issued.grant);
  const typeName = user ? "UserClaims" : "ClientClaims";
  const out: string[] = [];
  const differ = (what: string) => out.push(where(step, `${issued.grant} token, ${typeName}: ${what}`));
  if (issued.header["alg"] !== ALGORITHM) differ(`header alg: recorded ${show(issued.header["alg"])}, the module's ALGORITHM is ${ALGORITHM}`);
  for (const [name, standard] of Object.entries(STANDARD)) {
    const value = claims[name];
    if (value === undefined) {
      if (!OPTIONAL_STANDARD.has(name)) differ(`claim \`${name}\`: required, absent`);
    } else if (!standard.fits(value)) {
      differ(`claim \`${name}\`: the type says ${standard.type}, recorded ${jsonType(value)} ${show(value)}`);
    }
  }
  if (user) {
    if (typeof claims["sid"] !== "string") differ(`claim \`sid\`: required string, recorded ${show(claims["sid"])}`);
    for (const [name, custom] of Object.entries(CUSTOM_CLAIMS)) {
      const value = Object.hasOwn(claims, name) ? claims[name] : undefined;
      if (value === undefined) {
        if (custom.required) differ(`claim \`${name}\`: required by CUSTOM_CLAIMS, absent`);
      } else if (jsonType(value) !== custom.type) {
        differ(`claim \`${name}\`: CUSTOM_CLAIMS says ${custom.type}, recorded ${jsonType(value)} ${show(value)}`);
      }
    }
  } else if (claims["sid"] !== undefined) {
    differ(`claim \`sid\`: a client token has no session, recorded ${show(claims["sid"])}`);
  }
  for (const name of Object.keys(claims).sort()) {
    if (Object.hasOwn(STANDARD, name) || (user && (name === "sid" || Object.hasOwn(CUSTOM_CLAIMS, name)))) continue;
    const why = user ? "not in CUSTOM_CLAIMS" : Object.hasOwn(CUSTOM_CLAIMS, name) ? "a client token carries no custom claim" : "not a registered claim";
    differ(`claim \`${name}\`: recorded ${show(claims[name])}, unknown to the module's ${typeName} (${why})`);
  }
  return out;
}

test(`${LABEL}: every recorded token's claims fit the module's claim types`, async (t) => {
  if (SPEC_HASH !== manifest.spec_hash) {
    // As the Rust replay classes it: informational, the values are compared by the checks.
    t.diagnostic(`the module's SPEC_HASH ${SPEC_HASH} differs from the recorded ${manifest.spec_hash} (recorded by ${manifest.generator_version})`);
  }
  let count = 0;
  for (const step of scenario.steps) {
    const issued = step.issued;
    if (issued === undefined) continue;
    count++;
    await t.test(`[${step.name}] ${issued.grant} token`, () => {
      if (!USER_GRANTS.has(issued.grant) && !CLIENT_GRANTS.has(issued.grant)) {
        assert.fail(where(step.name, `grant ${issued.grant}: neither a user grant nor client credentials; no claim type to check against`));
      }
      noDifferences(claimTypeDifferences(step.name, issued));
    });
  }
  assert.ok(count > 0, where("scenario", "no issued token is recorded"));
});
