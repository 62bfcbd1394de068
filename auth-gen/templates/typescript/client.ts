// A client of the auth server: password login, access tokens refreshed before they expire, logout,
// a saved session restored, and RFC 7662 introspection for operations that must not trust a
// signature alone.
//
// Invariants:
// - One refresh at a time: concurrent callers share the request and its result, because the
//   server rotates refresh tokens and a second use of the same one is a reuse.
// - A refresh whose answer was lost (network failure, 5xx) is retried with the SAME refresh
//   token, but only while within REFRESH_REUSE_GRACE_SECONDS of the first attempt: the server
//   then answers with the same successor. Past the grace a retry would be taken for a stolen
//   token and revoke the session, so the client gives up instead.
// - The tokens are forgotten only when the session is over at the server: a logout it confirmed,
//   or an answer that the session is already gone (a refresh refused with `invalid_grant`, a
//   bearer token refused with `token.session_revoked`). A failed logout keeps them for a retry.
// - Errors carry the server's OAuth `error` / `error_description` (TokenClientError).

import { TokenClientError } from "./errors.js";
import { ISSUER, REFRESH_REUSE_GRACE_SECONDS, type ClientId } from "./spec.js";
import type { FetchLike } from "./verifier.js";

/**
 * The tokens of a session, as the token endpoint issued them. Plain data: `JSON.stringify` it to
 * save a session, and give it back to `TokenClient.restore`.
 */
export interface TokenSet {
  readonly accessToken: string;
  /** Absent for client-credentials tokens. */
  readonly refreshToken: string | undefined;
  /** The granted scopes, space-separated. */
  readonly scope: string;
  /** When the access token expires (Unix seconds, by this client's clock). */
  readonly expiresAt: number;
  /** When `accessToken()` refreshes it (Unix seconds). */
  readonly refreshAt: number;
}

/** Settings of a TokenClient. */
export interface TokenClientOptions {
  /** The client id of the spec this client is. */
  readonly clientId: ClientId;
  /** The secret of a confidential client (sent with HTTP Basic); absent for public clients. */
  readonly clientSecret?: string | undefined;
  /** The auth server's base URL. Default: ISSUER. */
  readonly baseUrl?: string | undefined;
  /** The fetch implementation. Default: the global `fetch`. */
  readonly fetch?: FetchLike | undefined;
  /** The current time in seconds. Default: the system clock. */
  readonly now?: (() => number) | undefined;
  /** Refresh this long before expiry, at most half the token's lifetime. Default 30 seconds. */
  readonly refreshBeforeSeconds?: number | undefined;
  /** Limit on one request, in milliseconds. Default 10000. */
  readonly timeoutMs?: number | undefined;
  /** Pause before the first retry of a refresh whose answer was lost, doubled for each next one, in milliseconds. Default 250. */
  readonly retryDelayMs?: number | undefined;
  /** Retries of a refresh whose answer was lost (all within the reuse grace). Default 3. */
  readonly refreshRetries?: number | undefined;
  /**
   * Called after every change the client makes to its tokens (login, client credentials, refresh,
   * logout, a session the server reports over), with the new tokens or null when they are
   * forgotten: where to save them for `restore`. A refresh rotates the refresh token, so a copy
   * saved before it is stale. Not called by `restore`. Called synchronously; an exception it throws
   * rejects the call that made the change, which stands.
   */
  readonly onTokens?: ((tokens: TokenSet | null) => void) | undefined;
}

/** RFC 7662 answer for an active access token: its claims. */
export interface ActiveAccessToken {
  readonly active: true;
  readonly token_type: "Bearer";
  readonly iss: string;
  readonly sub: string;
  readonly aud: string | readonly string[];
  readonly exp: number;
  readonly iat: number;
  readonly jti: string;
  readonly client_id: string;
  readonly scope: string;
  readonly sid?: string;
  readonly [claim: string]: unknown;
}

/**
 * RFC 7662 answer for an active refresh token. It has no `token_type` (RFC 7662 ties the member to
 * RFC 6749 access token types), which tells it from an access token.
 */
export interface ActiveRefreshToken {
  readonly active: true;
  readonly token_type?: undefined;
  readonly client_id: string;
  readonly scope: string;
  readonly sub: string;
  readonly sid: string;
  /** The idle expiry. */
  readonly exp: number;
  /** The session start. */
  readonly iat: number;
}

export type IntrospectionResult = { readonly active: false } | ActiveAccessToken | ActiveRefreshToken;

function baseOf(url: string | undefined): string {
  return (url ?? ISSUER).replace(/\/+$/, "");
}

/** HTTP Basic credentials of a client: id and secret form-encoded first (RFC 6749 section 2.3.1). */
function basic(clientId: string, secret: string): string {
  const encode = (value: string) => encodeURIComponent(value).replace(/%20/g, "+");
  return `Basic ${Buffer.from(`${encode(clientId)}:${encode(secret)}`).toString("base64")}`;
}

/** A TokenClientError from an error answer: OAuth error JSON, or an RFC 9457 problem. */
async function errorOf(response: Response, what: string): Promise<TokenClientError> {
  let body: { error?: unknown; error_description?: unknown; code?: unknown; detail?: unknown } = {};
  try {
    const parsed: unknown = await response.json();
    if (typeof parsed === "object" && parsed !== null) body = parsed;
  } catch {
    // Not JSON: only the status is known.
  }
  const status = response.status;
  if (typeof body.error === "string") {
    const description = typeof body.error_description === "string" ? body.error_description : undefined;
    // The server's descriptions start with a stable code, sometimes followed by `: detail`.
    const code = description?.split(": ")[0] ?? body.error;
    return new TokenClientError(code, `${what}: ${body.error}${description ? ` (${description})` : ""}`, {
      status,
      error: body.error,
      ...(description === undefined ? {} : { errorDescription: description }),
    });
  }
  if (typeof body.code === "string") {
    const detail = typeof body.detail === "string" ? body.detail : undefined;
    return new TokenClientError(body.code, `${what}: ${body.code}${detail ? ` (${detail})` : ""}`, {
      status,
      error: body.code,
      ...(detail === undefined ? {} : { errorDescription: detail }),
    });
  }
  return new TokenClientError("client.bad_response", `${what}: the server answered ${status}`, { status });
}

/** A saved TokenSet checked field by field (it may come from storage), or null when it is not one. */
function tokenSetOf(value: unknown): TokenSet | null {
  if (typeof value !== "object" || value === null) return null;
  const { accessToken, refreshToken, scope, expiresAt, refreshAt } = value as Record<string, unknown>;
  if (typeof accessToken !== "string" || accessToken === "") return null;
  // JSON drops an undefined refreshToken; null reads as absent too.
  if (refreshToken != null && (typeof refreshToken !== "string" || refreshToken === "")) return null;
  if (typeof scope !== "string") return null;
  if (typeof expiresAt !== "number" || !Number.isFinite(expiresAt)) return null;
  if (typeof refreshAt !== "number" || !Number.isFinite(refreshAt)) return null;
  return { accessToken, refreshToken: refreshToken ?? undefined, scope, expiresAt, refreshAt };
}

/**
 * Logs in and keeps an access token fresh.
 *
 * ```ts
 * const client = new TokenClient({ clientId: "booking-web", onTokens: (tokens) => save(tokens) });
 * await client.login("alice", "correct horse battery");   // or client.restore(saved)
 * await fetch(url, { headers: { authorization: `Bearer ${await client.accessToken()}` } });
 * await client.logout();
 * ```
 */
export class TokenClient {
  readonly #options: TokenClientOptions;
  readonly #base: string;
  readonly #fetch: FetchLike;
  readonly #now: () => number;
  #tokens: TokenSet | null = null;
  /** Counts the sessions this client has held: a login or restore starts one, a refresh does not. */
  #session = 0;
  #refreshing: Promise<TokenSet> | null = null;

  constructor(options: TokenClientOptions) {
    this.#options = options;
    this.#base = baseOf(options.baseUrl);
    this.#fetch = options.fetch ?? ((url, init) => fetch(url, init));
    this.#now = options.now ?? (() => Date.now() / 1000);
  }

  /**
   * The current tokens, or null before login and after logout: what to save to continue the
   * session later with `restore` (see also the `onTokens` option).
   */
  get tokens(): TokenSet | null {
    return this.#tokens;
  }

  /**
   * Continues a saved session without any request: `tokens` (a `tokens` value saved earlier, e.g.
   * through JSON) replaces the current ones. Restore the latest copy: a refresh token that was
   * replaced by a refresh, presented after the reuse grace, makes the server revoke the session.
   * Throws TokenClientError `client.invalid_tokens` when `tokens` is not a TokenSet.
   */
  restore(tokens: TokenSet): TokenSet {
    const restored = tokenSetOf(tokens);
    if (restored === null) throw new TokenClientError("client.invalid_tokens", "restore: not a saved TokenSet");
    this.#session++;
    this.#tokens = restored;
    return restored;
  }

  /** Logs in with the password grant; `scope` defaults to the client's scopes. */
  async login(username: string, password: string, scope?: string): Promise<TokenSet> {
    const form = new URLSearchParams({ grant_type: "password", username, password });
    if (scope !== undefined) form.set("scope", scope);
    const tokens = await this.#token(form, "login");
    this.#session++;
    this.#set(tokens);
    return tokens;
  }

  /** Obtains a token for the client itself (client-credentials grant; confidential clients). */
  async clientCredentials(scope?: string): Promise<TokenSet> {
    const tokens = await this.#clientToken(scope);
    this.#session++;
    this.#set(tokens);
    return tokens;
  }

  #clientToken(scope: string | undefined): Promise<TokenSet> {
    const form = new URLSearchParams({ grant_type: "client_credentials" });
    if (scope !== undefined) form.set("scope", scope);
    return this.#token(form, "client credentials");
  }

  /**
   * An access token valid for a while yet: the current one, or a refreshed one when it is about to
   * expire (a new client-credentials token for a client without a refresh token).
   */
  async accessToken(): Promise<string> {
    const tokens = this.#tokens;
    if (tokens === null) throw new TokenClientError("client.not_logged_in", "log in first");
    if (this.#now() < tokens.refreshAt) return tokens.accessToken;
    return (await this.refresh()).accessToken;
  }

  /**
   * New tokens: the refresh token rotated, or for a client-credentials session a new token.
   * Concurrent calls share one request. An answer lost to the network or a 5xx is retried with the
   * same refresh token while within the reuse grace.
   */
  refresh(): Promise<TokenSet> {
    this.#refreshing ??= this.#renew().finally(() => {
      this.#refreshing = null;
    });
    return this.#refreshing;
  }

  async #renew(): Promise<TokenSet> {
    const current = this.#tokens;
    if (current === null) throw new TokenClientError("client.not_logged_in", "log in first");
    const refreshToken = current.refreshToken;
    if (refreshToken === undefined) {
      if (this.#options.clientSecret === undefined) throw new TokenClientError("client.not_logged_in", "no refresh token: log in first");
      const tokens = await this.#clientToken(current.scope);
      if (this.#tokens === current) this.#set(tokens);
      return tokens;
    }
    const form = new URLSearchParams({ grant_type: "refresh_token", refresh_token: refreshToken });
    const firstAttempt = this.#now();
    for (let retry = 0; ; retry++) {
      let tokens: TokenSet;
      try {
        tokens = await this.#token(form, "refresh");
      } catch (error) {
        const lost = error instanceof TokenClientError && (error.code === "client.network" || error.status >= 500);
        // One second of margin: the server counts its grace from its own first use of the token.
        if (lost && retry < (this.#options.refreshRetries ?? 3)) {
          await new Promise((resolve) => setTimeout(resolve, (this.#options.retryDelayMs ?? 250) * 2 ** retry));
          if (this.#now() - firstAttempt + 1 < REFRESH_REUSE_GRACE_SECONDS) continue;
        }
        if (error instanceof TokenClientError && error.error === "invalid_grant" && this.#tokens?.refreshToken === refreshToken) {
          // The session is over (revoked, expired, reused): its tokens are of no further use.
          this.#set(null);
        }
        throw error;
      }
      // Only if nothing replaced the session meanwhile (logout, another login).
      if (this.#tokens?.refreshToken === refreshToken) this.#set(tokens);
      return tokens;
    }
  }

  /**
   * Ends the session at the server (`all`: every session of the user), then forgets the tokens.
   * Resolves to the number of sessions ended.
   *
   * The current access token is sent while it has not expired by this client's clock; an expired
   * one is refreshed first (and one the server refuses for another reason than a revoked session
   * is refreshed once, and the logout sent again). The tokens are kept until the server confirms
   * (2xx): a logout that fails (no answer, 5xx, 429, ...) rejects with a TokenClientError and can be
   * retried. When the server answers that the session is already over (401
   * `token.session_revoked`, or the refresh refused with `invalid_grant`), the tokens are forgotten
   * and the call resolves to 0: nothing is left that they could end.
   */
  async logout(options: { readonly all?: boolean } = {}): Promise<number> {
    const tokens = this.#tokens;
    if (tokens === null) throw new TokenClientError("client.not_logged_in", "log in first");
    const session = this.#session;
    let accessToken = tokens.accessToken;
    let refreshed = false;
    if (this.#now() >= tokens.expiresAt) {
      const renewed = await this.#refreshToLogOut(session);
      if (renewed === null) return 0;
      accessToken = renewed.accessToken;
      refreshed = true;
    }
    const url = `${this.#base}/v1/logout${options.all ? "?all=true" : ""}`;
    for (;;) {
      const response = await this.#send("logout", url, { method: "POST", headers: { authorization: `Bearer ${accessToken}` } });
      if (response.ok) {
        const body = (await response.json().catch(() => ({}))) as { sessions_ended?: unknown };
        this.#end(session);
        return typeof body.sessions_ended === "number" ? body.sessions_ended : 0;
      }
      const error = await errorOf(response, "logout");
      if (response.status === 401 && error.code === "token.session_revoked") {
        this.#end(session);
        return 0;
      }
      if (response.status === 401 && !refreshed && tokens.refreshToken !== undefined) {
        // The access token is refused (the server's clock says expired, a key it no longer
        // publishes): whether the session lives is for the refresh token to tell.
        const renewed = await this.#refreshToLogOut(session);
        if (renewed === null) return 0;
        accessToken = renewed.accessToken;
        refreshed = true;
        continue;
      }
      throw error;
    }
  }

  /** New tokens to log out with, or null when the server refused the refresh as the session is over. */
  async #refreshToLogOut(session: number): Promise<TokenSet | null> {
    try {
      return await this.refresh();
    } catch (error) {
      if (error instanceof TokenClientError && error.error === "invalid_grant") {
        this.#end(session);
        return null;
      }
      throw error;
    }
  }

  /** Forgets the tokens of `session`, unless another session (a login, a restore) replaced it. */
  #end(session: number): void {
    if (this.#session === session) this.#set(null);
  }

  #set(tokens: TokenSet | null): void {
    if (this.#tokens === tokens) return;
    this.#tokens = tokens;
    this.#options.onTokens?.(tokens);
  }

  async #token(form: URLSearchParams, what: string): Promise<TokenSet> {
    const headers: Record<string, string> = { "content-type": "application/x-www-form-urlencoded", accept: "application/json" };
    if (this.#options.clientSecret === undefined) form.set("client_id", this.#options.clientId);
    else headers["authorization"] = basic(this.#options.clientId, this.#options.clientSecret);
    const sentAt = this.#now();
    const response = await this.#send(what, `${this.#base}/oauth/token`, { method: "POST", headers, body: form.toString() });
    if (!response.ok) throw await errorOf(response, what);
    const body = (await response.json().catch(() => null)) as {
      access_token?: unknown;
      expires_in?: unknown;
      refresh_token?: unknown;
      scope?: unknown;
    } | null;
    if (body === null || typeof body.access_token !== "string" || typeof body.expires_in !== "number") {
      throw new TokenClientError("client.bad_response", `${what}: the token answer lacks access_token or expires_in`, {
        status: response.status,
      });
    }
    const lifetime = body.expires_in;
    const early = Math.min(this.#options.refreshBeforeSeconds ?? 30, lifetime / 2);
    return {
      accessToken: body.access_token,
      refreshToken: typeof body.refresh_token === "string" ? body.refresh_token : undefined,
      scope: typeof body.scope === "string" ? body.scope : "",
      expiresAt: sentAt + lifetime,
      refreshAt: sentAt + lifetime - early,
    };
  }

  #send(what: string, url: string, init: RequestInit): Promise<Response> {
    return sendRequest(this.#fetch, what, url, init, this.#options.timeoutMs);
  }
}

async function sendRequest(fetchImpl: FetchLike, what: string, url: string, init: RequestInit, timeoutMs = 10_000): Promise<Response> {
  try {
    return await fetchImpl(url, { ...init, signal: AbortSignal.timeout(timeoutMs) });
  } catch (error) {
    throw new TokenClientError("client.network", `${what}: no answer from the auth server`, { cause: error });
  }
}

/** Settings of an Introspector: a confidential client's credentials. */
export interface IntrospectorOptions {
  readonly clientId: ClientId;
  readonly clientSecret: string;
  /** The auth server's base URL. Default: ISSUER. */
  readonly baseUrl?: string | undefined;
  readonly fetch?: FetchLike | undefined;
  /** Limit on one request, in milliseconds. Default 10000. */
  readonly timeoutMs?: number | undefined;
}

/**
 * RFC 7662 introspection, for high-value operations: unlike a signature check, it also sees a
 * session ended at the server (logout, refresh-token reuse) before its access tokens expire. One
 * request per call, so keep it to the operations that need it.
 *
 * ```ts
 * const introspector = new Introspector({ clientId: "booking-backend", clientSecret });
 * if (!(await introspector.isActive(token))) return forbidden();
 * ```
 */
export class Introspector {
  readonly #options: IntrospectorOptions;
  readonly #fetch: FetchLike;

  constructor(options: IntrospectorOptions) {
    this.#options = options;
    this.#fetch = options.fetch ?? ((url, init) => fetch(url, init));
  }

  /** The server's answer about `token` (an access or refresh token). */
  async introspect(token: string): Promise<IntrospectionResult> {
    const { clientId, clientSecret, baseUrl, timeoutMs } = this.#options;
    const response = await sendRequest(
      this.#fetch,
      "introspection",
      `${baseOf(baseUrl)}/oauth/introspect`,
      {
        method: "POST",
        headers: {
          authorization: basic(clientId, clientSecret),
          "content-type": "application/x-www-form-urlencoded",
          accept: "application/json",
        },
        body: new URLSearchParams({ token }).toString(),
      },
      timeoutMs,
    );
    if (!response.ok) throw await errorOf(response, "introspection");
    const body: unknown = await response.json().catch(() => null);
    if (typeof body !== "object" || body === null || typeof (body as { active?: unknown }).active !== "boolean") {
      throw new TokenClientError("client.bad_response", "introspection: the answer lacks `active`", { status: response.status });
    }
    return body as IntrospectionResult;
  }

  /** Whether the server considers `token` active right now. */
  async isActive(token: string): Promise<boolean> {
    return (await this.introspect(token)).active;
  }
}
