//! JSON-ish values chosen by the fuzzer: real JSON (nested to a bounded depth, object members in
//! any order and repeated at will), values near the ones the verifier compares against (the
//! issuer, the audience, the key ids, times around `NOW`), and raw text that is only JSON by luck.

use arbitrary::{Arbitrary, Unstructured};

/// Deepest nesting of arrays and objects.
const MAX_DEPTH: u32 = 4;

/// Most elements or members of one array or object.
const MAX_ITEMS: usize = 6;

/// Member names the verifier and its neighbours read, for objects and headers.
pub const NAMES: &[&str] = &[
    "iss", "sub", "aud", "exp", "nbf", "iat", "jti", "client_id", "scope", "sid", "tenant_id", "alg", "kid", "typ",
    "crit", "jwk", "jku", "x5u", "x5c", "cty", "b64", "username", "password", "grant_type",
];

/// One JSON-ish value.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonIsh {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// Any `i64`.
    Int(i64),
    /// `NOW + offset`: times around the verification instant.
    Time(i32),
    /// A `u64`, most of them beyond `i64`.
    Big(u64),
    /// A float (written as Rust prints it: `NaN` and `inf` are not JSON).
    Float(f64),
    /// Any string, escaped as JSON.
    Str(String),
    /// One of the words of the context (issuer, audience, algorithms, key ids, ...), escaped.
    Word(u8),
    /// An array.
    Array(Vec<JsonIsh>),
    /// An object, members in this order, repeats kept.
    Object(Vec<(Name, JsonIsh)>),
    /// Text written as it is.
    Raw(String),
}

/// A member name: one the code reads, or any string.
#[derive(Debug, Clone, PartialEq, Arbitrary)]
pub enum Name {
    /// One of [`NAMES`].
    Known(u8),
    /// Any string.
    Text(String),
}

impl Name {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Known(i) => NAMES[usize::from(*i) % NAMES.len()],
            Self::Text(text) => text,
        }
    }
}

impl<'a> Arbitrary<'a> for JsonIsh {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Self::at_depth(u, 0)
    }
}

impl JsonIsh {
    fn at_depth(u: &mut Unstructured<'_>, depth: u32) -> arbitrary::Result<Self> {
        let kinds: u8 = if depth >= MAX_DEPTH { 9 } else { 11 };
        Ok(match u.int_in_range(0..=kinds - 1)? {
            0 => Self::Null,
            1 => Self::Bool(u.arbitrary()?),
            2 => Self::Int(u.arbitrary()?),
            3 => Self::Time(u.arbitrary()?),
            4 => Self::Big(u.arbitrary()?),
            5 => Self::Float(u.arbitrary()?),
            6 => Self::Str(u.arbitrary()?),
            7 => Self::Word(u.arbitrary()?),
            8 => Self::Raw(u.arbitrary()?),
            9 => {
                let len = u.int_in_range(0..=MAX_ITEMS)?;
                Self::Array((0..len).map(|_| Self::at_depth(u, depth + 1)).collect::<arbitrary::Result<_>>()?)
            }
            _ => {
                let len = u.int_in_range(0..=MAX_ITEMS)?;
                let members = (0..len)
                    .map(|_| Ok((u.arbitrary()?, Self::at_depth(u, depth + 1)?)))
                    .collect::<arbitrary::Result<_>>()?;
                Self::Object(members)
            }
        })
    }

    /// Writes the value as text; `now` is the instant `Time` values are relative to and `words`
    /// the table `Word` values index (wrapping).
    pub fn write(&self, now: i64, words: &[&str], out: &mut String) {
        match self {
            Self::Null => out.push_str("null"),
            Self::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Self::Int(i) => out.push_str(&i.to_string()),
            Self::Time(offset) => out.push_str(&now.saturating_add(i64::from(*offset)).to_string()),
            Self::Big(u) => out.push_str(&u.to_string()),
            Self::Float(f) => out.push_str(&format!("{f:?}")),
            Self::Str(s) => write_string(s, out),
            Self::Word(i) => match words.len() {
                0 => out.push_str("\"\""),
                len => write_string(words[usize::from(*i) % len], out),
            },
            Self::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(now, words, out);
                }
                out.push(']');
            }
            Self::Object(members) => {
                out.push('{');
                for (i, (name, value)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_string(name.as_str(), out);
                    out.push(':');
                    value.write(now, words, out);
                }
                out.push('}');
            }
            Self::Raw(text) => out.push_str(text),
        }
    }
}

/// Writes `s` as a JSON string.
pub fn write_string(s: &str, out: &mut String) {
    // Serializing a string cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}
