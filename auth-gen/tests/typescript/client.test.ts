// The token client and introspection against a real auth-server: password login, refresh before
// expiry, single-flight refresh, the reuse-grace retry of a lost answer (and no retry past the
// grace), logout (tokens kept until the server confirms, no refresh for a token still valid, a
// session already over), a saved session restored, client credentials, and RFC 7662 introspection.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import {
  AccessTokenVerifier,
  Introspector,
  REFRESH_REUSE_GRACE_SECONDS,
  TokenClient,
  TokenClientError,
  type FetchLike,
  type TokenSet,
} from "../gen/index.js";
import { CountingFetch, TestClock } from "./forge.js";
import { AuthServer, PASSWORD } from "./server.js";

let server: AuthServer;
let backendSecret: string;
let verifier: AccessTokenVerifier;

before(async () => {
  ({ server, backendSecret } = await AuthServer.start());
  verifier = new AccessTokenVerifier({ jwksUrl: `${server.url}/.well-known/jwks.json` });
});

after(async () => {
  await server?.stop();
});

function isClientError(code: string, fields: { status?: number; error?: string; errorDescription?: string } = {}) {
  return (error: unknown) => {
    assert.ok(error instanceof TokenClientError, String(error));
    assert.equal(error.code, code);
    for (const [name, value] of Object.entries(fields)) assert.equal(error[name as keyof typeof fields], value, name);
    return true;
  };
}

/** The refresh_token parameter of a token request body, if any. */
function refreshTokenOf(body: string): string | null {
  return new URLSearchParams(body).get("refresh_token");
}

/** A request as the client sent it: path, bearer token (if any) and form. */
interface Sent {
  readonly path: string;
  readonly bearer: string | null;
  readonly form: URLSearchParams;
}

/** A fetch that records every request, passes it to the server, and lets `intercept` answer instead. */
function recording(intercept?: (sent: Sent, url: string, init?: RequestInit) => Promise<Response> | null): {
  fetch: FetchLike;
  sent: Sent[];
} {
  const sent: Sent[] = [];
  const recorder: FetchLike = (url, init) => {
    const authorization = new Headers(init?.headers).get("authorization");
    const request: Sent = {
      path: new URL(url).pathname,
      bearer: authorization?.startsWith("Bearer ") ? authorization.slice("Bearer ".length) : null,
      form: new URLSearchParams(typeof init?.body === "string" ? init.body : ""),
    };
    sent.push(request);
    return intercept?.(request, url, init) ?? fetch(url, init);
  };
  return { fetch: recorder, sent };
}

/** Ends a session elsewhere: RFC 7009 revocation of its refresh token. */
async function revoke(refreshToken: string): Promise<void> {
  const revoked = await fetch(`${server.url}/oauth/revoke`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ token: refreshToken, client_id: "booking-web" }).toString(),
  });
  assert.equal(revoked.status, 200);
}

test("password login, and OAuth errors carried as sent", async () => {
  const username = await server.signUp();
  const client = new TokenClient({ clientId: "booking-web", baseUrl: server.url });
  await assert.rejects(client.accessToken(), isClientError("client.not_logged_in"));
  await assert.rejects(
    client.login(username, "wrong password!"),
    isClientError("auth.invalid_credentials", { status: 400, error: "invalid_grant", errorDescription: "auth.invalid_credentials" }),
  );
  await assert.rejects(
    client.login(username, PASSWORD, "bookings:admin"),
    isClientError("auth.invalid_scope", { status: 400, error: "invalid_scope", errorDescription: "auth.invalid_scope: bookings:admin" }),
  );
  const tokens = await client.login(username, PASSWORD);
  assert.equal(tokens.scope, "bookings:read bookings:write");
  assert.ok(tokens.refreshToken);
  assert.ok(Math.abs(tokens.expiresAt - (Date.now() / 1000 + 900)) < 5);
  assert.equal(tokens.refreshAt, tokens.expiresAt - 30);
  assert.equal(await client.accessToken(), tokens.accessToken);
  const claims = await verifier.verify(await client.accessToken());
  assert.equal(claims.sid !== undefined && claims.tenant_id, "hotel-7");
  // Unreachable server: a network error, no status.
  const offline = new TokenClient({ clientId: "booking-web", baseUrl: "http://127.0.0.1:9" });
  await assert.rejects(offline.login(username, PASSWORD), isClientError("client.network", { status: 0 }));
});

test("accessToken() refreshes when the token is about to expire; concurrent callers share one refresh", async () => {
  const clock = new TestClock();
  const counter = new CountingFetch();
  const client = new TokenClient({ clientId: "booking-web", baseUrl: server.url, fetch: counter.fetch, now: clock.now });
  const first = await client.login(await server.signUp(), PASSWORD);
  assert.equal(counter.calls, 1);
  clock.offset = first.refreshAt - Date.now() / 1000 + 1;
  const tokens = await Promise.all([client.accessToken(), client.accessToken(), client.refresh().then((t) => t.accessToken)]);
  assert.equal(counter.calls, 2, "one refresh request");
  assert.equal(refreshTokenOf(counter.bodies[1]!), first.refreshToken);
  assert.notEqual(tokens[0], first.accessToken);
  assert.deepEqual(tokens, [tokens[0], tokens[0], tokens[0]]);
  assert.notEqual(client.tokens!.refreshToken, first.refreshToken, "the refresh token rotated");
  await verifier.verify(tokens[0]);
  // Two concurrent refreshes: one request, the same tokens for both.
  const [a, b] = await Promise.all([client.refresh(), client.refresh()]);
  assert.equal(counter.calls, 3);
  assert.equal(a, b);
  // Sequential refreshes each rotate.
  const c = await client.refresh();
  assert.equal(counter.calls, 4);
  assert.notEqual(c.refreshToken, a.refreshToken);
});

test("a refresh whose answer is lost is retried with the same token within the grace, and gets the same successor", async () => {
  const counter = new CountingFetch();
  let lostAnswer: Record<string, unknown> | null = null;
  let answersToLose = 1;
  const losing: FetchLike = async (url, init) => {
    const response = await counter.fetch(url, init);
    if (refreshTokenOf(String(init?.body ?? "")) !== null && answersToLose > 0) {
      answersToLose--;
      // The server rotated the token, but the answer never arrives.
      lostAnswer = (await response.json()) as Record<string, unknown>;
      throw new TypeError("fetch failed: connection reset (test)");
    }
    return response;
  };
  const client = new TokenClient({ clientId: "booking-web", baseUrl: server.url, fetch: losing, retryDelayMs: 50 });
  const first = await client.login(await server.signUp(), PASSWORD);
  const refreshed = await client.refresh();
  assert.equal(counter.calls, 3, "login, the lost refresh, its retry");
  assert.equal(refreshTokenOf(counter.bodies[1]!), first.refreshToken);
  assert.equal(refreshTokenOf(counter.bodies[2]!), first.refreshToken, "the retry sends the same refresh token");
  assert.equal(refreshed.refreshToken, lostAnswer!.refresh_token, "the server answered the same successor");
  // The session is intact: the successor rotates normally.
  const next = await client.refresh();
  assert.notEqual(next.refreshToken, refreshed.refreshToken);
  await verifier.verify(next.accessToken);

  // A 5xx is retried the same way.
  let failures = 1;
  const flaky: FetchLike = async (url, init) => {
    counter.calls++;
    if (refreshTokenOf(String(init?.body ?? "")) !== null && failures-- > 0) {
      return new Response(JSON.stringify({ error: "temporarily_unavailable", error_description: "store.unavailable" }), { status: 503 });
    }
    return fetch(url, init);
  };
  const other = new TokenClient({ clientId: "booking-web", baseUrl: server.url, fetch: flaky, retryDelayMs: 50 });
  await other.login(await server.signUp(), PASSWORD);
  await other.refresh();
  assert.equal(failures, -1);

  // A server that keeps failing: a bounded number of retries, then its error.
  failures = Infinity;
  const stubborn = new TokenClient({ clientId: "booking-web", baseUrl: server.url, fetch: flaky, retryDelayMs: 10, refreshRetries: 2 });
  await stubborn.login(await server.signUp(), PASSWORD);
  const before = counter.calls;
  await assert.rejects(
    stubborn.refresh(),
    isClientError("store.unavailable", { status: 503, error: "temporarily_unavailable", errorDescription: "store.unavailable" }),
  );
  assert.equal(counter.calls - before, 3, "the attempt and two retries");
  assert.ok(stubborn.tokens !== null, "a server failure does not end the session");
});

test("past the reuse grace, a lost refresh is not retried with the old token", async () => {
  const clock = new TestClock();
  const counter = new CountingFetch();
  let refreshes = 0;
  const slowFailure: FetchLike = async (url, init) => {
    if (refreshTokenOf(String(init?.body ?? "")) !== null) {
      refreshes++;
      // The attempt takes longer than the grace, then fails without an answer.
      clock.offset += REFRESH_REUSE_GRACE_SECONDS + 1;
      throw new TypeError("fetch failed: timeout (test)");
    }
    return counter.fetch(url, init);
  };
  const client = new TokenClient({ clientId: "booking-web", baseUrl: server.url, fetch: slowFailure, now: clock.now, retryDelayMs: 10 });
  const tokens = await client.login(await server.signUp(), PASSWORD);
  await assert.rejects(client.refresh(), isClientError("client.network", { status: 0 }));
  assert.equal(refreshes, 1, "no retry");
  // Nothing was refused by the server, so the tokens are kept.
  assert.equal(client.tokens, tokens);
});

test("a refused refresh ends the local session, with the server's error", async () => {
  const client = new TokenClient({ clientId: "booking-web", baseUrl: server.url });
  const tokens = await client.login(await server.signUp(), PASSWORD);
  // The session is revoked elsewhere (RFC 7009 revocation of its refresh token).
  const revoked = await fetch(`${server.url}/oauth/revoke`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ token: tokens.refreshToken!, client_id: "booking-web" }).toString(),
  });
  assert.equal(revoked.status, 200);
  await assert.rejects(
    client.refresh(),
    isClientError("refresh.revoked", { status: 400, error: "invalid_grant", errorDescription: "refresh.revoked" }),
  );
  assert.equal(client.tokens, null);
});

test("logout ends the session at the server", async () => {
  const username = await server.signUp();
  const client = new TokenClient({ clientId: "booking-web", baseUrl: server.url });
  const tokens = await client.login(username, PASSWORD);
  const introspector = new Introspector({ clientId: "booking-backend", clientSecret: backendSecret, baseUrl: server.url });
  assert.equal(await introspector.isActive(tokens.accessToken), true);
  assert.equal(await client.logout(), 1);
  assert.equal(client.tokens, null);
  await assert.rejects(client.accessToken(), isClientError("client.not_logged_in"));
  // The refresh token is dead, and introspection sees the access token's session ended.
  await assert.rejects(server.refresh(tokens.refreshToken!), /refresh\.revoked/);
  assert.deepEqual(await introspector.introspect(tokens.accessToken), { active: false });
  // A signature check alone still accepts the token until it expires.
  await verifier.verify(tokens.accessToken);
  // `all`: every live session of the user.
  const again = new TokenClient({ clientId: "booking-web", baseUrl: server.url });
  await again.login(username, PASSWORD);
  assert.equal(await again.logout({ all: true }), 1);
});

test("a logout that fails keeps the tokens, and a retry ends the session", async () => {
  let failure: "network" | "503" | "lost answer" | null = "network";
  const { fetch: failing, sent } = recording((request, url, init) => {
    if (request.path !== "/v1/logout" || failure === null) return null;
    if (failure === "network") return Promise.reject(new TypeError("fetch failed: connection refused (test)"));
    if (failure === "503") {
      const problem = { type: "about:blank", title: "Unavailable", status: 503, code: "store.unavailable" };
      return Promise.resolve(new Response(JSON.stringify(problem), { status: 503, headers: { "content-type": "application/problem+json" } }));
    }
    // The server ends the session, but its answer never arrives.
    return fetch(url, init).then(() => Promise.reject(new TypeError("fetch failed: connection reset (test)")));
  });
  const introspector = new Introspector({ clientId: "booking-backend", clientSecret: backendSecret, baseUrl: server.url });
  const client = new TokenClient({ clientId: "booking-web", baseUrl: server.url, fetch: failing });
  const tokens = await client.login(await server.signUp(), PASSWORD);

  await assert.rejects(client.logout(), isClientError("client.network", { status: 0 }));
  assert.equal(client.tokens, tokens, "no answer: the tokens are kept");
  failure = "503";
  await assert.rejects(client.logout(), isClientError("store.unavailable", { status: 503, error: "store.unavailable" }));
  assert.equal(client.tokens, tokens, "a 5xx: the tokens are kept");
  assert.equal(await introspector.isActive(tokens.accessToken), true, "the session is still alive");
  failure = null;
  assert.equal(await client.logout(), 1, "the retry ends the session");
  assert.equal(client.tokens, null);
  assert.deepEqual(
    sent.filter((r) => r.path === "/v1/logout").map((r) => r.bearer),
    [tokens.accessToken, tokens.accessToken, tokens.accessToken],
  );
  await assert.rejects(server.refresh(tokens.refreshToken!), /refresh\.revoked/);

  // The server ended the session but the answer was lost: the retry hears that it is over.
  const other = await client.login(await server.signUp(), PASSWORD);
  failure = "lost answer";
  await assert.rejects(client.logout(), isClientError("client.network"));
  assert.equal(client.tokens, other);
  assert.equal(await introspector.isActive(other.accessToken), false);
  failure = null;
  assert.equal(await client.logout(), 0, "401 token.session_revoked: nothing left to end");
  assert.equal(client.tokens, null);
  await assert.rejects(client.logout(), isClientError("client.not_logged_in"));
});

test("logout sends the access token while it is valid, and refreshes only an expired one", async () => {
  const clock = new TestClock();
  const { fetch: recorder, sent } = recording();
  const client = new TokenClient({ clientId: "booking-web", baseUrl: server.url, fetch: recorder, now: clock.now });

  // Within the refresh margin but not expired: no refresh just to log out.
  const nearExpiry = await client.login(await server.signUp(), PASSWORD);
  clock.offset = nearExpiry.refreshAt - Date.now() / 1000 + 1;
  assert.equal(await client.logout(), 1);
  assert.deepEqual(
    sent.map((r) => [r.path, r.bearer]),
    [
      ["/oauth/token", null],
      ["/v1/logout", nearExpiry.accessToken],
    ],
  );

  // Expired by the client's clock: refreshed first, and the new token logs out.
  sent.length = 0;
  clock.offset = 0;
  const expired = await client.login(await server.signUp(), PASSWORD);
  clock.offset = expired.expiresAt - Date.now() / 1000 + 1;
  assert.equal(await client.logout(), 1);
  assert.deepEqual(
    sent.map((r) => r.path),
    ["/oauth/token", "/oauth/token", "/v1/logout"],
  );
  assert.equal(sent[1]!.form.get("refresh_token"), expired.refreshToken);
  assert.notEqual(sent[2]!.bearer, expired.accessToken);
  await verifier.verify(sent[2]!.bearer!);
  assert.equal(client.tokens, null);

  // Expired, and the session was ended elsewhere: the refused refresh says it is over.
  sent.length = 0;
  clock.offset = 0;
  const ended = await client.login(await server.signUp(), PASSWORD);
  await revoke(ended.refreshToken!);
  clock.offset = ended.expiresAt - Date.now() / 1000 + 1;
  assert.equal(await client.logout(), 0);
  assert.deepEqual(
    sent.map((r) => r.path),
    ["/oauth/token", "/oauth/token"],
    "no logout request",
  );
  assert.equal(client.tokens, null);

  // Still valid, and the session was ended elsewhere: 401 token.session_revoked.
  clock.offset = 0;
  const revoked = await client.login(await server.signUp(), PASSWORD);
  await revoke(revoked.refreshToken!);
  assert.equal(await client.logout(), 0);
  assert.equal(client.tokens, null);
});

test("restore continues a saved session; onTokens reports every change to save", async () => {
  const savedByFirst: Array<TokenSet | null> = [];
  const first = new TokenClient({ clientId: "booking-web", baseUrl: server.url, onTokens: (t) => savedByFirst.push(t) });
  const tokens = await first.login(await server.signUp("venue-3"), PASSWORD);
  assert.deepEqual(savedByFirst, [tokens]);
  const saved = JSON.stringify(first.tokens);

  // Another process (the app restarted) continues the session from the saved copy.
  const saves: Array<TokenSet | null> = [];
  const clock = new TestClock();
  const resumed = new TokenClient({ clientId: "booking-web", baseUrl: server.url, now: clock.now, onTokens: (t) => saves.push(t) });
  await assert.rejects(resumed.accessToken(), isClientError("client.not_logged_in"));
  assert.deepEqual(resumed.restore(JSON.parse(saved) as TokenSet), tokens);
  assert.deepEqual(resumed.tokens, tokens);
  assert.equal(saves.length, 0, "restore reports nothing: the caller has the tokens");
  assert.equal(await resumed.accessToken(), tokens.accessToken);
  const claims = await verifier.verify(await resumed.accessToken());
  assert.equal(claims.sid !== undefined && claims.tenant_id, "venue-3");
  // Its refresh rotates the session's refresh token, as the first client's would have.
  clock.offset = tokens.refreshAt - Date.now() / 1000 + 1;
  const rotated = await resumed.accessToken();
  assert.notEqual(rotated, tokens.accessToken);
  assert.notEqual(resumed.tokens!.refreshToken, tokens.refreshToken);
  assert.deepEqual(saves, [resumed.tokens], "the rotated tokens are reported, to be saved again");
  assert.equal(await resumed.logout(), 1);
  assert.equal(saves.length, 2);
  assert.equal(saves[1], null, "the end of the session is reported");
  await assert.rejects(server.refresh(saves[0]!.refreshToken!), /refresh\.revoked/);

  // What is not a TokenSet is refused, and nothing changes.
  for (const bad of [null, "token", {}, { ...tokens, accessToken: "" }, { ...tokens, expiresAt: "soon" }, { ...tokens, refreshToken: 7 }]) {
    assert.throws(() => resumed.restore(bad as unknown as TokenSet), isClientError("client.invalid_tokens"), JSON.stringify(bad));
  }
  assert.equal(resumed.tokens, null);

  // A restored access token the server refuses (its signature altered): logout refreshes once with
  // the session's refresh token and logs out with the new access token.
  const { fetch: recorder, sent } = recording();
  const live = await new TokenClient({ clientId: "booking-web", baseUrl: server.url }).login(await server.signUp(), PASSWORD);
  const [header, payload, signature] = live.accessToken.split(".");
  const altered = `${header}.${payload}.${signature!.startsWith("A") ? "B" : "A"}${signature!.slice(1)}`;
  const restoredAltered = new TokenClient({ clientId: "booking-web", baseUrl: server.url, fetch: recorder });
  restoredAltered.restore({ ...live, accessToken: altered });
  assert.equal(await restoredAltered.logout(), 1);
  assert.deepEqual(
    sent.map((r) => r.path),
    ["/v1/logout", "/oauth/token", "/v1/logout"],
  );
  assert.equal(restoredAltered.tokens, null);

  // A client-credentials token saved as JSON (no refresh token) restores too.
  const backend = new TokenClient({ clientId: "booking-backend", clientSecret: backendSecret, baseUrl: server.url });
  const machine = await backend.clientCredentials();
  const copy = new TokenClient({ clientId: "booking-backend", clientSecret: backendSecret, baseUrl: server.url });
  assert.equal(copy.restore(JSON.parse(JSON.stringify(machine)) as TokenSet).refreshToken, undefined);
  assert.equal(await copy.accessToken(), machine.accessToken);
});

test("introspection of access and refresh tokens, and its errors", async () => {
  const client = new TokenClient({ clientId: "booking-web", baseUrl: server.url });
  const tokens = await client.login(await server.signUp("venue-9"), PASSWORD);
  const introspector = new Introspector({ clientId: "booking-backend", clientSecret: backendSecret, baseUrl: server.url });
  const access = await introspector.introspect(tokens.accessToken);
  assert.equal(access.active, true);
  if (!access.active || access.token_type !== "Bearer") assert.fail("an active access token");
  assert.equal(access.tenant_id, "venue-9");
  assert.equal(access.client_id, "booking-web");
  assert.equal(access.aud, "booking-api");
  const refresh = await introspector.introspect(tokens.refreshToken!);
  if (!refresh.active || refresh.token_type !== undefined) assert.fail("an active refresh token");
  assert.equal("token_type" in refresh, false, "no RFC 6749 token type for a refresh token");
  assert.equal(refresh.sid, access.sid);
  assert.deepEqual(await introspector.introspect("garbage"), { active: false });
  const wrong = new Introspector({ clientId: "booking-backend", clientSecret: "not-the-secret", baseUrl: server.url });
  await assert.rejects(
    wrong.introspect(tokens.accessToken),
    isClientError("auth.invalid_client", { status: 401, error: "invalid_client", errorDescription: "auth.invalid_client" }),
  );
});

test("client credentials: a new token when the current one is about to expire", async () => {
  const clock = new TestClock();
  const counter = new CountingFetch();
  const client = new TokenClient({
    clientId: "booking-backend",
    clientSecret: backendSecret,
    baseUrl: server.url,
    fetch: counter.fetch,
    now: clock.now,
  });
  const first = await client.clientCredentials();
  assert.equal(first.refreshToken, undefined);
  assert.equal(first.scope, "bookings:read");
  assert.equal(await client.accessToken(), first.accessToken);
  clock.offset = first.refreshAt - Date.now() / 1000 + 1;
  const [a, b] = await Promise.all([client.accessToken(), client.accessToken()]);
  assert.equal(a, b);
  assert.notEqual(a, first.accessToken);
  assert.equal(counter.calls, 2);
  const claims = await verifier.verify(a);
  assert.equal(claims.sub, "booking-backend");
  assert.equal(claims.sid, undefined);
});
