// The module's code paths that the booking spec does not reach, through copies of the compiled
// module whose spec.js is replaced: ES256 and the other claim types (integer, boolean,
// string_array, optional claims, a claim named `type`) with the clinic fixture, and RS256 with the
// booking fixture switched to it. Each runs against a real auth-server serving the same spec, and
// hostile variants of its tokens get the same code from the module as from the server.

import assert from "node:assert/strict";
import { copyFile, mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { after, before, describe, test } from "node:test";
import { b64url, decode, ed25519Key, es256Key, forge, JwksServer, rsaKey, signParts, type TestKey } from "./forge.js";
import { AuthServer, type TokenAnswer } from "./server.js";

type Module = typeof import("../gen/index.js");

const GEN = new URL("../gen/", import.meta.url);
const VARIANTS = new URL("../variants/", import.meta.url);

/** A copy of the compiled module with another spec.js, imported. */
async function variant(name: string, specJs: string): Promise<Module> {
  const dir = new URL(`${name}/`, VARIANTS);
  await mkdir(dir, { recursive: true });
  for (const file of await readdir(GEN)) {
    if (file.endsWith(".js") && file !== "spec.js") await copyFile(new URL(file, GEN), new URL(file, dir));
  }
  await writeFile(new URL("spec.js", dir), specJs);
  return (await import(new URL("index.js", dir).href)) as Module;
}

after(async () => {
  await rm(VARIANTS, { recursive: true, force: true });
});

async function codeOf(mod: Module, verifier: InstanceType<Module["AccessTokenVerifier"]>, token: string): Promise<string> {
  try {
    await verifier.verify(token);
    return "ok";
  } catch (error) {
    if (!(error instanceof mod.AuthError)) throw error;
    return error.code;
  }
}

/** An ECDSA signature as DER (what most libraries produce) instead of JOSE's raw r||s. */
function der(raw: Buffer): Buffer {
  const integer = (bytes: Buffer) => {
    let i = 0;
    while (i < bytes.length - 1 && bytes[i] === 0) i++;
    const body = bytes[i]! & 0x80 ? Buffer.concat([Buffer.from([0]), bytes.subarray(i)]) : bytes.subarray(i);
    return Buffer.concat([Buffer.from([0x02, body.length]), body]);
  };
  const content = Buffer.concat([integer(raw.subarray(0, 32)), integer(raw.subarray(32))]);
  return Buffer.concat([Buffer.from([0x30, content.length]), content]);
}

/** The cases every algorithm shares: tampering and algorithm confusion, judged by module and server. */
function hostile(token: string, publicJwk: Record<string, string>): Array<[string, string]> {
  const [h64, p64, s64] = token.split(".") as [string, string, string];
  const { header, payload } = decode(token);
  const withAlg = (alg: string) => `${b64url({ ...header, alg })}.${p64}.${s64}`;
  const others = ["EdDSA", "ES256", "RS256"].filter((alg) => alg !== header.alg);
  return [
    [`${h64}.${b64url({ ...payload, sub: "someone-else" })}.${s64}`, "token.bad_signature"],
    [`${h64}.${p64}.${s64.slice(0, 20)}${s64[20] === "A" ? "B" : "A"}${s64.slice(21)}`, "token.bad_signature"],
    [`${h64}.${p64}.${s64}AA`, "token.bad_signature"],
    [`${h64}.${p64}.`, "token.bad_signature"],
    [withAlg(others[0]!), "token.algorithm_mismatch"],
    [withAlg(others[1]!), "token.algorithm_mismatch"],
    [withAlg("none"), "token.unsupported_algorithm"],
    [withAlg("PS256"), "token.unsupported_algorithm"],
    [withAlg("ES384"), "token.unsupported_algorithm"],
    [signParts({ ...header, alg: "HS256" }, p64, Buffer.from(JSON.stringify(publicJwk))), "token.unsupported_algorithm"],
    [`${b64url({ ...header, kid: "elsewhere" })}.${p64}.${s64}`, "token.unknown_key"],
  ];
}

describe("ES256 and every claim type (clinic.toml)", () => {
  const CLINIC_SPEC = `
export const SPEC_HASH = "variant";
export const GENERATOR_VERSION = "0.1.0";
export const ISSUER = "https://auth.clinic.example";
export const AUDIENCES = ["appointments-api", "records-api"];
export const ALGORITHM = "ES256";
export const LEEWAY_SECONDS = 10;
export const ACCESS_TTL_SECONDS = 300;
export const REFRESH_REUSE_GRACE_SECONDS = 5;
export const JWKS_MAX_AGE_SECONDS = 300;
export const SCOPES = ["appointments:book", "appointments:read", "records.read"];
export const SCOPE_LIMITS = {
  "appointments:book": { burst: 10, perSeconds: 3600 },
  "appointments:read": { burst: 100, perSeconds: 60 },
  "records.read": null,
};
// Not in name order on purpose: the verifier checks them in auth-core's (bytewise) order.
export const CUSTOM_CLAIMS = {
  "verified": { type: "boolean", required: false },
  "type": { type: "string", required: false },
  "roles": { type: "string_array", required: true },
  "clinic_id": { type: "integer", required: true },
};
export const CLIENTS = ["patient-app", "records-sync"];
`;
  let mod: Module;
  let server: AuthServer;
  let secret: string;
  let patient: TokenAnswer;

  before(async () => {
    mod = await variant("clinic", CLINIC_SPEC);
    ({ server, backendSecret: secret } = await AuthServer.start({}, { file: "clinic.toml", publicClient: "patient-app", confidentialClient: "records-sync" }));
    patient = await server.login(await server.signUp({ clinic_id: 12, roles: ["patient", "guardian"], verified: true }));
  });

  after(async () => {
    await server?.stop();
  });

  test("the server's ES256 tokens verify, with their claims", async () => {
    const verifier = new mod.AccessTokenVerifier({ jwksUrl: `${server.url}/.well-known/jwks.json` });
    assert.equal(decode(patient.access_token).header.alg, "ES256");
    const claims = (await verifier.verify(patient.access_token)) as unknown as Record<string, unknown>;
    assert.deepEqual([claims.clinic_id, claims.roles, claims.verified, claims.type], [12, ["patient", "guardian"], true, undefined]);
    assert.deepEqual(claims.aud, ["appointments-api", "records-api"]);
    assert.ok(Object.isFrozen(claims.roles));
    const machine = await verifier.verify((await server.clientToken(secret)).access_token);
    assert.deepEqual([machine.sub, machine.sid, machine.scope], ["records-sync", undefined, "records.read"]);
    // A scope without a limit: the guard admits without RateLimit fields.
    const outcome = await new mod.Auth({ verifier }).requireScope("records.read" as never)(`Bearer ${(await server.clientToken(secret)).access_token}`);
    assert.deepEqual([outcome.ok, outcome.headers], [true, {}]);
  });

  test("hostile variants get the same code as from the server", async () => {
    const verifier = new mod.AccessTokenVerifier({ jwksUrl: `${server.url}/.well-known/jwks.json` });
    const [h64, p64, s64] = patient.access_token.split(".") as [string, string, string];
    const cases = hostile(patient.access_token, (await server.jwks()).keys[0]!);
    const raw = Buffer.from(s64, "base64url");
    cases.push([`${h64}.${p64}.${b64url(der(raw))}`, "token.bad_signature"]);
    cases.push([`${h64}.${p64}.${b64url(Buffer.concat([raw, Buffer.from([0])]))}`, "token.bad_signature"]);
    for (const [token, expected] of cases) {
      assert.equal(await codeOf(mod, verifier, token), expected, `module: ${expected}`);
      assert.equal(await server.judge(token), expected, `server: ${expected}`);
    }
  });

  describe("forged: claim types and their order", () => {
    let jwks: JwksServer;
    let key: TestKey;
    let verifier: InstanceType<Module["AccessTokenVerifier"]>;
    const now = Math.floor(Date.now() / 1000);
    const clinic = (claims: Record<string, unknown>, header: Record<string, unknown> = {}) =>
      forge(
        key,
        {
          iss: "https://auth.clinic.example",
          aud: ["records-api"],
          client_id: "patient-app",
          scope: "appointments:read",
          tenant_id: undefined,
          clinic_id: 12,
          roles: ["patient"],
          exp: now + 300,
          iat: now,
          ...claims,
        },
        { alg: "ES256", ...header },
      );

    before(async () => {
      key = es256Key("test-es");
      jwks = await new JwksServer([key.jwk, ed25519Key("test-ed").jwk]).start();
      verifier = new mod.AccessTokenVerifier({ jwksUrl: jwks.jwksUrl, now: () => now });
    });

    after(async () => {
      await jwks?.close();
    });

    const cases: Array<[string, Record<string, unknown>, string]> = [
      ["valid", {}, "ok"],
      ["optional claims present", { verified: false, type: "patient" }, "ok"],
      ["integer as a string", { clinic_id: "12" }, "token.invalid_claim"],
      ["integer as a fraction", { clinic_id: 12.5 }, "token.invalid_claim"],
      ["integer beyond i64", { clinic_id: 2 ** 64 }, "token.invalid_claim"],
      ["negative integer", { clinic_id: -3 }, "ok"],
      ["string_array with a number", { roles: ["patient", 1] }, "token.invalid_claim"],
      ["string_array as a string", { roles: "patient" }, "token.invalid_claim"],
      ["empty string_array", { roles: [] }, "ok"],
      ["boolean as a string", { verified: "true" }, "token.invalid_claim"],
      ["boolean as a number", { verified: 1 }, "token.invalid_claim"],
      ["string as a number", { type: 5 }, "token.invalid_claim"],
      ["required integer absent", { clinic_id: undefined }, "token.missing_claim"],
      ["required array absent", { roles: undefined }, "token.missing_claim"],
      ["required claims absent on a client token", { clinic_id: undefined, roles: undefined, sid: undefined }, "ok"],
      ["mistyped optional claim on a client token", { clinic_id: undefined, roles: undefined, sid: undefined, verified: "no" }, "token.invalid_claim"],
      // auth-core walks the custom claims by name: clinic_id, roles, type, verified.
      ["clinic_id mistyped before roles absent", { clinic_id: "x", roles: undefined }, "token.invalid_claim"],
      ["clinic_id absent before roles mistyped", { clinic_id: undefined, roles: 1 }, "token.missing_claim"],
      ["roles absent before verified mistyped", { roles: undefined, verified: 1 }, "token.missing_claim"],
      ["expired, with the spec's leeway of 10 s", { exp: now - 11 }, "token.expired"],
      ["within the leeway of 10 s", { exp: now - 9 }, "ok"],
      ["the other audience", { aud: "appointments-api" }, "ok"],
      ["the booking issuer", { iss: "http://127.0.0.1:8080" }, "token.wrong_issuer"],
    ];
    for (const [name, claims, expected] of cases) {
      test(name, async () => {
        assert.equal(await codeOf(mod, verifier, clinic(claims)), expected);
      });
    }

    test("an Ed25519 key in the JWKS is not used by an ES256 module", async () => {
      const ed = ed25519Key("test-ed");
      assert.equal(await codeOf(mod, verifier, forge(ed, {}, { alg: "EdDSA" })), "token.unknown_key");
    });
  });
});

describe("RS256 (booking.toml switched to RS256)", () => {
  let mod: Module;
  let server: AuthServer;
  let user: TokenAnswer;

  before(async () => {
    const spec = await readFile(new URL("spec.js", GEN), "utf8");
    const rs256 = spec.replace(/export const ALGORITHM = "EdDSA";/, 'export const ALGORITHM = "RS256";');
    assert.notEqual(rs256, spec);
    mod = await variant("rs256", rs256);
    ({ server } = await AuthServer.start({ tokens: { algorithm: "RS256" } }));
    user = await server.login(await server.signUp());
  });

  after(async () => {
    await server?.stop();
  });

  test("the server's RS256 tokens verify; hostile variants get the server's codes", async () => {
    const verifier = new mod.AccessTokenVerifier({ jwksUrl: `${server.url}/.well-known/jwks.json` });
    assert.equal(decode(user.access_token).header.alg, "RS256");
    const claims = await verifier.verify(user.access_token);
    assert.equal(claims.sid !== undefined && claims.tenant_id, "hotel-7");
    for (const [token, expected] of hostile(user.access_token, (await server.jwks()).keys[0]!)) {
      assert.equal(await codeOf(mod, verifier, token), expected, `module: ${expected}`);
      assert.equal(await server.judge(token), expected, `server: ${expected}`);
    }
  });

  test("forged: RSA keys below 2048 bits are not used", async (t) => {
    const strong = rsaKey("rsa-2048");
    const weak = rsaKey("rsa-1024", 1024);
    const jwks = await new JwksServer([strong.jwk, weak.jwk]).start();
    t.after(() => jwks.close());
    const verifier = new mod.AccessTokenVerifier({ jwksUrl: jwks.jwksUrl });
    assert.equal(await codeOf(mod, verifier, forge(strong, {}, { alg: "RS256" })), "ok");
    assert.equal(await codeOf(mod, verifier, forge(weak, {}, { alg: "RS256" })), "token.unknown_key");
  });
});
