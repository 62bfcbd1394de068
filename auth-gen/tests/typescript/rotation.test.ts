// Key rotation and issuer outage, with real auth-servers:
// - a server rotating its signing key every few seconds: tokens of the new key verify with the same
//   verifier instances (one following the JWKS max age, one only refetching on an unknown kid),
//   and tokens of the previous key keep verifying while it is published;
// - a server stopped: tokens verify from the cached JWKS until they expire, then are refused as
//   expired; only past the stale bound does the verifier give up on the JWKS.

import assert from "node:assert/strict";
import { test } from "node:test";
import { AccessTokenVerifier, Auth, type GuardOutcome } from "../gen/index.js";
import { codeOf, CountingFetch, decode, TestClock } from "./forge.js";
import { AuthServer } from "./server.js";

const kidOf = (token: string) => decode(token).header.kid as string;

test("key rotation is followed without a restart", async (t) => {
  const { server } = await AuthServer.start({
    tokens: { access_ttl: "10s", leeway: "1s" },
    keys: { rotate_every: "6s", publish_ahead: "3s", retire_after: "12s", jwks_max_age: "2s" },
  });
  t.after(() => server.stop());
  const jwksUrl = `${server.url}/.well-known/jwks.json`;
  // One verifier follows the server's Cache-Control (max-age=2); the other keeps its JWKS for ten
  // minutes and must find the new key through the refetch on an unknown kid.
  const byAge = new AccessTokenVerifier({ jwksUrl });
  const onMiss = new CountingFetch();
  const byMiss = new AccessTokenVerifier({ jwksUrl, fetch: onMiss.fetch, jwksMaxAgeSeconds: 600, jwksCooldownSeconds: 1 });

  const first = await server.login(await server.signUp());
  const oldKid = kidOf(first.access_token);
  assert.equal(await codeOf(byAge, first.access_token), "ok");
  assert.equal(await codeOf(byMiss, first.access_token), "ok");
  assert.equal(onMiss.calls, 1);

  // Refresh the session until the server signs with another key.
  let refresh = first.refresh_token!;
  let rotated: string | null = null;
  const deadline = Date.now() + 20_000;
  while (rotated === null && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 400));
    const next = await server.refresh(refresh);
    refresh = next.refresh_token!;
    if (kidOf(next.access_token) !== oldKid) rotated = next.access_token;
    else assert.equal(await codeOf(byAge, next.access_token), "ok");
  }
  assert.ok(rotated !== null, "the server rotated its key");
  assert.equal(await codeOf(byAge, rotated), "ok");
  assert.equal(await codeOf(byMiss, rotated), "ok");
  assert.equal(onMiss.calls, 2, "one refetch for the new kid");
  // The previous key is still published (retiring): its tokens still verify, uncached.
  const fresh = new AccessTokenVerifier({ jwksUrl });
  assert.equal(await codeOf(fresh, first.access_token), "ok");
  assert.ok((await server.jwks()).keys.some((k) => k.kid === oldKid));
  assert.equal(await server.judge(rotated), "ok");
});

test("issuer stopped: tokens verify from the cached JWKS until they expire, then are refused as expired", async () => {
  const { server } = await AuthServer.start();
  const jwksUrl = `${server.url}/.well-known/jwks.json`;
  const first = await server.login(await server.signUp());
  const second = await server.refresh(first.refresh_token!);
  const clock = new TestClock();
  const counter = new CountingFetch();
  const verifier = new AccessTokenVerifier({ jwksUrl, fetch: counter.fetch, now: clock.now });
  const guard = new Auth({ verifier }).requireScope("bookings:read");
  const fetchedAt = Date.now() / 1000;
  assert.equal(await codeOf(verifier, first.access_token), "ok");
  assert.equal(counter.calls, 1);

  await server.stop();
  const down = await fetch(jwksUrl).then(() => "up", () => "down");
  assert.equal(down, "down");

  // Past the JWKS max age (600 s): the refetch fails, the cached keys still serve, for a token
  // never verified before too (not from the verified-token cache).
  clock.offset = 601;
  assert.equal(await codeOf(verifier, second.access_token), "ok");
  assert.equal(counter.calls, 2);
  for (let i = 0; i < 20; i++) assert.equal(await codeOf(verifier, second.access_token), "ok");
  assert.equal(counter.calls, 2, "one attempt per cooldown, not one per verification");
  assert.equal((await guard(`Bearer ${second.access_token}`)).ok, true);

  // Until exp + leeway (30 s) ...
  const exp = decode(second.access_token).payload.exp as number;
  clock.offset = exp + 29 - Date.now() / 1000;
  assert.equal(await codeOf(verifier, second.access_token), "ok");
  // ... and then refused as expired, the JWKS still within its stale bound.
  clock.offset = exp + 31 - Date.now() / 1000;
  assert.equal(await codeOf(verifier, second.access_token), "token.expired");
  assert.equal(await codeOf(verifier, first.access_token), "token.expired");
  const expired = (await guard(`Bearer ${second.access_token}`)) as Extract<GuardOutcome, { ok: false }>;
  assert.deepEqual([expired.status, expired.code], [401, "token.expired"]);
  assert.equal(expired.headers["www-authenticate"], 'Bearer error="invalid_token", error_description="token.expired"');

  // Past max age + stale bound (600 + 930 s after the fetch), nothing is trusted: 503.
  clock.offset = fetchedAt + 600 + 930 + 1 - Date.now() / 1000;
  assert.equal(await codeOf(verifier, second.access_token), "jwks.unavailable");
  const unavailable = (await guard(`Bearer ${second.access_token}`)) as Extract<GuardOutcome, { ok: false }>;
  assert.deepEqual([unavailable.status, unavailable.code], [503, "jwks.unavailable"]);
});
