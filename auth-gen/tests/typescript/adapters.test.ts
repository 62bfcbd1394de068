// The adapters through real HTTP: Express and Fastify (from node_modules) and the standard
// Request/Response handler behind node:http, each serving the same routes and answering the same
// requests, with real tokens of a running auth-server.

import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import express from "express";
import Fastify from "fastify";
import {
  Auth,
  expressAuth,
  fastifyAuth,
  requestAuth,
  ScopeLimiter,
  withAuth,
  type AccessClaims,
  type Guard,
} from "../gen/index.js";
import { AuthServer, type TokenAnswer } from "./server.js";

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Request {
      auth?: AccessClaims;
    }
  }
}

declare module "fastify" {
  interface FastifyRequest {
    auth: AccessClaims | null;
  }
}

let server: AuthServer;
let user: TokenAnswer;
let readOnly: TokenAnswer;
let jwksUrl: string;

before(async () => {
  ({ server } = await AuthServer.start());
  const name = await server.signUp("clinic-3");
  user = await server.login(name);
  readOnly = await server.login(name, "bookings:read");
  jwksUrl = `${server.url}/.well-known/jwks.json`;
});

after(async () => {
  await server?.stop();
});

/** The guards of one app: its own limiter, with a write quota of 2 per minute. */
function guards(): { read: Guard; write: Guard; offline: Guard } {
  const auth = new Auth({
    jwksUrl,
    limiter: new ScopeLimiter({ quotas: { "bookings:read": { burst: 120, perSeconds: 60 }, "bookings:write": { burst: 2, perSeconds: 60 } } }),
  });
  return {
    read: auth.requireScope("bookings:read"),
    write: auth.requireScope("bookings:write"),
    offline: new Auth({ jwksUrl: "http://127.0.0.1:9/jwks.json" }).requireScope("bookings:read"),
  };
}

function tenantOf(claims: AccessClaims | null | undefined): string | null {
  return claims?.sid !== undefined ? claims.tenant_id : null;
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** The same requests for every adapter, and the answers auth-server would give. */
async function scenario(base: string): Promise<void> {
  const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

  let response = await fetch(`${base}/read`, { headers: bearer(user.access_token) });
  assert.equal(response.status, 200);
  assert.deepEqual(await response.json(), { sub: JSON.parse(Buffer.from(user.access_token.split(".")[1]!, "base64url").toString()).sub, tenant: "clinic-3" });
  assert.equal(response.headers.get("ratelimit-policy"), '"bookings:read";q=120;w=60');
  assert.match(response.headers.get("ratelimit")!, /^"bookings:read";r=119;t=1$/);

  response = await fetch(`${base}/read`);
  assert.equal(response.status, 401);
  assert.equal(response.headers.get("content-type"), "application/problem+json");
  assert.equal(response.headers.get("www-authenticate"), 'Bearer error="invalid_token", error_description="token.missing"');
  assert.deepEqual(await response.json(), { type: "about:blank", title: "The access token is missing or invalid", status: 401, code: "token.missing" });

  response = await fetch(`${base}/read`, { headers: bearer(`${user.access_token}x`) });
  assert.equal(response.status, 401);
  assert.equal(response.headers.get("www-authenticate"), 'Bearer error="invalid_token", error_description="token.malformed"');
  assert.equal(((await response.json()) as { code: string }).code, "token.malformed");

  response = await fetch(`${base}/write`, { method: "POST", headers: bearer(readOnly.access_token) });
  assert.equal(response.status, 403);
  assert.equal(response.headers.get("www-authenticate"), 'Bearer error="insufficient_scope", scope="bookings:write"');
  assert.equal(((await response.json()) as { code: string }).code, "auth.insufficient_scope");

  for (const remaining of [1, 0]) {
    response = await fetch(`${base}/write`, { method: "POST", headers: bearer(user.access_token) });
    assert.equal(response.status, 201);
    assert.deepEqual(await response.json(), { created: true, tenant: "clinic-3" });
    assert.match(response.headers.get("ratelimit")!, new RegExp(`^"bookings:write";r=${remaining};t=(30|60)$`));
  }
  response = await fetch(`${base}/write`, { method: "POST", headers: bearer(user.access_token) });
  assert.equal(response.status, 429);
  assert.equal(response.headers.get("content-type"), "application/problem+json");
  assert.equal(response.headers.get("ratelimit-policy"), '"bookings:write";q=2;w=60');
  assert.match(response.headers.get("ratelimit")!, /^"bookings:write";r=0;t=(29|30)$/);
  assert.match(response.headers.get("retry-after")!, /^(29|30)$/);
  assert.deepEqual(await response.json(), {
    type: "about:blank",
    title: "Too many requests",
    status: 429,
    code: "ratelimit.exceeded",
    detail: "the limit of scope bookings:write is exhausted",
  });

  response = await fetch(`${base}/offline`, { headers: bearer(user.access_token) });
  assert.equal(response.status, 503);
  assert.equal(((await response.json()) as { code: string }).code, "jwks.unavailable");
}

describe("adapters", () => {
  test("Express middleware", async (t) => {
    const { read, write, offline } = guards();
    const app = express();
    app.get("/read", expressAuth(read), (req, res) => {
      res.json({ sub: req.auth?.sub, tenant: tenantOf(req.auth) });
    });
    app.post("/write", expressAuth(write), (req, res) => {
      res.status(201).json({ created: true, tenant: tenantOf(req.auth) });
    });
    app.get("/offline", expressAuth(offline), (_req, res) => {
      res.json({});
    });
    const http = createServer(app);
    const base = await listen(http);
    t.after(() => new Promise<void>((resolve) => http.close(() => resolve())));
    await scenario(base);
  });

  test("Fastify preHandler hook", async (t) => {
    const { read, write, offline } = guards();
    const app = Fastify();
    app.decorateRequest("auth", null);
    app.get("/read", { preHandler: fastifyAuth(read) }, async (request) => ({ sub: request.auth?.sub, tenant: tenantOf(request.auth) }));
    app.post("/write", { preHandler: fastifyAuth(write) }, async (request, reply) => {
      reply.code(201);
      return { created: true, tenant: tenantOf(request.auth) };
    });
    app.get("/offline", { preHandler: [fastifyAuth(offline)] }, async () => ({}));
    await app.listen({ port: 0, host: "127.0.0.1" });
    t.after(() => app.close());
    const { port } = app.server.address() as AddressInfo;
    await scenario(`http://127.0.0.1:${port}`);
  });

  test("standard Request/Response handlers behind node:http", async (t) => {
    const { read, write, offline } = guards();
    const checkRead = requestAuth(read);
    // A wrapped handler with an extra argument, as a Next.js route handler gets its context.
    const routeContext = { params: { id: "7" } };
    const writeRoute = withAuth(write, async (_request, auth, context: typeof routeContext) => {
      assert.equal(context, routeContext);
      return Response.json({ created: true, tenant: tenantOf(auth.claims) }, { status: 201 });
    });
    const routes: Record<string, (request: Request) => Promise<Response>> = {
      "GET /read": async (request) => {
        const result = await checkRead(request);
        if (result instanceof Response) return result;
        return Response.json({ sub: result.claims.sub, tenant: tenantOf(result.claims) }, { headers: result.headers });
      },
      "POST /write": (request) => writeRoute(request, routeContext),
      "GET /offline": withAuth(offline, () => Response.json({})),
    };
    const http = createServer(async (req, res) => {
      const headers = new Headers();
      for (const [name, value] of Object.entries(req.headers)) if (typeof value === "string") headers.set(name, value);
      const request = new Request(`http://${req.headers.host}${req.url}`, { method: req.method!, headers });
      const response = await routes[`${req.method} ${req.url}`]!(request);
      res.writeHead(response.status, Object.fromEntries(response.headers));
      res.end(Buffer.from(await response.arrayBuffer()));
    });
    const base = await listen(http);
    t.after(() => new Promise<void>((resolve) => http.close(() => resolve())));
    await scenario(base);
  });

  test("withAuth adds the limit headers even to a Response with immutable headers", async () => {
    const { read } = guards();
    const handler = withAuth(read, () => Response.redirect("http://127.0.0.1/elsewhere", 303));
    const response = await handler(new Request("http://127.0.0.1/read", { headers: { authorization: `Bearer ${user.access_token}` } }));
    assert.equal(response.status, 303);
    assert.equal(response.headers.get("location"), "http://127.0.0.1/elsewhere");
    assert.match(response.headers.get("ratelimit")!, /^"bookings:read";r=119;t=1$/);
  });
});
