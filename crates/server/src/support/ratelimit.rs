//! Rate limiting behind a small async trait whose calls can fail, so an implementation that
//! shares its counters between instances (a round trip to the database) fits behind it; the
//! in-process [`MemoryRateLimiter`] is the default. Two policies:
//! - [`RateLimiter::hit_window`]: exact sliding window ("5 per 10 minutes"), for small limits —
//!   OTP submissions, failed logins, failed API-key authentications;
//! - [`RateLimiter::hit_rate`]: GCRA (a token bucket without a timer), for the per-key `/v1`
//!   request rate, which needs O(1) memory whatever the limit.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use reconbanker_store::{AccountId, ApiKeyId, UserId};
use tokio::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Bucket {
    /// OTP submissions for an account (shared by `/v1` and the dashboard).
    Otp(AccountId),
    /// All `/v1` requests made with one key.
    Key(ApiKeyId),
    /// Failed API-key authentications from one client address.
    AuthFailure(IpAddr),
    /// Failed dashboard logins from one client address.
    LoginFailure(IpAddr),
    // Issue 10: two-factor sign-in.
    /// Two-factor codes tried for one user (sign-in, confirmation, disabling).
    TotpFailure(UserId),
}

/// The outcome of a hit, with what the `RateLimit` headers need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the window has room again (for `Retry-After` when refused; for the reset
    /// part of `RateLimit` otherwise). At least 1 when refused.
    pub reset_secs: u64,
    pub window_secs: u64,
}

/// The limiter could not decide (its shared counters are out of reach). Callers refuse the
/// request rather than let it through unlimited.
#[derive(Debug, thiserror::Error)]
#[error("rate limiter unavailable: {0}")]
pub struct LimiterError(pub String);

#[async_trait]
pub trait RateLimiter: Send + Sync + 'static {
    /// Counts one event in a sliding window of `window` holding at most `limit` events; a
    /// refused event is not counted.
    async fn hit_window(&self, bucket: Bucket, limit: u32, window: Duration) -> Result<Decision, LimiterError>;
    /// Takes back the newest event counted in a sliding window: an attempt counted when it
    /// started (so concurrent attempts cannot all pass one check) that turned out not to count
    /// (a login that succeeded).
    async fn undo_window(&self, bucket: Bucket) -> Result<(), LimiterError>;
    /// Looks at a sliding window without counting.
    async fn peek_window(&self, bucket: Bucket, limit: u32, window: Duration) -> Result<Decision, LimiterError>;
    /// Allows `per_sec` events a second with bursts of `burst` (GCRA).
    async fn hit_rate(&self, bucket: Bucket, per_sec: u32, burst: u32) -> Result<Decision, LimiterError>;
    /// Drops state that no longer limits anything (called periodically).
    async fn sweep(&self) -> Result<(), LimiterError>;
}

enum State {
    Window(VecDeque<Instant>),
    /// GCRA's theoretical arrival time.
    Tat(Instant),
}

/// In-process implementation.
#[derive(Default)]
pub struct MemoryRateLimiter {
    state: Mutex<HashMap<Bucket, State>>,
}

const MAX_BUCKETS: usize = 200_000;

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl MemoryRateLimiter {
    fn window(&self, bucket: Bucket, limit: u32, window: Duration, count: bool) -> Decision {
        let now = Instant::now();
        let mut map = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_BUCKETS && !map.contains_key(&bucket) {
            // Memory stays bounded under a flood of distinct clients: forget idle state first.
            drop(map);
            self.sweep_idle();
            map = self.state.lock().unwrap_or_else(|p| p.into_inner());
        }
        let state = match map.entry(bucket) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) if count => e.insert(State::Window(VecDeque::new())),
            Entry::Vacant(_) => {
                return Decision {
                    allowed: true,
                    limit,
                    remaining: limit,
                    reset_secs: 0,
                    window_secs: window.as_secs(),
                }
            }
        };
        if !matches!(state, State::Window(_)) {
            *state = State::Window(VecDeque::new());
        }
        let State::Window(log) = state else {
            unreachable!("just set")
        };
        while log.front().is_some_and(|t| now.duration_since(*t) >= window) {
            log.pop_front();
        }
        let used = log.len() as u32;
        let allowed = used < limit;
        if allowed && count {
            log.push_back(now);
        }
        let used_after = log.len() as u32;
        let reset = log
            .front()
            .map(|t| window.saturating_sub(now.duration_since(*t)))
            .unwrap_or_default();
        Decision {
            allowed,
            limit,
            remaining: limit.saturating_sub(used_after),
            reset_secs: if allowed {
                ceil_secs(reset)
            } else {
                ceil_secs(reset).max(1)
            },
            window_secs: window.as_secs(),
        }
    }
}

#[async_trait]
impl RateLimiter for MemoryRateLimiter {
    async fn hit_window(&self, bucket: Bucket, limit: u32, window: Duration) -> Result<Decision, LimiterError> {
        Ok(self.window(bucket, limit, window, true))
    }

    async fn peek_window(&self, bucket: Bucket, limit: u32, window: Duration) -> Result<Decision, LimiterError> {
        Ok(self.window(bucket, limit, window, false))
    }

    async fn undo_window(&self, bucket: Bucket) -> Result<(), LimiterError> {
        let mut map = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(State::Window(log)) = map.get_mut(&bucket) {
            log.pop_back();
        }
        Ok(())
    }

    async fn hit_rate(&self, bucket: Bucket, per_sec: u32, burst: u32) -> Result<Decision, LimiterError> {
        Ok(self.rate(bucket, per_sec, burst))
    }

    async fn sweep(&self) -> Result<(), LimiterError> {
        self.sweep_idle();
        Ok(())
    }
}

impl MemoryRateLimiter {
    fn rate(&self, bucket: Bucket, per_sec: u32, burst: u32) -> Decision {
        let now = Instant::now();
        let interval = Duration::from_secs(1) / per_sec.max(1);
        let tolerance = interval * burst.max(1);
        let mut map = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let state = map.entry(bucket).or_insert(State::Tat(now));
        let tat = match state {
            State::Tat(t) => (*t).max(now),
            State::Window(_) => now,
        };
        let next = tat + interval;
        // Allowed while the theoretical arrival time stays within the burst tolerance.
        let allowed = next.duration_since(now) <= tolerance;
        if allowed {
            *state = State::Tat(next);
        }
        let ahead = if allowed { next } else { tat }.duration_since(now);
        let remaining = (tolerance.saturating_sub(ahead).as_nanos() / interval.as_nanos().max(1)) as u32;
        Decision {
            allowed,
            limit: burst,
            remaining,
            reset_secs: if allowed {
                ceil_secs(ahead)
            } else {
                ceil_secs(next.duration_since(now) - tolerance).max(1)
            },
            window_secs: ceil_secs(tolerance),
        }
    }

    fn sweep_idle(&self) {
        let now = Instant::now();
        let mut map = self.state.lock().unwrap_or_else(|p| p.into_inner());
        // A window older than a day, or a bucket whose arrival time has passed, limits nothing.
        map.retain(|_, s| match s {
            State::Window(log) => log
                .back()
                .is_some_and(|t| now.duration_since(*t) < Duration::from_secs(86_400)),
            State::Tat(t) => *t > now,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acct() -> Bucket {
        Bucket::Otp(AccountId::new())
    }

    #[tokio::test(start_paused = true)]
    async fn sliding_window_is_exact() {
        let rl = MemoryRateLimiter::default();
        let b = acct();
        let w = Duration::from_secs(600);
        for i in 0..5 {
            let d = rl.window(b, 5, w, true);
            assert!(d.allowed, "hit {i}");
            assert_eq!(d.remaining, 4 - i);
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        // t = 5 s: the window (hits at 0..=4 s) is full.
        let refused = rl.window(b, 5, w, true);
        assert!(!refused.allowed);
        assert_eq!(refused.reset_secs, 595);
        tokio::time::advance(Duration::from_secs(594)).await;
        assert!(
            !rl.window(b, 5, w, true).allowed,
            "refusals are not counted, window not yet over"
        );
        assert_eq!(rl.window(b, 5, w, false).reset_secs, 1);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(rl.window(b, 5, w, true).allowed, "the oldest hit left the window");
        assert!(!rl.window(b, 5, w, true).allowed, "only one left");
        assert!(rl.window(acct(), 5, w, true).allowed, "buckets are independent");
    }

    #[tokio::test(start_paused = true)]
    async fn undo_takes_back_the_newest_hit() {
        let rl = MemoryRateLimiter::default();
        let b = acct();
        let w = Duration::from_secs(60);
        assert!(rl.window(b, 2, w, true).allowed);
        assert!(rl.window(b, 2, w, true).allowed);
        assert!(!rl.window(b, 2, w, true).allowed);
        rl.undo_window(b).await.expect("undo");
        assert_eq!(rl.window(b, 2, w, false).remaining, 1);
        rl.undo_window(acct()).await.expect("an unknown bucket is a no-op");
    }

    #[tokio::test(start_paused = true)]
    async fn gcra_allows_burst_then_rate() {
        let rl = MemoryRateLimiter::default();
        let b = Bucket::Key(ApiKeyId::new());
        let allowed = (0..50).filter(|_| rl.rate(b, 10, 20).allowed).count();
        assert_eq!(allowed, 20, "burst");
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(rl.rate(b, 10, 20).allowed, "one more after one interval");
        assert!(!rl.rate(b, 10, 20).allowed);
    }

    #[tokio::test(start_paused = true)]
    async fn sweep_forgets_idle_buckets() {
        let rl = MemoryRateLimiter::default();
        rl.rate(Bucket::Key(ApiKeyId::new()), 10, 10);
        rl.window(acct(), 5, Duration::from_secs(60), true);
        tokio::time::advance(Duration::from_secs(86_401)).await;
        rl.sweep_idle();
        assert!(rl.state.lock().expect("lock").is_empty());
    }
}
