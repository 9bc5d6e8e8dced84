//! Passwords: length policy and argon2id hashing at OWASP's recommended parameters.

use argon2::password_hash::{Output, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use std::sync::OnceLock;

use assist_runtime::{Error, Result};

pub const MIN_LENGTH: usize = 8;
pub const MAX_LENGTH: usize = 128;

/// OWASP (2024) argon2id: 19 MiB, 2 iterations, 1 lane.
fn hasher() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Checks the length policy; `field` names the request field in the error.
pub fn check_policy(field: &'static str, password: &str) -> Result<()> {
    let length = password.chars().count();
    if length < MIN_LENGTH {
        return Err(Error::invalid(
            field,
            format!("must be at least {MIN_LENGTH} characters"),
        ));
    }
    if length > MAX_LENGTH {
        return Err(Error::invalid(
            field,
            format!("must be at most {MAX_LENGTH} characters"),
        ));
    }
    Ok(())
}

/// Hashes a password (CPU-heavy: call from a blocking thread).
pub fn hash(password: &str) -> Result<String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| Error::internal(anyhow::anyhow!("rng: {e}")))?;
    let salt =
        SaltString::encode_b64(&salt).map_err(|e| Error::internal(anyhow::anyhow!("{e}")))?;
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::internal(anyhow::anyhow!("argon2: {e}")))
}

/// Verifies a password against a stored hash; with no hash, spends the same time and fails, so that
/// unknown accounts cannot be told apart by timing.
pub fn verify(password: &str, stored: Option<&str>) -> bool {
    let (stored, real) = match stored {
        Some(stored) => (stored, true),
        None => (dummy_hash(), false),
    };
    let Ok(parsed) = PasswordHash::new(stored) else {
        return false;
    };
    let matches = match recompute(password, &parsed) {
        Some(matches) => matches,
        // Not a hash of ours (other parameters or algorithm): the library's own path.
        None => hasher()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
    };
    matches && real
}

/// One per core (the hashing threads), read once: the count is looked up in cgroup files.
fn kept_at_most() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
}

/// Working memory of argon2 kept between verifications, at most one per core: allocating and
/// zeroing 19 MiB for each one cost about a fifth of a sign-in's CPU in page faults.
static MEMORY: std::sync::Mutex<Vec<Vec<Block>>> = std::sync::Mutex::new(Vec::new());

/// `password` hashed as `parsed` says, in kept memory, compared in constant time with its hash;
/// `None` when `parsed` is not argon2id at this module's parameters.
fn recompute(password: &str, parsed: &PasswordHash<'_>) -> Option<bool> {
    let hasher = hasher();
    let params = Params::try_from(parsed).ok()?;
    let ours = hasher.params();
    if parsed.algorithm != Algorithm::Argon2id.ident()
        || parsed.version != Some(Version::V0x13.into())
        || (params.m_cost(), params.t_cost(), params.p_cost())
            != (ours.m_cost(), ours.t_cost(), ours.p_cost())
    {
        return None;
    }
    let expected = parsed.hash?;
    let mut salt = [0u8; 64];
    let salt = parsed.salt?.decode_b64(&mut salt).ok()?;
    let mut out = vec![0u8; expected.len()];
    let kept = MEMORY.lock().unwrap_or_else(|e| e.into_inner()).pop();
    let mut memory = kept.unwrap_or_else(|| vec![Block::default(); hasher.params().block_count()]);
    let hashed = hasher
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut memory)
        .is_ok();
    let mut pool = MEMORY.lock().unwrap_or_else(|e| e.into_inner());
    if pool.len() < kept_at_most() {
        pool.push(memory);
    }
    drop(pool);
    Some(hashed && Output::new(&out).ok()? == expected)
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash("no account has this password").expect("hashing works"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_differ() {
        let a = hash("correct horse").unwrap();
        let b = hash("correct horse").unwrap();
        assert_ne!(a, b, "salted");
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify("correct horse", Some(&a)));
        assert!(!verify("wrong horse", Some(&a)));
        assert!(!verify("no account has this password", None));
        // Again, now in kept memory, and a hash made with other parameters takes the library's path.
        assert!(verify("correct horse", Some(&a)));
        assert!(!verify("wrong horse", Some(&b)));
        let parsed = PasswordHash::new(&a).unwrap();
        assert_eq!(
            recompute("correct horse", &parsed),
            Some(true),
            "kept memory used"
        );
        assert_eq!(recompute("wrong horse", &parsed), Some(false));
        let other = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8 * 1024, 1, 1, None).unwrap(),
        )
        .hash_password(b"correct horse", &SaltString::encode_b64(&[7; 16]).unwrap())
        .unwrap()
        .to_string();
        assert!(verify("correct horse", Some(&other)));
        assert!(!verify("wrong horse", Some(&other)));
    }

    #[test]
    fn policy_limits_length() {
        assert!(check_policy("password", "short").is_err());
        assert!(check_policy("password", &"x".repeat(129)).is_err());
        assert!(check_policy("password", "long enough").is_ok());
    }
}
