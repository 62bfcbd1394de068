// Test helper: runs a real auth-server (AUTH_SERVER_BIN) on a random port with a fresh data
// directory, and talks to it over real HTTP. The spec is fixtures/specs/booking.toml (read from
// AUTH_REPO), optionally with values of [tokens] and [keys] replaced (same issuer, audiences,
// scopes and claims, so the generated module still applies); variants.test.ts also serves other
// fixtures.

import { spawn, execFile, type ChildProcess } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);

export const SERVER_BIN = process.env.AUTH_SERVER_BIN ?? "";
export const REPO = process.env.AUTH_REPO ?? "";
if (SERVER_BIN === "" || REPO === "") {
  throw new Error("set AUTH_SERVER_BIN (the auth-server binary) and AUTH_REPO (the repository root)");
}

export const PASSWORD = "correct horse battery";

/** Values of the spec to replace, by section, e.g. `{ tokens: { access_ttl: "5s" } }`. */
export interface SpecOverrides {
  readonly tokens?: Readonly<Record<string, string>>;
  readonly keys?: Readonly<Record<string, string>>;
}

/** Which spec of fixtures/specs/ a server serves, and the clients the helpers log in with. */
export interface ServerSpec {
  /** The file under fixtures/specs/. Default booking.toml. */
  readonly file?: string;
  /** The public client of the password grant. Default booking-web. */
  readonly publicClient?: string;
  /** The confidential client registered at start. Default booking-backend. */
  readonly confidentialClient?: string;
}

/** A spec of fixtures/specs/ with the given [tokens] / [keys] values replaced (durations as TOML strings). */
export async function fixtureSpec(file: string, overrides: SpecOverrides = {}): Promise<string> {
  const text = await readFile(join(REPO, "fixtures/specs", file), "utf8");
  let section = "";
  const replaced = new Set<string>();
  const lines = text.split("\n").map((line) => {
    const header = /^\[([^\]]+)\]/.exec(line);
    if (header) section = header[1]!;
    const entry = /^(\w+)\s*=/.exec(line);
    const values = section === "tokens" ? overrides.tokens : section === "keys" ? overrides.keys : undefined;
    if (entry && values && entry[1]! in values) {
      replaced.add(`${section}.${entry[1]}`);
      return `${entry[1]} = ${JSON.stringify(values[entry[1]!])}`;
    }
    return line;
  });
  for (const [name, values] of Object.entries(overrides)) {
    for (const key of Object.keys(values as object)) {
      if (!replaced.has(`${name}.${key}`)) throw new Error(`${file} has no ${name}.${key}`);
    }
  }
  // Every test signs up from 127.0.0.1: the spec's per-address sign-up limit would get in the way.
  return `${lines.join("\n")}\n[sign_up]\nper_source = { burst = 100000, per = "1h" }\n`;
}

/** The access-token answer of POST /oauth/token. */
export interface TokenAnswer {
  readonly access_token: string;
  readonly token_type: string;
  readonly expires_in: number;
  readonly scope: string;
  readonly refresh_token?: string;
}

function strip(text: string): string {
  // The server's log lines are colored.
  return text.replace(/\x1b\[[0-9;]*m/g, "");
}

/** A running auth-server and its data directory. */
export class AuthServer {
  readonly url: string;
  readonly specPath: string;
  readonly dataDir: string;
  readonly #process: ChildProcess;
  readonly #exited: Promise<void>;
  readonly #publicClient: string;
  readonly #confidentialClient: string;
  #users = 0;

  private constructor(url: string, specPath: string, dataDir: string, child: ChildProcess, exited: Promise<void>, spec: ServerSpec) {
    this.url = url;
    this.specPath = specPath;
    this.dataDir = dataDir;
    this.#process = child;
    this.#exited = exited;
    this.#publicClient = spec.publicClient ?? "booking-web";
    this.#confidentialClient = spec.confidentialClient ?? "booking-backend";
  }

  /**
   * Writes the spec (booking.toml unless `spec.file` says otherwise), registers the confidential
   * client (its secret is returned), and starts the server.
   */
  static async start(overrides: SpecOverrides = {}, spec: ServerSpec = {}): Promise<{ server: AuthServer; backendSecret: string }> {
    const dataDir = await mkdtemp(join(tmpdir(), "auth-ts-"));
    const specPath = join(dataDir, "auth.toml");
    await writeFile(specPath, await fixtureSpec(spec.file ?? "booking.toml", overrides));
    const client = spec.confidentialClient ?? "booking-backend";
    const { stdout } = await execFileAsync(SERVER_BIN, ["clients", "add", client, "--spec", specPath, "--data-dir", dataDir], {
      env: { ...process.env, NO_COLOR: "1" },
    });
    // "registered booking-backend; its secret (shown once, stored hashed):\n<secret>\n"
    const backendSecret = stdout.trim().split("\n").pop()!.trim();
    const child = spawn(
      SERVER_BIN,
      ["--listen", "127.0.0.1:0", "--spec", specPath, "--data-dir", dataDir, "--key-refresh-secs", "1", "--per-ip-rps", "1000", "--login-attempts", "1000", "--login-failures-per-source", "100000"],
      { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, NO_COLOR: "1" } },
    );
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    const url = await new Promise<string>((resolve, reject) => {
      let log = "";
      const timer = setTimeout(() => reject(new Error(`auth-server did not start:\n${log}`)), 20_000);
      const onData = (chunk: Buffer) => {
        log += strip(chunk.toString());
        const line = log.split("\n").find((l) => l.includes("auth-server listening"));
        const address = line === undefined ? null : /listen=(\S+)/.exec(line);
        if (address) {
          clearTimeout(timer);
          resolve(`http://${address[1]}`);
        }
      };
      child.stdout!.on("data", onData);
      child.stderr!.on("data", onData);
      child.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`auth-server exited (${code}):\n${log}`));
      });
    });
    // Keep draining the pipes so the server never blocks on a full one.
    child.stdout!.resume();
    child.stderr!.resume();
    return { server: new AuthServer(url, specPath, dataDir, child, exited, spec), backendSecret };
  }

  /** Stops the server (SIGTERM, then SIGKILL) and, unless `keepData`, removes its data. */
  async stop(keepData = false): Promise<void> {
    if (this.#process.exitCode === null && this.#process.signalCode === null) {
      this.#process.kill("SIGTERM");
      const killer = setTimeout(() => this.#process.kill("SIGKILL"), 5000);
      await this.#exited;
      clearTimeout(killer);
    }
    if (!keepData) await rm(this.dataDir, { recursive: true, force: true });
  }

  /**
   * Signs up a new user with the booking tenant, or with the given custom claims; returns the
   * username. The claims come with an invitation that an operator creates (`auth-server
   * invitations create`): users cannot set claims that the spec leaves to administrators.
   */
  async signUp(claims: string | Record<string, unknown> = "hotel-7"): Promise<string> {
    const username = `user${++this.#users}-${process.pid}`;
    const custom = typeof claims === "string" ? { tenant_id: claims } : claims;
    const body: Record<string, unknown> = { username, password: PASSWORD };
    const set = Object.entries(custom).filter(([, value]) => value !== undefined);
    if (set.length > 0) {
      const args = ["invitations", "create", "--spec", this.specPath, "--data-dir", this.dataDir];
      for (const [name, value] of set) args.push("--claim", `${name}=${JSON.stringify(value)}`);
      const { stdout } = await execFileAsync(SERVER_BIN, args, { env: { ...process.env, NO_COLOR: "1" } });
      body.invitation = stdout.trim();
    }
    const response = await fetch(`${this.url}/v1/users`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    if (response.status !== 201) throw new Error(`sign-up: ${response.status} ${await response.text()}`);
    return username;
  }

  /** POST /oauth/token with a form; throws unless 200. */
  async token(form: Record<string, string>, authorization?: string): Promise<TokenAnswer> {
    const headers: Record<string, string> = { "content-type": "application/x-www-form-urlencoded" };
    if (authorization !== undefined) headers.authorization = authorization;
    const response = await fetch(`${this.url}/oauth/token`, { method: "POST", headers, body: new URLSearchParams(form).toString() });
    if (response.status !== 200) throw new Error(`token: ${response.status} ${await response.text()}`);
    return (await response.json()) as TokenAnswer;
  }

  /** Password login of the public client (booking-web). */
  login(username: string, scope?: string): Promise<TokenAnswer> {
    const form: Record<string, string> = { grant_type: "password", client_id: this.#publicClient, username, password: PASSWORD };
    if (scope !== undefined) form.scope = scope;
    return this.token(form);
  }

  /** Refresh grant of the public client. */
  refresh(refreshToken: string): Promise<TokenAnswer> {
    return this.token({ grant_type: "refresh_token", client_id: this.#publicClient, refresh_token: refreshToken });
  }

  /** A client-credentials token of the confidential client. */
  clientToken(secret: string): Promise<TokenAnswer> {
    const basic = `Basic ${Buffer.from(`${this.#confidentialClient}:${secret}`).toString("base64")}`;
    return this.token({ grant_type: "client_credentials" }, basic);
  }

  /** What the server itself says of a bearer token: "ok", or the code of its 401. */
  async judge(token: string): Promise<string> {
    const response = await fetch(`${this.url}/userinfo`, { headers: { authorization: `Bearer ${token}` } });
    const body = (await response.json()) as { code?: string };
    if (response.status === 200) return "ok";
    if (response.status !== 401) throw new Error(`userinfo: unexpected ${response.status} ${JSON.stringify(body)}`);
    return body.code ?? "";
  }

  /** The server's JWKS. */
  async jwks(): Promise<{ keys: Array<Record<string, string>> }> {
    return (await (await fetch(`${this.url}/.well-known/jwks.json`)).json()) as { keys: Array<Record<string, string>> };
  }
}
