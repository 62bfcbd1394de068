// Errors of this module. Every failure is an AuthError with a stable `code`: the access-token codes
// are auth-core's (`token.expired`, ...; generated into ./codes.js from auth-core's list), so a
// TypeScript service and the Rust server reject the same token with the same code; the others name
// this module's own failures (`jwks.unavailable`, `client.network`, ...). Match on `code`, never on
// `message`.

import { TOKEN_ERROR_MESSAGES, type TokenErrorCode } from "./codes.js";

export type { ServerErrorCode, TokenErrorCode } from "./codes.js";

/**
 * Every code an AuthError of the verifier or a guard may carry: the token codes, `token.missing`
 * (no `Authorization: Bearer` header, or another scheme) and `jwks.unavailable` (the issuer's JWKS
 * cannot be fetched and no usable copy is cached; guards answer 503).
 */
export type VerifyErrorCode = TokenErrorCode | "token.missing" | "jwks.unavailable";

const MESSAGES: Readonly<Record<string, string>> = {
  ...TOKEN_ERROR_MESSAGES,
  "token.missing": "no bearer token was presented",
  "jwks.unavailable": "the issuer's key set is unavailable",
};

/** A failure of this module, identified by its stable `code`. */
export class AuthError extends Error {
  /** The stable code, e.g. `token.expired` or `jwks.unavailable`. */
  readonly code: string;

  constructor(code: string, message?: string, options?: { cause?: unknown }) {
    super(message ?? MESSAGES[code] ?? code, options);
    this.name = "AuthError";
    this.code = code;
  }
}

/**
 * A request of the token client or the introspection helper that failed. When the server answered,
 * `status` is its HTTP status and `error` / `errorDescription` are the OAuth error fields
 * (RFC 6749 section 5.2) it sent; a problem+json answer fills `error` with its `code`. The `code`
 * is the server's stable code (the `error_description` up to any `: detail`), or `client.network`
 * when no answer came, or `client.bad_response` when the answer could not be read; the client's own
 * refusals are `client.not_logged_in` (no tokens) and `client.invalid_tokens` (`restore` was given
 * something that is not a TokenSet).
 */
export class TokenClientError extends AuthError {
  /** The HTTP status of the answer; 0 when there was none. */
  readonly status: number;
  /** The OAuth `error` (`invalid_grant`, ...), or the problem's `code`; absent without an answer. */
  readonly error: string | undefined;
  /** The OAuth `error_description` (`refresh.reused`, ...) or the problem's `detail`. */
  readonly errorDescription: string | undefined;

  constructor(
    code: string,
    message: string,
    details: { status?: number; error?: string; errorDescription?: string; cause?: unknown } = {},
  ) {
    super(code, message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = "TokenClientError";
    this.status = details.status ?? 0;
    this.error = details.error;
    this.errorDescription = details.errorDescription;
  }
}
