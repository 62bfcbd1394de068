//! Generated malformed access tokens and specs (proptest), in the normal suite: the cargo-fuzz
//! targets in `fuzz/` explore the same inputs for minutes, these keep them covered in seconds.
//!
//! - Tokens: every header member, claim, the signature and the encoding is chosen honest or
//!   broken in a known way, each broken choice naming the codes it may cause. The verifier must
//!   accept exactly the tokens with no broken choice, and refuse the others with one of the codes
//!   their broken choices name (which one depends on the documented order of the checks).
//!   `hostile.rs` mutates a real token at random; this builds the broken ones on purpose.
//! - Garbage: three base64url segments of random bytes, and random text, are refused.
//! - Specs: the fixture specs with lines deleted, repeated, swapped, cut short or given odd
//!   values never panic the parser; a parse error points inside the text (and at the very line of
//!   an unknown field), a validation error names a field of a known section.

use std::sync::LazyLock;

use auth_core::error::TokenError;
use auth_core::spec::{SigningAlgorithm, Spec, SpecError};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

use crate::hostile::{Forge, NOW, eddsa, encode, es256, verifier};

/// The verification instant; the spec's leeway is 30 s.
const AT: i64 = NOW + 10;
const LEEWAY: i64 = 30;

/// Weight of the honest choice of each member against each kind of broken one: most cases break
/// one or two things (so the code is pinned down), a few break nothing (so acceptance is tested).
const HONEST: u32 = 24;

/// A member or claim to write (`None`: left out) and the codes it may cause (none: harmless).
type Choice = (Option<Value>, Vec<TokenError>);

fn ok(value: Value) -> Choice {
    (Some(value), vec![])
}

fn bad(value: Option<Value>, codes: &[TokenError]) -> Choice {
    (value, codes.to_vec())
}

/// One of `values`, each with the same codes.
fn one_of(values: Vec<Option<Value>>, codes: &'static [TokenError]) -> impl Strategy<Value = Choice> {
    prop::sample::select(values).prop_map(move |value| bad(value, codes))
}

/// Another key of the same algorithm, published nowhere.
fn stranger(alg: SigningAlgorithm) -> &'static Forge {
    static EDDSA: LazyLock<Forge> = LazyLock::new(|| Forge::new(SigningAlgorithm::EdDSA));
    static ES256: LazyLock<Forge> = LazyLock::new(|| Forge::new(SigningAlgorithm::ES256));
    if alg == SigningAlgorithm::ES256 { &ES256 } else { &EDDSA }
}

fn alg(forge: &'static Forge) -> impl Strategy<Value = Choice> {
    use TokenError::{AlgorithmMismatch, Malformed, UnsupportedAlgorithm};
    let other = if forge.alg() == "EdDSA" { "ES256" } else { "EdDSA" };
    prop_oneof![
        HONEST => Just(ok(json!(forge.alg()))),
        1 => one_of(["none", "HS256", "eddsa", "", "PS256", "EdDSA "].map(|a| Some(json!(a))).to_vec(), &[UnsupportedAlgorithm]),
        1 => one_of(vec![Some(json!(other)), Some(json!("RS256"))], &[AlgorithmMismatch]),
        1 => one_of(vec![None, Some(json!(null)), Some(json!(7)), Some(json!([forge.alg()]))], &[Malformed]),
    ]
}

fn kid(forge: &'static Forge) -> impl Strategy<Value = Choice> {
    use TokenError::{Malformed, UnknownKey};
    let other = if forge.alg() == "EdDSA" { es256() } else { eddsa() };
    prop_oneof![
        HONEST => Just(ok(json!(forge.kid))),
        1 => one_of(vec![None, Some(json!(null)), Some(json!("")), Some(json!(other.kid)), Some(json!(format!("{} ", forge.kid)))], &[UnknownKey]),
        1 => one_of(vec![Some(json!(42)), Some(json!({ "kid": forge.kid }))], &[Malformed]),
    ]
}

fn typ() -> impl Strategy<Value = Choice> {
    use TokenError::{Malformed, WrongType};
    prop_oneof![
        HONEST => prop::sample::select(vec!["at+jwt", "AT+JWT", "application/at+jwt", "Application/At+Jwt"]).prop_map(|t| ok(json!(t))),
        1 => one_of(vec![None, Some(json!(null)), Some(json!("JWT")), Some(json!("at+jwt ")), Some(json!("application/jwt"))], &[WrongType]),
        1 => one_of(vec![Some(json!(1)), Some(json!(["at+jwt"]))], &[Malformed]),
    ]
}

fn crit() -> impl Strategy<Value = Choice> {
    prop_oneof![
        HONEST => Just((None, vec![])),
        1 => Just(ok(json!(null))),
        1 => one_of(vec![Some(json!(["exp"])), Some(json!([])), Some(json!("b64"))], &[TokenError::Malformed]),
    ]
}

/// A header member nobody reads (and that never repeats one that is read).
fn ignored_member() -> impl Strategy<Value = (String, Value)> {
    let names = vec!["jwk", "jku", "x5u", "x5c", "cty", "zip", "b64", "x"];
    let values = vec![json!(null), json!("https://attacker.example/jwks.json"), json!({ "kty": "OKP" }), json!([1, 2]), json!(false)];
    (prop::sample::select(names), prop::sample::select(values)).prop_map(|(n, v)| (n.to_owned(), v))
}

/// A string claim: the honest value, another type, or missing.
fn string_claim(honest: &'static str) -> impl Strategy<Value = Choice> {
    use TokenError::{InvalidClaim, MissingClaim};
    prop_oneof![
        HONEST => Just(ok(json!(honest))),
        1 => one_of(vec![Some(json!(7)), Some(json!(false)), Some(json!(null)), Some(json!({})), Some(json!([honest]))], &[InvalidClaim]),
        1 => Just(bad(None, &[MissingClaim])),
    ]
}

fn iss() -> impl Strategy<Value = Choice> {
    prop_oneof![
        HONEST => string_claim(crate::hostile::ISSUER),
        1 => one_of(vec![Some(json!("https://attacker.example")), Some(json!("http://127.0.0.1:8080/"))], &[TokenError::WrongIssuer]),
    ]
}

fn aud() -> impl Strategy<Value = Choice> {
    use TokenError::{InvalidClaim, MissingClaim, WrongAudience};
    prop_oneof![
        HONEST => prop::sample::select(vec![json!("booking-api"), json!(["other", "booking-api"])]).prop_map(ok),
        1 => one_of(vec![Some(json!("other")), Some(json!([])), Some(json!(["other"])), Some(json!("Booking-Api"))], &[WrongAudience]),
        1 => one_of(vec![Some(json!(7)), Some(json!(null)), Some(json!(["booking-api", 7]))], &[InvalidClaim]),
        1 => Just(bad(None, &[MissingClaim])),
    ]
}

/// A time claim `AT + offset` (the offset range straddles the leeway), or not an i64, or missing.
fn time_claim(offsets: std::ops::Range<i64>, late: fn(i64) -> bool, late_code: TokenError, missing: &'static [TokenError]) -> impl Strategy<Value = Choice> {
    use TokenError::InvalidClaim;
    prop_oneof![
        HONEST => offsets.prop_map(move |t| if late(t) { bad(Some(json!(AT + t)), &[late_code]) } else { ok(json!(AT + t)) }),
        1 => one_of(vec![Some(json!("soon")), Some(json!(1.75e9)), Some(json!(null)), Some(json!(u64::MAX))], &[InvalidClaim]),
        1 => Just(bad(None, missing)),
    ]
}

fn exp() -> impl Strategy<Value = Choice> {
    time_claim(-300..3_000, |t| AT > AT + t + LEEWAY, TokenError::Expired, &[TokenError::MissingClaim])
}

fn iat() -> impl Strategy<Value = Choice> {
    time_claim(-3_000..300, |t| t > LEEWAY, TokenError::NotYetValid, &[TokenError::MissingClaim])
}

fn nbf() -> impl Strategy<Value = Choice> {
    time_claim(-3_000..300, |t| t > LEEWAY, TokenError::NotYetValid, &[])
}

/// `sid` (absent: a client token, which needs no `tenant_id`) and the required `tenant_id`.
fn session_and_tenant() -> impl Strategy<Value = (Choice, Choice)> {
    use TokenError::{InvalidClaim, MissingClaim};
    let sid = prop_oneof![
        HONEST => Just(ok(json!("session-1"))),
        1 => Just(ok(json!(null))),
        2 => Just((None, vec![])),
        1 => Just(bad(Some(json!(7)), &[InvalidClaim])),
    ];
    let tenant = prop_oneof![
        HONEST => Just(ok(json!("hotel-7"))),
        1 => Just(bad(Some(json!(7)), &[InvalidClaim])),
        1 => Just((None, vec![])),
    ];
    (sid, tenant).prop_map(|(sid, mut tenant)| {
        // Only user tokens (those with a `sid` member, even null) must carry it.
        if tenant.0.is_none() && sid.0.is_some() {
            tenant.1.push(MissingClaim);
        }
        (sid, tenant)
    })
}

#[derive(Debug, Clone)]
enum Signature {
    Honest,
    /// By a key of the same algorithm that the key set does not hold.
    Stranger,
    /// One byte of the honest signature changed.
    Flipped(usize),
    /// Nothing after the last dot.
    Empty,
    /// Characters outside base64url, or padding.
    NotBase64(&'static str),
}

#[derive(Debug, Clone)]
enum Encoding {
    Compact,
    /// `=` after the header segment (and signed so).
    PaddedHeader,
    /// A fourth segment.
    FourSegments,
    /// The header's member values as a JSON array, in the order alg, kid, typ, crit.
    HeaderAsArray,
}

#[derive(Debug, Clone)]
struct TokenCase {
    forge_alg: &'static str,
    header: Vec<(&'static str, Choice)>,
    ignored: Vec<(String, Value)>,
    claims: Vec<(&'static str, Choice)>,
    signature: Signature,
    encoding: Encoding,
}

impl TokenCase {
    fn forge(&self) -> &'static Forge {
        if self.forge_alg == "EdDSA" { eddsa() } else { es256() }
    }

    /// The codes the broken choices may cause; empty when every choice is honest.
    fn defects(&self) -> Vec<TokenError> {
        use TokenError::{BadSignature, Malformed};
        let mut codes: Vec<TokenError> =
            self.header.iter().chain(&self.claims).flat_map(|(_, (_, codes))| codes.iter().copied()).collect();
        codes.extend(match self.signature {
            Signature::Honest => vec![],
            Signature::Stranger | Signature::Flipped(_) => vec![BadSignature],
            Signature::Empty => vec![BadSignature, Malformed],
            Signature::NotBase64(_) => vec![Malformed],
        });
        if !matches!(self.encoding, Encoding::Compact) {
            codes.push(Malformed);
        }
        codes
    }

    fn token(&self) -> String {
        let object = |members: &[(&'static str, Choice)], extra: &[(String, Value)]| {
            let mut map = Map::new();
            for (name, (value, _)) in members {
                if let Some(value) = value {
                    map.insert((*name).to_owned(), value.clone());
                }
            }
            map.extend(extra.iter().cloned());
            encode(&Value::Object(map))
        };
        let mut header = match self.encoding {
            Encoding::HeaderAsArray => {
                encode(&Value::Array(self.header.iter().map(|(_, (value, _))| value.clone().unwrap_or(Value::Null)).collect()))
            }
            _ => object(&self.header, &self.ignored),
        };
        if matches!(self.encoding, Encoding::PaddedHeader) {
            header.push_str("==");
        }
        let payload = object(&self.claims, &[]);
        let forge = self.forge();
        let honest = forge.sign_segments(&header, &payload);
        let (input, signature) = honest.rsplit_once('.').expect("three segments");
        let signature = match &self.signature {
            Signature::Honest => signature.to_owned(),
            Signature::Stranger => {
                let forged = stranger(forge.key.algorithm()).sign_segments(&header, &payload);
                forged.rsplit_once('.').expect("three segments").1.to_owned()
            }
            Signature::Flipped(at) => {
                let mut bytes = B64.decode(signature).expect("base64url");
                let at = at % bytes.len();
                bytes[at] ^= 0x5a;
                B64.encode(bytes)
            }
            Signature::Empty => String::new(),
            Signature::NotBase64(text) => format!("{signature}{text}"),
        };
        let token = format!("{input}.{signature}");
        match self.encoding {
            Encoding::FourSegments => format!("{token}.{signature}"),
            _ => token,
        }
    }
}

fn token_case(forge: &'static Forge) -> impl Strategy<Value = TokenCase> {
    let header = (alg(forge), kid(forge), typ(), crit())
        .prop_map(|(alg, kid, typ, crit)| vec![("alg", alg), ("kid", kid), ("typ", typ), ("crit", crit)]);
    let ignored = prop::collection::vec(ignored_member(), 0..3);
    let claims = (
        (iss(), string_claim("user-1"), aud(), exp(), nbf(), iat()),
        (string_claim("jti-1"), string_claim("booking-web"), string_claim("bookings:read"), session_and_tenant()),
    )
        .prop_map(|((iss, sub, aud, exp, nbf, iat), (jti, client_id, scope, (sid, tenant)))| {
            vec![
                ("iss", iss),
                ("sub", sub),
                ("aud", aud),
                ("exp", exp),
                ("nbf", nbf),
                ("iat", iat),
                ("jti", jti),
                ("client_id", client_id),
                ("scope", scope),
                ("sid", sid),
                ("tenant_id", tenant),
            ]
        });
    let signature = prop_oneof![
        HONEST => Just(Signature::Honest),
        1 => Just(Signature::Stranger),
        1 => any::<usize>().prop_map(Signature::Flipped),
        1 => Just(Signature::Empty),
        1 => prop::sample::select(vec!["=", "*", "+/", "\u{e9}"]).prop_map(Signature::NotBase64),
    ];
    let encoding = prop_oneof![
        HONEST => Just(Encoding::Compact),
        1 => Just(Encoding::PaddedHeader),
        1 => Just(Encoding::FourSegments),
        1 => Just(Encoding::HeaderAsArray),
    ];
    (header, ignored, claims, signature, encoding).prop_map(move |(header, ignored, claims, signature, encoding)| TokenCase {
        forge_alg: forge.alg(),
        header,
        ignored,
        claims,
        signature,
        encoding,
    })
}

fn any_token_case() -> impl Strategy<Value = TokenCase> {
    prop_oneof![token_case(eddsa()), token_case(es256())]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(384))]

    /// Accepted exactly when nothing is broken; refused with a code one of the broken choices
    /// names.
    #[test]
    fn broken_tokens_are_refused_with_a_code_of_what_is_broken(case in any_token_case()) {
        let token = case.token();
        let defects = case.defects();
        let outcome = verifier().verify(&token, &case.forge().keys, AT).map(|claims| claims.jti);
        if defects.is_empty() {
            prop_assert!(outcome.is_ok(), "an honest token was refused with {:?}: {}", outcome, token);
        } else {
            let code = outcome.err();
            prop_assert!(code.is_some_and(|c| defects.contains(&c)), "{:?} for a token broken as {:?}: {}", code, defects, token);
        }
    }

    /// Three base64url segments of random bytes, or random text with dots: refused, never a
    /// panic.
    #[test]
    fn random_segments_are_refused(
        segments in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..96), 0..5),
        text in "[A-Za-z0-9_=+/.\\-\u{0}-\u{1f}\u{e9}]{0,200}",
    ) {
        let joined = segments.iter().map(|s| B64.encode(s)).collect::<Vec<_>>().join(".");
        for token in [joined.as_str(), text.as_str()] {
            let code = verifier().verify(token, &eddsa().keys, AT).err();
            prop_assert!(code.is_some_and(|c| c.code().as_str().starts_with("token.")), "{:?} for {:?}", code, token);
        }
    }
}

#[test]
fn the_honest_case_verifies() {
    // The generator's own baseline: with every choice honest, both keys' tokens verify.
    for forge in [eddsa(), es256()] {
        let case = TokenCase {
            forge_alg: forge.alg(),
            header: vec![("alg", ok(json!(forge.alg()))), ("kid", ok(json!(forge.kid))), ("typ", ok(json!("at+jwt")))],
            ignored: vec![],
            claims: [
                ("iss", json!(crate::hostile::ISSUER)),
                ("sub", json!("user-1")),
                ("aud", json!("booking-api")),
                ("exp", json!(AT + 900)),
                ("iat", json!(AT)),
                ("jti", json!("jti-1")),
                ("client_id", json!("booking-web")),
                ("scope", json!("bookings:read")),
                ("sid", json!("session-1")),
                ("tenant_id", json!("hotel-7")),
            ]
            .into_iter()
            .map(|(name, value)| (name, ok(value)))
            .collect(),
            signature: Signature::Honest,
            encoding: Encoding::Compact,
        };
        assert!(case.defects().is_empty());
        assert!(verifier().verify(&case.token(), &forge.keys, AT).is_ok(), "{}", case.token());
    }
}

/// Found by the `token_structured` fuzz target, whose oracle read the header as a `Value` and so
/// refused what the verifier had accepted: a header member nobody reads is skipped unparsed, so a
/// number beyond `f64` there (valid JSON: RFC 8259 sets no limit) does not refuse the token. In
/// the payload, where every member is kept, it cannot be represented: `token.malformed`.
#[test]
fn numbers_beyond_f64_are_skipped_in_headers_and_malformed_in_payloads() {
    let forge = eddsa();
    let header = format!(r#"{{"alg":"EdDSA","kid":"{}","typ":"at+jwt","x":[1E999999,-1e400]}}"#, forge.kid);
    let claims = json!({
        "iss": crate::hostile::ISSUER, "sub": "user-1", "aud": "booking-api", "exp": AT + 900, "iat": AT,
        "jti": "jti-1", "client_id": "booking-web", "scope": "bookings:read"
    });
    let token = forge.sign_segments(&B64.encode(&header), &encode(&claims));
    assert!(verifier().verify(&token, &forge.keys, AT).is_ok(), "{token}");
    let huge = claims.to_string().replacen('{', r#"{"x":1E999999,"#, 1);
    let token = forge.sign_segments(&B64.encode(&header), &B64.encode(huge));
    assert_eq!(verifier().verify(&token, &forge.keys, AT).map(|c| c.jti), Err(TokenError::Malformed));
}

// ---------------------------------------------------------------------------------------------
// Specs

const SPECS: [&str; 2] = [include_str!("../../../fixtures/specs/booking.toml"), include_str!("../../../fixtures/specs/clinic.toml")];

/// The top-level names a validation error's field may start with.
const SECTIONS: &[&str] = &["spec_version", "issuer", "audiences", "tokens", "keys", "passwords", "scopes", "claims", "clients"];

/// Values put in place of a line's value: wrong types, out of range, near misses.
const ODD_VALUES: &[&str] = &[
    "\"0s\"", "\"-1s\"", "\"1.5m\"", "\"15 m\"", "\"99999999999999999d\"", "0", "-1", "4294967296", "18446744073709551616",
    "1.5", "nan", "inf", "\"\"", "[]", "{}", "true", "\"HS256\"", "\"none\"", "[\"a\", \"a\"]", "[\"password\"]",
    "{ burst = 0, per = \"0s\" }", "\"https://x/\"", "\"ftp://x\"", "\"string_array\"", "1979-05-27T07:32:00Z", "\"\\ud800\"",
];

#[derive(Debug, Clone)]
enum SpecEdit {
    DeleteLine(usize),
    RepeatLine(usize),
    SwapLines(usize, usize),
    OddValue(usize, &'static str),
    Insert(usize, char),
    CutAt(usize),
}

fn spec_edit() -> impl Strategy<Value = SpecEdit> {
    prop_oneof![
        1 => any::<usize>().prop_map(SpecEdit::DeleteLine),
        1 => any::<usize>().prop_map(SpecEdit::RepeatLine),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| SpecEdit::SwapLines(a, b)),
        3 => (any::<usize>(), prop::sample::select(ODD_VALUES)).prop_map(|(l, v)| SpecEdit::OddValue(l, v)),
        1 => (any::<usize>(), prop::sample::select(vec!['"', '[', ']', '=', '\n', '\0', '#', '.', '\u{e9}', '\u{feff}']))
            .prop_map(|(at, c)| SpecEdit::Insert(at, c)),
        1 => any::<usize>().prop_map(SpecEdit::CutAt),
    ]
}

fn apply(text: &str, edit: &SpecEdit) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let n = lines.len();
    if n == 0 {
        return text.to_owned();
    }
    match edit {
        SpecEdit::DeleteLine(i) => {
            lines.remove(i % n);
        }
        SpecEdit::RepeatLine(i) => {
            let line = lines[i % n].clone();
            lines.insert(i % n, line);
        }
        SpecEdit::SwapLines(a, b) => lines.swap(a % n, b % n),
        SpecEdit::OddValue(i, value) => {
            let line = &mut lines[i % n];
            if let Some((key, _)) = line.split_once(" = ") {
                *line = format!("{key} = {value}");
            }
        }
        SpecEdit::Insert(at, c) => {
            let mut joined = lines.join("\n");
            let mut at = at % (joined.len() + 1);
            while !joined.is_char_boundary(at) {
                at -= 1;
            }
            joined.insert(at, *c);
            return joined;
        }
        SpecEdit::CutAt(at) => {
            let joined = lines.join("\n");
            let mut at = at % (joined.len() + 1);
            while !joined.is_char_boundary(at) {
                at -= 1;
            }
            return joined[..at].to_owned();
        }
    }
    lines.join("\n")
}

/// Parses `text` and checks what comes back: a spec that validates again, a parse error inside
/// the text, or a validation error naming a field of a known section.
fn parse_and_check(text: &str) -> Result<Option<(usize, usize)>, TestCaseError> {
    match Spec::parse(text) {
        Ok(spec) => {
            prop_assert!(spec.validate().is_ok());
            Ok(None)
        }
        Err(SpecError::Parse { line, column, message }) => {
            let lines: Vec<&str> = text.split('\n').collect();
            prop_assert!((1..=lines.len()).contains(&line), "line {} of {}: {}", line, lines.len(), message);
            let width = lines[line - 1].chars().count();
            prop_assert!((1..=width + 1).contains(&column), "column {} of a {}-character line: {}", column, width, message);
            prop_assert!(!message.is_empty());
            Ok(Some((line, column)))
        }
        Err(SpecError::Invalid { field, message }) => {
            let section = field.split('.').next().unwrap_or_default();
            prop_assert!(SECTIONS.contains(&section), "field {:?}: {}", field, message);
            prop_assert!(!message.is_empty());
            Ok(None)
        }
        Err(other) => Err(TestCaseError::fail(format!("unexpected error {other:?}"))),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(384))]

    /// Edited fixture specs: never a panic, every error located or named.
    #[test]
    fn edited_specs_are_parsed_or_located(which in 0..SPECS.len(), edits in prop::collection::vec(spec_edit(), 1..4)) {
        let text = edits.iter().fold(SPECS[which].to_owned(), |text, edit| apply(&text, edit));
        parse_and_check(&text)?;
    }

    /// A misspelt field is reported at its own line.
    #[test]
    fn an_unknown_field_is_reported_at_its_line(which in 0..SPECS.len(), pick in any::<prop::sample::Index>()) {
        let text = SPECS[which];
        let fields: Vec<usize> = text.lines().enumerate().filter(|(_, l)| l.contains(" = ") && !l.starts_with('#')).map(|(i, _)| i).collect();
        let target = fields[pick.index(fields.len())];
        let edited: Vec<String> = text
            .lines()
            .enumerate()
            .map(|(i, line)| if i == target { format!("x_{line}") } else { line.to_owned() })
            .collect();
        let located = parse_and_check(&edited.join("\n"))?;
        prop_assert_eq!(located.map(|(line, _)| line), Some(target + 1), "{}", edited[target]);
    }
}
