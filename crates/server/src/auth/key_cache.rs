//! API-key authentication and its cache. After a key has been seen once, authenticating it
//! costs a hash map lookup, a SHA-256 and a constant-time compare — no database round trip.
//! Revocation removes the cached entry at once; expiry is checked on every request.
//! `last_used_at` is kept in memory and written back in batches about once a minute.
//!
//! Scale-out note: revocation invalidates this instance's cache; a multi-instance deployment
//! must broadcast the invalidation (see docs/architecture.md).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use reconbanker_store::{now, AccountId, ApiKeyId, ApiKeyRow, Store, StoreError, StoreResult, Timestamp, UserId};

use crate::auth::api_key;
use crate::auth::revocations::Revocations;

/// The scopes a key can carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    OtpWrite,
    StatusRead,
}

pub const ALL_SCOPES: [&str; 2] = ["otp:write", "status:read"];

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::OtpWrite => "otp:write",
            Scope::StatusRead => "status:read",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "otp:write" => Some(Scope::OtpWrite),
            "status:read" => Some(Scope::StatusRead),
            _ => None,
        }
    }
    fn bit(self) -> u8 {
        match self {
            Scope::OtpWrite => 1,
            Scope::StatusRead => 2,
        }
    }
}

/// What authentication needs to know about a key, cached by prefix.
#[derive(Debug)]
pub struct CachedKey {
    pub id: ApiKeyId,
    prefix: String,
    pub user_id: UserId,
    secret_hash: Vec<u8>,
    scopes: u8,
    /// `None` = every account of the user.
    pub account_ids: Option<Vec<AccountId>>,
    expires_at_ms: Option<i64>,
    revoked: bool,
    /// Last successful authentication (ms), and what was last written to the database.
    last_used_ms: AtomicI64,
    flushed_ms: AtomicI64,
}

impl CachedKey {
    fn from_row(row: &ApiKeyRow) -> Self {
        let scopes = row
            .scopes
            .iter()
            .filter_map(|s| Scope::parse(s))
            .fold(0, |acc, s| acc | s.bit());
        let last = row.last_used_at.map(|t| t.timestamp_millis()).unwrap_or(0);
        Self {
            id: row.id,
            prefix: row.prefix.clone(),
            user_id: row.user_id,
            secret_hash: row.secret_hash.clone(),
            scopes,
            account_ids: row.account_ids.clone(),
            expires_at_ms: row.expires_at.map(|t| t.timestamp_millis()),
            revoked: row.revoked_at.is_some(),
            last_used_ms: AtomicI64::new(last),
            flushed_ms: AtomicI64::new(last),
        }
    }

    /// When the key stops working (milliseconds since the epoch), if it expires.
    pub fn expires_at_ms(&self) -> Option<i64> {
        self.expires_at_ms
    }

    pub fn has_scope(&self, scope: Scope) -> bool {
        self.scopes & scope.bit() != 0
    }

    /// Whether the key may act on this account (before ownership is checked).
    pub fn allows_account(&self, account: Option<AccountId>) -> bool {
        match (&self.account_ids, account) {
            (None, _) => true,
            (Some(ids), Some(a)) => ids.contains(&a),
            (Some(_), None) => false,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum AuthError {
    /// Malformed, unknown, revoked or expired.
    Invalid,
}

pub struct KeyDirectory {
    store: Arc<dyn Store>,
    checksum: api_key::Checksum,
    /// Told of every invalidation, so the streams a key opened re-check it at once.
    revocations: Arc<Revocations>,
    by_prefix: RwLock<HashMap<String, Arc<CachedKey>>>,
    /// Prefixes of well-formed keys (right checksum) that named no key, with when they were
    /// seen: refused again without a database read for [`UNKNOWN_TTL_MS`]. Bounded: cleared
    /// when full. Only keys this server signed get here (a deleted user's key, a key from a
    /// database restored from backup), so the set stays small.
    unknown: std::sync::Mutex<HashMap<String, i64>>,
    /// Bumped by every invalidation: a row read before one is used but not cached, so a
    /// revocation racing with a cache fill can never be undone by it.
    generation: AtomicU64,
    /// The prefixes of the keys that existed when the first key with the old (CRC) checksum
    /// was presented: only those are looked up for such a key, so forging one (anyone can
    /// compute a CRC) still costs no database read. Every key issued since carries the keyed
    /// checksum, so the set never needs to grow.
    legacy: tokio::sync::OnceCell<HashSet<String>>,
}

/// How long an unknown prefix is remembered, and how many are.
const UNKNOWN_TTL_MS: i64 = 10 * 60 * 1000;
const UNKNOWN_MAX: usize = 10_000;

impl KeyDirectory {
    pub fn new(store: Arc<dyn Store>, checksum: api_key::Checksum, revocations: Arc<Revocations>) -> Self {
        Self {
            store,
            checksum,
            revocations,
            by_prefix: RwLock::new(HashMap::new()),
            unknown: std::sync::Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            legacy: tokio::sync::OnceCell::new(),
        }
    }

    /// Reads the prefixes a key of the old checksum may have (at boot; otherwise on the first
    /// such key presented).
    pub async fn load_legacy(&self) -> StoreResult<()> {
        self.legacy_prefixes().await.map(|_| ())
    }

    async fn legacy_prefixes(&self) -> StoreResult<&HashSet<String>> {
        self.legacy
            .get_or_try_init(|| async {
                Ok::<_, StoreError>(self.store.api_key_prefixes().await?.into_iter().collect())
            })
            .await
    }

    /// A new key carrying this server's checksum. Its prefix is taken out of the negative
    /// cache, so a prefix refused earlier cannot shadow the new key.
    pub fn generate(&self) -> api_key::NewKey {
        let key = api_key::generate(&self.checksum);
        self.unknown
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key.prefix);
        key
    }

    fn known_unknown(&self, prefix: &str, now_ms: i64) -> bool {
        self.unknown
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(prefix)
            .is_some_and(|seen| now_ms.saturating_sub(*seen) < UNKNOWN_TTL_MS)
    }

    fn remember_unknown(&self, prefix: &str, now_ms: i64) {
        let mut unknown = self.unknown.lock().unwrap_or_else(|p| p.into_inner());
        if unknown.len() >= UNKNOWN_MAX {
            unknown.retain(|_, seen| now_ms.saturating_sub(*seen) < UNKNOWN_TTL_MS);
            if unknown.len() >= UNKNOWN_MAX {
                unknown.clear();
            }
        }
        unknown.insert(prefix.to_owned(), now_ms);
    }

    fn cached(&self, prefix: &str) -> Option<Arc<CachedKey>> {
        self.by_prefix
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(prefix)
            .cloned()
    }

    /// Authenticates a presented key (already trimmed).
    pub async fn authenticate(&self, text: &str) -> StoreResult<Result<Arc<CachedKey>, AuthError>> {
        self.authenticate_at(text, now().timestamp_millis()).await
    }

    /// [`Self::authenticate`] at a given time (milliseconds since the epoch).
    pub async fn authenticate_at(&self, text: &str, now_ms: i64) -> StoreResult<Result<Arc<CachedKey>, AuthError>> {
        // Issue 13: a cached prefix is judged by the secret's SHA-256 alone. The secret holds
        // the checksum and the prefix is the cache's key, so a match means the exact key that
        // was issued; the keyed checksum (an HMAC) only spares the database forged keys, and a
        // cached prefix costs no database read.
        if let Some((prefix, secret)) = api_key::split(text) {
            if let Some(key) = self.cached(prefix) {
                return Ok(Self::judge(key, secret, now_ms));
            }
        }
        let Some(parsed) = api_key::parse(text, &self.checksum) else {
            return Ok(Err(AuthError::Invalid));
        };
        if parsed.legacy {
            let known = self
                .legacy
                .get_or_try_init(|| async {
                    Ok::<_, StoreError>(self.store.api_key_prefixes().await?.into_iter().collect())
                })
                .await?;
            if !known.contains(parsed.prefix) {
                return Ok(Err(AuthError::Invalid));
            }
        }
        let key = match self.cached(parsed.prefix) {
            Some(k) => k,
            None => {
                if self.known_unknown(parsed.prefix, now_ms) {
                    return Ok(Err(AuthError::Invalid));
                }
                let seen = self.generation.load(Ordering::Acquire);
                let Some(row) = self.store.api_key_by_prefix(parsed.prefix).await? else {
                    self.remember_unknown(parsed.prefix, now_ms);
                    return Ok(Err(AuthError::Invalid));
                };
                let key = Arc::new(CachedKey::from_row(&row));
                // Keys only enter the cache once they exist, so its size is bounded by the table.
                let mut cache = self.by_prefix.write().unwrap_or_else(|p| p.into_inner());
                if self.generation.load(Ordering::Acquire) == seen {
                    cache.entry(row.prefix).or_insert(key).clone()
                } else {
                    key
                }
            }
        };
        Ok(Self::judge(key, parsed.secret, now_ms))
    }

    /// The presented secret against a known key: hash, revocation, expiry.
    fn judge(key: Arc<CachedKey>, secret: &str, now_ms: i64) -> Result<Arc<CachedKey>, AuthError> {
        if !api_key::verify(secret, &key.secret_hash) || key.revoked {
            return Err(AuthError::Invalid);
        }
        if key.expires_at_ms.is_some_and(|exp| exp <= now_ms) {
            return Err(AuthError::Invalid);
        }
        key.last_used_ms.fetch_max(now_ms, Ordering::Relaxed);
        Ok(key)
    }

    /// Forgets a key (after revocation) so the next request re-reads it.
    pub fn forget(&self, prefix: &str) {
        let mut cache = self.by_prefix.write().unwrap_or_else(|p| p.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        cache.remove(prefix);
        drop(cache);
        self.revocations.announce();
    }

    /// Drops every cached key (signals from other instances may have been missed).
    pub fn forget_all(&self) {
        let mut cache = self.by_prefix.write().unwrap_or_else(|p| p.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        cache.clear();
        drop(cache);
        self.revocations.announce();
    }

    /// Drops keys restricted to an account that no longer exists from the cache (their rows
    /// are re-read on next use, which keeps the restriction list current).
    pub fn forget_account(&self, account: AccountId) {
        let mut cache = self.by_prefix.write().unwrap_or_else(|p| p.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        cache.retain(|_, k| !k.account_ids.as_ref().is_some_and(|ids| ids.contains(&account)));
        drop(cache);
        self.revocations.announce();
    }

    /// A key authenticated earlier, as it stands now: `None` once it is revoked, expired or
    /// gone (read again when it has left the cache). What a stream or a held request re-checks
    /// without keeping the secret it was opened with.
    pub async fn current(&self, key: &CachedKey) -> StoreResult<Option<Arc<CachedKey>>> {
        let now_ms = now().timestamp_millis();
        let now_good = |k: Arc<CachedKey>| {
            (k.id == key.id && !k.revoked && k.expires_at_ms.is_none_or(|exp| exp > now_ms)).then_some(k)
        };
        if let Some(k) = self.cached(&key.prefix) {
            return Ok(now_good(k));
        }
        let row = self.store.api_key_by_prefix(&key.prefix).await?;
        Ok(row.and_then(|r| now_good(Arc::new(CachedKey::from_row(&r)))))
    }

    /// The freshest `last_used_at` known for a key (memory may be ahead of the database).
    pub fn last_used(&self, row: &ApiKeyRow) -> Option<Timestamp> {
        let mem = self
            .cached(&row.prefix)
            .map(|k| k.last_used_ms.load(Ordering::Relaxed))
            .unwrap_or(0);
        let db = row.last_used_at.map(|t| t.timestamp_millis()).unwrap_or(0);
        let best = mem.max(db);
        (best > 0).then(|| chrono::DateTime::from_timestamp_millis(best).unwrap_or_default())
    }

    /// Writes back the `last_used_at` of keys used since the last flush (one batch).
    pub async fn flush_usage(&self) -> StoreResult<usize> {
        let due: Vec<(Arc<CachedKey>, i64)> = self
            .by_prefix
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter_map(|k| {
                let used = k.last_used_ms.load(Ordering::Relaxed);
                (used > k.flushed_ms.load(Ordering::Relaxed)).then(|| (k.clone(), used))
            })
            .collect();
        if due.is_empty() {
            return Ok(0);
        }
        let batch: Vec<(ApiKeyId, Timestamp)> = due
            .iter()
            .map(|(k, ms)| (k.id, chrono::DateTime::from_timestamp_millis(*ms).unwrap_or_default()))
            .collect();
        self.store.record_api_key_use(&batch).await?;
        for (k, ms) in &due {
            k.flushed_ms.fetch_max(*ms, Ordering::Relaxed);
        }
        Ok(due.len())
    }
}

/// Ownership of accounts, cached: ids are never reused and owners never change, so a positive
/// entry can only go stale by deletion, which removes it.
pub struct AccountDirectory {
    store: Arc<dyn Store>,
    owners: RwLock<HashMap<AccountId, UserId>>,
    /// As in [`KeyDirectory`]: a deletion racing with a cache fill wins.
    generation: AtomicU64,
}

impl AccountDirectory {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            owners: RwLock::new(HashMap::new()),
            generation: AtomicU64::new(0),
        }
    }

    /// Whether `account` exists and belongs to `user`.
    pub async fn is_owned_by(&self, user: UserId, account: AccountId) -> StoreResult<bool> {
        if let Some(owner) = self.owners.read().unwrap_or_else(|p| p.into_inner()).get(&account) {
            return Ok(*owner == user);
        }
        let seen = self.generation.load(Ordering::Acquire);
        let found = self.store.account_for_user(user, account).await?.is_some();
        if found {
            let mut owners = self.owners.write().unwrap_or_else(|p| p.into_inner());
            if self.generation.load(Ordering::Acquire) == seen {
                owners.insert(account, user);
            }
        }
        Ok(found)
    }

    /// The directory's generation: read it before establishing an owner elsewhere, and hand it
    /// to [`AccountDirectory::learn`].
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Records that `user` owns `account`, learnt other than by a lookup: the engine raising an
    /// assistance request for it (its code comes next, through `/v1`, which then needs no
    /// database read to authorize it). `seen` is [`AccountDirectory::generation`] read before
    /// the store proved the account exists, so a deletion in between wins.
    pub fn learn(&self, user: UserId, account: AccountId, seen: u64) {
        let mut owners = self.owners.write().unwrap_or_else(|p| p.into_inner());
        if self.generation.load(Ordering::Acquire) == seen {
            owners.insert(account, user);
        }
    }

    /// The owner cached for `account`, if any (tests prove a fact was learnt with it).
    #[cfg(any(test, feature = "test-support"))]
    pub fn cached(&self, account: AccountId) -> Option<UserId> {
        self.owners
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&account)
            .copied()
    }

    pub fn forget(&self, account: AccountId) {
        let mut owners = self.owners.write().unwrap_or_else(|p| p.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        owners.remove(&account);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reconbanker_store::UserRow;

    async fn store_with_user() -> (tempfile::TempDir, Arc<dyn Store>, UserId) {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("k.db").display());
        let store = reconbanker_store::connect(&url, 1).await.expect("open");
        store.migrate().await.expect("migrate");
        let user = UserRow {
            id: UserId::new(),
            email: "k@example.com".into(),
            name: None,
            password_hash: "x".into(),
            is_admin: false,
            operation_mode: None,
            created_at: now(),
        };
        store.create_user(&user).await.expect("user");
        (dir, store, user.id)
    }

    #[tokio::test]
    async fn a_cached_key_is_refused_the_moment_it_expires() {
        let (_dir, store, user) = store_with_user().await;
        let dir = KeyDirectory::new(
            store.clone(),
            api_key::Checksum::from_master_key(&[1u8; 32]),
            Arc::default(),
        );
        let key = dir.generate();
        let expires = now() + chrono::Duration::minutes(10);
        store
            .create_api_key(&ApiKeyRow {
                id: ApiKeyId::new(),
                user_id: user,
                name: "k".into(),
                prefix: key.prefix.clone(),
                secret_hash: key.secret_hash.to_vec(),
                scopes: vec!["status:read".into()],
                account_ids: None,
                created_at: now(),
                last_used_at: None,
                expires_at: Some(expires),
                revoked_at: None,
            })
            .await
            .expect("key");
        let exp = expires.timestamp_millis();
        let ok = dir
            .authenticate_at(&key.full, exp - 1)
            .await
            .expect("db")
            .expect("valid before expiry");
        assert!(ok.has_scope(Scope::StatusRead) && !ok.has_scope(Scope::OtpWrite));
        // Now cached: the next answers come from memory, and expiry still applies at once.
        assert_eq!(
            dir.authenticate_at(&key.full, exp).await.expect("db").err(),
            Some(AuthError::Invalid)
        );
        let mut wrong = key.full.clone();
        wrong.replace_range(13..14, if &key.full[13..14] == "a" { "b" } else { "a" });
        assert_eq!(
            dir.authenticate_at(&wrong, exp - 1).await.expect("db").err(),
            Some(AuthError::Invalid)
        );
    }
}
