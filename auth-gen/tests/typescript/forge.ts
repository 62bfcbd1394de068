// Test helper: hostile and hand-made tokens. Keys are generated here with node:crypto, served by a
// fake JWKS endpoint (node:http) the verifier under test is pointed at; every request to that
// endpoint is counted, so a test can tell whether a header-supplied URL was ever followed.

import { createHmac, generateKeyPairSync, sign, type KeyObject } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { AuthError, type AccessTokenVerifier } from "../gen/index.js";

export function b64url(value: string | Buffer | object): string {
  const bytes = Buffer.isBuffer(value) ? value : Buffer.from(typeof value === "string" ? value : JSON.stringify(value));
  return bytes.toString("base64url");
}

/** The three parts of a compact JWS, decoded. */
export function decode(token: string): { header: Record<string, unknown>; payload: Record<string, unknown>; signature: string } {
  const [h, p, s] = token.split(".");
  return {
    header: JSON.parse(Buffer.from(h!, "base64url").toString()) as Record<string, unknown>,
    payload: JSON.parse(Buffer.from(p!, "base64url").toString()) as Record<string, unknown>,
    signature: s!,
  };
}

/** A signing key of the test, with its public JWK (the kid is chosen by the test). */
export interface TestKey {
  readonly kid: string;
  readonly privateKey: KeyObject;
  readonly jwk: Record<string, unknown>;
}

export function ed25519Key(kid: string): TestKey {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  return { kid, privateKey, jwk: { ...publicKey.export({ format: "jwk" }), kid, alg: "EdDSA", use: "sig" } };
}

export function rsaKey(kid: string, modulusLength = 2048): TestKey {
  const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength });
  return { kid, privateKey, jwk: { ...publicKey.export({ format: "jwk" }), kid, alg: "RS256", use: "sig" } };
}

export function es256Key(kid: string): TestKey {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  return { kid, privateKey, jwk: { ...publicKey.export({ format: "jwk" }), kid, alg: "ES256", use: "sig" } };
}

/** Signs `header.payload` with `key` (Ed25519, P-256 with raw r||s, RSA PKCS#1 v1.5), or HS256 with a secret. */
export function signParts(header: object | string, payload: object | string, key: KeyObject | Buffer): string {
  const input = `${typeof header === "string" ? header : b64url(header)}.${typeof payload === "string" ? payload : b64url(payload)}`;
  let signature: Buffer;
  if (Buffer.isBuffer(key)) signature = createHmac("sha256", key).update(input).digest();
  else if (key.asymmetricKeyType === "ed25519") signature = sign(null, Buffer.from(input), key);
  else if (key.asymmetricKeyType === "rsa") signature = sign("sha256", Buffer.from(input), key);
  else signature = sign("sha256", Buffer.from(input), { key, dsaEncoding: "ieee-p1363" });
  return `${input}.${b64url(signature)}`;
}

/** A well-formed access token of the booking spec's issuer, signed by `key`. */
export function forge(key: TestKey, claims: Record<string, unknown> = {}, header: Record<string, unknown> = {}): string {
  const now = Math.floor(Date.now() / 1000);
  const payload: Record<string, unknown> = {
    iss: "http://127.0.0.1:8080",
    sub: "forged-user",
    aud: "booking-api",
    exp: now + 900,
    iat: now,
    jti: "forged-jti",
    client_id: "booking-web",
    scope: "bookings:read bookings:write",
    sid: "forged-session",
    tenant_id: "hotel-7",
  };
  for (const [name, value] of Object.entries(claims)) {
    if (value === undefined) delete payload[name];
    else payload[name] = value;
  }
  const head: Record<string, unknown> = { typ: "at+jwt", alg: "EdDSA", kid: key.kid };
  for (const [name, value] of Object.entries(header)) {
    if (value === undefined) delete head[name];
    else head[name] = value;
  }
  return signParts(head, payload, key.privateKey);
}

/** A fake JWKS endpoint serving whatever `keys` holds when asked; counts requests per path. */
export class JwksServer {
  keys: Record<string, unknown>[];
  status = 200;
  readonly hits = new Map<string, number>();
  readonly #server: Server;
  url = "";

  constructor(keys: Record<string, unknown>[]) {
    this.keys = keys;
    this.#server = createServer((request, response) => {
      const path = request.url ?? "/";
      this.hits.set(path, (this.hits.get(path) ?? 0) + 1);
      response.writeHead(this.status, { "content-type": "application/json", "cache-control": "public, max-age=600" });
      response.end(JSON.stringify({ keys: this.keys }));
    });
  }

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.#server.listen(0, "127.0.0.1", resolve));
    this.url = `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
    return this;
  }

  get jwksUrl(): string {
    return `${this.url}/.well-known/jwks.json`;
  }

  hitsOf(path: string): number {
    return this.hits.get(path) ?? 0;
  }

  get totalHits(): number {
    let total = 0;
    for (const n of this.hits.values()) total += n;
    return total;
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

/** A fetch that counts its calls and can be made to fail. */
export class CountingFetch {
  calls = 0;
  failing = false;
  readonly urls: string[] = [];
  readonly bodies: string[] = [];

  readonly fetch = async (url: string, init?: RequestInit): Promise<Response> => {
    this.calls++;
    this.urls.push(url);
    this.bodies.push(typeof init?.body === "string" ? init.body : "");
    if (this.failing) throw new TypeError("fetch failed (test)");
    return fetch(url, init);
  };
}

/** A clock the test moves: seconds, starting at the real time. */
export class TestClock {
  offset = 0;
  readonly now = (): number => Date.now() / 1000 + this.offset;
  readonly nowMs = (): number => Date.now() + this.offset * 1000;
}

/** What `verifier` answers for `token`: "ok", or the AuthError's code (anything else is thrown). */
export async function codeOf(verifier: AccessTokenVerifier, token: string): Promise<string> {
  try {
    await verifier.verify(token);
    return "ok";
  } catch (error) {
    if (!(error instanceof AuthError)) throw error;
    return error.code;
  }
}
