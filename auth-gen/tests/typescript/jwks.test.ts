// The verifier's JWKS cache and verified-token cache, against a real auth-server, with fetches
// counted through an injected fetch and time moved by a test clock.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { AccessTokenVerifier, AuthError } from "../gen/index.js";
import { b64url, codeOf, CountingFetch, decode, TestClock } from "./forge.js";
import { AuthServer, type TokenAnswer } from "./server.js";

let server: AuthServer;
let user: TokenAnswer;
let jwksUrl: string;

before(async () => {
  ({ server } = await AuthServer.start());
  user = await server.login(await server.signUp());
  jwksUrl = `${server.url}/.well-known/jwks.json`;
});

after(async () => {
  await server?.stop();
});

/** The user's token with another kid: a key the verifier has never seen. */
function withKid(kid: string): string {
  const [, p64, s64] = user.access_token.split(".");
  return `${b64url({ ...decode(user.access_token).header, kid })}.${p64}.${s64}`;
}

test("concurrent first verifications share one JWKS fetch", async () => {
  const counter = new CountingFetch();
  const verifier = new AccessTokenVerifier({ jwksUrl, fetch: counter.fetch, cacheSize: 0 });
  const results = await Promise.all(Array.from({ length: 50 }, () => verifier.verify(user.access_token)));
  assert.equal(results.length, 50);
  assert.equal(counter.calls, 1);
  assert.deepEqual(counter.urls, [jwksUrl]);
});

test("unknown kids refetch once per cooldown, shared by concurrent misses", async () => {
  const clock = new TestClock();
  const counter = new CountingFetch();
  const verifier = new AccessTokenVerifier({ jwksUrl, fetch: counter.fetch, now: clock.now });
  await verifier.verify(user.access_token);
  assert.equal(counter.calls, 1);
  const flood = async (round: number) => {
    const codes = await Promise.all(Array.from({ length: 25 }, (_, i) => codeOf(verifier, withKid(`made-up-${round}-${i}`))));
    assert.deepEqual(new Set(codes), new Set(["token.unknown_key"]));
  };
  // Within the cooldown (10 s) of the first fetch: no refetch at all.
  await flood(1);
  assert.equal(counter.calls, 1);
  clock.offset += 10.5;
  // Past it: the 25 concurrent misses share one refetch, and the next flood waits for the cooldown.
  await flood(2);
  assert.equal(counter.calls, 2);
  await flood(3);
  assert.equal(counter.calls, 2);
  clock.offset += 10.5;
  await flood(4);
  assert.equal(counter.calls, 3);
  // Known keys keep verifying throughout, from the cache.
  assert.equal(await codeOf(verifier, user.access_token), "ok");
  assert.equal(counter.calls, 3);
});

test("the JWKS is fetched again after the max age of the server's Cache-Control", async () => {
  const clock = new TestClock();
  const counter = new CountingFetch();
  const verifier = new AccessTokenVerifier({ jwksUrl, fetch: counter.fetch, now: clock.now, cacheSize: 0 });
  const response = await fetch(jwksUrl);
  assert.equal(response.headers.get("cache-control"), "public, max-age=600");
  await verifier.verify(user.access_token);
  clock.offset += 590;
  await verifier.verify(user.access_token);
  assert.equal(counter.calls, 1);
  clock.offset += 20;
  await verifier.verify(user.access_token);
  assert.equal(counter.calls, 2);
});

test("jwksMaxAgeSeconds overrides the server's max age", async () => {
  const clock = new TestClock();
  const counter = new CountingFetch();
  const verifier = new AccessTokenVerifier({ jwksUrl, fetch: counter.fetch, now: clock.now, cacheSize: 0, jwksMaxAgeSeconds: 5 });
  await verifier.verify(user.access_token);
  clock.offset += 6;
  await verifier.verify(user.access_token);
  assert.equal(counter.calls, 2);
});

test("stale if error: the last JWKS serves while the issuer is unreachable, within the bound", async () => {
  const clock = new TestClock();
  const counter = new CountingFetch();
  const verifier = new AccessTokenVerifier({
    jwksUrl,
    fetch: counter.fetch,
    now: clock.now,
    cacheSize: 0,
    jwksMaxAgeSeconds: 60,
    jwksStaleSeconds: 120,
  });
  await verifier.verify(user.access_token);
  counter.failing = true;
  clock.offset += 61;
  assert.equal(await codeOf(verifier, user.access_token), "ok");
  assert.equal(counter.calls, 2);
  // After a failure the next attempt waits for the cooldown: no request per verification.
  for (let i = 0; i < 10; i++) assert.equal(await codeOf(verifier, user.access_token), "ok");
  assert.equal(counter.calls, 2);
  clock.offset += 11;
  assert.equal(await codeOf(verifier, user.access_token), "ok");
  assert.equal(counter.calls, 3);
  // 60 s of max age + 120 s of bound after the fetch: then nothing is trusted any more.
  clock.offset = 181;
  assert.equal(await codeOf(verifier, user.access_token), "jwks.unavailable");
  counter.failing = false;
  clock.offset += 11;
  assert.equal(await codeOf(verifier, user.access_token), "ok");
});

test("without any JWKS: jwks.unavailable, and the next attempt after the cooldown", async () => {
  const clock = new TestClock();
  const counter = new CountingFetch();
  counter.failing = true;
  const verifier = new AccessTokenVerifier({ jwksUrl, fetch: counter.fetch, now: clock.now });
  assert.equal(await codeOf(verifier, user.access_token), "jwks.unavailable");
  assert.equal(await codeOf(verifier, user.access_token), "jwks.unavailable");
  assert.equal(counter.calls, 1);
  counter.failing = false;
  clock.offset += 10.5;
  assert.equal(await codeOf(verifier, user.access_token), "ok");
  assert.equal(counter.calls, 2);
  // A closed port is unavailable too.
  const closed = new AccessTokenVerifier({ jwksUrl: "http://127.0.0.1:9/.well-known/jwks.json" });
  await assert.rejects(closed.verify(user.access_token), (e: unknown) => e instanceof AuthError && e.code === "jwks.unavailable");
  // A server error is no JWKS either.
  const notFound = new AccessTokenVerifier({ jwksUrl: `${server.url}/no-jwks-here` });
  assert.equal(await codeOf(notFound, user.access_token), "jwks.unavailable");
});

test("the verified-token cache answers a repeated token until exp + leeway, never after", async () => {
  const clock = new TestClock();
  const counter = new CountingFetch();
  const verifier = new AccessTokenVerifier({ jwksUrl, fetch: counter.fetch, now: clock.now, jwksMaxAgeSeconds: 100_000 });
  const first = await verifier.verify(user.access_token);
  assert.equal(await verifier.verify(user.access_token), first, "the cached claims");
  const exp = first.exp;
  clock.offset = exp + 30 - Date.now() / 1000 - 1;
  assert.equal(await verifier.verify(user.access_token), first, "still within the leeway");
  clock.offset += 2;
  assert.equal(await codeOf(verifier, user.access_token), "token.expired");
  assert.equal(await codeOf(verifier, user.access_token), "token.expired");
});

test("the verified-token cache is bounded", async () => {
  const verifier = new AccessTokenVerifier({ jwksUrl, cacheSize: 2 });
  const second = await server.refresh(user.refresh_token!);
  const third = await server.refresh(second.refresh_token!);
  const a = await verifier.verify(user.access_token);
  const b = await verifier.verify(second.access_token);
  assert.equal(await verifier.verify(user.access_token), a);
  await verifier.verify(third.access_token);
  // The oldest entry made room: verified again, a new object.
  assert.notEqual(await verifier.verify(user.access_token), a);
  assert.deepEqual(await verifier.verify(user.access_token), a);
  assert.notEqual(b, a);
  // With the cache off, every verification is a new one.
  const uncached = new AccessTokenVerifier({ jwksUrl, cacheSize: 0 });
  assert.notEqual(await uncached.verify(user.access_token), await uncached.verify(user.access_token));
});

test("verifySync answers from the loaded keys without waiting", async () => {
  const counter = new CountingFetch();
  const verifier = new AccessTokenVerifier({ jwksUrl, fetch: counter.fetch });
  assert.throws(() => verifier.verifySync(user.access_token), (e: unknown) => e instanceof AuthError && e.code === "jwks.unavailable");
  await verifier.loadKeys();
  assert.equal(verifier.verifySync(user.access_token).sub, decode(user.access_token).payload.sub);
  assert.throws(() => verifier.verifySync(withKid("nope")), (e: unknown) => e instanceof AuthError && e.code === "token.unknown_key");
  assert.throws(() => verifier.verifySync("x.y"), (e: unknown) => e instanceof AuthError && e.code === "token.malformed");
  assert.equal(counter.calls, 1);
});
