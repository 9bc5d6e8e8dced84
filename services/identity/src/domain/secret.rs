//! Opaque secrets (refresh tokens, one-time tokens, service-account secrets): 256 random bits, shown to
//! their holder once and stored only as a SHA-256 hash. They are high-entropy, so a fast hash suffices.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use assist_runtime::{Error, Result};

/// A new secret: 32 random bytes, base64url without padding (43 characters).
pub fn generate() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| Error::internal(anyhow::anyhow!("rng: {e}")))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// The stored form of a secret: hex SHA-256.
pub fn hash(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    let mut out = String::with_capacity(64);
    for byte in digest {
        use std::fmt::Write;
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// A secret presented by a caller is at most this long; longer input is refused unhashed.
pub const MAX_PRESENTED_LENGTH: usize = 256;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_and_hash_stably() {
        let a = generate().unwrap();
        assert_eq!(a.len(), 43);
        assert_ne!(a, generate().unwrap());
        assert_eq!(hash(&a), hash(&a));
        assert_eq!(hash(&a).len(), 64);
    }
}
