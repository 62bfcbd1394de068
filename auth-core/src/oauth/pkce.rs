//! Proof Key for Code Exchange (RFC 7636), `S256` only: OAuth 2.1 requires PKCE of every client,
//! and `plain` would hand the verifier to whoever sees the authorization request.

/// The only `code_challenge_method` accepted.
pub const S256: &str = "S256";

/// Whether `challenge` has the form of an S256 challenge: 43 base64url characters (a SHA-256).
pub fn is_s256_challenge(challenge: &str) -> bool {
    challenge.len() == 43 && challenge.bytes().all(is_base64url)
}

/// Whether `verifier` has the form RFC 7636 4.1 gives: 43 to 128 unreserved characters.
pub fn is_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// The S256 challenge of `verifier`: BASE64URL(SHA256(verifier)).
pub fn s256_challenge(verifier: &str) -> String {
    use base64::Engine as _;
    let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
}

/// Whether `verifier` is well-formed and hashes to `challenge`, compared in constant time.
pub fn verify_s256(verifier: &str, challenge: &str) -> bool {
    is_verifier(verifier) && constant_time_eq(s256_challenge(verifier).as_bytes(), challenge.as_bytes())
}

fn is_base64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// Compares without an early exit (this module builds on the verification side, without `subtle`).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7636 Appendix B.
    #[test]
    fn rfc7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert_eq!(s256_challenge(verifier), challenge);
        assert!(verify_s256(verifier, challenge));
        assert!(is_s256_challenge(challenge));
    }

    #[test]
    fn refuses_wrong_and_malformed_verifiers() {
        let challenge = s256_challenge(&"a".repeat(43));
        assert!(verify_s256(&"a".repeat(43), &challenge));
        assert!(!verify_s256(&"b".repeat(43), &challenge));
        assert!(!is_verifier(&"a".repeat(42)), "too short");
        assert!(!is_verifier(&"a".repeat(129)), "too long");
        assert!(!is_verifier(&format!("{}+", "a".repeat(42))), "outside the unreserved set");
        // A plain challenge (the verifier itself) never verifies.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert!(!verify_s256(verifier, verifier));
        assert!(!is_s256_challenge("short"));
        assert!(!is_s256_challenge(&format!("{}=", "a".repeat(42))));
    }
}
