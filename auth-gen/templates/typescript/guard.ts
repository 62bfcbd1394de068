// Guards: from an Authorization header to a framework-neutral outcome, answering like auth-server.
//
// A guard reads the bearer token, verifies it, checks that it grants every required scope, and
// charges the request to the limits of the required scopes (all-or-nothing, keyed by the token's
// `sub`). Failures carry the status, headers and RFC 9457 body auth-server would send: 401 with
// `WWW-Authenticate: Bearer error="invalid_token"` and the token code, 403 `auth.insufficient_scope`,
// 429 `ratelimit.exceeded` with the RateLimit fields and Retry-After, 503 when the JWKS (or a
// shared limiter store) is out of reach. Successes carry the RateLimit fields to add to the answer.
//
// Verification here is by signature: a session ended at the server (logout, reuse detection) keeps
// its access tokens valid until they expire. Use introspection (client.ts) where that matters.

import { AuthError } from "./errors.js";
import { rateLimitHeaders, ScopeLimiter, type LimiterStore, type ScopeDecision } from "./limiter.js";
import type { AccessClaims, Scope } from "./spec.js";
import { AccessTokenVerifier, type VerifierOptions } from "./verifier.js";

/** An RFC 9457 problem body, as auth-server writes it. */
export interface ProblemBody {
  readonly type: "about:blank";
  readonly title: string;
  readonly status: number;
  /** The stable code: `token.expired`, `auth.insufficient_scope`, `ratelimit.exceeded`, ... */
  readonly code: string;
  readonly detail?: string;
}

/** An admitted request: its claims, and the headers to add to the response. */
export interface GuardSuccess {
  readonly ok: true;
  readonly claims: AccessClaims;
  /** `ratelimit-policy` and `ratelimit` when a required scope is limited; else empty. */
  readonly headers: Readonly<Record<string, string>>;
  /** The limit decision behind those headers. */
  readonly limit: ScopeDecision | null;
}

/** A refused request: the complete answer to send. */
export interface GuardFailure {
  readonly ok: false;
  readonly status: 401 | 403 | 429 | 503;
  /** Includes `content-type: application/problem+json`. */
  readonly headers: Readonly<Record<string, string>>;
  readonly body: ProblemBody;
  /** Equal to `body.code`. */
  readonly code: string;
}

export type GuardOutcome = GuardSuccess | GuardFailure;

/** Decides a request from its `Authorization` header value (absent: null or undefined). */
export interface Guard {
  (authorization: string | null | undefined): Promise<GuardOutcome>;
  /** The scopes this guard requires. */
  readonly scopes: readonly Scope[];
}

/** Settings of Auth: those of the verifier, or a verifier and limiter of your own. */
export interface AuthOptions extends VerifierOptions {
  /** The verifier to use. Default: a new AccessTokenVerifier with these options. */
  readonly verifier?: AccessTokenVerifier | undefined;
  /** The scope limiter; null turns limits off. Default: a ScopeLimiter on `limiterStore`. */
  readonly limiter?: ScopeLimiter | null | undefined;
  /** The store of the default limiter. Default: in memory. */
  readonly limiterStore?: LimiterStore | undefined;
}

const PROBLEM_JSON = "application/problem+json";

function failure(
  status: GuardFailure["status"],
  code: string,
  title: string,
  headers: Record<string, string>,
  detail?: string,
): GuardFailure {
  const body: ProblemBody = detail === undefined
    ? { type: "about:blank", title, status, code }
    : { type: "about:blank", title, status, code, detail };
  return { ok: false, status, headers: { "content-type": PROBLEM_JSON, ...headers }, body, code };
}

/** 401 for a missing or rejected token (RFC 6750 section 3), as auth-server's Problem::invalid_token. */
export function invalidToken(code: string): GuardFailure {
  return failure(401, code, "The access token is missing or invalid", {
    "www-authenticate": `Bearer error="invalid_token", error_description="${code}"`,
  });
}

/** 403 for a token without a required scope (RFC 6750 section 3.1); `scope` lists the required ones. */
export function insufficientScope(scopes: readonly string[]): GuardFailure {
  return failure(403, "auth.insufficient_scope", "The access token lacks a required scope", {
    "www-authenticate": `Bearer error="insufficient_scope", scope="${scopes.join(" ")}"`,
  });
}

/** 429 for an exhausted scope limit, with the RateLimit fields and Retry-After. */
export function rateLimited(limit: ScopeDecision): GuardFailure {
  return failure(
    429,
    "ratelimit.exceeded",
    "Too many requests",
    rateLimitHeaders(limit),
    `the limit of scope ${limit.scope} is exhausted`,
  );
}

/** 503 for a dependency out of reach (`jwks.unavailable`, `ratelimit.backend`). */
export function unavailable(code: string): GuardFailure {
  return failure(503, code, "Temporarily unavailable", {});
}

/**
 * The token of an `Authorization: Bearer ...` value, read as auth-server's `bearer()` does: no
 * header, another scheme or an empty token is `token.missing`; a value that is not visible ASCII
 * or has no space is `token.malformed`. The scheme is case-insensitive.
 */
export function bearerToken(authorization: string | null | undefined): string {
  if (authorization == null) throw new AuthError("token.missing");
  // Header values as auth-server reads them: visible ASCII, spaces and tabs only.
  if (/[^\t\x20-\x7e]/.test(authorization)) throw new AuthError("token.malformed");
  const space = authorization.indexOf(" ");
  if (space < 0) throw new AuthError("token.malformed");
  const token = authorization.slice(space + 1).trim();
  if (authorization.slice(0, space).toLowerCase() !== "bearer" || token === "") throw new AuthError("token.missing");
  return token;
}

function grants(claims: AccessClaims, scope: string): boolean {
  for (const granted of claims.scope.split(" ")) if (granted === scope) return true;
  return false;
}

/**
 * Verification and limits shared by every guard of a service. Create one per process.
 *
 * ```ts
 * const auth = new Auth();
 * const canWrite = auth.requireScope("bookings:write");
 * const outcome = await canWrite(request.headers.authorization);
 * ```
 */
export class Auth {
  readonly verifier: AccessTokenVerifier;
  readonly limiter: ScopeLimiter | null;

  constructor(options: AuthOptions = {}) {
    this.verifier = options.verifier ?? new AccessTokenVerifier(options);
    this.limiter = options.limiter === undefined ? new ScopeLimiter(options.limiterStore === undefined ? {} : { store: options.limiterStore }) : options.limiter;
  }

  /**
   * A guard that admits requests whose bearer token verifies, grants every one of `scopes`, and is
   * within the limits of those scopes. With no scope, it verifies the token only.
   */
  requireScope(...scopes: Scope[]): Guard {
    const required: readonly Scope[] = Object.freeze([...scopes]);
    const guard = (authorization: string | null | undefined) => this.#decide(authorization, required);
    return Object.assign(guard, { scopes: required });
  }

  async #decide(authorization: string | null | undefined, scopes: readonly Scope[]): Promise<GuardOutcome> {
    let claims: AccessClaims;
    try {
      claims = await this.verifier.verify(bearerToken(authorization));
    } catch (error) {
      if (!(error instanceof AuthError)) throw error;
      return error.code === "jwks.unavailable" ? unavailable(error.code) : invalidToken(error.code);
    }
    for (const scope of scopes) if (!grants(claims, scope)) return insufficientScope(scopes);
    let limit: ScopeDecision | null = null;
    if (this.limiter !== null && scopes.length > 0) {
      try {
        limit = await this.limiter.checkAll(scopes, claims.sub);
      } catch {
        // A shared store out of reach: refuse rather than run unlimited; wrap the store to fall back instead.
        return unavailable("ratelimit.backend");
      }
      if (limit !== null && !limit.decision.allowed) return rateLimited(limit);
    }
    return { ok: true, claims, headers: limit === null ? {} : rateLimitHeaders(limit), limit };
  }
}
