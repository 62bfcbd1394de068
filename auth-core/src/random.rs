//! Randomness as a parameter: the OS CSPRNG in production, a seeded ChaCha20 stream when a golden
//! fixture must come out byte-identical on every run.

use std::fmt::Debug;
use std::sync::Mutex;

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use ring::rand::{SecureRandom, SystemRandom};

use crate::{Error, Result};

/// A source of random bytes for tokens, identifiers and keys.
pub trait Entropy: Send + Sync + Debug {
    /// Fills `buf` with random bytes.
    fn fill(&self, buf: &mut [u8]) -> Result<()>;

    /// `N` random bytes.
    fn bytes<const N: usize>(&self) -> Result<[u8; N]>
    where
        Self: Sized,
    {
        let mut buf = [0u8; N];
        self.fill(&mut buf)?;
        Ok(buf)
    }
}

/// 32 random bytes from any entropy source (usable through `dyn Entropy`).
pub fn random_32(entropy: &dyn Entropy) -> Result<[u8; 32]> {
    let mut buf = [0u8; 32];
    entropy.fill(&mut buf)?;
    Ok(buf)
}

/// A random identifier: 16 random bytes in base64url (128 bits).
pub fn random_id(entropy: &dyn Entropy) -> Result<String> {
    use base64::Engine as _;
    let mut buf = [0u8; 16];
    entropy.fill(&mut buf)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf))
}

/// The operating system's CSPRNG (through `ring`).
#[derive(Debug)]
pub struct OsEntropy {
    rng: SystemRandom,
}

impl OsEntropy {
    /// A handle on the OS CSPRNG.
    pub fn new() -> Self {
        Self { rng: SystemRandom::new() }
    }
}

impl Default for OsEntropy {
    fn default() -> Self {
        Self::new()
    }
}

impl Entropy for OsEntropy {
    fn fill(&self, buf: &mut [u8]) -> Result<()> {
        self.rng.fill(buf).map_err(|_| Error::Crypto("the OS random number generator failed".into()))
    }
}

/// A deterministic ChaCha20 stream from a 32-byte seed. Never for production secrets.
#[derive(Debug)]
pub struct SeededEntropy {
    rng: Mutex<ChaCha20Rng>,
}

impl SeededEntropy {
    /// A stream from `seed`.
    pub fn new(seed: [u8; 32]) -> Self {
        Self { rng: Mutex::new(ChaCha20Rng::from_seed(seed)) }
    }
}

impl Entropy for SeededEntropy {
    fn fill(&self, buf: &mut [u8]) -> Result<()> {
        let mut rng = self.rng.lock().map_err(|_| Error::Crypto("seeded random stream poisoned".into()))?;
        rng.fill_bytes(buf);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_streams_repeat_and_os_streams_differ() {
        let a = SeededEntropy::new([7; 32]);
        let b = SeededEntropy::new([7; 32]);
        assert_eq!(random_32(&a).unwrap(), random_32(&b).unwrap());
        let os = OsEntropy::new();
        assert_ne!(random_32(&os).unwrap(), random_32(&os).unwrap());
        assert_eq!(random_id(&os).unwrap().len(), 22);
    }
}
