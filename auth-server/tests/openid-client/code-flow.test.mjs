// The code flow as a new user of openid-client (v6, panva's OAuth 2 / OpenID Connect library for
// JavaScript runtimes, pinned in the root package.json) runs it against a live auth-server
// (AUTH_SERVER_URL, its issuer on loopback http, hence allowInsecureRequests). Started by the Rust
// test `openid_client` in auth-server's integration tests, which registers the public client
// AUTH_CLIENT_ID (loopback redirect URI, post-logout redirect URI) and the user AUTH_USERNAME.
//
// The user signs in without a browser: a cookie-keeping fetch opens the authorization URL, reads
// the hidden fields of the hosted sign-in form, posts it with the issuer as Origin and takes the
// redirect to the redirect URI from its Location (nothing listens there).
//
// What it shows:
// - discovery() of the issuer finds every endpoint of the flow, S256 and the RFC 9207 iss flag;
// - buildAuthorizationUrl (PKCE S256, state, nonce, scope `openid profile bookings:read`), then
//   authorizationCodeGrant with its checks (state, iss, the ID token's RS256 signature from
//   the JWKS, iss, aud, exp, iat, nonce); the ID token's claims, at_hash among them (which the
//   library checks only in hybrid flows, so the suite does); fetchUserInfo; refreshTokenGrant; a
//   second authorization on the browser session (max_age, auth_time checked by the library);
// - the library refuses a tampered state, a wrong or missing iss (before the code is spent), an
//   ID token with another nonce or a broken signature;
// - the server refuses the same code twice (invalid_grant) and revokes what its first exchange
//   gave; it refuses a wrong PKCE verifier, and the code is spent by that;
// - prompt=none without a session comes back as login_required, which the library reads (after
//   checking state and iss on the error redirect); tokenRevocation ends a refresh token;
// - buildAuthorizationUrlWithPAR pushes the request (RFC 9126, the discovered
//   pushed_authorization_request_endpoint) and the browser signs in with the request_uri only;
//   that request_uri works once;
// - buildEndSessionUrl gives a request the server takes: without id_token_hint it asks first (a
//   page), with the hint of the browser's session it signs out at once and goes back to the
//   registered post_logout_redirect_uri with state; the tokens of that session end with it; an
//   unregistered post-logout URI is refused on a page.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { before, test } from 'node:test';

import { createRemoteJWKSet, jwtVerify } from 'jose';
import * as client from 'openid-client';

const issuer = requiredEnv('AUTH_SERVER_URL');
const clientId = requiredEnv('AUTH_CLIENT_ID');
const username = requiredEnv('AUTH_USERNAME');
const password = requiredEnv('AUTH_PASSWORD');

// Loopback redirect URIs match the registered ones on any port (RFC 8252 7.3); nothing listens.
const redirectUri = 'http://127.0.0.1:53682/callback';
const postLogoutRedirectUri = 'http://127.0.0.1:53682/signed-out';
const scope = 'openid profile bookings:read';

function requiredEnv(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set; this suite is run by auth-server's openid_client test`);
  return value;
}

/** What a new user writes: discovery over loopback http, ID token signatures checked. */
function discover(options = {}) {
  return client.discovery(new URL(issuer), clientId, undefined, client.None(), {
    execute: [client.allowInsecureRequests, client.enableNonRepudiationChecks],
    ...options,
  });
}

let config;

before(async () => {
  config = await discover();
});

/** A browser without a browser: fetch that keeps the issuer's cookies and follows no redirect. */
class Browser {
  cookies = new Map();

  cookieHeader() {
    return [...this.cookies].map(([name, value]) => `${name}=${value}`).join('; ');
  }

  remember(response) {
    for (const line of response.headers.getSetCookie()) {
      const [pair, ...attributes] = line.split(';');
      const name = pair.slice(0, pair.indexOf('=')).trim();
      const value = pair.slice(pair.indexOf('=') + 1).trim();
      const expired = attributes.some((a) => /^\s*max-age\s*=\s*(0|-\d+)\s*$/i.test(a)) ||
        attributes.some((a) => /^\s*expires\s*=/i.test(a) && Date.parse(a.split('=')[1]) <= Date.now());
      if (!value || expired) this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
  }

  async request(url, init = {}) {
    const target = new URL(url);
    assert.equal(target.origin, new URL(issuer).origin, `the browser only talks to the issuer here, not ${target}`);
    const headers = new Headers(init.headers);
    if (this.cookies.size) headers.set('cookie', this.cookieHeader());
    const response = await fetch(target, { ...init, headers, redirect: 'manual' });
    this.remember(response);
    return response;
  }

  hasSession() {
    return this.cookies.has('auth_session');
  }
}

const isRedirect = (response) => response.status >= 300 && response.status < 400;

/**
 * Follows redirects from `response` (answering `url`) while they stay on the issuer; returns the
 * first one that leaves it (the redirect URI, not fetched), or `{ page }` for a page of the issuer.
 */
async function follow(browser, url, response) {
  for (let hops = 0; isRedirect(response); hops++) {
    assert.ok(hops < 10, 'too many redirects');
    const location = new URL(response.headers.get('location'), url);
    if (location.origin !== new URL(issuer).origin) return { location };
    url = location;
    response = await browser.request(url);
  }
  return { page: { url, status: response.status, html: await response.text() } };
}

const decodeHtml = (text) =>
  text.replace(/&(#x[0-9a-f]+|#\d+|amp|quot|apos|lt|gt);/gi, (_, entity) => {
    const named = { amp: '&', quot: '"', apos: "'", lt: '<', gt: '>' }[entity.toLowerCase()];
    if (named) return named;
    return String.fromCodePoint(entity[1].toLowerCase() === 'x' ? parseInt(entity.slice(2), 16) : parseInt(entity.slice(1), 10));
  });

function attributes(tag) {
  const found = {};
  for (const [, name, value] of tag.matchAll(/([a-z][a-z0-9-]*)(?:="([^"]*)")?/gi)) found[name.toLowerCase()] = decodeHtml(value ?? '');
  return found;
}

/** The first form of a page: its absolute action, method and fields (hidden ones with values). */
function readForm(page) {
  const form = page.html.match(/<form\b([^>]*)>([\s\S]*?)<\/form>/i);
  assert.ok(form, `no form on ${page.url}:\n${page.html}`);
  const { action, method } = attributes(form[1]);
  const fields = {};
  for (const [tag] of form[2].matchAll(/<input\b[^>]*>/gi)) {
    const input = attributes(tag.slice('<input'.length, -1));
    if (input.name) fields[input.name] = input.type === 'hidden' ? input.value : '';
  }
  return { action: new URL(action, page.url), method: (method ?? 'get').toLowerCase(), fields };
}

/** Signs the user in on the page of `authorizationUrl`; returns the redirect to the redirect URI. */
async function signIn(browser, authorizationUrl) {
  const opened = await follow(browser, authorizationUrl, await browser.request(authorizationUrl));
  assert.ok(opened.page, `expected the sign-in page, was redirected to ${opened.location}`);
  assert.equal(opened.page.status, 200, opened.page.html);
  const form = readForm(opened.page);
  assert.equal(form.method, 'post');
  assert.ok('username' in form.fields && 'password' in form.fields, `not the sign-in form: ${JSON.stringify(form.fields)}`);
  const hidden = Object.keys(form.fields).filter((name) => name !== 'username' && name !== 'password');
  assert.ok(hidden.includes('csrf'), `the form carries a CSRF token: ${hidden}`);

  const body = new URLSearchParams({ ...form.fields, username, password });
  const posted = await browser.request(form.action, {
    method: 'POST',
    headers: { origin: new URL(issuer).origin, 'content-type': 'application/x-www-form-urlencoded' },
    body,
  });
  const done = await follow(browser, form.action, posted);
  assert.ok(done.location, `the sign-in did not redirect back: ${done.page?.status}\n${done.page?.html}`);
  return done.location;
}

/**
 * A fresh authorization request as the library builds it (`build`: buildAuthorizationUrl, or
 * buildAuthorizationUrlWithPAR to push it first), and the checks to go with it.
 */
async function authorizationRequest(extra = {}, build = client.buildAuthorizationUrl) {
  const pkceCodeVerifier = client.randomPKCECodeVerifier();
  const expectedState = client.randomState();
  const expectedNonce = client.randomNonce();
  const url = await build(config, {
    redirect_uri: redirectUri,
    scope,
    code_challenge: await client.calculatePKCECodeChallenge(pkceCodeVerifier),
    code_challenge_method: 'S256',
    state: expectedState,
    nonce: expectedNonce,
    ...extra,
  });
  return { url, checks: { pkceCodeVerifier, expectedState, expectedNonce, idTokenExpected: true } };
}

/** Signs in with a new browser; the callback URL and the checks of its request. */
async function signedIn() {
  const browser = new Browser();
  const { url, checks } = await authorizationRequest();
  const callback = await signIn(browser, url);
  assert.equal(callback.origin + callback.pathname, redirectUri, `redirected elsewhere: ${callback}`);
  assert.equal(callback.searchParams.get('error'), null, `refused: ${callback}`);
  return { browser, callback, checks };
}

const withParams = (url, change) => {
  const copy = new URL(url);
  change(copy.searchParams);
  return copy;
};

/**
 * Passes when `promise` rejects with the library's own refusal (a ClientError, the check that
 * failed as its cause), whose reason matches `reason`.
 */
const refusedByLibrary = (promise, reason) =>
  assert.rejects(promise, (e) => {
    assert.ok(e instanceof client.ClientError, `not a refusal of the library: ${e?.stack ?? e}`);
    assert.match(e.cause?.message ?? '', reason, `${e.message}: ${e.cause?.stack ?? e.cause}`);
    return true;
  });

/** Passes when `promise` rejects with an OAuth error `code` from the server. */
const refusedWith = (promise, code) =>
  assert.rejects(promise, (e) => {
    assert.ok(e instanceof client.ResponseBodyError, `not a refusal of the server: ${e?.stack ?? e}`);
    assert.equal(e.error, code, e.error_description);
    return true;
  });

test('discovery finds the endpoints of the code flow, S256 and the iss parameter', () => {
  const metadata = config.serverMetadata();
  assert.equal(metadata.issuer, issuer);
  for (const endpoint of ['authorization_endpoint', 'token_endpoint', 'jwks_uri', 'userinfo_endpoint', 'end_session_endpoint']) {
    assert.ok(metadata[endpoint]?.startsWith(`${issuer}/`), `${endpoint}: ${metadata[endpoint]}`);
  }
  assert.ok(config.serverMetadata().supportsPKCE(), 'PKCE S256 is advertised');
  assert.equal(metadata.authorization_response_iss_parameter_supported, true);
  assert.ok(metadata.id_token_signing_alg_values_supported.includes('RS256'));
  assert.ok(metadata.scopes_supported.includes('openid'));
});

test('signs in: code exchange with the library\'s checks, ID token claims, UserInfo, refresh', async () => {
  const { url, checks } = await authorizationRequest();
  assert.equal(url.origin + url.pathname, config.serverMetadata().authorization_endpoint);
  assert.equal(url.searchParams.get('code_challenge_method'), 'S256');
  assert.equal(url.searchParams.get('client_id'), clientId);
  const browser = new Browser();
  const callback = await signIn(browser, url);
  assert.ok(browser.hasSession(), 'the sign-in started a browser session');
  assert.equal(callback.searchParams.get('iss'), issuer, 'RFC 9207 iss');
  assert.equal(callback.searchParams.get('state'), checks.expectedState);

  const tokens = await client.authorizationCodeGrant(config, callback, checks);
  assert.equal(tokens.token_type, 'bearer');
  assert.ok(typeof tokens.access_token === 'string' && tokens.access_token.length > 0);
  assert.ok(tokens.expiresIn() > 0);
  assert.ok(tokens.scope.split(' ').includes('bookings:read'), tokens.scope);
  assert.ok(typeof tokens.refresh_token === 'string' && tokens.refresh_token.length > 0, 'a refresh token');

  const claims = tokens.claims();
  const now = Math.floor(Date.now() / 1000);
  assert.equal(claims.iss, issuer);
  assert.ok(typeof claims.sub === 'string' && claims.sub.length > 0);
  assert.equal(claims.aud, clientId);
  assert.equal(claims.nonce, checks.expectedNonce);
  assert.ok(Number.isInteger(claims.auth_time) && claims.auth_time <= now + 5 && claims.auth_time > now - 300, `auth_time ${claims.auth_time}`);
  assert.ok(Array.isArray(claims.amr) && claims.amr.includes('pwd'), `amr ${JSON.stringify(claims.amr)}`);
  assert.ok(typeof claims.sid === 'string' && claims.sid.length > 0, 'sid');
  // OpenID Connect Core 3.1.3.6: the left half of the SHA-256 of the access token, base64url.
  const digest = createHash('sha256').update(tokens.access_token, 'ascii').digest();
  assert.equal(claims.at_hash, digest.subarray(0, 16).toString('base64url'), 'at_hash');
  assert.equal(claims.preferred_username, username, 'preferred_username with the profile scope');

  // The library checked the signature (enableNonRepudiationChecks); so does jose, with the key
  // the JWKS publishes.
  const { protectedHeader } = await jwtVerify(tokens.id_token, createRemoteJWKSet(new URL(config.serverMetadata().jwks_uri)), {
    issuer,
    audience: clientId,
    algorithms: ['RS256'],
  });
  assert.equal(protectedHeader.alg, 'RS256');
  assert.ok(protectedHeader.kid, 'the ID token names its key');

  const user = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
  assert.equal(user.sub, claims.sub);
  assert.equal(user.preferred_username, username);
  await refusedByLibrary(client.fetchUserInfo(config, tokens.access_token, 'someone-else'), /unexpected "response" body "sub" property value/);

  const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
  assert.ok(refreshed.access_token && refreshed.access_token !== tokens.access_token, 'a new access token');
  if (refreshed.id_token) assert.equal(refreshed.claims().sub, claims.sub);
  const again = await client.fetchUserInfo(config, refreshed.access_token, claims.sub);
  assert.equal(again.preferred_username, username);

  // A second request from the same browser is answered at once (single sign-on); with max_age
  // the library checks auth_time against it.
  const next = await authorizationRequest({ max_age: '600' });
  const direct = await follow(browser, next.url, await browser.request(next.url));
  assert.ok(direct.location, `no redirect back on the session: ${direct.page?.status}`);
  const tokensAgain = await client.authorizationCodeGrant(config, direct.location, { ...next.checks, maxAge: 600 });
  assert.equal(tokensAgain.claims().sub, claims.sub);
  assert.equal(tokensAgain.claims().auth_time, claims.auth_time, 'the same sign-in');
});

test('buildAuthorizationUrlWithPAR: a pushed request signs in with the request_uri alone, once', async () => {
  assert.equal(config.serverMetadata().pushed_authorization_request_endpoint, `${issuer}/oauth/par`);
  const { url, checks } = await authorizationRequest({}, client.buildAuthorizationUrlWithPAR);
  assert.deepEqual([...url.searchParams.keys()].sort(), ['client_id', 'request_uri'], `only the reference travels: ${url}`);
  assert.match(url.searchParams.get('request_uri'), /^urn:ietf:params:oauth:request_uri:/);
  const browser = new Browser();
  const callback = await signIn(browser, url);
  const tokens = await client.authorizationCodeGrant(config, callback, checks);
  assert.equal(tokens.claims().nonce, checks.expectedNonce);
  assert.equal(tokens.claims().preferred_username, username);
  // Used once: the same URL now gets an error page, not a redirect.
  const again = await follow(new Browser(), url, await new Browser().request(url));
  assert.equal(again.page?.status, 400, `a used request_uri: ${again.location}`);
});

test('the library refuses a tampered state and a wrong or missing iss, before the code is spent', async () => {
  const { callback, checks } = await signedIn();
  await refusedByLibrary(
    client.authorizationCodeGrant(config, withParams(callback, (p) => p.set('state', client.randomState())), checks),
    /unexpected "state" response parameter value/,
  );
  await refusedByLibrary(
    client.authorizationCodeGrant(config, callback, { ...checks, expectedState: client.randomState() }),
    /unexpected "state" response parameter value/,
  );
  await refusedByLibrary(
    client.authorizationCodeGrant(config, withParams(callback, (p) => p.set('iss', 'https://attacker.test')), checks),
    /unexpected "iss" \(issuer\) response parameter value/,
  );
  await refusedByLibrary(
    client.authorizationCodeGrant(config, withParams(callback, (p) => p.delete('iss')), checks),
    /response parameter "iss" \(issuer\) missing/,
  );
  // None of those reached the token endpoint: the code still works.
  const tokens = await client.authorizationCodeGrant(config, callback, checks);
  assert.equal(tokens.claims().nonce, checks.expectedNonce);
});

test('the library refuses an ID token with another nonce', async () => {
  const { callback, checks } = await signedIn();
  await refusedByLibrary(
    client.authorizationCodeGrant(config, callback, { ...checks, expectedNonce: client.randomNonce() }),
    /unexpected ID Token "nonce" claim value/,
  );
});

test('the library refuses an ID token whose signature does not verify', async () => {
  const tampering = await discover();
  const tokenEndpoint = tampering.serverMetadata().token_endpoint;
  tampering[client.customFetch] = async (url, options) => {
    const response = await fetch(url, options);
    if (String(url) !== tokenEndpoint || !response.ok) return response;
    const body = await response.json();
    const [header, payload, signature] = body.id_token.split('.');
    const middle = signature.length >> 1;
    const flipped = signature[middle] === 'A' ? 'B' : 'A';
    body.id_token = [header, payload, signature.slice(0, middle) + flipped + signature.slice(middle + 1)].join('.');
    return new Response(JSON.stringify(body), { status: response.status, headers: response.headers });
  };
  const { callback, checks } = await signedIn();
  await refusedByLibrary(client.authorizationCodeGrant(tampering, callback, checks), /JWT signature verification failed/);
});

test('the server refuses the same code twice (invalid_grant) and revokes what the first exchange gave', async () => {
  const { callback, checks } = await signedIn();
  const tokens = await client.authorizationCodeGrant(config, callback, checks);
  await refusedWith(client.authorizationCodeGrant(config, callback, checks), 'invalid_grant');
  // RFC 6749 4.1.2: a code presented twice may have been stolen; what it gave is revoked.
  await refusedWith(client.refreshTokenGrant(config, tokens.refresh_token), 'invalid_grant');
  await assert.rejects(client.fetchUserInfo(config, tokens.access_token, tokens.claims().sub), (e) => {
    assert.ok(e instanceof client.WWWAuthenticateChallengeError, `not a bearer challenge: ${e?.stack ?? e}`);
    assert.equal(e.cause[0].parameters.error, 'invalid_token');
    return true;
  });
});

test('the server refuses a wrong PKCE verifier (invalid_grant), and the code is spent', async () => {
  const { callback, checks } = await signedIn();
  await refusedWith(
    client.authorizationCodeGrant(config, callback, { ...checks, pkceCodeVerifier: client.randomPKCECodeVerifier() }),
    'invalid_grant',
  );
  await refusedWith(client.authorizationCodeGrant(config, callback, checks), 'invalid_grant');
});

test('prompt=none without a session: the library reads login_required from a redirect with state and iss', async () => {
  const { url, checks } = await authorizationRequest({ prompt: 'none' });
  const browser = new Browser();
  const answered = await follow(browser, url, await browser.request(url));
  assert.ok(answered.location, `no redirect back: ${answered.page?.status}`);
  assert.equal(answered.location.searchParams.get('iss'), issuer);
  await assert.rejects(client.authorizationCodeGrant(config, answered.location, checks), (e) => {
    assert.ok(e instanceof client.AuthorizationResponseError, `not the server's refusal: ${e?.stack ?? e}`);
    assert.equal(e.error, 'login_required');
    return true;
  });
});

test('tokenRevocation of the refresh token ends the session', async () => {
  const { callback, checks } = await signedIn();
  const tokens = await client.authorizationCodeGrant(config, callback, checks);
  await client.tokenRevocation(config, tokens.refresh_token, { token_type_hint: 'refresh_token' });
  await refusedWith(client.refreshTokenGrant(config, tokens.refresh_token), 'invalid_grant');
});

test('buildEndSessionUrl: asks without a hint, signs out with the session\'s ID token and goes back', async () => {
  const { browser, callback, checks } = await signedIn();
  const tokens = await client.authorizationCodeGrant(config, callback, checks);
  const state = client.randomState();

  // Without id_token_hint a link of any site could sign the user out: the server asks first.
  const unhinted = client.buildEndSessionUrl(config, { post_logout_redirect_uri: postLogoutRedirectUri, state });
  const asked = await follow(browser, unhinted, await browser.request(unhinted));
  assert.equal(asked.page?.status, 200, `no confirmation page: ${asked.location}`);
  const confirm = readForm(asked.page);
  assert.equal(confirm.action.href, `${issuer}/sign-out`);
  assert.ok('csrf' in confirm.fields, 'the confirmation form carries a CSRF token');
  assert.ok(browser.hasSession(), 'still signed in until confirmed');

  // A post-logout URI the client did not register is refused on a page, never redirected to.
  const foreign = client.buildEndSessionUrl(config, {
    id_token_hint: tokens.id_token,
    post_logout_redirect_uri: 'https://attacker.test/signed-out',
  });
  const refused = await browser.request(foreign);
  assert.equal(refused.status, 400);
  assert.equal(refused.headers.get('location'), null);
  assert.ok(browser.hasSession());

  const url = client.buildEndSessionUrl(config, { id_token_hint: tokens.id_token, post_logout_redirect_uri: postLogoutRedirectUri, state });
  assert.equal(url.origin + url.pathname, config.serverMetadata().end_session_endpoint);
  assert.equal(url.searchParams.get('client_id'), clientId);
  const signedOut = await follow(browser, url, await browser.request(url));
  assert.ok(signedOut.location, `not sent back: ${signedOut.page?.status}\n${signedOut.page?.html}`);
  assert.equal(signedOut.location.origin + signedOut.location.pathname, postLogoutRedirectUri);
  assert.equal(signedOut.location.searchParams.get('state'), state);
  assert.equal(browser.hasSession(), false, 'the session cookie is cleared');

  // The sessions the browser session started end with it, and the next request asks again.
  await refusedWith(client.refreshTokenGrant(config, tokens.refresh_token), 'invalid_grant');
  const next = await authorizationRequest();
  const opened = await follow(browser, next.url, await browser.request(next.url));
  assert.equal(opened.page?.status, 200, 'the sign-in form again');
});
