//! The shared test vectors in the repository's `vectors/` folder (the published RFC and
//! Wycheproof vectors are in `vectors.rs`): computed here by auth-core, committed, and replayed by
//! the generated TypeScript module's suite (`auth-gen/tests/typescript`), so both sides are held
//! to the same answers instead of to copies of them.
//!
//! Each test computes its file and compares it with the committed one; a difference fails with the
//! command that rewrites it (`AUTH_UPDATE_VECTORS=1`), to be reviewed like any other change of
//! behaviour.

use std::path::PathBuf;

use auth_core::ratelimit::{Gcra, RateDecision};
use auth_core::spec::{RateLimitSpec, Seconds};
use auth_core::tokens::bearer_token;
use serde_json::{Value, json};

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../vectors")
}

/// Compares `value` with `vectors/<name>`, or writes it there when `AUTH_UPDATE_VECTORS=1`.
fn check_or_write(name: &str, value: &Value) {
    let path = vectors_dir().join(name);
    let text = serde_json::to_string_pretty(value).expect("vectors serialize") + "\n";
    if std::env::var("AUTH_UPDATE_VECTORS").as_deref() == Ok("1") {
        std::fs::create_dir_all(vectors_dir()).expect("create vectors/");
        std::fs::write(&path, &text).expect("write the vectors");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == text,
        "vectors/{name} differs from what auth-core computes now; if the change is intended, run \
         `AUTH_UPDATE_VECTORS=1 cargo test --workspace --test core shared_vectors` and review the diff"
    );
}

fn decision(d: &RateDecision) -> Value {
    json!({
        "allowed": d.allowed,
        "limit": d.limit,
        "remaining": d.remaining,
        "reset_after_ms": d.reset_after_ms,
        "retry_after_ms": d.retry_after_ms,
        "window_secs": d.window_secs,
    })
}

/// One quota and a sequence of requests at the given instants (microseconds), each decided on the
/// TAT the previous ones left; every step records its input, the decision, the TAT to store and
/// what a peek before it would have said.
fn gcra_case(name: &str, burst: u32, per_secs: u64, start_tat_us: Option<i64>, nows_us: &[i64]) -> Value {
    let gcra = Gcra::new(RateLimitSpec { burst, per: Seconds(per_secs) });
    let mut tat = start_tat_us;
    let steps: Vec<Value> = nows_us
        .iter()
        .map(|&now_us| {
            let peek = gcra.peek(tat, now_us);
            let outcome = gcra.decide(tat, now_us);
            let step = json!({
                "stored_tat_us": tat,
                "now_us": now_us,
                "peek": decision(&peek),
                "decision": decision(&outcome.decision),
                "new_tat_us": outcome.new_tat_us,
            });
            if let Some(new_tat) = outcome.new_tat_us {
                tat = Some(new_tat);
            }
            step
        })
        .collect();
    json!({
        "name": name,
        "quota": { "burst": burst, "per_secs": per_secs },
        "emission_us": gcra.emission_interval_us(),
        "capacity_us": gcra.capacity_us(),
        "steps": steps,
    })
}

const T0: i64 = 1_700_000_000_000_000;

#[test]
fn gcra_vectors() {
    let ms = |n: i64| T0 + n * 1_000;
    let cases = vec![
        gcra_case("burst then refusal", 3, 60, None, &[ms(0), ms(0), ms(0), ms(1), ms(19_999), ms(20_000), ms(20_001)]),
        gcra_case("known sequence of 30 per minute", 30, 60, None, &[ms(0), ms(500), ms(4_000), ms(4_000), ms(60_000)]),
        gcra_case("T rounded down to a whole microsecond", 7, 60, None, &[ms(0), ms(1), ms(8_571), ms(8_572)]),
        gcra_case("zero quota treated as one per second", 0, 0, None, &[ms(0), ms(0), ms(999), ms(1_000)]),
        gcra_case("one per window", 1, 10, None, &[ms(0), ms(9_999), ms(10_000), ms(10_000)]),
        gcra_case("admitted exactly at the boundary", 2, 2, None, &[ms(0), ms(0), ms(0), ms(1_000), ms(1_000), ms(2_000)]),
        gcra_case("stored TAT far in the past is a full bucket", 5, 60, Some(ms(-3_600_000)), &[ms(0), ms(0)]),
        gcra_case("stored TAT at the capacity refuses", 4, 40, Some(ms(40_000)), &[ms(0), ms(9_999), ms(10_000)]),
        gcra_case("microsecond instants", 3, 1, None, &[T0, T0 + 1, T0 + 2, T0 + 333_333, T0 + 333_334]),
        gcra_case("large burst and window", 1_000_000, 86_400, None, &[ms(0), ms(0), ms(86)]),
    ];
    check_or_write("gcra.json", &json!({
        "description": "auth-core's Gcra::decide and Gcra::peek (auth-core/src/ratelimit/mod.rs): each step is decided on the TAT the previous admitted step stored",
        "cases": cases,
    }));
}

#[test]
fn bearer_vectors() {
    // Header values are written one character per byte (Latin-1), as Node hands them to JavaScript.
    let inputs: &[Option<&str>] = &[
        Some("Bearer abc.def.ghi"),
        Some("bearer abc"),
        Some("BEARER abc"),
        Some("bEaReR  abc "),
        Some("Bearer \tabc\t"),
        None,
        Some(""),
        Some("Basic abc"),
        Some("Bearer"),
        Some("Bearer "),
        Some("Bearer  "),
        Some("Bearerabc"),
        Some("Bearer ab\u{e9}"),
        Some("Bearer a\u{7f}b"),
        Some("Bearer a\u{0}b"),
        Some("Bearer a\nb"),
        Some("Bearer a b"),
        Some("DPoP abc"),
        Some(" Bearer abc"),
    ];
    let cases: Vec<Value> = inputs
        .iter()
        .map(|input| {
            let bytes: Option<Vec<u8>> =
                input.map(|s| s.chars().map(|c| u8::try_from(u32::from(c)).expect("one byte per character")).collect());
            match bearer_token(bytes.as_deref()) {
                Ok(token) => json!({ "authorization": input, "token": token }),
                Err(code) => json!({ "authorization": input, "code": code.as_str() }),
            }
        })
        .collect();
    check_or_write("bearer.json", &json!({
        "description": "auth-core's tokens::bearer_token: an Authorization header value (null: absent; one character per byte) and the token read from it or the code of the refusal",
        "cases": cases,
    }));
}
