//! Password hashing and verification (AUTH.md §3).
//!
//! - New hashes are **Argon2id** (version 19) in PHC string form with the cost of
//!   [`HttpConfig::password_cost`](crate::HttpConfig::password_cost), a 16-byte
//!   random salt and a 32-byte output:
//!   `$argon2id$v=19$m=65536,t=3,p=4$<salt>$<hash>`.
//! - Stored hashes verify when they are Argon2 (`argon2id`, `argon2i`, `argon2d`,
//!   with the parameters written in the hash) or bcrypt (`$2a$`, `$2b$`, `$2x$`,
//!   `$2y$`, as passlib and the reference's admin tool write them). Anything else
//!   (an empty string, a marker, a corrupt hash) never verifies.
//! - [`needs_rehash`] says when a hash that just verified should be replaced (it is
//!   not Argon2id with the current cost); login and update-password do so.
//! - [`dummy_verify`] spends the time of one verification for an unknown user, so
//!   that the answer time does not tell whether a username exists.
//!
//! Hashing is deliberately slow (tens of milliseconds with the reference cost): the
//! `async` functions run it on tokio's blocking pool, never on the threads that
//! serve requests, and at most [`max_concurrent`] at a time (each Argon2 hash at the
//! reference cost holds 64 MiB: a burst of logins, which need no token, must not
//! take the server's memory; further requests wait their turn).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::config::PasswordCost;

/// Length of the Argon2 output in bytes (argon2-cffi's default).
pub const HASH_LEN: usize = 32;

/// Length of new salts in bytes (argon2-cffi's default).
pub const SALT_LEN: usize = 16;

/// Why a password could not be hashed (never a client's fault: the configured cost
/// is invalid, the system has no randomness, or the blocking pool is gone).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

fn argon2id(cost: PasswordCost) -> Result<Argon2<'static>, HashError> {
    let params = Params::new(
        cost.memory_kib,
        cost.iterations,
        cost.parallelism,
        Some(HASH_LEN),
    )
    .map_err(|e| HashError(format!("invalid Argon2 cost {cost:?}: {e}")))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes `password` with Argon2id at `cost` (blocking; see [`hash`]).
pub fn hash_blocking(password: &str, cost: PasswordCost) -> Result<String, HashError> {
    let mut salt = [0u8; SALT_LEN];
    getrandom::getrandom(&mut salt).map_err(|e| HashError(format!("no randomness: {e}")))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| HashError(e.to_string()))?;
    let hasher = argon2id(cost)?;
    hasher
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError(e.to_string()))
}

/// Whether `hash` is a bcrypt hash in modular crypt form (`$2a$`, `$2b$`, `$2x$`,
/// `$2y$`).
pub fn is_bcrypt(hash: &str) -> bool {
    ["$2a$", "$2b$", "$2x$", "$2y$"]
        .iter()
        .any(|p| hash.starts_with(p))
}

/// Whether `password` matches the stored `hash` (blocking; see [`verify`]).
/// Unknown or corrupt hashes do not match.
pub fn verify_blocking(password: &str, hash: &str) -> bool {
    if is_bcrypt(hash) {
        // bcrypt only reads the first 72 bytes of a password, as passlib does.
        return bcrypt::verify(password, hash).unwrap_or(false);
    }
    if hash.starts_with("$argon2") {
        let Ok(parsed) = PasswordHash::new(hash) else {
            return false;
        };
        if !matches!(
            parsed.algorithm.as_str(),
            "argon2id" | "argon2i" | "argon2d"
        ) {
            return false;
        }
        // The verifier reads the algorithm, version and cost from the hash itself.
        return Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
    }
    false
}

/// Whether a hash that verified should be replaced: it is not Argon2id (version 19)
/// with exactly the cost `cost` and a 32-byte output.
pub fn needs_rehash(hash: &str, cost: PasswordCost) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return true;
    };
    if parsed.algorithm.as_str() != "argon2id" || parsed.version != Some(0x13) {
        return true;
    }
    let Ok(params) = Params::try_from(&parsed) else {
        return true;
    };
    params.m_cost() != cost.memory_kib
        || params.t_cost() != cost.iterations
        || params.p_cost() != cost.parallelism
        || parsed.hash.map(|h| h.len()) != Some(HASH_LEN)
}

/// How many hashes or verifications the `async` functions run at once: twice the
/// number of CPUs, between 2 and 16.
pub fn max_concurrent() -> usize {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get() * 2)
        .clamp(2, 16)
}

fn permits() -> &'static tokio::sync::Semaphore {
    static PERMITS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    PERMITS.get_or_init(|| tokio::sync::Semaphore::new(max_concurrent()))
}

/// Runs `work` on the blocking pool once one of the [`max_concurrent`] permits is
/// free; `None` if the task failed.
async fn limited<T, F>(work: F) -> Option<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let _permit = permits().acquire().await.ok()?;
    tokio::task::spawn_blocking(move || {
        #[cfg(test)]
        let _running = tests::Running::enter();
        work()
    })
    .await
    .ok()
}

/// Hashes `password` with Argon2id at `cost`, off the async threads.
pub async fn hash(password: &str, cost: PasswordCost) -> Result<String, HashError> {
    let password = password.to_owned();
    limited(move || hash_blocking(&password, cost))
        .await
        .unwrap_or_else(|| Err(HashError("hashing task failed".into())))
}

/// Whether `password` matches `hash`, off the async threads. A failed task counts
/// as no match.
pub async fn verify(password: &str, hash: &str) -> bool {
    let (password, hash) = (password.to_owned(), hash.to_owned());
    limited(move || verify_blocking(&password, &hash))
        .await
        .unwrap_or(false)
}

/// The outcome of [`verify_and_update`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    /// The password does not match.
    Mismatch,
    /// It matches and the stored hash is current.
    Match,
    /// It matches and the stored hash should be replaced by this one (Argon2id with
    /// the current cost).
    MatchRehashed(String),
}

/// Verifies `password` against `hash` and, when it matches with an outdated hash
/// (bcrypt, another Argon2 variant or cost), computes the replacement. One trip to
/// the blocking pool. A replacement that cannot be computed is logged and skipped
/// (the password still matched).
pub async fn verify_and_update(password: &str, hash: &str, cost: PasswordCost) -> Checked {
    let (password, hash) = (password.to_owned(), hash.to_owned());
    let task = limited(move || {
        if !verify_blocking(&password, &hash) {
            return Checked::Mismatch;
        }
        if !needs_rehash(&hash, cost) {
            return Checked::Match;
        }
        match hash_blocking(&password, cost) {
            Ok(new) => Checked::MatchRehashed(new),
            Err(e) => {
                tracing::warn!(error = %e, "could not upgrade a password hash");
                Checked::Match
            }
        }
    });
    task.await.unwrap_or(Checked::Mismatch)
}

/// Spends about the time of one verification at `cost`, for a user that does not
/// exist (timing equalisation, as the reference hashes the given password).
pub async fn dummy_verify(password: &str, cost: PasswordCost) {
    let password = password.to_owned();
    let _ = limited(move || hash_blocking(&password, cost)).await;
}

/// A hash of a fresh random password nobody knows (invited users until they accept).
pub async fn unusable(cost: PasswordCost) -> Result<String, HashError> {
    let mut raw = [0u8; 32];
    getrandom::getrandom(&mut raw).map_err(|e| HashError(format!("no randomness: {e}")))?;
    let random: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    hash(&random, cost).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const COST: PasswordCost = PasswordCost::TESTING;

    #[test]
    fn argon2id_round_trip_and_format() {
        let h = hash_blocking("s3cret", COST).unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=256,t=1,p=1$"), "{h}");
        let parts: Vec<&str> = h.split('$').collect();
        assert_eq!(parts.len(), 6);
        // 16-byte salt and 32-byte hash in unpadded base64.
        assert_eq!(parts[4].len(), 22);
        assert_eq!(parts[5].len(), 43);
        assert!(verify_blocking("s3cret", &h));
        assert!(!verify_blocking("S3cret", &h));
        assert!(!verify_blocking("", &h));
        assert!(!needs_rehash(&h, COST));
        assert!(needs_rehash(&h, PasswordCost::REFERENCE));
        // Two hashes of one password differ (random salt).
        assert_ne!(h, hash_blocking("s3cret", COST).unwrap());
        // The empty password is a password like any other.
        let empty = hash_blocking("", COST).unwrap();
        assert!(verify_blocking("", &empty));
        assert!(!verify_blocking(" ", &empty));
    }

    #[test]
    fn bcrypt_hashes_verify_and_need_rehash() {
        let h = bcrypt::hash("hunter2", 4).unwrap();
        assert!(h.starts_with("$2b$04$"), "{h}");
        assert!(verify_blocking("hunter2", &h));
        assert!(!verify_blocking("hunter3", &h));
        assert!(needs_rehash(&h, COST));
        // The other bcrypt prefixes are the same algorithm.
        for prefix in ["$2a$", "$2y$", "$2x$"] {
            let other = format!("{prefix}{}", &h[4..]);
            assert!(verify_blocking("hunter2", &other), "{other}");
            assert!(!verify_blocking("wrong", &other), "{other}");
        }
    }

    #[test]
    fn other_argon2_variants_verify() {
        for alg in [Algorithm::Argon2i, Algorithm::Argon2d] {
            let params = Params::new(256, 1, 1, Some(32)).unwrap();
            let salt = SaltString::encode_b64(&[7u8; 16]).unwrap();
            let h = Argon2::new(alg, Version::V0x13, params)
                .hash_password(b"pw", &salt)
                .unwrap()
                .to_string();
            assert!(verify_blocking("pw", &h), "{h}");
            assert!(!verify_blocking("px", &h), "{h}");
            assert!(needs_rehash(&h, COST), "{h}");
        }
    }

    #[test]
    fn garbage_never_verifies() {
        for h in [
            "",
            "!",
            "plain",
            "$argon2id$",
            "$argon2id$v=19$m=256,t=1,p=1$bad",
            "$2b$04$short",
            "$scrypt$ln=4,r=8,p=1$c2FsdA$aGFzaA",
        ] {
            assert!(!verify_blocking("", h), "{h}");
            assert!(!verify_blocking("x", h), "{h}");
            assert!(needs_rehash(h, COST), "{h}");
        }
    }

    #[test]
    fn invalid_cost_is_an_error_not_a_panic() {
        let bad = PasswordCost {
            memory_kib: 1,
            iterations: 0,
            parallelism: 0,
        };
        assert!(hash_blocking("x", bad).is_err());
    }

    use std::sync::atomic::{AtomicUsize, Ordering};

    static RUNNING: AtomicUsize = AtomicUsize::new(0);
    static MOST: AtomicUsize = AtomicUsize::new(0);

    /// Counts the hashing work running on the blocking pool (test builds only).
    pub(super) struct Running;

    impl Running {
        pub(super) fn enter() -> Self {
            let now = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
            MOST.fetch_max(now, Ordering::SeqCst);
            Running
        }
    }

    impl Drop for Running {
        fn drop(&mut self) {
            RUNNING.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// A burst of logins does not run more hashes at once than the limit (each one
    /// holds the Argon2 memory cost).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_hashing_is_bounded() {
        let cost = PasswordCost {
            memory_kib: 2048,
            iterations: 2,
            parallelism: 1,
        };
        let tasks: Vec<_> = (0..(max_concurrent() * 4))
            .map(|i| tokio::spawn(async move { hash(&format!("pw{i}"), cost).await }))
            .collect();
        for t in tasks {
            assert!(t.await.unwrap().is_ok());
        }
        let most = MOST.load(Ordering::SeqCst);
        assert!(
            (1..=max_concurrent()).contains(&most),
            "{most} hashes ran at once, the limit is {}",
            max_concurrent()
        );
    }

    #[tokio::test]
    async fn async_helpers() {
        let bc = bcrypt::hash("old", 4).unwrap();
        assert_eq!(verify_and_update("new", &bc, COST).await, Checked::Mismatch);
        let Checked::MatchRehashed(new) = verify_and_update("old", &bc, COST).await else {
            panic!("bcrypt hash not upgraded");
        };
        assert!(new.starts_with("$argon2id$"));
        assert_eq!(verify_and_update("old", &new, COST).await, Checked::Match);
        assert!(verify("old", &new).await);
        let u = unusable(COST).await.unwrap();
        assert!(!verify("", &u).await);
        dummy_verify("x", COST).await;
        assert!(hash("x", COST).await.unwrap().starts_with("$argon2id$"));
    }
}
