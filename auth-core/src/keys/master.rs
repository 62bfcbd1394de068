//! The master key that seals private signing keys at rest (AES-256-GCM), and owner-only files.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use zeroize::Zeroizing;

use crate::random::Entropy;
use crate::{Error, Result};

/// The key that seals private signing keys at rest (AES-256-GCM).
pub struct MasterKey {
    key: LessSafeKey,
    /// A MAC key derived from the master key (never the AES key itself).
    mac: ring::hmac::Key,
    id: String,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKey").field("id", &self.id).finish_non_exhaustive()
    }
}

const SEALED_VERSION: u8 = 1;

impl MasterKey {
    /// A master key from 32 bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self> {
        let key = UnboundKey::new(&AES_256_GCM, bytes)
            .map_err(|_| Error::MasterKey("cannot use the master key for AES-256-GCM".into()))?;
        let mut id_input = b"auth master key id v1".to_vec();
        id_input.extend_from_slice(bytes);
        let digest = ring::digest::digest(&ring::digest::SHA256, &id_input);
        let derived = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, bytes), b"auth master key mac v1");
        let mac = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, derived.as_ref());
        Ok(Self { key: LessSafeKey::new(key), mac, id: hex::encode(&digest.as_ref()[..8]) })
    }

    /// Parses the text form: 32 bytes in base64 (standard or url-safe) or 64 hex digits.
    pub fn from_text(text: &str) -> Result<Self> {
        let text = text.trim();
        let bytes = Zeroizing::new(
            hex::decode(text)
                .ok()
                .filter(|b| b.len() == 32)
                .or_else(|| STANDARD.decode(text).ok())
                .or_else(|| URL_SAFE_NO_PAD.decode(text).ok())
                .unwrap_or_default(),
        );
        let array: &[u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            Error::MasterKey("the master key must be 32 bytes, written as base64 or 64 hex digits".into())
        })?;
        Self::from_bytes(array)
    }

    /// Parses a list of master keys in text form, separated by commas, spaces or line breaks (the
    /// previous master keys of a master-key rotation). Empty text is an empty list.
    pub fn parse_list(text: &str) -> Result<Vec<Self>> {
        text.split(|c: char| c == ',' || c.is_whitespace()).filter(|t| !t.is_empty()).map(Self::from_text).collect()
    }

    /// Generates a master key; returns it with its text form (base64) to store.
    pub fn generate(entropy: &dyn Entropy) -> Result<(Self, Zeroizing<String>)> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        entropy.fill(bytes.as_mut())?;
        Ok((Self::from_bytes(&bytes)?, Zeroizing::new(STANDARD.encode(bytes.as_ref()))))
    }

    /// Reads the master key file, or creates it (mode 0600) with a new key when it does not exist.
    pub fn load_or_create_file(path: &Path, entropy: &dyn Entropy) -> Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_text(&text)
                .map_err(|e| Error::MasterKey(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let (key, text) = Self::generate(entropy)?;
                write_secret_file(path, text.as_bytes())
                    .map_err(|e| Error::MasterKey(format!("cannot create {}: {e}", path.display())))?;
                Ok(key)
            }
            Err(e) => Err(Error::MasterKey(format!("cannot read {}: {e}", path.display()))),
        }
    }

    /// A short fingerprint of the key, stored beside what it sealed.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// An HMAC-SHA256 of `message` bound to `context`, under a key derived from the master key.
    pub fn mac(&self, context: &str, message: &[u8]) -> Vec<u8> {
        let mut input = Vec::with_capacity(context.len() + 1 + message.len());
        input.extend_from_slice(context.as_bytes());
        input.push(0);
        input.extend_from_slice(message);
        ring::hmac::sign(&self.mac, &input).as_ref().to_vec()
    }

    /// Whether `tag` is [`MasterKey::mac`] of `message` with `context` (compared in constant time).
    pub fn verify_mac(&self, context: &str, message: &[u8], tag: &[u8]) -> bool {
        let mut input = Vec::with_capacity(context.len() + 1 + message.len());
        input.extend_from_slice(context.as_bytes());
        input.push(0);
        input.extend_from_slice(message);
        ring::hmac::verify(&self.mac, &input, tag).is_ok()
    }

    /// Seals `plaintext`, binding it to `context` (the kid).
    pub fn seal(&self, context: &str, plaintext: &[u8], entropy: &dyn Entropy) -> Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        entropy.fill(&mut nonce)?;
        let mut buf = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(context.as_bytes()), &mut buf)
            .map_err(|_| Error::Crypto("sealing failed".into()))?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + buf.len());
        out.push(SEALED_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        Ok(out)
    }

    /// Opens what [`MasterKey::seal`] sealed with the same `context`.
    pub fn open(&self, context: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let (version, rest) = sealed.split_first().ok_or_else(|| Error::MasterKey("empty sealed value".into()))?;
        if *version != SEALED_VERSION || rest.len() < NONCE_LEN {
            return Err(Error::MasterKey("unknown sealed value format".into()));
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| Error::MasterKey("bad nonce".into()))?;
        let mut buf = Zeroizing::new(ciphertext.to_vec());
        let len = self
            .key
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut buf)
            .map_err(|_| {
                Error::MasterKey(format!(
                    "cannot open the sealed key {context}: wrong master key (this one is {}) or corrupted data",
                    self.id
                ))
            })?
            .len();
        buf.truncate(len);
        Ok(buf)
    }
}

/// Writes a file readable by its owner only.
pub fn write_secret_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}
