//! Issue 11 (scale-out): the sliding-window limits shared by every instance on one database.
//!
//! The windows — OTP submissions per account, failed dashboard logins per address, two-factor
//! failures per user — are small budgets that guard against guessing, so N instances must not
//! give N budgets: each hit is counted in the database (`Store::hit_window`, one transaction
//! that serialises the bucket's hits). They are rare (a code, a login), so the round trip costs
//! nothing that matters.
//!
//! The per-key `/v1` request rate (GCRA), checked on every `/v1` request, is shared too, but
//! not a write per request: instances take slices of it (`support::ratelimit_slices`, where its
//! precision is stated).
//!
//! The failed API-key authentications per address are one window across instances too, with
//! each instance remembering the window's refusals so that a flood of forged keys from an
//! address that has no room left does not reach the database (`support::ratelimit_refusals`).

use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;
use reconbanker_store::{now, Store};
use std::sync::Arc;

use super::ratelimit::{Bucket, Decision, LimiterError, MemoryRateLimiter, RateLimiter};
use super::ratelimit_refusals::Refusals;
use super::ratelimit_slices::{SharedRates, Unreachable};

pub struct SharedWindows {
    store: Arc<dyn Store>,
    local: MemoryRateLimiter,
    /// Issue 11: the `/v1` per-key budget, shared in slices (`support::ratelimit_slices`).
    rates: SharedRates,
    /// Issue 11: the refusals of the failed-authentication windows, remembered here.
    refusals: Refusals,
}

impl SharedWindows {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            rates: SharedRates::new(store.clone()),
            store,
            local: MemoryRateLimiter::default(),
            refusals: Refusals::default(),
        }
    }

    /// Issue 11: a failed API-key authentication from `ip`, counted in the shared window unless
    /// this instance already knows the window is full; this instance's own window if the
    /// database is out of reach.
    async fn auth_failure(&self, ip: IpAddr, limit: u32, window: Duration) -> Result<Decision, LimiterError> {
        if let Some(refused) = self.refusals.refused(ip, limit, window) {
            return Ok(refused);
        }
        match self.window(Bucket::AuthFailure(ip), limit, window, true).await {
            Ok(decision) => {
                self.refusals.record(ip, &decision);
                Ok(decision)
            }
            Err(e) => {
                self.refusals.warn_unreachable(&e.0);
                self.local.hit_window(Bucket::AuthFailure(ip), limit, window).await
            }
        }
    }

    async fn window(
        &self,
        bucket: Bucket,
        limit: u32,
        window: Duration,
        count: bool,
    ) -> Result<Decision, LimiterError> {
        let at = now();
        let span = chrono::Duration::from_std(window).map_err(|e| LimiterError(e.to_string()))?;
        let state = self
            .store
            .hit_window(&key(bucket), i64::from(limit), at, at + span, count)
            .await
            .map_err(|e| LimiterError(e.to_string()))?;
        let reset = state
            .oldest_expires_at
            .map(|t| (t - at).to_std().unwrap_or_default())
            .unwrap_or_default();
        let reset_secs = reset.as_secs() + u64::from(reset.subsec_nanos() > 0);
        Ok(Decision {
            allowed: state.allowed,
            limit,
            remaining: limit.saturating_sub(u32::try_from(state.used).unwrap_or(u32::MAX)),
            reset_secs: if state.allowed { reset_secs } else { reset_secs.max(1) },
            window_secs: window.as_secs(),
        })
    }
}

/// The limits kept in this process: the per-key rate has no window (`hit_rate` shares it).
fn in_process(bucket: Bucket) -> bool {
    matches!(bucket, Bucket::Key(_))
}

/// The bucket's name in the database.
fn key(bucket: Bucket) -> String {
    match bucket {
        Bucket::Otp(a) => format!("otp:{a}"),
        Bucket::Key(k) => format!("key:{k}"),
        Bucket::AuthFailure(ip) => format!("auth:{ip}"),
        Bucket::LoginFailure(ip) => format!("login:{ip}"),
        Bucket::TotpFailure(u) => format!("totp:{u}"),
    }
}

#[async_trait]
impl RateLimiter for SharedWindows {
    async fn hit_window(&self, bucket: Bucket, limit: u32, window: Duration) -> Result<Decision, LimiterError> {
        if let Bucket::AuthFailure(ip) = bucket {
            return self.auth_failure(ip, limit, window).await;
        }
        if in_process(bucket) {
            return self.local.hit_window(bucket, limit, window).await;
        }
        self.window(bucket, limit, window, true).await
    }

    async fn undo_window(&self, bucket: Bucket) -> Result<(), LimiterError> {
        if in_process(bucket) {
            return self.local.undo_window(bucket).await;
        }
        self.store
            .undo_window_hit(&key(bucket))
            .await
            .map(|_| ())
            .map_err(|e| LimiterError(e.to_string()))
    }

    async fn peek_window(&self, bucket: Bucket, limit: u32, window: Duration) -> Result<Decision, LimiterError> {
        if in_process(bucket) {
            return self.local.peek_window(bucket, limit, window).await;
        }
        self.window(bucket, limit, window, false).await
    }

    async fn hit_rate(&self, bucket: Bucket, per_sec: u32, burst: u32) -> Result<Decision, LimiterError> {
        // Issue 11: one budget per key across instances; this instance's own when the database
        // is out of reach (limited either way).
        match self.rates.hit(bucket, per_sec, burst).await {
            Ok(decision) => Ok(decision),
            Err(Unreachable) => self.local.hit_rate(bucket, per_sec, burst).await,
        }
    }

    async fn sweep(&self) -> Result<(), LimiterError> {
        self.local.sweep().await?;
        self.refusals.sweep();
        self.rates.sweep().await.map_err(|e| LimiterError(e.to_string()))?;
        self.store
            .sweep_window_hits(now())
            .await
            .map(|_| ())
            .map_err(|e| LimiterError(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reconbanker_store::{AccountId, ApiKeyId, UserId};

    #[test]
    fn every_bucket_has_its_own_name() {
        let ip: std::net::IpAddr = [10, 0, 0, 1].into();
        let names = [
            key(Bucket::Otp(AccountId::new())),
            key(Bucket::Key(ApiKeyId::new())),
            key(Bucket::AuthFailure(ip)),
            key(Bucket::LoginFailure(ip)),
            key(Bucket::TotpFailure(UserId::new())),
        ];
        let distinct: std::collections::HashSet<_> = names.iter().collect();
        assert_eq!(distinct.len(), names.len(), "{names:?}");
        assert_eq!(key(Bucket::AuthFailure(ip)), "auth:10.0.0.1");
    }
}
