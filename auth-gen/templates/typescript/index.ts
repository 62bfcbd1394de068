// The module's public API: the spec's values and types, the verifier, the scope limits, guards,
// framework adapters and the token client. Everything runs on Node 20+ built-ins and the global
// fetch, with no dependency to install.
//
// ```ts
// import { Auth, expressAuth } from "./auth/index.js";
// const auth = new Auth();
// app.post("/bookings", expressAuth(auth.requireScope("bookings:write")), (req, res) => { ... });
// ```

export * from "./spec.js";
export { AuthError, TokenClientError, type ServerErrorCode, type TokenErrorCode, type VerifyErrorCode } from "./errors.js";
export { TOKEN_ERROR_CODES } from "./codes.js";
export {
  AccessTokenVerifier,
  MAX_TOKEN_BYTES,
  type FetchLike,
  type SigningAlgorithm,
  type VerifierOptions,
} from "./verifier.js";
export {
  Gcra,
  MemoryLimiterStore,
  REDIS_GCRA_SCRIPT,
  redisLimiterStore,
  ScopeLimiter,
  policyHeader,
  rateLimitHeader,
  rateLimitHeaders,
  resetSeconds,
  retryAfterSeconds,
  type GcraCheck,
  type GcraOutcome,
  type LimiterStore,
  type RateDecision,
  type RedisEval,
  type ScopeDecision,
  type ScopeLimiterOptions,
} from "./limiter.js";
export {
  Auth,
  bearerToken,
  insufficientScope,
  invalidToken,
  rateLimited,
  unavailable,
  type AuthOptions,
  type Guard,
  type GuardFailure,
  type GuardOutcome,
  type GuardSuccess,
  type ProblemBody,
} from "./guard.js";
export {
  expressAuth,
  fastifyAuth,
  problemResponse,
  requestAuth,
  withAuth,
  type FastifyStyleReply,
  type NodeStyleRequest,
  type NodeStyleResponse,
  type RequestAuth,
} from "./adapters.js";
export {
  Introspector,
  TokenClient,
  type ActiveAccessToken,
  type ActiveRefreshToken,
  type IntrospectionResult,
  type IntrospectorOptions,
  type TokenClientOptions,
  type TokenSet,
} from "./client.js";
