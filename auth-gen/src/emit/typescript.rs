//! The TypeScript target: `spec.ts` is written from the IR (values, the `Scope` union, claim
//! types); `codes.ts` from auth-core's code list (`auth_core::Code`, `TokenError`);
//! `gcra-script.ts` carries auth-core's Redis script (`gcra.lua`) as it is. The runtime (verifier,
//! limiter, guards, adapters, token client) is static text from `templates/typescript/` that reads
//! everything spec-specific from `./spec.js`.

use std::fmt::Write as _;

use auth_core::Code;
use auth_core::error::TokenError;
use auth_core::spec::ClaimType;

use super::{EmitError, Emitter, GeneratedFile, doc_text, finish, templates, ts_string};
use crate::ir::{GENERATOR_VERSION, Module};

/// Emits the TypeScript module.
#[derive(Debug, Clone, Copy)]
pub struct TypeScript;

impl Emitter for TypeScript {
    fn emit(&self, module: &Module) -> Result<Vec<GeneratedFile>, EmitError> {
        let mut files = vec![
            finish("spec.ts", &spec_ts(module)),
            finish("codes.ts", &codes_ts()),
            finish("gcra-script.ts", &gcra_script_ts()),
        ];
        files.extend(templates::TYPESCRIPT.iter().map(|(name, text)| finish(name, text)));
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(files)
    }
}

fn claim_type(kind: ClaimType) -> &'static str {
    match kind {
        ClaimType::String => "string",
        ClaimType::Integer => "number",
        ClaimType::Boolean => "boolean",
        ClaimType::StringArray => "readonly string[]",
    }
}

fn list(items: impl IntoIterator<Item = String>) -> String {
    items.into_iter().collect::<Vec<_>>().join(", ")
}

/// A retired key has left the JWKS a module fetches, so there its tokens are `token.unknown_key`.
const TOKEN_CODES_NOT_SEEN_BY_MODULES: &[TokenError] = &[TokenError::KeyRetired];

// `write!` into a `String` cannot fail; the results are ignored for that reason.
fn codes_ts() -> String {
    let token_errors: Vec<TokenError> =
        TokenError::ALL.iter().copied().filter(|e| !TOKEN_CODES_NOT_SEEN_BY_MODULES.contains(e)).collect();
    let mut s = String::new();
    s.push_str("// The stable codes, from auth-core's one list (`auth_core::Code`): the same for every spec.\n\n");
    s.push_str("/**\n * The codes of a rejected access token, as auth-core's `TokenError::code` reports them. All but\n");
    s.push_str(" * `token.key_retired`: a retired key has left the JWKS, so here its tokens are `token.unknown_key`.\n */\n");
    s.push_str("export const TOKEN_ERROR_CODES = [\n");
    for e in &token_errors {
        let _ = writeln!(s, "  {},", ts_string(e.code().as_str()));
    }
    s.push_str("] as const;\n\n");
    s.push_str("/** A code of a rejected access token. */\n");
    s.push_str("export type TokenErrorCode = (typeof TOKEN_ERROR_CODES)[number];\n\n");
    s.push_str("/** What each token code means (auth-core's messages). */\n");
    s.push_str("export const TOKEN_ERROR_MESSAGES: Readonly<Record<TokenErrorCode, string>> = {\n");
    for e in &token_errors {
        let _ = writeln!(s, "  {}: {},", ts_string(e.code().as_str()), ts_string(&e.to_string()));
    }
    s.push_str("};\n\n");
    s.push_str("/**\n * Every code the auth server answers with: the problem's `code`, or the start of OAuth's\n");
    s.push_str(" * `error_description` (before any `: detail`). See the server's docs/error-codes.md.\n */\n");
    s.push_str("export type ServerErrorCode =\n");
    for code in Code::ALL {
        let _ = writeln!(s, "  | {}", ts_string(code.as_str()));
    }
    s.push_str(";\n");
    s
}

fn gcra_script_ts() -> String {
    let mut s = String::new();
    s.push_str("// auth-core's Redis script for GCRA (auth-core/src/ratelimit/gcra.lua), as the auth server runs it: the\n");
    s.push_str("// server and the apps sharing a Redis update the same keys with the same script.\n\n");
    s.push_str("/**\n * KEYS: the keys; ARGV[1]: nowUs, then for key i ARGV[2i] = emissionUs and ARGV[2i+1] = capacityUs.\n");
    s.push_str(" * Stores the new TATs only if every key admits. Returns `[allAdmitted, found1, tat1, found2, tat2, ...]`\n");
    s.push_str(" * with the TATs as they were before.\n */\n");
    let _ = writeln!(s, "export const REDIS_GCRA_SCRIPT = {};", ts_string(auth_core::ratelimit::REDIS_GCRA_SCRIPT));
    s
}

fn spec_ts(m: &Module) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "// Source: {} (spec hash {})", m.source, m.spec_hash);
    s.push_str("//\n// The spec's values, scopes and claim types. Every other file of this module reads them from here.\n\n");
    let _ = writeln!(s, "/** SHA-256 of the canonical spec: equal to what `auth-gen check` and the server report. */");
    let _ = writeln!(s, "export const SPEC_HASH = {};", ts_string(&m.spec_hash));
    let _ = writeln!(s, "/** The generator version that wrote this module. */");
    let _ = writeln!(s, "export const GENERATOR_VERSION = {};\n", ts_string(GENERATOR_VERSION));
    let _ = writeln!(s, "/** The `iss` of every token; also the base URL of the auth server's endpoints by default. */");
    let _ = writeln!(s, "export const ISSUER = {};", ts_string(&m.issuer));
    let _ = writeln!(s, "/** A token is accepted when its `aud` names one of these. */");
    let _ = writeln!(s, "export const AUDIENCES: readonly string[] = [{}];", list(m.audiences.iter().map(|a| ts_string(a))));
    let _ = writeln!(s, "/** The one signing algorithm of the spec; keys of other algorithms are ignored. */");
    let _ = writeln!(s, "export const ALGORITHM = {} as const;", ts_string(m.algorithm.as_str()));
    let _ = writeln!(s, "/** Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds. */");
    let _ = writeln!(s, "export const LEEWAY_SECONDS = {};", m.leeway_secs);
    let _ = writeln!(s, "/** Lifetime of an access token, in seconds. */");
    let _ = writeln!(s, "export const ACCESS_TTL_SECONDS = {};", m.access_ttl_secs);
    let _ = writeln!(s, "/** A refresh token reused within this many seconds gets the same successor (a benign retry). */");
    let _ = writeln!(s, "export const REFRESH_REUSE_GRACE_SECONDS = {};", m.refresh_reuse_grace_secs);
    let _ = writeln!(s, "/** The JWKS `Cache-Control: max-age` of the server, in seconds. */");
    let _ = writeln!(s, "export const JWKS_MAX_AGE_SECONDS = {};\n", m.jwks_max_age_secs);

    let _ = writeln!(s, "/** Every scope the spec declares. */");
    let _ = writeln!(s, "export const SCOPES = [{}] as const;", list(m.scopes.iter().map(|x| ts_string(&x.name))));
    let _ = writeln!(s, "/** A scope the spec declares. */");
    let _ = writeln!(s, "export type Scope = (typeof SCOPES)[number];\n");
    s.push_str("/** A GCRA quota: `burst` requests, refilled evenly over `perSeconds`. */\n");
    s.push_str("export interface RateLimitQuota {\n  readonly burst: number;\n  readonly perSeconds: number;\n}\n\n");
    s.push_str("/** The rate limit tied to each scope (`null`: the scope has no limit). */\n");
    s.push_str("export const SCOPE_LIMITS: Readonly<Record<Scope, RateLimitQuota | null>> = {\n");
    for scope in &m.scopes {
        let limit = scope
            .limit
            .map_or_else(|| "null".to_owned(), |q| format!("{{ burst: {}, perSeconds: {} }}", q.burst, q.per_secs));
        let _ = writeln!(s, "  {}: {limit},", ts_string(&scope.name));
    }
    s.push_str("};\n\n");

    s.push_str("/** The JSON type of a custom claim. */\n");
    s.push_str("export type ClaimType = \"string\" | \"integer\" | \"boolean\" | \"string_array\";\n\n");
    s.push_str("/** The spec's custom claims and their types; `required` ones are in every user token. */\n");
    s.push_str("export const CUSTOM_CLAIMS: Readonly<Record<string, { readonly type: ClaimType; readonly required: boolean }>> = {\n");
    for claim in &m.claims {
        let _ = writeln!(
            s,
            "  {}: {{ type: {}, required: {} }},",
            ts_string(&claim.name),
            ts_string(claim.kind.as_str()),
            claim.required
        );
    }
    s.push_str("};\n\n");

    s.push_str("/** The OAuth clients of the spec. */\n");
    let _ = writeln!(s, "export const CLIENTS = [{}] as const;", list(m.clients.iter().map(|c| ts_string(&c.id))));
    s.push_str("/** A client id of the spec. */\nexport type ClientId = (typeof CLIENTS)[number];\n\n");

    s.push_str(
        "/** The registered claims of every access token (RFC 9068). */
export interface StandardClaims {
  readonly iss: string;
  readonly sub: string;
  readonly aud: string | readonly string[];
  readonly exp: number;
  readonly iat: number;
  readonly nbf?: number;
  readonly jti: string;
  readonly client_id: string;
  /** Granted scopes, space-separated. */
  readonly scope: string;
}

/** The claims of a token issued to a user session (password or refresh grant). */
export interface UserClaims extends StandardClaims {
  /** The session (refresh family). */
  readonly sid: string;
",
    );
    for claim in &m.claims {
        if !claim.description.is_empty() {
            let _ = writeln!(s, "  /** {} */", doc_text(&claim.description));
        }
        let optional = if claim.required { "" } else { "?" };
        let _ = writeln!(s, "  readonly {}{optional}: {};", claim.name, claim_type(claim.kind));
    }
    s.push_str(
        "}

/** The claims of a token a client obtained for itself (client credentials): no session, no user claims. */
export interface ClientClaims extends StandardClaims {
  readonly sid?: undefined;
}

/** The claims of a verified access token; `sid` tells a user token from a client token. */
export type AccessClaims = UserClaims | ClientClaims;
",
    );
    s
}
