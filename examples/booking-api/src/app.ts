// The booking API as an Express app: the routes, their guards, and the answers to bad requests.
//
// Authentication and the scope rate limits are the generated module's (./auth, from
// fixtures/specs/booking.toml): each route runs `expressAuth(auth.requireScope(...))` first, which
// verifies the bearer token against the auth server's JWKS, checks the scope, charges the scope's
// limit (bookings:write: 30 a minute per user) and answers 401/403/429/503 itself, exactly as
// auth-server would. The routes then see the claims in `req.auth`; bookings belong to the token's
// `tenant_id`.
//
//   GET    /bookings       bookings:read   the caller's tenant's bookings
//   POST   /bookings       bookings:write  book { "room": string, "date": "YYYY-MM-DD" }
//   GET    /bookings/:id   bookings:read   one booking of the caller's tenant
//   DELETE /bookings/:id   bookings:write  cancel one booking of the caller's tenant
//   GET    /healthz        (none)          liveness
//
// Errors are RFC 9457 problems (`application/problem+json`) with a stable `code`, like the
// module's own refusals.

import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import express, { type ErrorRequestHandler, type Express, type RequestHandler, type Response } from "express";
import { Auth, expressAuth, type AccessClaims } from "./auth/index.js";
import { BookingStore, validateNewBooking } from "./bookings.js";

declare global {
  // Express's documented way to type what a middleware adds to the request.
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Request {
      /** The verified access-token claims, set by the module's expressAuth. */
      auth?: AccessClaims;
    }
  }
}

/** Settings of the app; every one has a default. */
export interface AppOptions {
  /** The auth server's JWKS URL. Default: the module's, `${ISSUER}/.well-known/jwks.json`. */
  readonly jwksUrl?: string;
  /** The verifier and limiter behind the guards. Default: `new Auth({ jwksUrl })`. */
  readonly auth?: Auth;
  /** Where bookings live. Default: a new, empty BookingStore. */
  readonly store?: BookingStore;
  /** Where unexpected errors are reported. Default: console.error. */
  readonly logError?: (error: unknown) => void;
}

const PROBLEM_JSON = "application/problem+json";
/** Largest accepted request body; a booking is a few dozen bytes. */
const BODY_LIMIT = "4kb";

/** Sends an RFC 9457 problem, shaped like the module's ProblemBody. */
function problem(res: Response, status: number, code: string, title: string, detail?: string): void {
  const body = detail === undefined
    ? { type: "about:blank", title, status, code }
    : { type: "about:blank", title, status, code, detail };
  res.status(status);
  res.setHeader("content-type", PROBLEM_JSON);
  res.end(JSON.stringify(body));
}

/** The tenant of a user token; null for a client-credentials token, which has no tenant. */
function tenantOf(claims: AccessClaims | undefined): string | null {
  return claims !== undefined && claims.sid !== undefined ? claims.tenant_id : null;
}

/** Runs `handler` with the caller's tenant, or answers 403 to a token without one. */
function forTenant(handler: (tenant: string, claims: AccessClaims, ...args: Parameters<RequestHandler>) => void): RequestHandler {
  return (req, res, next) => {
    const tenant = tenantOf(req.auth);
    if (tenant === null || req.auth === undefined) {
      problem(res, 403, "booking.tenant_required", "Bookings belong to a tenant", "use a user's token, which carries tenant_id");
      return;
    }
    handler(tenant, req.auth, req, res, next);
  };
}

/**
 * 415 for a body that is not JSON (express.json would silently skip it). An empty body passes,
 * whatever its type, and is then refused by validation.
 */
const requireJson: RequestHandler = (req, res, next) => {
  const empty = req.headers["content-length"] === "0";
  if (!empty && req.is("application/json") === false) {
    problem(res, 415, "request.unsupported_media_type", "Unsupported media type", "send Content-Type: application/json");
    return;
  }
  next();
};

function methodNotAllowed(allow: string): RequestHandler {
  return (_req, res) => {
    res.setHeader("allow", allow);
    problem(res, 405, "route.method_not_allowed", "Method not allowed");
  };
}

/** The booking API. Create the Auth (or let this do it) once per process: it holds the JWKS cache and the limits. */
export function createApp(options: AppOptions = {}): Express {
  const auth = options.auth ?? new Auth(options.jwksUrl === undefined ? {} : { jwksUrl: options.jwksUrl });
  const store = options.store ?? new BookingStore();
  const logError = options.logError ?? ((error: unknown) => console.error("booking-api: unexpected error:", error));
  const canRead = expressAuth(auth.requireScope("bookings:read"));
  const canWrite = expressAuth(auth.requireScope("bookings:write"));

  const app = express();
  app.disable("x-powered-by");

  app.get("/healthz", (_req, res) => {
    res.json({ status: "ok" });
  });

  app.get(
    "/bookings",
    canRead,
    forTenant((tenant, _claims, _req, res) => {
      res.json({ bookings: store.list(tenant) });
    }),
  );

  // The guard runs before the body is read: a refused request costs no parsing.
  app.post(
    "/bookings",
    canWrite,
    requireJson,
    express.json({ limit: BODY_LIMIT, strict: true }),
    forTenant((tenant, claims, req, res) => {
      const input = validateNewBooking(req.body);
      if (!input.ok) {
        problem(res, 400, "input.invalid", "Invalid booking", input.detail);
        return;
      }
      const { created, booking } = store.create(tenant, claims.sub, input.value);
      if (!created) {
        problem(res, 409, "booking.conflict", "Already booked", `${booking.room} is booked on ${booking.date} (booking ${booking.id})`);
        return;
      }
      res.status(201).location(`/bookings/${booking.id}`).json(booking);
    }),
  );
  app.all("/bookings", methodNotAllowed("GET, HEAD, POST"));

  app.get(
    "/bookings/:id",
    canRead,
    forTenant((tenant, _claims, req, res) => {
      const booking = store.get(tenant, String(req.params.id));
      if (booking === undefined) problem(res, 404, "booking.not_found", "No such booking");
      else res.json(booking);
    }),
  );

  // Another tenant's booking is answered exactly like one that does not exist.
  app.delete(
    "/bookings/:id",
    canWrite,
    forTenant((tenant, _claims, req, res) => {
      if (store.cancel(tenant, String(req.params.id))) res.status(204).end();
      else problem(res, 404, "booking.not_found", "No such booking");
    }),
  );
  app.all("/bookings/:id", methodNotAllowed("GET, HEAD, DELETE"));

  app.use((_req, res) => {
    problem(res, 404, "route.not_found", "Not found");
  });

  // express.json's errors carry `type` and `status`; anything else is a bug, logged and answered 500.
  const onError: ErrorRequestHandler = (error: unknown, _req, res, next) => {
    if (res.headersSent) {
      next(error);
      return;
    }
    const type = typeof error === "object" && error !== null ? (error as { type?: unknown }).type : undefined;
    switch (type) {
      case "entity.parse.failed":
        problem(res, 400, "request.malformed", "Malformed JSON body", "expected a JSON object");
        return;
      case "entity.too.large":
        problem(res, 413, "request.too_large", "Request body too large", `at most ${BODY_LIMIT}`);
        return;
      case "encoding.unsupported":
      case "charset.unsupported":
        problem(res, 415, "request.unsupported_media_type", "Unsupported media type", "send UTF-8 JSON");
        return;
      case "request.aborted":
      case "request.size.invalid":
        problem(res, 400, "request.malformed", "Incomplete request body");
        return;
      default:
        logError(error);
        problem(res, 500, "server_error", "Internal server error");
    }
  };
  app.use(onError);
  return app;
}

/** A listening server and the URL it answers on. */
export interface Listening {
  readonly server: Server;
  readonly url: string;
}

/** Serves `app` on `host:port` (port 0: any free port) once the port is bound. */
export function listen(app: Express, port: number, host: string): Promise<Listening> {
  const server = createServer(app);
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      const address = server.address() as AddressInfo;
      const shown = address.family === "IPv6" ? `[${address.address}]` : address.address;
      resolve({ server, url: `http://${shown}:${address.port}` });
    });
  });
}
