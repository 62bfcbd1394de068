// The verifier against a real auth-server: its tokens verify with typed claims; hostile variants
// of them are rejected with the code the server itself gives (asked through /userinfo); tokens
// forged with a test key (served by a fake JWKS) exercise every claim rule with auth-core's codes.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { AccessTokenVerifier, ISSUER, type AccessClaims } from "../gen/index.js";
import { b64url, codeOf, decode, ed25519Key, es256Key, forge, JwksServer, signParts, type TestKey } from "./forge.js";
import { AuthServer, type TokenAnswer } from "./server.js";

let server: AuthServer;
let backendSecret: string;
let user: TokenAnswer;

before(async () => {
  ({ server, backendSecret } = await AuthServer.start());
  user = await server.login(await server.signUp("hotel-7"));
});

after(async () => {
  await server?.stop();
});

describe("tokens of the server", () => {
  test("a user token verifies, with typed claims", async () => {
    const verifier = new AccessTokenVerifier({ jwksUrl: `${server.url}/.well-known/jwks.json` });
    const claims: AccessClaims = await verifier.verify(user.access_token);
    assert.equal(claims.iss, ISSUER);
    assert.equal(claims.aud, "booking-api");
    assert.equal(claims.client_id, "booking-web");
    assert.equal(claims.scope, "bookings:read bookings:write");
    assert.equal(claims.exp - claims.iat, 900);
    if (claims.sid === undefined) assert.fail("a user token carries a sid");
    // `sid` narrows to UserClaims, whose custom claim is typed by the spec.
    const tenant: string = claims.tenant_id;
    assert.equal(tenant, "hotel-7");
    assert.ok(Object.isFrozen(claims));
    assert.equal(await server.judge(user.access_token), "ok");
  });

  test("a client-credentials token verifies, without session or user claims", async () => {
    const verifier = new AccessTokenVerifier({ jwksUrl: `${server.url}/.well-known/jwks.json` });
    const token = (await server.clientToken(backendSecret)).access_token;
    const claims = await verifier.verify(token);
    assert.equal(claims.sid, undefined);
    assert.equal(claims.sub, "booking-backend");
    assert.equal(claims.scope, "bookings:read");
    assert.equal("tenant_id" in claims, false);
  });

  test("hostile variants get the same code as from the server", async (t) => {
    const verifier = new AccessTokenVerifier({ jwksUrl: `${server.url}/.well-known/jwks.json` });
    const real = user.access_token;
    const [h64, p64, s64] = real.split(".") as [string, string, string];
    const { header, payload } = decode(real);
    const serverKey = (await server.jwks()).keys[0]!;
    const attacker = ed25519Key("attacker");
    const attackerJwks = await new JwksServer([attacker.jwk]).start();
    t.after(() => attackerJwks.close());
    const flip = (text: string, at: number) => text.slice(0, at) + (text[at] === "A" ? "B" : "A") + text.slice(at + 1);
    const withHeader = (changes: Record<string, unknown>) => `${b64url({ ...header, ...changes })}.${p64}.${s64}`;
    const cases: Array<[string, string, string]> = [
      ["tampered payload", `${h64}.${b64url({ ...payload, sub: "someone-else" })}.${s64}`, "token.bad_signature"],
      ["tampered scope", `${h64}.${b64url({ ...payload, scope: "bookings:read bookings:write admin" })}.${s64}`, "token.bad_signature"],
      ["tampered signature", `${h64}.${p64}.${flip(s64, 10)}`, "token.bad_signature"],
      ["signature cut short", `${h64}.${p64}.${s64.slice(0, 40)}`, "token.bad_signature"],
      ["no signature", `${h64}.${p64}.`, "token.bad_signature"],
      ["signature not base64url", `${h64}.${p64}.${s64.slice(0, -2)}+/`, "token.malformed"],
      ["signature with stray bits", `${h64}.${p64}.${s64.slice(0, -1)}B`, "token.malformed"],
      ["alg none", `${b64url({ ...header, alg: "none" })}.${p64}.`, "token.unsupported_algorithm"],
      ["alg none, no kid", `${b64url({ typ: "at+jwt", alg: "none" })}.${p64}.`, "token.unsupported_algorithm"],
      ["alg None", withHeader({ alg: "None" }), "token.unsupported_algorithm"],
      ["alg eddsa (case)", withHeader({ alg: "eddsa" }), "token.unsupported_algorithm"],
      [
        "HS256 with the public key as secret",
        signParts({ ...header, alg: "HS256" }, p64, Buffer.from(serverKey.x!, "base64url")),
        "token.unsupported_algorithm",
      ],
      [
        "HS256 with the JWK text as secret",
        signParts({ ...header, alg: "HS256" }, p64, Buffer.from(JSON.stringify(serverKey))),
        "token.unsupported_algorithm",
      ],
      ["HS512", withHeader({ alg: "HS512" }), "token.unsupported_algorithm"],
      ["PS256", withHeader({ alg: "PS256" }), "token.unsupported_algorithm"],
      ["alg swapped to ES256", withHeader({ alg: "ES256" }), "token.algorithm_mismatch"],
      ["alg swapped to RS256", withHeader({ alg: "RS256" }), "token.algorithm_mismatch"],
      ["unknown kid", withHeader({ kid: "no-such-key" }), "token.unknown_key"],
      ["no kid", `${b64url({ typ: "at+jwt", alg: "EdDSA" })}.${p64}.${s64}`, "token.unknown_key"],
      ["kid null", withHeader({ kid: null }), "token.unknown_key"],
      ["kid not a string", withHeader({ kid: 7 }), "token.malformed"],
      [
        "header jwk: the attacker's key and kid",
        forge(attacker, { ...payload }, { jwk: attacker.jwk }),
        "token.unknown_key",
      ],
      [
        "header jwk: the attacker's key under the server's kid",
        forge(attacker, { ...payload }, { kid: header.kid, jwk: attacker.jwk }),
        "token.bad_signature",
      ],
      ["header jku", forge(attacker, { ...payload }, { jku: `${attackerJwks.url}/jku` }), "token.unknown_key"],
      [
        "header jku under the server's kid",
        forge(attacker, { ...payload }, { kid: header.kid, jku: `${attackerJwks.url}/jku` }),
        "token.bad_signature",
      ],
      ["header x5u", forge(attacker, { ...payload }, { x5u: `${attackerJwks.url}/x5u` }), "token.unknown_key"],
      ["header x5c", forge(attacker, { ...payload }, { kid: header.kid, x5c: ["MIIB"] }), "token.bad_signature"],
      ["crit", withHeader({ crit: ["exp"], exp: 1 }), "token.malformed"],
      ["crit empty", withHeader({ crit: [] }), "token.malformed"],
      ["garbage", "not-a-token", "token.malformed"],
      ["two segments", `${h64}.${p64}`, "token.malformed"],
      ["four segments", `${real}.${s64}`, "token.malformed"],
      ["empty header", `.${p64}.${s64}`, "token.malformed"],
      ["header not base64url", `${h64.slice(0, -1)}*.${p64}.${s64}`, "token.malformed"],
      ["header padded", `${b64url(JSON.stringify(header) + " ")}=.${p64}.${s64}`, "token.malformed"],
      ["header not JSON", `${b64url("{typ:at+jwt}")}.${p64}.${s64}`, "token.malformed"],
      // A header must be a JSON object; an array (which serde would read as the fields in order) is refused.
      ["header a JSON array", `${b64url(["EdDSA"])}.${p64}.${s64}`, "token.malformed"],
      ["header a JSON array with the kid", `${b64url(["EdDSA", header.kid])}.${p64}.${s64}`, "token.malformed"],
      ["header a JSON array with crit", `${b64url(["EdDSA", header.kid, "at+jwt", []])}.${p64}.${s64}`, "token.malformed"],
      ["header an empty JSON array", `${b64url([])}.${p64}.${s64}`, "token.malformed"],
      ["header a JSON array too long", `${b64url(["EdDSA", header.kid, "at+jwt", null, 1])}.${p64}.${s64}`, "token.malformed"],
      ["header with alg twice", `${b64url(`{"alg":"EdDSA","kid":"${String(header.kid)}","alg":"EdDSA"}`)}.${p64}.${s64}`, "token.malformed"],
      ["header with kid twice, escaped", `${b64url(`{"alg":"EdDSA","kid":"x","k\u0069d":"${String(header.kid)}"}`)}.${p64}.${s64}`, "token.malformed"],
      ["kid with a lone surrogate", `${b64url(`{"alg":"EdDSA","kid":"\\ud800"}`)}.${p64}.${s64}`, "token.malformed"],
      ["typ with a lone trailing surrogate", `${b64url(`{"alg":"EdDSA","kid":"${String(header.kid)}","typ":"at+jwt\\udc00"}`)}.${p64}.${s64}`, "token.malformed"],
      ["a member name with a lone surrogate", `${b64url(`{"alg":"EdDSA","kid":"${String(header.kid)}","\\udbff":1}`)}.${p64}.${s64}`, "token.malformed"],
      ["kid with a surrogate pair", `${b64url(`{"alg":"EdDSA","kid":"\\ud83c\\udfe8"}`)}.${p64}.${s64}`, "token.unknown_key"],
      ["an unknown member's value with a lone surrogate", `${b64url(`{"alg":"EdDSA","kid":"${String(header.kid)}","x":"\\ud800"}`)}.${p64}.${s64}`, "token.bad_signature"],
      ["header with an unknown member twice", `${b64url(`{"alg":"EdDSA","x":1,"x":{"kid":1,"kid":2},"kid":"nope"}`)}.${p64}.${s64}`, "token.unknown_key"],
      ["header a JSON string", `${b64url('"EdDSA"')}.${p64}.${s64}`, "token.malformed"],
      ["header not UTF-8", `${b64url(Buffer.from([0x7b, 0xff, 0x7d]))}.${p64}.${s64}`, "token.malformed"],
      ["header without alg", `${b64url({ typ: "at+jwt", kid: header.kid })}.${p64}.${s64}`, "token.malformed"],
      ["alg not a string", withHeader({ alg: ["EdDSA"] }), "token.malformed"],
      ["typ not a string", withHeader({ typ: 1 }), "token.malformed"],
      ["oversized", `${h64}.${p64}${"A".repeat(16 * 1024)}.${s64}`, "token.too_large"],
      ["oversized garbage", "x".repeat(16 * 1024 + 1), "token.too_large"],
      ["exactly at the limit", `${h64}.${"A".repeat(16 * 1024 - h64.length - s64.length - 2)}.${s64}`, "token.bad_signature"],
    ];
    for (const [name, token, expected] of cases) {
      assert.equal(await codeOf(verifier, token), expected, `${name}: module`);
      assert.equal(await server.judge(token), expected, `${name}: server`);
    }
    // Header-supplied key URLs are never followed.
    assert.equal(attackerJwks.totalHits, 0);
  });
});

describe("forged tokens: every rule, with auth-core's codes", () => {
  let jwks: JwksServer;
  let key: TestKey;
  let verifier: AccessTokenVerifier;
  const now = Math.floor(Date.now() / 1000);

  before(async () => {
    key = ed25519Key("test-ed");
    const ecKey = es256Key("test-es");
    // A JWK that is not of the spec's algorithm, and broken ones: all ignored.
    jwks = await new JwksServer([
      key.jwk,
      ecKey.jwk,
      { kty: "OKP", crv: "Ed25519", kid: "no-alg", x: key.jwk.x },
      { kty: "OKP", crv: "Ed25519", kid: "bad-x", alg: "EdDSA", x: "AAAA" },
      { kty: "OKP", crv: "Ed25519", kid: "enc", alg: "EdDSA", use: "enc", x: key.jwk.x },
      { kid: "not-a-key" },
    ]).start();
    // A fixed clock: the claims below are relative to `now`.
    verifier = new AccessTokenVerifier({ jwksUrl: jwks.jwksUrl, now: () => now });
  });

  after(async () => {
    await jwks?.close();
  });

  const cases: Array<[string, Record<string, unknown>, Record<string, unknown>, string]> = [
    ["valid", {}, {}, "ok"],
    ["typ JWT", {}, { typ: "JWT" }, "token.wrong_type"],
    ["typ absent", {}, { typ: undefined }, "token.wrong_type"],
    ["typ null", {}, { typ: null }, "token.wrong_type"],
    ["typ application/AT+JWT", {}, { typ: "application/AT+JWT" }, "ok"],
    ["typ At+Jwt", {}, { typ: "At+Jwt" }, "ok"],
    ["crit null reads as absent", {}, { crit: null }, "ok"],
    ["crit", {}, { crit: ["b64"], b64: false }, "token.malformed"],
    ["kid of a key of another algorithm", {}, { kid: "test-es" }, "token.unknown_key"],
    ["kid of a JWK without alg", {}, { kid: "no-alg" }, "token.unknown_key"],
    ["kid of a JWK that is not a key", {}, { kid: "bad-x" }, "token.unknown_key"],
    ["kid of an encryption key", {}, { kid: "enc" }, "token.unknown_key"],
    ["iss absent", { iss: undefined }, {}, "token.missing_claim"],
    ["sub absent", { sub: undefined }, {}, "token.missing_claim"],
    ["aud absent", { aud: undefined }, {}, "token.missing_claim"],
    ["exp absent", { exp: undefined }, {}, "token.missing_claim"],
    ["iat absent", { iat: undefined }, {}, "token.missing_claim"],
    ["jti absent", { jti: undefined }, {}, "token.missing_claim"],
    ["client_id absent", { client_id: undefined }, {}, "token.missing_claim"],
    ["scope absent", { scope: undefined }, {}, "token.missing_claim"],
    ["required custom claim absent on a user token", { tenant_id: undefined }, {}, "token.missing_claim"],
    ["required custom claim absent on a client token", { tenant_id: undefined, sid: undefined }, {}, "ok"],
    ["sid null is a user token without session", { sid: null, tenant_id: undefined }, {}, "token.missing_claim"],
    ["sid null", { sid: null }, {}, "ok"],
    ["custom claim mistyped", { tenant_id: 7 }, {}, "token.invalid_claim"],
    ["custom claim null", { tenant_id: null }, {}, "token.invalid_claim"],
    ["custom claim an array", { tenant_id: ["hotel-7"] }, {}, "token.invalid_claim"],
    ["custom claim mistyped on a client token", { tenant_id: false, sid: undefined }, {}, "token.invalid_claim"],
    ["exp a string", { exp: String(now + 900) }, {}, "token.invalid_claim"],
    ["exp a fraction", { exp: now + 900.5 }, {}, "token.invalid_claim"],
    ["exp beyond i64", { exp: 1e20 }, {}, "token.invalid_claim"],
    ["exp null", { exp: null }, {}, "token.invalid_claim"],
    ["iat a boolean", { iat: true }, {}, "token.invalid_claim"],
    ["iss a number", { iss: 1 }, {}, "token.invalid_claim"],
    ["sub an object", { sub: { id: 1 } }, {}, "token.invalid_claim"],
    ["aud a number", { aud: 1 }, {}, "token.invalid_claim"],
    ["aud with a number", { aud: ["booking-api", 1] }, {}, "token.invalid_claim"],
    ["jti null", { jti: null }, {}, "token.invalid_claim"],
    ["client_id an array", { client_id: ["booking-web"] }, {}, "token.invalid_claim"],
    ["scope an array", { scope: ["bookings:read"] }, {}, "token.invalid_claim"],
    ["sid a number", { sid: 1 }, {}, "token.invalid_claim"],
    ["nbf a string", { nbf: "0" }, {}, "token.invalid_claim"],
    ["nbf null", { nbf: null }, {}, "token.invalid_claim"],
    // Precedence: presence, then nbf's type, then custom claims, then the registered claims' types.
    ["absent claim before a mistyped one", { iss: undefined, exp: "soon" }, {}, "token.missing_claim"],
    ["absent claim before a mistyped nbf", { jti: undefined, nbf: "0" }, {}, "token.missing_claim"],
    ["absent custom claim before a mistyped registered one", { tenant_id: undefined, exp: "soon" }, {}, "token.missing_claim"],
    ["mistyped nbf before an absent custom claim", { tenant_id: undefined, nbf: "0" }, {}, "token.invalid_claim"],
    ["mistyped claim before expiry", { exp: now - 3600, sub: 5 }, {}, "token.invalid_claim"],
    ["expired", { exp: now - 31 }, {}, "token.expired"],
    ["expired within the leeway", { exp: now - 29 }, {}, "ok"],
    ["expired before the wrong issuer", { exp: now - 3600, iss: "https://evil.example" }, {}, "token.expired"],
    ["expired before not yet valid", { exp: now - 3600, nbf: now + 3600 }, {}, "token.expired"],
    ["nbf in the future", { nbf: now + 31 }, {}, "token.not_yet_valid"],
    ["nbf within the leeway", { nbf: now + 29 }, {}, "ok"],
    ["iat in the future", { iat: now + 60, exp: now + 960 }, {}, "token.not_yet_valid"],
    ["nbf before iat in the future", { iat: now + 60, nbf: now, exp: now + 960 }, {}, "token.not_yet_valid"],
    ["not yet valid before the wrong issuer", { nbf: now + 3600, iss: "https://evil.example" }, {}, "token.not_yet_valid"],
    ["wrong issuer", { iss: "https://evil.example" }, {}, "token.wrong_issuer"],
    ["issuer with a trailing slash", { iss: `${ISSUER}/` }, {}, "token.wrong_issuer"],
    ["wrong issuer before the wrong audience", { iss: "https://evil.example", aud: "other" }, {}, "token.wrong_issuer"],
    ["wrong audience", { aud: "other-api" }, {}, "token.wrong_audience"],
    ["no audience", { aud: [] }, {}, "token.wrong_audience"],
    ["audiences including ours", { aud: ["other-api", "booking-api"] }, {}, "ok"],
    ["unknown claims are ignored", { extra: { nested: [1, 2] }, constructor: 1, ["__proto__"]: 5 }, {}, "ok"],
    ["oversized", { padding: "x".repeat(16 * 1024) }, {}, "token.too_large"],
  ];

  for (const [name, claims, header, expected] of cases) {
    test(name, async () => {
      assert.equal(await codeOf(verifier, forge(key, claims, header)), expected);
    });
  }

  test("payloads that are not a JSON object are malformed, signature or not", async () => {
    const header = { typ: "at+jwt", alg: "EdDSA", kid: key.kid };
    for (const payload of [
      b64url("not json"),
      b64url([1, 2]),
      b64url("null"),
      b64url(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from("{}")])),
      b64url(Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d])),
      "e30=",
    ]) {
      assert.equal(await codeOf(verifier, signParts(header, payload, key.privateKey)), "token.malformed", payload);
    }
    // Unsigned, the same payload is a bad signature: the payload is not read before the signature.
    assert.equal(await codeOf(verifier, `${b64url(header)}.${b64url("not json")}.${"A".repeat(86)}`), "token.bad_signature");
  });

  test("base64url is decoded strictly, and text that is not ASCII as UTF-8", async () => {
    const header = b64url({ typ: "at+jwt", alg: "EdDSA", kid: key.kid });
    const payload = decode(forge(key, { tenant_id: "Zürich 東京 🏨" })).payload;
    const claims = await verifier.verify(signParts(header, payload, key.privateKey));
    assert.equal(claims.sid !== undefined && claims.tenant_id, "Zürich 東京 🏨");
    const p64 = b64url(payload);
    for (const bad of [`${p64}ä`, `${p64.slice(0, -1)}é`, `${p64}=`, `${p64} `, `${p64.slice(0, 8)}+${p64.slice(9)}`]) {
      // Signed as sent: the signature holds, the payload does not decode.
      assert.equal(await codeOf(verifier, signParts(header, bad, key.privateKey)), "token.malformed", bad.slice(-3));
    }
    // A length no base64 text can have (4n + 1).
    const impossible = p64 + "A".repeat((5 - (p64.length % 4)) % 4);
    assert.equal(impossible.length % 4, 1);
    assert.equal(await codeOf(verifier, signParts(header, impossible, key.privateKey)), "token.malformed");
  });

  test("claims: sid null is dropped, audiences and arrays are frozen", async () => {
    const claims = await verifier.verify(forge(key, { sid: null, aud: ["booking-api", "x"] }));
    assert.equal("sid" in claims, false);
    assert.ok(Object.isFrozen(claims.aud));
  });

  test("an ES256 signature from the same token bytes does not pass for EdDSA", async () => {
    const ec = es256Key("test-ed");
    const token = signParts({ typ: "at+jwt", alg: "EdDSA", kid: "test-ed" }, decode(forge(key)).payload, ec.privateKey);
    assert.equal(await codeOf(verifier, token), "token.bad_signature");
  });
});
