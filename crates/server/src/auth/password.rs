//! Password hashing with Argon2id, run on the blocking pool (never on the async workers) and
//! bounded so a burst of logins cannot take all memory (each hash uses ~19 MiB).
//! Unknown emails are verified against a dummy hash so they cost the same as wrong passwords.

use std::sync::Arc;

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use tokio::sync::Semaphore;

#[derive(Clone)]
pub struct Passwords {
    /// The hashes in flight: a request beyond `max_parallel` waits its turn (a queue, not an
    /// error), so memory is bounded by `max_parallel` × ~19 MiB.
    permits: Arc<Semaphore>,
    max_parallel: usize,
    dummy_hash: Arc<str>,
}

#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

fn hash_now(password: &str) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError(e.to_string()))
}

fn verify_now(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
        .unwrap_or(false)
}

impl Passwords {
    pub async fn new(max_parallel: usize) -> Result<Self, HashError> {
        let dummy = tokio::task::spawn_blocking(|| hash_now("reconbanker-dummy-password"))
            .await
            .map_err(|e| HashError(e.to_string()))??;
        Ok(Self {
            permits: Arc::new(Semaphore::new(max_parallel.max(1))),
            max_parallel: max_parallel.max(1),
            dummy_hash: dummy.into(),
        })
    }

    pub async fn hash(&self, password: String) -> Result<String, HashError> {
        let permit = self.permits.acquire().await.map_err(|e| HashError(e.to_string()))?;
        let hashed = tokio::task::spawn_blocking(move || hash_now(&password))
            .await
            .map_err(|e| HashError(e.to_string()))?;
        self.done(permit);
        hashed
    }

    /// Releases a hash's place in the queue; the last one out gives freed memory back.
    fn done(&self, permit: tokio::sync::SemaphorePermit<'_>) {
        drop(permit);
        if self.permits.available_permits() == self.max_parallel {
            // Off the async workers (it walks every arena under its lock), at most every 10 s.
            static LAST_TRIM_SECS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let now_secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let last = LAST_TRIM_SECS.load(std::sync::atomic::Ordering::Relaxed);
            if now_secs >= last + 10
                && LAST_TRIM_SECS
                    .compare_exchange(
                        last,
                        now_secs,
                        std::sync::atomic::Ordering::Relaxed,
                        std::sync::atomic::Ordering::Relaxed,
                    )
                    .is_ok()
            {
                tokio::task::spawn_blocking(crate::support::memory::trim);
            }
        }
    }

    /// Verifies against `hash`, or against the dummy hash when there is no user (same cost).
    pub async fn verify(&self, password: String, hash: Option<String>) -> Result<bool, HashError> {
        let permit = self.permits.acquire().await.map_err(|e| HashError(e.to_string()))?;
        let real = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy_hash.to_string());
        let ok = tokio::task::spawn_blocking(move || verify_now(&password, &hash))
            .await
            .map_err(|e| HashError(e.to_string()))?;
        self.done(permit);
        Ok(ok && real)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_verify_and_dummy() {
        let p = Passwords::new(2).await.expect("init");
        let h = p.hash("correct horse battery".into()).await.expect("hash");
        assert!(h.starts_with("$argon2id$"));
        assert!(p
            .verify("correct horse battery".into(), Some(h.clone()))
            .await
            .expect("v"));
        assert!(!p.verify("wrong".into(), Some(h)).await.expect("v"));
        assert!(
            !p.verify("reconbanker-dummy-password".into(), None).await.expect("v"),
            "no user never verifies"
        );
    }
}
