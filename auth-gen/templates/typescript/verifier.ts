// Access-token verification against the issuer's JWKS, with the rules and error codes of
// auth-core's AccessTokenVerifier.
//
// Invariants:
// - The checks run in auth-core's order and stop at the first failure, so a token is rejected
//   with the same code here as by the server: size, shape (three base64url segments, JSON header,
//   no `crit`), `alg` one of EdDSA/ES256/RS256, `kid` of a published key, `alg` equal to the key's,
//   the signature, `typ`, then the claims (presence, custom claims, types, `exp`, `nbf`/`iat`,
//   `iss`, `aud`). The payload is not even decoded before the signature verifies. One difference
//   is out of reach of JSON.parse: an integer claim written as `1.0` or `1e3` passes here, while
//   serde refuses it (only a token signed by the issuer's key could carry one).
// - Keys come from the JWKS only, and only keys of the spec's ALGORITHM are used: header-supplied
//   keys (`jwk`, `jku`, `x5u`, `x5c`) are never read. Each key is imported into a KeyObject once.
// - The JWKS is cached for its max age, refetched on an unknown `kid` at most once per cooldown
//   (a flood of made-up kids cannot hammer the issuer), fetched by one request however many
//   verifications wait for it, and kept, within a bound, while the issuer cannot be reached.
// - A verified token may be answered from a bounded cache keyed by the whole token string, but
//   never after `exp + LEEWAY_SECONDS`.

import { createPublicKey, verify as verifySignature, type JsonWebKey, type KeyObject } from "node:crypto";
import { AuthError } from "./errors.js";
import {
  ACCESS_TTL_SECONDS,
  ALGORITHM,
  AUDIENCES,
  CUSTOM_CLAIMS,
  ISSUER,
  JWKS_MAX_AGE_SECONDS,
  LEEWAY_SECONDS,
  type AccessClaims,
  type ClaimType,
} from "./spec.js";

/** Tokens longer than this many bytes are refused before any parsing (auth-core's limit). */
export const MAX_TOKEN_BYTES = 16 * 1024;

/** The signing algorithms auth-core knows; every other `alg` is `token.unsupported_algorithm`. */
export type SigningAlgorithm = "EdDSA" | "ES256" | "RS256";

/** The part of `fetch` this module uses; the global `fetch` fits, and so does a test double. */
export type FetchLike = (url: string, init?: RequestInit) => Promise<Response>;

/** Settings of an AccessTokenVerifier; every one has a default that suits production. */
export interface VerifierOptions {
  /** The JWKS URL. Default: `${ISSUER}/.well-known/jwks.json`. */
  readonly jwksUrl?: string | undefined;
  /** The fetch implementation. Default: the global `fetch`. */
  readonly fetch?: FetchLike | undefined;
  /** The current time in seconds (fractions allowed). Default: the system clock. */
  readonly now?: (() => number) | undefined;
  /**
   * How long a fetched JWKS is used before it is fetched again, in seconds. Default: the
   * `max-age` of the JWKS response's `Cache-Control`, else JWKS_MAX_AGE_SECONDS. At least 1.
   */
  readonly jwksMaxAgeSeconds?: number | undefined;
  /**
   * The least time between a JWKS fetch and a refetch caused by an unknown `kid`, and between a
   * failed fetch and the next attempt, in seconds. Default 10.
   */
  readonly jwksCooldownSeconds?: number | undefined;
  /**
   * How long past its max age a JWKS is still used while the issuer cannot be reached, in
   * seconds. Default ACCESS_TTL_SECONDS + LEEWAY_SECONDS: every token signed before the outage
   * stays verifiable until it expires, and no longer.
   */
  readonly jwksStaleSeconds?: number | undefined;
  /** Limit on one JWKS request, in milliseconds. Default 5000. */
  readonly jwksTimeoutMs?: number | undefined;
  /** Entries of the verified-token cache; 0 turns it off. Default 1024. */
  readonly cacheSize?: number | undefined;
}

/** A published key usable for verification. */
interface KeyEntry {
  readonly alg: SigningAlgorithm;
  /** What `crypto.verify` takes: the KeyObject, or for ES256 the KeyObject with raw r||s encoding. */
  readonly verifyKey: KeyObject | { readonly key: KeyObject; readonly dsaEncoding: "ieee-p1363" };
  /** The public parameters, to tell whether a refetched key with the same kid is the same key. */
  readonly material: string;
}

/** The header fields the verifier reads, once parsed (cached by the header's base64url text). */
interface Header {
  readonly alg: SigningAlgorithm;
  readonly kid: string | null;
  readonly typOk: boolean;
}

const HEADER_CACHE_SIZE = 64;
// crypto.verify's digest argument per algorithm: Ed25519 hashes internally.
const DIGEST: Readonly<Record<SigningAlgorithm, string | null>> = { EdDSA: null, ES256: "sha256", RS256: "sha256" };
const ACCESS_TOKEN_TYP = /^(?:application\/)?at\+jwt$/i; // no `u` flag: ASCII-only case folding, as Rust's eq_ignore_ascii_case
const BASE64URL_VALUES = (() => {
  const table = new Int8Array(128).fill(-1);
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  for (let i = 0; i < alphabet.length; i++) table[alphabet.charCodeAt(i)] = i;
  return table;
})();
// Fatal: bytes that are not UTF-8 make the token malformed (serde_json refuses them) instead of
// turning into U+FFFD; ignoreBOM keeps a BOM in the text so that JSON.parse refuses it too.
const UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
// A UTF-16 surrogate without its pair: JSON.parse keeps one from a `\uD800` escape, serde_json
// refuses it in every string it reads as text (member names, `alg`, `kid`, `typ`).
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?:^|[^\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const I64_MIN = -9223372036854775808;
const I64_MAX = 9223372036854775807;
// The custom claims in auth-core's order (a BTreeMap: by name, bytewise), checked in this order.
const CUSTOM = Object.keys(CUSTOM_CLAIMS)
  .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
  .map((name) => {
    const spec = CUSTOM_CLAIMS[name]!;
    return { name, type: spec.type, required: spec.required };
  });

function fail(code: string): never {
  throw new AuthError(code);
}

/**
 * Strict base64url without padding, as auth-core decodes (the `base64` crate's URL_SAFE_NO_PAD):
 * no other characters, no impossible length, no stray bits in the last character. Buffer's own
 * decoder skips what it does not understand, which would let two texts mean one token; it is
 * also SIMD code that, on CPUs with AVX-512, slows down the signature check that follows it by
 * more than it saves (measured: about 8 µs per Ed25519 verification), so this loop decodes.
 */
function decodeSegment(text: string): Buffer | null {
  const length = text.length;
  const rest = length & 3;
  if (rest === 1) return null;
  const out = Buffer.allocUnsafe((length * 3) >> 2);
  let o = 0;
  let i = 0;
  for (const full = length - rest; i < full; i += 4) {
    // Codes of 128 and above index past the table (undefined): `>= 0` refuses them too.
    const v0 = BASE64URL_VALUES[text.charCodeAt(i)]!;
    const v1 = BASE64URL_VALUES[text.charCodeAt(i + 1)]!;
    const v2 = BASE64URL_VALUES[text.charCodeAt(i + 2)]!;
    const v3 = BASE64URL_VALUES[text.charCodeAt(i + 3)]!;
    if (!(v0 >= 0 && v1 >= 0 && v2 >= 0 && v3 >= 0)) return null;
    const bits = (v0 << 18) | (v1 << 12) | (v2 << 6) | v3;
    out[o++] = bits >> 16;
    out[o++] = (bits >> 8) & 0xff;
    out[o++] = bits & 0xff;
  }
  if (rest !== 0) {
    const v0 = BASE64URL_VALUES[text.charCodeAt(i)]!;
    const v1 = BASE64URL_VALUES[text.charCodeAt(i + 1)]!;
    const v2 = rest === 3 ? BASE64URL_VALUES[text.charCodeAt(i + 2)]! : 0;
    if (!(v0 >= 0 && v1 >= 0 && v2 >= 0)) return null;
    const bits = (v0 << 18) | (v1 << 12) | (v2 << 6);
    // The bits past the last whole byte must be zero (the crate refuses a non-canonical ending).
    if ((rest === 2 ? bits & 0xffff : bits & 0xff) !== 0) return null;
    out[o++] = bits >> 16;
    if (rest === 3) out[o++] = (bits >> 8) & 0xff;
  }
  return out;
}

/** UTF-8 bytes as text, or null when they are not UTF-8. ASCII, the usual case, skips the decoder. */
function utf8Text(bytes: Buffer): string | null {
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i]! > 0x7f) {
      try {
        return UTF8.decode(bytes);
      } catch {
        return null;
      }
    }
  }
  return bytes.toString("latin1");
}

/** A base64url segment holding a JSON object, or null when it is anything else. */
function decodeObject(text: string): Record<string, unknown> | null {
  const bytes = decodeSegment(text);
  if (bytes === null) return null;
  const json = utf8Text(bytes);
  if (json === null) return null;
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    return null;
  }
  return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
}

/** An integer that fits an i64, as serde reads UnixSeconds. */
function isInteger(value: unknown): value is number {
  return typeof value === "number" && Number.isInteger(value) && value >= I64_MIN && value <= I64_MAX;
}

function isStringArray(value: unknown): value is readonly string[] {
  if (!Array.isArray(value)) return false;
  for (const item of value) if (typeof item !== "string") return false;
  return true;
}

function hasType(type: ClaimType, value: unknown): boolean {
  switch (type) {
    case "string":
      return typeof value === "string";
    case "integer":
      return isInteger(value);
    case "boolean":
      return typeof value === "boolean";
    case "string_array":
      return isStringArray(value);
  }
}

/**
 * The names of the members of a JSON object text, in order, duplicates included (JSON.parse keeps
 * only the last of a repeated member). The text is known to be valid JSON.
 */
function memberNames(text: string): string[] {
  const names: string[] = [];
  let depth = 0;
  let expectName = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      let end = i + 1;
      while (text[end] !== '"') end += text[end] === "\\" ? 2 : 1;
      if (depth === 1 && expectName) names.push(JSON.parse(text.slice(i, end + 1)) as string);
      expectName = false;
      i = end;
    } else if (c === "{" || c === "[") {
      depth++;
      expectName = depth === 1;
    } else if (c === "}" || c === "]") {
      depth--;
    } else if (c === "," && depth === 1) {
      expectName = true;
    }
  }
  return names;
}

function parseHeader(text: string): Header {
  const bytes = decodeSegment(text);
  const json = bytes === null ? null : utf8Text(bytes);
  if (json === null) fail("token.malformed");
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    fail("token.malformed");
  }
  let fields: { alg?: unknown; kid?: unknown; typ?: unknown; crit?: unknown };
  // A header is a JSON object (RFC 7515 section 4); an array is refused, as auth-core refuses it.
  if (typeof value === "object" && value !== null && !Array.isArray(value)) {
    // auth-core refuses a repeated field, or a name that is not valid text. Headers are few and
    // cached, so this scan is rare.
    const seen = new Set<string>();
    for (const name of memberNames(json)) {
      if (LONE_SURROGATE.test(name)) fail("token.malformed");
      if (name === "alg" || name === "kid" || name === "typ" || name === "crit") {
        if (seen.has(name)) fail("token.malformed");
        seen.add(name);
      }
    }
    fields = value;
  } else {
    fail("token.malformed");
  }
  const { alg, kid, typ, crit } = fields;
  // The types auth-core's header struct accepts (`kid`, `typ` and `crit` may be null: absent).
  if (typeof alg !== "string" || LONE_SURROGATE.test(alg)) fail("token.malformed");
  if (kid != null && (typeof kid !== "string" || LONE_SURROGATE.test(kid))) fail("token.malformed");
  if (typ != null && (typeof typ !== "string" || LONE_SURROGATE.test(typ))) fail("token.malformed");
  // No extension is understood, so any critical one must be refused (RFC 7515 section 4.1.11).
  if (crit != null) fail("token.malformed");
  if (alg !== "EdDSA" && alg !== "ES256" && alg !== "RS256") fail("token.unsupported_algorithm");
  return { alg, kid: kid ?? null, typOk: typeof typ === "string" && ACCESS_TOKEN_TYP.test(typ) };
}

/** The algorithm a JWK is for, or null when it does not describe one key of ALGORITHM. */
function usableAlgorithm(jwk: Record<string, unknown>): SigningAlgorithm | null {
  const { kty, crv, alg } = jwk;
  let fits: SigningAlgorithm | null = null;
  if (kty === "OKP" && crv === "Ed25519") fits = "EdDSA";
  else if (kty === "EC" && crv === "P-256") fits = "ES256";
  else if (kty === "RSA") fits = "RS256";
  // auth-core trusts a published key only with its `alg`, and this module only keys of ALGORITHM.
  return fits !== null && alg === fits && fits === ALGORITHM ? fits : null;
}

function importKey(jwk: Record<string, unknown>, alg: SigningAlgorithm, previous: KeyEntry | undefined): KeyEntry | null {
  const { kty, crv, x, y, n, e } = jwk;
  const material = JSON.stringify([kty, crv, x, y, n, e]);
  if (previous !== undefined && previous.material === material) return previous;
  let key: KeyObject;
  try {
    // Only the public members: a private `d` in a JWKS must not turn into a private key here.
    const publicJwk = kty === "RSA" ? { kty, n, e } : kty === "EC" ? { kty, crv, x, y } : { kty, crv, x };
    key = createPublicKey({ key: publicJwk as JsonWebKey, format: "jwk" });
  } catch {
    return null;
  }
  if (alg === "RS256") {
    // ring, which the server verifies with, accepts 2048- to 8192-bit moduli only.
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
    if (bits < 2048 || bits > 8192) return null;
  }
  const verifyKey = alg === "ES256" ? { key, dsaEncoding: "ieee-p1363" as const } : key;
  return { alg, verifyKey, material };
}

function maxAgeOf(cacheControl: string | null): number | null {
  const match = cacheControl === null ? null : /(?:^|[,\s])max-age\s*=\s*"?(\d+)"?/i.exec(cacheControl);
  return match === null ? null : Number(match[1]);
}

/**
 * The issuer's key set, cached. Fetches are single-flight: concurrent callers share one request.
 * After a failed fetch the next attempt waits for the cooldown; meanwhile the last good key set is
 * used until `max age + stale bound` past its fetch, and then nothing is (`jwks.unavailable`).
 */
class JwksCache {
  readonly #url: string;
  readonly #fetch: FetchLike;
  readonly #now: () => number;
  readonly #maxAge: number | undefined;
  readonly #cooldown: number;
  readonly #stale: number;
  readonly #timeoutMs: number;
  #keys: Map<string, KeyEntry> | null = null;
  #expiresAt = -Infinity;
  #lastAttemptAt = -Infinity;
  #failedAt = -Infinity;
  #inflight: Promise<void> | null = null;
  #lastError: unknown = undefined;

  constructor(options: VerifierOptions) {
    this.#url = options.jwksUrl ?? `${ISSUER.replace(/\/+$/, "")}/.well-known/jwks.json`;
    this.#fetch = options.fetch ?? ((url, init) => fetch(url, init));
    this.#now = options.now ?? (() => Date.now() / 1000);
    this.#maxAge = options.jwksMaxAgeSeconds;
    this.#cooldown = options.jwksCooldownSeconds ?? 10;
    this.#stale = options.jwksStaleSeconds ?? ACCESS_TTL_SECONDS + LEEWAY_SECONDS;
    this.#timeoutMs = options.jwksTimeoutMs ?? 5000;
  }

  /** The key set while it is within its max age, else null (the caller then takes the slow path). */
  fresh(now: number): Map<string, KeyEntry> | null {
    return now < this.#expiresAt ? this.#keys : null;
  }

  /** The key set to verify with now, without waiting: fresh, or stale within the bound. */
  usable(now: number): Map<string, KeyEntry> {
    if (this.#keys !== null && now < this.#expiresAt + this.#stale) return this.#keys;
    throw new AuthError("jwks.unavailable", undefined, { cause: this.#lastError });
  }

  /** The key set to verify with, refreshed first when its max age has passed. */
  async current(): Promise<Map<string, KeyEntry>> {
    const now = this.#now();
    if (now < this.#expiresAt && this.#keys !== null) return this.#keys;
    if (this.#inflight !== null || now - this.#failedAt >= this.#cooldown) {
      await this.refresh().catch(() => undefined);
    }
    return this.usable(this.#now());
  }

  /** After an unknown `kid`: the key set, refetched first unless the last fetch is too recent. */
  async afterMiss(): Promise<Map<string, KeyEntry>> {
    if (this.#inflight !== null || this.#now() - this.#lastAttemptAt >= this.#cooldown) {
      await this.refresh().catch(() => undefined);
    }
    return this.usable(this.#now());
  }

  /**
   * For callers that cannot wait: starts in the background the fetch that `current` (`afterMiss`
   * true: `afterMiss`) would wait for, if any.
   */
  nudge(afterMiss: boolean): void {
    const since = afterMiss ? this.#lastAttemptAt : this.#failedAt;
    if (this.#inflight === null && this.#now() - since >= this.#cooldown) {
      this.refresh().catch(() => undefined);
    }
  }

  /** Fetches the key set now, or joins the fetch under way. */
  refresh(): Promise<void> {
    this.#inflight ??= this.#load().finally(() => {
      this.#inflight = null;
    });
    return this.#inflight;
  }

  async #load(): Promise<void> {
    this.#lastAttemptAt = this.#now();
    try {
      const response = await this.#fetch(this.#url, {
        headers: { accept: "application/json" },
        signal: AbortSignal.timeout(this.#timeoutMs),
      });
      if (response.status !== 200) {
        await response.body?.cancel().catch(() => undefined);
        throw new Error(`the JWKS endpoint answered ${response.status}`);
      }
      const keys = this.#import(await response.json());
      const maxAge = this.#maxAge ?? maxAgeOf(response.headers.get("cache-control")) ?? JWKS_MAX_AGE_SECONDS;
      this.#keys = keys;
      this.#expiresAt = this.#now() + Math.max(1, maxAge);
      this.#failedAt = -Infinity;
      this.#lastError = undefined;
    } catch (error) {
      this.#failedAt = this.#now();
      this.#lastError = error;
      throw error;
    }
  }

  #import(body: unknown): Map<string, KeyEntry> {
    const list = typeof body === "object" && body !== null ? (body as { keys?: unknown }).keys : undefined;
    if (!Array.isArray(list)) throw new Error("the JWKS has no `keys` array");
    const keys = new Map<string, KeyEntry>();
    for (const item of list as unknown[]) {
      if (typeof item !== "object" || item === null) continue;
      const jwk = item as Record<string, unknown>;
      const { kid, use } = jwk;
      if (typeof kid !== "string" || keys.has(kid)) continue;
      if (use !== undefined && use !== "sig") continue;
      const alg = usableAlgorithm(jwk);
      if (alg === null) continue;
      const entry = importKey(jwk, alg, this.#keys?.get(kid));
      if (entry !== null) keys.set(kid, entry);
    }
    return keys;
  }
}

/**
 * Verifies the issuer's access tokens. One instance per process: it holds the JWKS and the
 * verified-token cache.
 *
 * ```ts
 * const verifier = new AccessTokenVerifier();
 * const claims = await verifier.verify(token); // throws AuthError with a `token.*` code
 * if (claims.sid !== undefined) console.log(claims.tenant_id); // a user token: typed custom claims
 * ```
 */
export class AccessTokenVerifier {
  readonly #jwks: JwksCache;
  readonly #now: () => number;
  readonly #cacheSize: number;
  readonly #cache = new Map<string, AccessClaims>();
  readonly #headers = new Map<string, Header>();

  constructor(options: VerifierOptions = {}) {
    this.#jwks = new JwksCache(options);
    this.#now = options.now ?? (() => Date.now() / 1000);
    this.#cacheSize = Math.max(0, Math.floor(options.cacheSize ?? 1024));
  }

  /**
   * Verifies `token` (the compact JWS, without `Bearer `) and returns its claims; rejects with an
   * AuthError whose code is auth-core's (`token.expired`, ...) or `jwks.unavailable`. Fetches the
   * JWKS when it is not cached, has aged out, or lacks the token's `kid`.
   */
  verify(token: string): Promise<AccessClaims> {
    const now = this.#now();
    const hit = this.#cached(token, now);
    if (hit !== undefined) return Promise.resolve(hit);
    let header: Header;
    try {
      header = this.#header(token);
      const key = this.#jwks.fresh(now)?.get(header.kid!);
      if (key !== undefined) return Promise.resolve(this.#finish(token, header, key, now));
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#verifySlowly(token, header);
  }

  /**
   * Verifies `token` with the keys already loaded, without any network request: for hot paths
   * that cannot await. Throws `jwks.unavailable` until a JWKS has been loaded (see `loadKeys`);
   * an aged-out JWKS or an unknown `kid` starts a fetch in the background (within the cooldown)
   * while this call answers from what is loaded.
   */
  verifySync(token: string): AccessClaims {
    const now = this.#now();
    const hit = this.#cached(token, now);
    if (hit !== undefined) return hit;
    const header = this.#header(token);
    let keys = this.#jwks.fresh(now);
    if (keys === null) {
      this.#jwks.nudge(false);
      keys = this.#jwks.usable(now);
    }
    const key = keys.get(header.kid!);
    if (key === undefined) {
      this.#jwks.nudge(true);
      fail("token.unknown_key");
    }
    return this.#finish(token, header, key, now);
  }

  /** Fetches the JWKS now (or joins the fetch under way); rejects when it cannot be fetched. */
  loadKeys(): Promise<void> {
    return this.#jwks.refresh();
  }

  async #verifySlowly(token: string, header: Header): Promise<AccessClaims> {
    let key = (await this.#jwks.current()).get(header.kid!);
    if (key === undefined) {
      key = (await this.#jwks.afterMiss()).get(header.kid!);
      if (key === undefined) fail("token.unknown_key");
    }
    return this.#finish(token, header, key, this.#now());
  }

  #cached(token: string, now: number): AccessClaims | undefined {
    if (this.#cacheSize === 0) return undefined;
    const claims = this.#cache.get(token);
    if (claims === undefined) return undefined;
    // A cached answer never outlives the token: exp is checked again on every hit.
    if (Math.floor(now) <= claims.exp + LEEWAY_SECONDS) return claims;
    this.#cache.delete(token);
    return undefined;
  }

  /** Steps 1 and 2 of auth-core's order (size, shape, header, `alg`), and the presence of `kid`. */
  #header(token: string): Header {
    // `length` counts UTF-16 units, never more than the UTF-8 bytes; count bytes only when it matters.
    if (token.length > MAX_TOKEN_BYTES || (token.length > MAX_TOKEN_BYTES / 3 && Buffer.byteLength(token) > MAX_TOKEN_BYTES)) {
      fail("token.too_large");
    }
    const first = token.indexOf(".");
    const second = first < 0 ? -1 : token.indexOf(".", first + 1);
    if (second < 0 || token.indexOf(".", second + 1) >= 0) fail("token.malformed");
    const text = token.slice(0, first);
    let header = this.#headers.get(text);
    if (header === undefined) {
      header = parseHeader(text);
      if (this.#headers.size >= HEADER_CACHE_SIZE) this.#headers.delete(this.#headers.keys().next().value!);
      this.#headers.set(text, header);
    }
    if (header.kid === null) fail("token.unknown_key");
    return header;
  }

  /** Steps 4 onwards: the key's algorithm, the signature, `typ`, then the claims. */
  #finish(token: string, header: Header, key: KeyEntry, nowSeconds: number): AccessClaims {
    if (key.alg !== header.alg) fail("token.algorithm_mismatch");
    const second = token.lastIndexOf(".");
    const signature = decodeSegment(token.slice(second + 1));
    if (signature === null) fail("token.malformed");
    let valid: boolean;
    try {
      valid = verifySignature(DIGEST[key.alg], Buffer.from(token.slice(0, second)), key.verifyKey, signature);
    } catch {
      valid = false;
    }
    if (!valid) fail("token.bad_signature");
    if (!header.typOk) fail("token.wrong_type");
    const payload = decodeObject(token.slice(token.indexOf(".") + 1, second));
    if (payload === null) fail("token.malformed");
    const claims = checkClaims(payload, Math.floor(nowSeconds));
    if (this.#cacheSize > 0) {
      if (this.#cache.size >= this.#cacheSize) this.#cache.delete(this.#cache.keys().next().value!);
      this.#cache.set(token, claims);
    }
    return claims;
  }
}

/**
 * auth-core's check_claims, with its precedence of codes: an absent registered claim, then a
 * mistyped `nbf`, then the custom claims (required ones only on user tokens, those with a `sid`),
 * then the types of the registered claims, then `exp`, `nbf`/`iat`, `iss`, `aud`. The returned
 * object is frozen: cached claims are shared by every request that presents the same token.
 */
function checkClaims(claims: Record<string, unknown>, now: number): AccessClaims {
  const { iss, sub, aud, exp, iat, jti, client_id: clientId, scope, nbf, sid } = claims;
  if (
    iss === undefined ||
    sub === undefined ||
    aud === undefined ||
    exp === undefined ||
    iat === undefined ||
    jti === undefined ||
    clientId === undefined ||
    scope === undefined
  ) {
    fail("token.missing_claim");
  }
  if (nbf !== undefined && !isInteger(nbf)) fail("token.invalid_claim");
  const userToken = sid !== undefined;
  for (const custom of CUSTOM) {
    // Own members only: a claim named like an Object.prototype member must not read the prototype.
    const value = Object.hasOwn(claims, custom.name) ? claims[custom.name] : undefined;
    if (value === undefined) {
      if (custom.required && userToken) fail("token.missing_claim");
    } else if (!hasType(custom.type, value)) {
      fail("token.invalid_claim");
    }
  }
  if (
    typeof iss !== "string" ||
    typeof sub !== "string" ||
    !(typeof aud === "string" || isStringArray(aud)) ||
    !isInteger(exp) ||
    !isInteger(iat) ||
    typeof jti !== "string" ||
    typeof clientId !== "string" ||
    typeof scope !== "string" ||
    (sid != null && typeof sid !== "string")
  ) {
    fail("token.invalid_claim");
  }
  if (now > exp + LEEWAY_SECONDS) fail("token.expired");
  if ((nbf === undefined ? iat : Math.max(nbf, iat)) > now + LEEWAY_SECONDS) fail("token.not_yet_valid");
  if (iss !== ISSUER) fail("token.wrong_issuer");
  if (typeof aud === "string" ? !AUDIENCES.includes(aud) : !aud.some((a) => AUDIENCES.includes(a))) {
    fail("token.wrong_audience");
  }
  // `"sid": null` reads as no session in auth-core; drop it so the claims match their type.
  if (sid === null) delete claims["sid"];
  if (Array.isArray(aud)) Object.freeze(aud);
  for (const custom of CUSTOM) {
    if (custom.type === "string_array" && Object.hasOwn(claims, custom.name)) Object.freeze(claims[custom.name]);
  }
  return Object.freeze(claims) as unknown as AccessClaims;
}
