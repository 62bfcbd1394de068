// Framework adapters for guards: Express middleware, a Fastify preHandler hook, and the standard
// Request/Response (Hono, Next.js route handlers, Bun, Deno, plain node:http through Request).
//
// The framework types are described structurally, with only the members used here, so this module
// imports no framework and works with any version whose request and reply have those members. Each
// adapter answers a refusal itself (status, headers, problem+json body) and, on success, exposes
// the claims and adds the RateLimit fields to the response.

import type { Guard, GuardFailure } from "./guard.js";
import type { AccessClaims } from "./spec.js";

/** The request members the Express and Fastify adapters use; `auth` receives the claims. */
export interface NodeStyleRequest {
  readonly headers: { readonly authorization?: string | readonly string[] | undefined };
  auth?: AccessClaims | null | undefined;
}

/** The response members the Express adapter uses: those of node:http's ServerResponse. */
export interface NodeStyleResponse {
  statusCode: number;
  setHeader(name: string, value: string): unknown;
  end(chunk: string): unknown;
}

/** The reply members the Fastify adapter uses. */
export interface FastifyStyleReply {
  code(statusCode: number): FastifyStyleReply;
  header(name: string, value: string): FastifyStyleReply;
  send(payload: Uint8Array): FastifyStyleReply;
}

function authorizationOf(request: NodeStyleRequest): string | undefined {
  const value = request.headers.authorization;
  // Node joins repeated headers except a few; an array here is not one bearer token.
  return typeof value === "string" ? value : value === undefined ? undefined : value.join(", ");
}

/**
 * Express middleware: admits the request with `req.auth` set to the claims and the RateLimit
 * fields on the response, or answers the refusal. Declare `auth` on Express's Request type to read
 * it typed, e.g. `declare global { namespace Express { interface Request { auth?: AccessClaims } } }`.
 *
 * ```ts
 * app.post("/bookings", expressAuth(auth.requireScope("bookings:write")), (req, res) => ...);
 * ```
 */
export function expressAuth(
  guard: Guard,
): (req: NodeStyleRequest, res: NodeStyleResponse, next: (error?: unknown) => void) => void {
  return (req, res, next) => {
    guard(authorizationOf(req)).then((outcome) => {
      for (const name in outcome.headers) res.setHeader(name, outcome.headers[name]!);
      if (outcome.ok) {
        req.auth = outcome.claims;
        next();
      } else {
        res.statusCode = outcome.status;
        res.end(JSON.stringify(outcome.body));
      }
    }, next);
  };
}

/**
 * A Fastify preHandler hook: admits the request with `request.auth` set to the claims and the
 * RateLimit fields on the reply, or sends the refusal. Call `app.decorateRequest("auth", null)`
 * once so that Fastify knows the property, and declare it:
 * `declare module "fastify" { interface FastifyRequest { auth: AccessClaims | null } }`.
 *
 * ```ts
 * app.post("/bookings", { preHandler: fastifyAuth(auth.requireScope("bookings:write")) }, handler);
 * ```
 */
export function fastifyAuth(guard: Guard): (request: NodeStyleRequest, reply: FastifyStyleReply) => Promise<void> {
  return async (request, reply) => {
    const outcome = await guard(authorizationOf(request));
    for (const name in outcome.headers) reply.header(name, outcome.headers[name]!);
    if (outcome.ok) {
      request.auth = outcome.claims;
    } else {
      // An async hook that has sent the reply ends the request here: Fastify runs no handler. Bytes,
      // because Fastify would append `; charset=utf-8` to the content type of a string.
      reply.code(outcome.status).send(Buffer.from(JSON.stringify(outcome.body)));
    }
  };
}

/** An admitted standard Request: its claims, and the headers to add to the Response. */
export interface RequestAuth {
  readonly claims: AccessClaims;
  readonly headers: Readonly<Record<string, string>>;
}

/** The Response of a refusal. */
export function problemResponse(failure: GuardFailure): Response {
  return new Response(JSON.stringify(failure.body), { status: failure.status, headers: failure.headers });
}

/**
 * For the standard Request: resolves to the claims and headers of an admitted request, or to the
 * Response to send back.
 *
 * ```ts
 * const result = await requestAuth(auth.requireScope("bookings:read"))(request);
 * if (result instanceof Response) return result;
 * ```
 */
export function requestAuth(guard: Guard): (request: Request) => Promise<RequestAuth | Response> {
  return async (request) => {
    const outcome = await guard(request.headers.get("authorization"));
    return outcome.ok ? { claims: outcome.claims, headers: outcome.headers } : problemResponse(outcome);
  };
}

/**
 * Wraps a handler of the standard Request: it runs only for admitted requests, receives the claims,
 * and its Response gets the RateLimit fields. Extra arguments (a Next.js route context, ...) pass
 * through. For Hono: `app.get("/x", (c) => handler(c.req.raw))`.
 *
 * ```ts
 * export const POST = withAuth(auth.requireScope("bookings:write"), async (request, auth) =>
 *   Response.json({ tenant: auth.claims.sid !== undefined ? auth.claims.tenant_id : null }));
 * ```
 */
export function withAuth<Rest extends unknown[]>(
  guard: Guard,
  handler: (request: Request, auth: RequestAuth, ...rest: Rest) => Response | Promise<Response>,
): (request: Request, ...rest: Rest) => Promise<Response> {
  const check = requestAuth(guard);
  return async (request, ...rest) => {
    const result = await check(request);
    if (result instanceof Response) return result;
    let response = await handler(request, result, ...rest);
    for (const name in result.headers) {
      try {
        response.headers.set(name, result.headers[name]!);
      } catch {
        // The headers of a Response from fetch() are immutable: copy it into one that is not.
        response = new Response(response.body, response);
        response.headers.set(name, result.headers[name]!);
      }
    }
    return response;
  };
}
