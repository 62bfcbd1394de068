// End to end, over real HTTP: a real auth-server (AUTH_SERVER_BIN, serving AUTH_REPO's
// fixtures/specs/booking.toml from a fresh data directory) and this example as its own process
// (`node dist/src/server.js`, PORT=0, AUTH_JWKS_URL at that server). Users sign up and log in at
// the auth server with the module's TokenClient, then book, list and cancel at the booking API.
//
//   node_modules/.bin/tsc -p examples/booking-api
//   AUTH_SERVER_BIN=target/debug/auth-server AUTH_REPO=. node --test --test-concurrency=1 examples/booking-api/dist/test/
//
// The process helpers live in this file: `node --test DIR` runs every .js file under a `test`
// directory as a test file, helpers included.

import assert from "node:assert/strict";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { after, before, describe, test } from "node:test";
import { TokenClient, TokenClientError, type TokenSet } from "../src/auth/index.js";
import type { Booking } from "../src/bookings.js";

// ---------------------------------------------------------------------------------------------
// Processes

/** This example's directory: the test runs from dist/test/. */
const EXAMPLE_DIR = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const STARTUP_TIMEOUT_MS = 20_000;
const PASSWORD = "correct horse battery";

function requiredEnv(name: string): string {
  const value = process.env[name];
  if (value === undefined || value === "") {
    throw new Error(`set ${name}: AUTH_SERVER_BIN is the auth-server binary, AUTH_REPO the repository root`);
  }
  return value;
}

/** A child process whose output is kept (for failure messages) and scanned for its ready line. */
class Child {
  readonly name: string;
  readonly #process: ChildProcess;
  readonly #exited: Promise<void>;
  #log = "";

  constructor(name: string, command: string, args: readonly string[], env: NodeJS.ProcessEnv) {
    this.name = name;
    this.#process = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"], env });
    this.#exited = new Promise((resolve) => this.#process.once("exit", () => resolve()));
    // Always drained, so the child never blocks on a full pipe. Colors stripped, in case.
    const keep = (chunk: Buffer) => {
      this.#log += chunk.toString().replace(/\x1b\[[0-9;]*m/g, "");
    };
    this.#process.stdout!.on("data", keep);
    this.#process.stderr!.on("data", keep);
  }

  /** Everything the process has written so far. */
  get log(): string {
    return this.#log;
  }

  /** The first match of `pattern` in a line of the output, once it appears. */
  waitFor(pattern: RegExp, timeoutMs = STARTUP_TIMEOUT_MS): Promise<RegExpExecArray> {
    return new Promise((resolve, reject) => {
      const check = () => {
        for (const line of this.#log.split("\n")) {
          const match = pattern.exec(line);
          if (match !== null) {
            done();
            resolve(match);
            return;
          }
        }
      };
      const onExit = (code: number | null, signal: string | null) => {
        done();
        reject(new Error(`${this.name} exited (${code ?? signal}) before printing ${pattern}:\n${this.#log}`));
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`${this.name} did not print ${pattern} within ${timeoutMs} ms:\n${this.#log}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.#process.stdout!.off("data", check);
        this.#process.stderr!.off("data", check);
        this.#process.off("exit", onExit);
      };
      this.#process.stdout!.on("data", check);
      this.#process.stderr!.on("data", check);
      this.#process.once("exit", onExit);
      if (this.#process.exitCode !== null || this.#process.signalCode !== null) onExit(this.#process.exitCode, this.#process.signalCode);
      else check();
    });
  }

  /** SIGTERM, then SIGKILL after 5 s; resolves once the process is gone. */
  async stop(): Promise<void> {
    if (this.#process.exitCode !== null || this.#process.signalCode !== null) return;
    this.#process.kill("SIGTERM");
    const killer = setTimeout(() => this.#process.kill("SIGKILL"), 5000);
    await this.#exited;
    clearTimeout(killer);
  }
}

/** A running auth-server on a random port, with its own data directory. */
interface AuthServer {
  readonly url: string;
  readonly child: Child;
  readonly dataDir: string;
  /** The secret of the confidential client booking-backend, registered before the start. */
  readonly backendSecret: string;
}

async function startAuthServer(): Promise<AuthServer> {
  const bin = requiredEnv("AUTH_SERVER_BIN");
  const spec = join(requiredEnv("AUTH_REPO"), "fixtures/specs/booking.toml");
  const dataDir = await mkdtemp(join(tmpdir(), "booking-api-e2e-"));
  const env = { ...process.env, NO_COLOR: "1" };
  try {
    // "registered booking-backend; its secret (shown once, stored hashed):\n<secret>\n"
    const { stdout } = await promisify(execFile)(bin, ["clients", "add", "booking-backend", "--spec", spec, "--data-dir", dataDir], { env });
    const backendSecret = stdout.trim().split("\n").pop()!.trim();
    const child = new Child("auth-server", bin, [
      "--listen", "127.0.0.1:0",
      "--spec", spec,
      "--data-dir", dataDir,
      "--per-ip-rps", "1000",
      "--login-attempts", "1000",
    ], env);
    try {
      const [, address] = await child.waitFor(/auth-server listening.*\blisten=(\S+)/);
      return { url: `http://${address}`, child, dataDir, backendSecret };
    } catch (error) {
      await child.stop();
      throw error;
    }
  } catch (error) {
    await rm(dataDir, { recursive: true, force: true });
    throw error;
  }
}

/** The example as a process: `node dist/src/server.js`, on a random port. */
async function startBookingApi(jwksUrl: string): Promise<{ readonly url: string; readonly child: Child }> {
  const child = new Child("booking-api", process.execPath, [join(EXAMPLE_DIR, "dist/src/server.js")], {
    ...process.env,
    PORT: "0",
    HOST: "127.0.0.1",
    AUTH_JWKS_URL: jwksUrl,
  });
  try {
    const [, url] = await child.waitFor(/^booking-api listening on (http:\/\/\S+)$/);
    return { url: url!, child };
  } catch (error) {
    await child.stop();
    throw error;
  }
}

// ---------------------------------------------------------------------------------------------
// Setup, and helpers over HTTP

let auth: AuthServer | undefined;
let api: { readonly url: string; readonly child: Child } | undefined;
let users = 0;

before(
  async () => {
    auth = await startAuthServer();
    api = await startBookingApi(`${auth.url}/.well-known/jwks.json`);
  },
  { timeout: 2 * STARTUP_TIMEOUT_MS },
);

after(async () => {
  await api?.child.stop();
  await auth?.child.stop();
  if (auth !== undefined) await rm(auth.dataDir, { recursive: true, force: true });
});

/** An invitation into `tenant`, created by booking-backend through the admin API. */
async function invite(tenant: string): Promise<string> {
  const backend = new TokenClient({ clientId: "booking-backend", clientSecret: auth!.backendSecret, baseUrl: auth!.url });
  const tokens = await backend.clientCredentials("users:admin");
  const response = await fetch(`${auth!.url}/v1/admin/invitations`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${tokens.accessToken}` },
    body: JSON.stringify({ claims: { tenant_id: tenant } }),
  });
  assert.equal(response.status, 201, `invitation: ${await response.clone().text()}`);
  return ((await response.json()) as { invitation: string }).invitation;
}

/** Signs up a new user of `tenant` at the auth server, invited by the backend; returns the username. */
async function signUp(tenant: string): Promise<string> {
  const username = `guest${++users}-${process.pid}`;
  const response = await fetch(`${auth!.url}/v1/users`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ username, password: PASSWORD, invitation: await invite(tenant) }),
  });
  assert.equal(response.status, 201, `sign-up: ${await response.clone().text()}`);
  return username;
}

/** A TokenClient of booking-web, logged in as `username` (with `scope`, else all the client's). */
async function logIn(username: string, scope?: string): Promise<TokenClient> {
  const client = new TokenClient({ clientId: "booking-web", baseUrl: auth!.url });
  await client.login(username, PASSWORD, scope);
  return client;
}

interface Call {
  readonly method?: string;
  /** A TokenClient (its current access token is sent), a raw token, or nothing. */
  readonly as?: TokenClient | string;
  /** Sent as JSON, unless a string (sent as is, with `contentType`). */
  readonly body?: unknown;
  readonly contentType?: string;
}

/** A request to the booking API. */
async function call(path: string, { method = "GET", as, body, contentType }: Call = {}): Promise<Response> {
  const headers: Record<string, string> = {};
  if (as !== undefined) headers["authorization"] = `Bearer ${typeof as === "string" ? as : await as.accessToken()}`;
  let payload: string | undefined;
  if (body !== undefined) {
    payload = typeof body === "string" ? body : JSON.stringify(body);
    headers["content-type"] = contentType ?? "application/json";
  }
  return fetch(`${api!.url}${path}`, payload === undefined ? { method, headers } : { method, headers, body: payload });
}

async function book(as: TokenClient, room: string, date: string): Promise<Response> {
  return call("/bookings", { method: "POST", as, body: { room, date } });
}

async function list(as: TokenClient | string): Promise<Booking[]> {
  const response = await call("/bookings", { as });
  assert.equal(response.status, 200);
  return ((await response.json()) as { bookings: Booking[] }).bookings;
}

/** Asserts an RFC 9457 answer with this status and code; returns its body. */
async function assertProblem(response: Response, status: number, code: string): Promise<{ code: string; detail?: string }> {
  const body = (await response.json()) as { type: string; status: number; code: string; detail?: string };
  assert.equal(response.status, status, JSON.stringify(body));
  assert.equal(response.headers.get("content-type"), "application/problem+json");
  assert.equal(body.type, "about:blank");
  assert.equal(body.status, status);
  assert.equal(body.code, code);
  return body;
}

/** The `sub` of a user, read from an access token's payload. */
function subOf(tokens: TokenSet): string {
  return (JSON.parse(Buffer.from(tokens.accessToken.split(".")[1]!, "base64url").toString()) as { sub: string }).sub;
}

// ---------------------------------------------------------------------------------------------
// The scenario

describe("booking-api against a live auth-server", { timeout: 60_000 }, () => {
  let aliceName: string;
  let alice: TokenClient;
  let aliceBooking: Booking;

  test("a user signs up, logs in, lists, and books with bookings:write", async () => {
    aliceName = await signUp("hotel-7");
    alice = await logIn(aliceName);
    assert.equal(alice.tokens!.scope, "bookings:read bookings:write");

    let response = await call("/bookings", { as: alice });
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), { bookings: [] });
    assert.equal(response.headers.get("ratelimit-policy"), '"bookings:read";q=120;w=60');
    assert.equal(response.headers.get("ratelimit"), '"bookings:read";r=119;t=1');

    response = await book(alice, "  Suite 12 ", "2030-02-28");
    assert.equal(response.status, 201);
    assert.equal(response.headers.get("ratelimit-policy"), '"bookings:write";q=30;w=60');
    assert.equal(response.headers.get("ratelimit"), '"bookings:write";r=29;t=2');
    aliceBooking = (await response.json()) as Booking;
    assert.equal(response.headers.get("location"), `/bookings/${aliceBooking.id}`);
    assert.equal(aliceBooking.room, "Suite 12", "the room is stored trimmed");
    assert.equal(aliceBooking.date, "2030-02-28");
    assert.equal(aliceBooking.bookedBy, subOf(alice.tokens!));

    assert.deepEqual(await list(alice), [aliceBooking]);
    response = await call(`/bookings/${aliceBooking.id}`, { as: alice });
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), aliceBooking);

    // The same room on the same day is taken.
    await assertProblem(await book(alice, "Suite 12", "2030-02-28"), 409, "booking.conflict");
  });

  test("bad input is refused with 400 (415, 413) problem+json", async () => {
    const invalid: Array<[unknown, RegExp]> = [
      [{ room: "Suite 1", date: "2030-02-29" }, /^date: /],
      [{ room: "Suite 1", date: "2030-2-1" }, /^date: /],
      [{ room: "Suite 1", date: "2030-01-01T10:00:00Z" }, /^date: /],
      [{ room: "Suite 1" }, /^date: /],
      [{ room: "   ", date: "2030-01-01" }, /^room: /],
      [{ room: 12, date: "2030-01-01" }, /^room: /],
      [{ room: "x".repeat(65), date: "2030-01-01" }, /^room: /],
      [{ room: "Suite\n1", date: "2030-01-01" }, /^room: /],
      [{ room: "Suite 1", date: "2030-01-01", guests: 2 }, /^guests: unknown field$/],
      [["Suite 1", "2030-01-01"], /^body: /],
    ];
    for (const [body, detail] of invalid) {
      const problem = await assertProblem(await call("/bookings", { method: "POST", as: alice, body }), 400, "input.invalid");
      assert.match(problem.detail ?? "", detail, JSON.stringify(body));
    }
    await assertProblem(await call("/bookings", { method: "POST", as: alice, body: '{"room": "Suite 1",' }), 400, "request.malformed");
    await assertProblem(await call("/bookings", { method: "POST", as: alice }), 400, "input.invalid");
    await assertProblem(
      await call("/bookings", { method: "POST", as: alice, body: "room=Suite+1&date=2030-01-01", contentType: "application/x-www-form-urlencoded" }),
      415,
      "request.unsupported_media_type",
    );
    await assertProblem(
      await call("/bookings", { method: "POST", as: alice, body: { room: "x".repeat(5000), date: "2030-01-01" } }),
      413,
      "request.too_large",
    );
    assert.deepEqual(await list(alice), [aliceBooking], "nothing was booked");
  });

  test("without a valid token: 401 with WWW-Authenticate invalid_token; unknown routes 404, other methods 405", async () => {
    let response = await call("/bookings");
    await assertProblem(response, 401, "token.missing");
    assert.equal(response.headers.get("www-authenticate"), 'Bearer error="invalid_token", error_description="token.missing"');
    response = await call("/bookings", { as: `${await alice.accessToken()}x` });
    await assertProblem(response, 401, "token.malformed");
    response = await call("/bookings", { method: "POST", body: { room: "Suite 1", date: "2030-01-01" } });
    await assertProblem(response, 401, "token.missing");
    await assertProblem(await call("/rooms", { as: alice }), 404, "route.not_found");
    response = await call("/bookings", { method: "PUT", as: alice });
    await assertProblem(response, 405, "route.method_not_allowed");
    assert.equal(response.headers.get("allow"), "GET, HEAD, POST");
    assert.deepEqual(await (await call("/healthz")).json(), { status: "ok" });
  });

  test("a token with bookings:read only can list but not book or cancel: 403 insufficient_scope", async () => {
    // The same user, a second session with the narrower scope.
    const readOnly = await logIn(aliceName, "bookings:read");
    assert.equal(readOnly.tokens!.scope, "bookings:read");

    assert.deepEqual(await list(readOnly), [aliceBooking]);
    let response = await book(readOnly, "Suite 3", "2030-03-01");
    await assertProblem(response, 403, "auth.insufficient_scope");
    assert.equal(response.headers.get("www-authenticate"), 'Bearer error="insufficient_scope", scope="bookings:write"');
    response = await call(`/bookings/${aliceBooking.id}`, { method: "DELETE", as: readOnly });
    await assertProblem(response, 403, "auth.insufficient_scope");
    assert.equal(response.headers.get("www-authenticate"), 'Bearer error="insufficient_scope", scope="bookings:write"');
    assert.deepEqual(await list(alice), [aliceBooking], "still booked");
  });

  test("a client-credentials token has no tenant: 403 booking.tenant_required", async () => {
    const backend = new TokenClient({ clientId: "booking-backend", clientSecret: auth!.backendSecret, baseUrl: auth!.url });
    await backend.clientCredentials("bookings:read");
    assert.equal(backend.tokens!.scope, "bookings:read");
    await assertProblem(await call("/bookings", { as: backend }), 403, "booking.tenant_required");
  });

  test("a guest cannot choose a tenant at sign-up: 403 input.claim_not_settable, and no account", async () => {
    const username = `mallory-${process.pid}`;
    const signUp = await fetch(`${auth!.url}/v1/users`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ username, password: PASSWORD, tenant_id: "hotel-7" }),
    });
    await assertProblem(signUp, 403, "input.claim_not_settable");
    const guest = new TokenClient({ clientId: "booking-web", baseUrl: auth!.url });
    await assert.rejects(guest.login(username, PASSWORD), "no account was created");
  });

  test("bookings belong to the tenant: a colleague sees them, another tenant's user can neither see nor cancel them", async () => {
    const colleague = await logIn(await signUp("hotel-7"));
    assert.deepEqual(await list(colleague), [aliceBooking]);

    const bob = await logIn(await signUp("clinic-3"));
    assert.deepEqual(await list(bob), []);
    await assertProblem(await call(`/bookings/${aliceBooking.id}`, { as: bob }), 404, "booking.not_found");
    await assertProblem(await call(`/bookings/${aliceBooking.id}`, { method: "DELETE", as: bob }), 404, "booking.not_found");
    assert.deepEqual(await list(alice), [aliceBooking], "still booked");

    // The same room and day in Bob's tenant is another booking, and no conflict.
    const response = await book(bob, "Suite 12", "2030-02-28");
    assert.equal(response.status, 201);
    const bobBooking = (await response.json()) as Booking;
    assert.deepEqual(await list(bob), [bobBooking]);
    assert.deepEqual(await list(alice), [aliceBooking]);

    // Alice cancels hers: 204, and then it is gone.
    const cancelled = await call(`/bookings/${aliceBooking.id}`, { method: "DELETE", as: alice });
    assert.equal(cancelled.status, 204);
    assert.equal(await cancelled.text(), "");
    await assertProblem(await call(`/bookings/${aliceBooking.id}`, { method: "DELETE", as: alice }), 404, "booking.not_found");
    await assertProblem(await call("/bookings/not-a-booking", { method: "DELETE", as: alice }), 404, "booking.not_found");
    assert.deepEqual(await list(alice), []);
    assert.deepEqual(await list(bob), [bobBooking]);
  });

  test("the spec's write limit: 30 a minute per user, then 429 with Retry-After and the RateLimit fields", async () => {
    const carolName = await signUp("venue-9");
    const carol = await logIn(carolName);
    // A second session of the same user, logged in now so that the checks after the 429 run
    // well within the 2 s it takes to earn a request back.
    const carolElsewhere = await logIn(carolName);
    // A fresh bucket admits its whole burst at once, then one request every 2 s (60 s / 30).
    for (let i = 0; i < 30; i++) {
      const response = await book(carol, `Room ${i}`, "2030-05-01");
      assert.equal(response.status, 201, `booking ${i + 1}: ${await response.clone().text()}`);
      assert.equal(response.headers.get("ratelimit-policy"), '"bookings:write";q=30;w=60');
      if (i === 0) assert.equal(response.headers.get("ratelimit"), '"bookings:write";r=29;t=2');
    }
    // The 31st request, unless a slow machine took over 2 s and earned a slot back meanwhile.
    let refused: Response | undefined;
    for (let extra = 0; extra < 5 && refused === undefined; extra++) {
      const response = await book(carol, `Room ${30 + extra}`, "2030-05-01");
      if (response.status === 429) refused = response;
      else assert.equal(response.status, 201);
    }
    assert.ok(refused !== undefined, "no 429 after the burst");
    const retryAfter = refused.headers.get("retry-after");
    assert.match(retryAfter ?? "", /^[12]$/, "at most one emission interval (2 s) away");
    assert.equal(refused.headers.get("ratelimit-policy"), '"bookings:write";q=30;w=60');
    assert.equal(refused.headers.get("ratelimit"), `"bookings:write";r=0;t=${retryAfter}`);
    const problem = await assertProblem(refused, 429, "ratelimit.exceeded");
    assert.equal(problem.detail, "the limit of scope bookings:write is exhausted");

    // The limit follows the user (`sub`), not the session; cancelling draws on it too.
    await assertProblem(await book(carolElsewhere, "Room 99", "2030-05-01"), 429, "ratelimit.exceeded");
    const bookings = await list(carol); // reading has a limit of its own
    assert.ok(bookings.length >= 30);
    await assertProblem(await call(`/bookings/${bookings[0]!.id}`, { method: "DELETE", as: carol }), 429, "ratelimit.exceeded");
  });

  test("refresh: the TokenClient rotates the refresh token, and the new access token works", async () => {
    const before = alice.tokens!;
    const after = await alice.refresh();
    assert.equal(alice.tokens, after);
    assert.notEqual(after.accessToken, before.accessToken);
    assert.notEqual(after.refreshToken, before.refreshToken);
    assert.equal(after.scope, "bookings:read bookings:write");
    assert.equal(await alice.accessToken(), after.accessToken);
    assert.deepEqual(await list(after.accessToken), []);
    const response = await book(alice, "Suite 7", "2030-06-01");
    assert.equal(response.status, 201);
    assert.equal(((await response.json()) as Booking).bookedBy, subOf(after), "the same user");
  });

  test("restore: a saved session continues in a new TokenClient (an app restart)", async () => {
    const saved = JSON.stringify(alice.tokens);
    const resumed = new TokenClient({ clientId: "booking-web", baseUrl: auth!.url });
    resumed.restore(JSON.parse(saved) as TokenSet);
    assert.deepEqual(resumed.tokens, alice.tokens);
    assert.deepEqual((await list(resumed)).map((b) => b.room), ["Suite 7"], "the booking of the refresh step");
    alice = resumed; // from here on, the session is the restored client's
  });

  test("logout ends the session at the auth server: its refresh token is refused", async () => {
    const { accessToken, refreshToken } = alice.tokens!;
    assert.equal(await alice.logout(), 1, "one session ended");
    assert.equal(alice.tokens, null);
    await assert.rejects(alice.accessToken(), (error: unknown) => error instanceof TokenClientError && error.code === "client.not_logged_in");

    const response = await fetch(`${auth!.url}/oauth/token`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ grant_type: "refresh_token", client_id: "booking-web", refresh_token: refreshToken! }).toString(),
    });
    assert.equal(response.status, 400);
    assert.deepEqual(await response.json(), { error: "invalid_grant", error_description: "refresh.revoked" });

    // The auth server also refuses the session's access token at once ...
    const userinfo = await fetch(`${auth!.url}/userinfo`, { headers: { authorization: `Bearer ${accessToken}` } });
    assert.equal(userinfo.status, 401);
    assert.equal(((await userinfo.json()) as { code: string }).code, "token.session_revoked");
    // ... while the booking API, which checks signatures only, accepts it until it expires
    // (15 min here). Operations that must see a logout at once use the module's Introspector.
    assert.equal((await call("/bookings", { as: accessToken })).status, 200);
  });
});
