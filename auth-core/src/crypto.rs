//! Cryptography: `ring` does the math, `jsonwebtoken` does the JWS format, joined by
//! [`RING_PROVIDER`], a [`jsonwebtoken::crypto::CryptoProvider`] backed by ring.
//!
//! Only the three signing algorithms of the spec are served (EdDSA, ES256, RS256); HMAC and every
//! other algorithm are refused by the provider itself, so no configuration can make a public key
//! act as an HMAC secret.
//!
//! jsonwebtoken hands the provider raw key bytes on every signature. Parsing a private key is as
//! expensive as a signature (ring recomputes and checks the public half), so parsed signing keys
//! are kept in a small cache keyed by their PKCS#8 bytes; [`forget_signing_key`] drops one when a
//! key is retired.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{Error as JwtError, ErrorKind as JwtErrorKind};
use jsonwebtoken::jwk::{EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::signature::{self, Signer, Verifier};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::rand::SystemRandom;
use ring::signature::{
    self as ring_sig, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair, UnparsedPublicKey,
};
use zeroize::Zeroizing;

use crate::random::Entropy;
use crate::spec::SigningAlgorithm;
use crate::{Error, Result};

/// The ring-backed crypto provider installed for jsonwebtoken by [`install_provider`].
pub static RING_PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: new_signer,
    verifier_factory: new_verifier,
    key_utils: KeyUtils {
        rsa_pub_components_from_private_key: rsa_components_from_private_key,
        rsa_pub_components_from_public_key: rsa_components_from_public_key,
        ec_pub_components_from_private_key: ec_components_from_private_key,
        ed_pub_components_from_private_key: ed_component_from_private_key,
        compute_digest,
    },
};

/// Installs [`RING_PROVIDER`] as jsonwebtoken's process-wide provider. Idempotent; every entry
/// point of this crate that signs or verifies calls it.
pub fn install_provider() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        // Err means a provider was installed first; jsonwebtoken allows one per process and the
        // embedding program then owns that choice.
        let _ = RING_PROVIDER.install_default();
    });
}

/// The jsonwebtoken algorithm for a spec algorithm.
pub fn jwt_algorithm(alg: SigningAlgorithm) -> Algorithm {
    match alg {
        SigningAlgorithm::EdDSA => Algorithm::EdDSA,
        SigningAlgorithm::ES256 => Algorithm::ES256,
        SigningAlgorithm::RS256 => Algorithm::RS256,
    }
}

// ---------------------------------------------------------------------------------------------
// Signing

/// A parsed private key, ready to sign.
enum ParsedSigner {
    Ed(Ed25519KeyPair),
    Ec(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

fn signer_cache() -> &'static Mutex<HashMap<Vec<u8>, Arc<ParsedSigner>>> {
    static CACHE: OnceLock<Mutex<HashMap<Vec<u8>, Arc<ParsedSigner>>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// A bound on cached parsed keys; a key ring holds at most a handful of signing keys.
const SIGNER_CACHE_LIMIT: usize = 32;

fn system_rng() -> &'static SystemRandom {
    static RNG: OnceLock<SystemRandom> = OnceLock::new();
    RNG.get_or_init(SystemRandom::new)
}

fn parse_signer(alg: Algorithm, der: &[u8]) -> Result<ParsedSigner, JwtError> {
    match alg {
        Algorithm::EdDSA => Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map(ParsedSigner::Ed)
            .map_err(|_| JwtErrorKind::InvalidEddsaKey.into()),
        Algorithm::ES256 => {
            EcdsaKeyPair::from_pkcs8(&ring_sig::ECDSA_P256_SHA256_FIXED_SIGNING, der, system_rng())
                .map(ParsedSigner::Ec)
                .map_err(|_| JwtErrorKind::InvalidEcdsaKey.into())
        }
        Algorithm::RS256 => RsaKeyPair::from_pkcs8(der)
            .or_else(|_| RsaKeyPair::from_der(der))
            .map(ParsedSigner::Rsa)
            .map_err(|e| JwtErrorKind::InvalidRsaKey(e.to_string()).into()),
        _ => Err(JwtErrorKind::InvalidAlgorithm.into()),
    }
}

fn cached_signer(alg: Algorithm, der: &[u8]) -> Result<Arc<ParsedSigner>, JwtError> {
    if let Ok(cache) = signer_cache().lock()
        && let Some(found) = cache.get(der)
    {
        return Ok(found.clone());
    }
    let parsed = Arc::new(parse_signer(alg, der)?);
    if let Ok(mut cache) = signer_cache().lock() {
        if cache.len() >= SIGNER_CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(der.to_vec(), parsed.clone());
    }
    Ok(parsed)
}

/// Drops a parsed private key from the provider's cache (called when a key is retired).
pub fn forget_signing_key(pkcs8: &[u8]) {
    if let Ok(mut cache) = signer_cache().lock() {
        cache.remove(pkcs8);
    }
}

struct RingSigner {
    alg: Algorithm,
    key: Arc<ParsedSigner>,
}

impl Signer<Vec<u8>> for RingSigner {
    fn try_sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, signature::Error> {
        match (&*self.key, self.alg) {
            (ParsedSigner::Ed(k), Algorithm::EdDSA) => Ok(k.sign(msg).as_ref().to_vec()),
            (ParsedSigner::Ec(k), Algorithm::ES256) => k
                .sign(system_rng(), msg)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| signature::Error::new()),
            (ParsedSigner::Rsa(k), Algorithm::RS256) => {
                let mut sig = vec![0u8; k.public().modulus_len()];
                k.sign(&ring_sig::RSA_PKCS1_SHA256, system_rng(), msg, &mut sig)
                    .map_err(|_| signature::Error::new())?;
                Ok(sig)
            }
            _ => Err(signature::Error::new()),
        }
    }
}

impl JwtSigner for RingSigner {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

fn new_signer(alg: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>, JwtError> {
    if key.family() != alg.family() {
        return Err(JwtErrorKind::InvalidKeyFormat.into());
    }
    Ok(Box::new(RingSigner { alg: *alg, key: cached_signer(*alg, key.as_bytes())? }))
}

// ---------------------------------------------------------------------------------------------
// Verification

struct RingVerifier {
    alg: Algorithm,
    key: DecodingKey,
}

impl Verifier<Vec<u8>> for RingVerifier {
    fn verify(&self, msg: &[u8], sig: &Vec<u8>) -> std::result::Result<(), signature::Error> {
        let outcome = match (self.alg, self.key.kind()) {
            (Algorithm::EdDSA, DecodingKeyKind::SecretOrDer(raw)) => {
                UnparsedPublicKey::new(&ring_sig::ED25519, raw).verify(msg, sig)
            }
            (Algorithm::ES256, DecodingKeyKind::SecretOrDer(point)) => {
                UnparsedPublicKey::new(&ring_sig::ECDSA_P256_SHA256_FIXED, point).verify(msg, sig)
            }
            (Algorithm::RS256, DecodingKeyKind::SecretOrDer(der)) => {
                UnparsedPublicKey::new(&ring_sig::RSA_PKCS1_2048_8192_SHA256, der).verify(msg, sig)
            }
            (Algorithm::RS256, DecodingKeyKind::RsaModulusExponent { n, e }) => {
                ring_sig::RsaPublicKeyComponents { n, e }.verify(
                    &ring_sig::RSA_PKCS1_2048_8192_SHA256,
                    msg,
                    sig,
                )
            }
            _ => return Err(signature::Error::new()),
        };
        outcome.map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

fn new_verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>, JwtError> {
    match alg {
        Algorithm::EdDSA | Algorithm::ES256 | Algorithm::RS256 if key.family() == alg.family() => {
            Ok(Box::new(RingVerifier { alg: *alg, key: key.clone() }))
        }
        Algorithm::EdDSA | Algorithm::ES256 | Algorithm::RS256 => {
            Err(JwtErrorKind::InvalidKeyFormat.into())
        }
        _ => Err(JwtErrorKind::InvalidAlgorithm.into()),
    }
}

// ---------------------------------------------------------------------------------------------
// Key utilities for JWK rendering

fn rsa_components_from_private_key(der: &[u8]) -> Result<(Vec<u8>, Vec<u8>), JwtError> {
    let pair = RsaKeyPair::from_pkcs8(der)
        .or_else(|_| RsaKeyPair::from_der(der))
        .map_err(|e| JwtErrorKind::InvalidRsaKey(e.to_string()))?;
    let c = ring_sig::RsaPublicKeyComponents::<Vec<u8>>::from(pair.public());
    Ok((c.n, c.e))
}

fn rsa_components_from_public_key(der: &[u8]) -> Result<(Vec<u8>, Vec<u8>), JwtError> {
    // RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }
    let parsed = parse_rsa_public_key(der).ok_or_else(|| JwtErrorKind::InvalidRsaKey("not an RSAPublicKey".into()))?;
    Ok(parsed)
}

/// Parses a DER RSAPublicKey into (n, e) without leading zeros.
fn parse_rsa_public_key(der: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    fn read_tlv(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
        let (&t, rest) = input.split_first()?;
        if t != tag {
            return None;
        }
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 || rest.len() < count {
                return None;
            }
            let len = rest[..count].iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            (len, &rest[count..])
        };
        if rest.len() < len {
            return None;
        }
        Some((&rest[..len], &rest[len..]))
    }
    let (seq, trailing) = read_tlv(der, 0x30)?;
    if !trailing.is_empty() {
        return None;
    }
    let (n, rest) = read_tlv(seq, 0x02)?;
    let (e, rest) = read_tlv(rest, 0x02)?;
    if !rest.is_empty() {
        return None;
    }
    let strip = |v: &[u8]| v.iter().skip_while(|b| **b == 0).copied().collect::<Vec<u8>>();
    Some((strip(n), strip(e)))
}

fn ec_components_from_private_key(
    der: &[u8],
    alg: Algorithm,
) -> Result<(EllipticCurve, Vec<u8>, Vec<u8>), JwtError> {
    if alg != Algorithm::ES256 {
        return Err(JwtErrorKind::InvalidAlgorithm.into());
    }
    let pair = EcdsaKeyPair::from_pkcs8(&ring_sig::ECDSA_P256_SHA256_FIXED_SIGNING, der, system_rng())
        .map_err(|_| JwtErrorKind::InvalidEcdsaKey)?;
    let point = pair.public_key().as_ref();
    match point.split_first() {
        Some((4, xy)) if xy.len() == 64 => Ok((EllipticCurve::P256, xy[..32].to_vec(), xy[32..].to_vec())),
        _ => Err(JwtErrorKind::InvalidEcdsaKey.into()),
    }
}

fn ed_component_from_private_key(der: &[u8], curve: &EllipticCurve) -> Result<Vec<u8>, JwtError> {
    if *curve != EllipticCurve::Ed25519 {
        return Err(JwtErrorKind::InvalidAlgorithm.into());
    }
    let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(|_| JwtErrorKind::InvalidEddsaKey)?;
    Ok(pair.public_key().as_ref().to_vec())
}

// The signature is jsonwebtoken's `KeyUtils::compute_digest`.
#[allow(clippy::needless_pass_by_value)]
fn compute_digest(data: &[u8], hash: ThumbprintHash) -> Result<Vec<u8>, JwtError> {
    let alg = match hash {
        ThumbprintHash::SHA256 => &ring::digest::SHA256,
        ThumbprintHash::SHA384 => &ring::digest::SHA384,
        ThumbprintHash::SHA512 => &ring::digest::SHA512,
        _ => return Err(JwtErrorKind::InvalidAlgorithm.into()),
    };
    Ok(ring::digest::digest(alg, data).as_ref().to_vec())
}

// ---------------------------------------------------------------------------------------------
// Key material

/// The PKCS#8 v1 prefix of an Ed25519 private key (RFC 8410 section 7), followed by the 32-byte seed.
const ED25519_PKCS8_V1_PREFIX: [u8; 16] =
    [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];

/// A private signing key: its algorithm and its PKCS#8 DER bytes (wiped from memory on drop).
#[derive(Clone)]
pub struct PrivateKey {
    alg: SigningAlgorithm,
    pkcs8: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateKey").field("alg", &self.alg).field("pkcs8", &"[redacted]").finish()
    }
}

impl PrivateKey {
    /// Generates a key. Ed25519 seeds come from `entropy` (so a seeded source gives a
    /// reproducible key); ES256 and RS256 keys always come from the OS CSPRNG.
    pub fn generate(alg: SigningAlgorithm, entropy: &dyn Entropy) -> Result<Self> {
        let pkcs8 = match alg {
            SigningAlgorithm::EdDSA => {
                let mut seed = Zeroizing::new([0u8; 32]);
                entropy.fill(seed.as_mut())?;
                Self::ed25519_pkcs8_from_seed(&seed)
            }
            SigningAlgorithm::ES256 => {
                EcdsaKeyPair::generate_pkcs8(&ring_sig::ECDSA_P256_SHA256_FIXED_SIGNING, system_rng())
                    .map_err(|_| Error::Crypto("P-256 key generation failed".into()))?
                    .as_ref()
                    .to_vec()
            }
            #[cfg(feature = "server")]
            SigningAlgorithm::RS256 => generate_rsa_pkcs8()?,
            #[cfg(not(feature = "server"))]
            SigningAlgorithm::RS256 => {
                return Err(Error::Crypto("RS256 key generation needs auth-core's `server` feature".into()));
            }
        };
        Self::from_pkcs8(alg, pkcs8)
    }

    /// An Ed25519 key from a 32-byte seed (RFC 8032 private key).
    pub fn ed25519_from_seed(seed: &[u8; 32]) -> Result<Self> {
        Self::from_pkcs8(SigningAlgorithm::EdDSA, Self::ed25519_pkcs8_from_seed(seed))
    }

    fn ed25519_pkcs8_from_seed(seed: &[u8; 32]) -> Vec<u8> {
        let mut der = Vec::with_capacity(48);
        der.extend_from_slice(&ED25519_PKCS8_V1_PREFIX);
        der.extend_from_slice(seed);
        der
    }

    /// A key from PKCS#8 DER, checked by parsing it.
    pub fn from_pkcs8(alg: SigningAlgorithm, pkcs8: Vec<u8>) -> Result<Self> {
        let pkcs8 = Zeroizing::new(pkcs8);
        parse_signer(jwt_algorithm(alg), &pkcs8)
            .map_err(|e| Error::Key(format!("not a valid {alg} private key: {e}")))?;
        Ok(Self { alg, pkcs8 })
    }

    /// The algorithm pinned to this key.
    pub fn algorithm(&self) -> SigningAlgorithm {
        self.alg
    }

    /// The PKCS#8 DER bytes (secret).
    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The jsonwebtoken encoding key.
    pub fn encoding_key(&self) -> EncodingKey {
        match self.alg {
            SigningAlgorithm::EdDSA => EncodingKey::from_ed_der(&self.pkcs8),
            SigningAlgorithm::ES256 => EncodingKey::from_ec_der(&self.pkcs8),
            SigningAlgorithm::RS256 => EncodingKey::from_rsa_der(&self.pkcs8),
        }
    }

    /// The public JWK with `kid` (RFC 7638 SHA-256 thumbprint), `alg` and `use: sig`.
    pub fn public_jwk(&self) -> Result<Jwk> {
        install_provider();
        let mut jwk = Jwk::from_encoding_key(&self.encoding_key(), jwt_algorithm(self.alg))
            .map_err(|e| Error::Key(format!("cannot derive the public key: {e}")))?;
        let kid = jwk
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(|e| Error::Key(format!("cannot compute the key thumbprint: {e}")))?;
        jwk.common.key_id = Some(kid);
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        jwk.common.key_algorithm = Some(match self.alg {
            SigningAlgorithm::EdDSA => KeyAlgorithm::EdDSA,
            SigningAlgorithm::ES256 => KeyAlgorithm::ES256,
            SigningAlgorithm::RS256 => KeyAlgorithm::RS256,
        });
        Ok(jwk)
    }
}

#[cfg(feature = "server")]
fn generate_rsa_pkcs8() -> Result<Vec<u8>> {
    use rsa::pkcs8::EncodePrivateKey;
    let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048)
        .map_err(|e| Error::Crypto(format!("RSA key generation failed: {e}")))?;
    let der = key.to_pkcs8_der().map_err(|e| Error::Crypto(format!("RSA key encoding failed: {e}")))?;
    Ok(der.as_bytes().to_vec())
}

/// The decoding key of a public JWK, checked against the algorithm pinned to it.
pub fn decoding_key(jwk: &Jwk, alg: SigningAlgorithm) -> Result<DecodingKey> {
    use jsonwebtoken::jwk::AlgorithmParameters as P;
    let shape_ok = matches!(
        (&jwk.algorithm, alg),
        (P::OctetKeyPair(p), SigningAlgorithm::EdDSA) if p.curve == EllipticCurve::Ed25519
    ) || matches!(
        (&jwk.algorithm, alg),
        (P::EllipticCurve(p), SigningAlgorithm::ES256) if p.curve == EllipticCurve::P256
    ) || matches!((&jwk.algorithm, alg), (P::RSA(_), SigningAlgorithm::RS256));
    if !shape_ok {
        return Err(Error::Key(format!("the JWK is not a {alg} public key")));
    }
    DecodingKey::from_jwk(jwk).map_err(|e| Error::Key(format!("invalid public JWK: {e}")))
}

#[cfg(test)]
mod tests;
