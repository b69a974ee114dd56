//! Issue 11 (scale-out): the failed API-key authentications per address, one window across
//! every instance on one database.
//!
//! Each failure is counted in the shared window (`Store::hit_window`, the same rows as the
//! other windows), so failures spread over N instances spend one budget, not N. What keeps a
//! flood of forged keys off the database is that a refusal is remembered here: once the
//! database says an address has no room, this instance refuses that address's failures
//! locally until the window has room again (`refused_until`), so an address costs the database
//! at most its budget of writes per window, plus one per instance when the window refuses. A
//! valid key is judged before any of this and never counted.
//!
//! If the database cannot be reached, this instance's own window limits the address (a
//! warning at most every 10 s): a forged key is still refused, and answered 401/429 rather
//! than an error.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::ratelimit::Decision;

/// At most this many addresses remembered as refused (a flood of distinct addresses only
/// costs what each address's budget costs).
const MAX_REMEMBERED: usize = 100_000;
/// At most one warning about an unreachable database this often.
const WARN_EVERY_SECS: i64 = 10;

/// The local memory of the shared window's refusals.
#[derive(Default)]
pub struct Refusals {
    refused_until: Mutex<HashMap<IpAddr, Instant>>,
    last_warning: AtomicI64,
}

impl Refusals {
    /// The refusal this instance remembers for `ip`, if the window still has no room.
    pub(crate) fn refused(&self, ip: IpAddr, limit: u32, window: Duration) -> Option<Decision> {
        let now = Instant::now();
        let mut map = self.refused_until.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(&ip) {
            Some(until) if *until > now => {
                let wait = *until - now;
                Some(Decision {
                    allowed: false,
                    limit,
                    remaining: 0,
                    reset_secs: (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1),
                    window_secs: window.as_secs(),
                })
            }
            Some(_) => {
                map.remove(&ip);
                None
            }
            None => None,
        }
    }

    /// Remembers what the shared window decided for `ip`.
    pub(crate) fn record(&self, ip: IpAddr, decision: &Decision) {
        if decision.allowed {
            return;
        }
        let now = Instant::now();
        let until = now + Duration::from_secs(decision.reset_secs.max(1));
        let mut map = self.refused_until.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_REMEMBERED && !map.contains_key(&ip) {
            map.retain(|_, u| *u > now);
            if map.len() >= MAX_REMEMBERED {
                // Full of live refusals: this address's next failure asks the database again.
                return;
            }
        }
        map.insert(ip, until);
    }

    /// Forgets the refusals that have run out.
    pub(crate) fn sweep(&self) {
        let now = Instant::now();
        self.refused_until
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, u| *u > now);
    }

    /// Logs (at most every 10 s) that the shared window is out of reach.
    pub(crate) fn warn_unreachable(&self, error: &str) {
        let now = reconbanker_store::now().timestamp();
        let last = self.last_warning.load(Ordering::Relaxed);
        if now - last >= WARN_EVERY_SECS
            && self
                .last_warning
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                error,
                "the shared failed-authentication window is out of reach; this instance's own applies"
            );
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.refused_until.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(allowed: bool, reset_secs: u64) -> Decision {
        Decision {
            allowed,
            limit: 3,
            remaining: 0,
            reset_secs,
            window_secs: 60,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_is_remembered_until_the_window_has_room() {
        let r = Refusals::default();
        let ip: IpAddr = [10, 0, 0, 1].into();
        let other: IpAddr = [10, 0, 0, 2].into();
        let window = Duration::from_secs(60);
        assert_eq!(r.refused(ip, 3, window), None);
        r.record(ip, &decision(true, 60));
        assert_eq!(r.refused(ip, 3, window), None, "an allowed failure is not remembered");
        r.record(ip, &decision(false, 20));
        let d = r.refused(ip, 3, window).expect("remembered");
        assert!(!d.allowed);
        assert_eq!((d.limit, d.remaining, d.reset_secs, d.window_secs), (3, 0, 20, 60));
        assert_eq!(r.refused(other, 3, window), None, "only that address");
        tokio::time::advance(Duration::from_millis(19_500)).await;
        assert_eq!(r.refused(ip, 3, window).map(|d| d.reset_secs), Some(1));
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(r.refused(ip, 3, window), None, "room again: ask the database");
        assert_eq!(r.len(), 0, "a lapsed refusal is forgotten when looked at");
    }

    #[tokio::test(start_paused = true)]
    async fn sweep_forgets_lapsed_refusals_only() {
        let r = Refusals::default();
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        r.record(a, &decision(false, 5));
        r.record(b, &decision(false, 50));
        tokio::time::advance(Duration::from_secs(6)).await;
        r.sweep();
        assert_eq!(r.len(), 1);
        assert!(r.refused(b, 3, Duration::from_secs(60)).is_some());
    }
}
