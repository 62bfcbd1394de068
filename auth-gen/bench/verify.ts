// Verification throughput of the generated TypeScript verifier against jose's jwtVerify, fast-jwt's
// verifier (with and without its cache) and a bare crypto.verify of the same signature, with the
// same Ed25519 key and tokens, in one Node process. Run it with `bash auth-gen/bench/run.sh`.
//
// "Fresh" cases verify a different token each time (distinct jti, more tokens than any cache
// holds), so every call checks a signature; "repeated" cases verify one token again and again.
// Each case runs for a fixed time per round; rounds are interleaved and the median is reported.

import { createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from "node:crypto";
import { jwtVerify } from "jose";
import { createVerifier } from "fast-jwt";
import { AccessTokenVerifier, AUDIENCES, ISSUER } from "../gen/index.js";

const ROUND_MS = Number(process.env.BENCH_ROUND_MS ?? 1500);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const FRESH_TOKENS = 20_000;

const { privateKey, publicKey } = generateKeyPairSync("ed25519");
const jwk = { ...publicKey.export({ format: "jwk" }), kid: "bench-key", alg: "EdDSA", use: "sig" };
const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");
const now = Math.floor(Date.now() / 1000);

function token(i: number): string {
  const header = b64({ alg: "EdDSA", typ: "at+jwt", kid: "bench-key" });
  const payload = b64({
    iss: ISSUER,
    sub: `user-${i % 1000}`,
    aud: AUDIENCES[0],
    exp: now + 3600,
    iat: now,
    jti: `jti-${i}`,
    client_id: "booking-web",
    scope: "bookings:read bookings:write",
    sid: `sid-${i % 1000}`,
    tenant_id: "hotel-7",
  });
  const input = `${header}.${payload}`;
  return `${input}.${sign(null, Buffer.from(input), privateKey).toString("base64url")}`;
}

const fresh = Array.from({ length: FRESH_TOKENS }, (_, i) => token(i));
const repeated = token(-1);
const bare = fresh.map((t) => {
  const dot = t.lastIndexOf(".");
  return { input: Buffer.from(t.slice(0, dot)), signature: Buffer.from(t.slice(dot + 1), "base64url") };
});

// The generated verifier, its JWKS served from memory (no network in the measurement).
const jwksFetch = async () =>
  new Response(JSON.stringify({ keys: [jwk] }), { headers: { "content-type": "application/json", "cache-control": "max-age=3600" } });
const generated = new AccessTokenVerifier({ jwksUrl: "http://jwks.invalid/", fetch: jwksFetch });
const generatedNoCache = new AccessTokenVerifier({ jwksUrl: "http://jwks.invalid/", fetch: jwksFetch, cacheSize: 0 });
await generated.loadKeys();
await generatedNoCache.loadKeys();

const pem = publicKey.export({ format: "pem", type: "spki" }).toString();
const fastOptions = { key: pem, algorithms: ["EdDSA" as const], allowedIss: ISSUER, allowedAud: AUDIENCES[0]! };
const fast = createVerifier({ ...fastOptions });
const fastCached = createVerifier({ ...fastOptions, cache: 1024 });
const joseKey: KeyObject = createPublicKey({ key: jwk, format: "jwk" });
const joseOptions = { issuer: ISSUER, audience: AUDIENCES[0], typ: "at+jwt", algorithms: ["EdDSA"] };

// Sanity: every verifier accepts the tokens before anything is timed.
await generated.verify(fresh[0]!);
fast(fresh[0]!);
await jwtVerify(fresh[0]!, joseKey, joseOptions);
if (!verify(null, bare[0]!.input, publicKey, bare[0]!.signature)) throw new Error("bare verify failed");

type Case = { name: string; run: (i: number) => unknown };
const cases: Case[] = [
  { name: "crypto.verify (bare signature)", run: (i) => verify(null, bare[i % FRESH_TOKENS]!.input, publicKey, bare[i % FRESH_TOKENS]!.signature) },
  { name: "generated verifySync, fresh", run: (i) => generatedNoCache.verifySync(fresh[i % FRESH_TOKENS]!) },
  { name: "generated verify (async), fresh", run: (i) => generatedNoCache.verify(fresh[i % FRESH_TOKENS]!) },
  { name: "generated verify, fresh, cache on", run: (i) => generated.verify(fresh[i % FRESH_TOKENS]!) },
  { name: "fast-jwt, fresh", run: (i) => fast(fresh[i % FRESH_TOKENS]!) },
  { name: "jose jwtVerify, fresh", run: (i) => jwtVerify(fresh[i % FRESH_TOKENS]!, joseKey, joseOptions) },
  { name: "generated verifySync, repeated (cache)", run: () => generated.verifySync(repeated) },
  { name: "generated verify (async), repeated (cache)", run: () => generated.verify(repeated) },
  { name: "fast-jwt, repeated (cache)", run: () => fastCached(repeated) },
];

/** Verifications per second of one case over one round (measured time, batches of 32). */
async function round(c: Case, offset: number): Promise<number> {
  const started = performance.now();
  const deadline = started + ROUND_MS;
  let ops = 0;
  let elapsed = 0;
  while ((elapsed = performance.now()) < deadline) {
    for (let j = 0; j < 32; j++) {
      const result = c.run(offset + ops + j);
      if (result instanceof Promise) await result;
    }
    ops += 32;
  }
  return (ops * 1000) / (elapsed - started);
}

const results = new Map<string, number[]>(cases.map((c) => [c.name, []]));
for (let r = 0; r < ROUNDS; r++) {
  for (const c of cases) results.get(c.name)!.push(await round(c, r * 7919));
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const bareOps = median(results.get(cases[0]!.name)!);
console.log(`node ${process.version}, ${ROUNDS} rounds of ${ROUND_MS} ms, median; time relative to the bare crypto.verify`);
console.log("| case | verifications/s | µs each | × bare |");
console.log("|---|---:|---:|---:|");
for (const c of cases) {
  const ops = median(results.get(c.name)!);
  console.log(`| ${c.name} | ${Math.round(ops).toLocaleString("en")} | ${(1e6 / ops).toFixed(2)} | ${(bareOps / ops).toFixed(2)} |`);
}
