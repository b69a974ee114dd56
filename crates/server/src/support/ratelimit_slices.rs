//! Issue 11 (scale-out): one `/v1` request budget per API key across every instance on one
//! database, without a database write per request.
//!
//! The budget is a GCRA (the same rate and burst as the in-process one) whose theoretical
//! arrival time lives in the database (`rate_tats`, [`Store::take_rate_slice`]). An instance
//! does not ask for one request at a time: it takes a **slice** of several (one locked write
//! moves the arrival time on by the whole slice) and spends it in memory, so only about one
//! request in a slice pays a round trip. When the database says the budget has no room, the
//! instance remembers until when and refuses locally until then (a flood of refused requests
//! does not reach the database).
//!
//! Precision: every request allowed was taken from the shared budget, so over any window all
//! instances together allow at most what one GCRA allows (burst + rate × window) plus what
//! instances hold unspent — at most one slice each. A slice is a tenth of a second of the
//! rate, at most a tenth of the burst (and at least one request), so with N instances the
//! excess is at most N × burst / 10, and at most N × rate / 10 requests a second of the sustained
//! rate are paid by a round trip. A slice held unspent for a minute is dropped (those
//! requests are lost to the key, never given twice). With a rate of 10 a second or less the
//! slice is one request: exact, one round trip per request.
//!
//! If the database cannot be reached, the key falls back to this instance's own GCRA (one
//! budget per instance, as before the shared one), with a warning: `/v1` stays limited and up.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reconbanker_store::Store;
use tokio::time::Instant;

use super::ratelimit::{Bucket, Decision};

/// A slice left unspent this long is dropped.
const IDLE: Duration = Duration::from_secs(60);
/// At most one warning about an unreachable database this often.
const WARN_EVERY_SECS: i64 = 10;

/// How many requests one slice holds: a tenth of a second of the rate, at most a tenth of the
/// burst, at least one.
pub(crate) fn slice_size(per_sec: u32, burst: u32) -> i64 {
    let by_rate = i64::from(per_sec) / 10;
    let by_burst = i64::from(burst) / 10;
    by_rate.min(by_burst).max(1)
}

#[derive(Default)]
struct Held {
    /// Requests of the current slice not spent yet.
    left: i64,
    /// The shared arrival time after the last slice (nanoseconds since the epoch).
    tat_ns: i64,
    /// Refused locally until then (the database said there was no room).
    refused_until: Option<Instant>,
    touched: Option<Instant>,
    /// One slice taken at a time per key on this instance.
    gate: Arc<tokio::sync::Mutex<()>>,
}

pub struct SharedRates {
    store: Arc<dyn Store>,
    held: Mutex<HashMap<Bucket, Held>>,
    last_warning: AtomicI64,
}

/// The shared budget could not be reached; the caller falls back to its own.
pub(crate) struct Unreachable;

fn now_ns() -> i64 {
    reconbanker_store::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

fn ceil_secs(ns: i64) -> u64 {
    let ns = u64::try_from(ns.max(0)).unwrap_or(0);
    ns.div_ceil(1_000_000_000)
}

impl SharedRates {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            held: Mutex::new(HashMap::new()),
            last_warning: AtomicI64::new(0),
        }
    }

    /// One request of `bucket` at `per_sec` with bursts of `burst`.
    pub(crate) async fn hit(&self, bucket: Bucket, per_sec: u32, burst: u32) -> Result<Decision, Unreachable> {
        let interval = 1_000_000_000 / i64::from(per_sec.max(1));
        let tolerance = interval.saturating_mul(i64::from(burst.max(1)));
        let decide = |allowed: bool, left: i64, tat_ns: i64, wait_ns: i64| {
            let now = now_ns();
            // The shared room after this slice, plus what this instance still holds.
            let shared = (now.saturating_add(tolerance).saturating_sub(tat_ns.max(now)) / interval).max(0);
            Decision {
                allowed,
                limit: burst,
                remaining: u32::try_from(shared.saturating_add(left).min(i64::from(burst))).unwrap_or(burst),
                reset_secs: if allowed {
                    ceil_secs(tat_ns.saturating_sub(now))
                } else {
                    ceil_secs(wait_ns).max(1)
                },
                window_secs: ceil_secs(tolerance),
            }
        };
        let gate = match self.spend(bucket) {
            Spent::Allowed { left, tat_ns } => return Ok(decide(true, left, tat_ns, 0)),
            Spent::Refused { wait, tat_ns } => {
                return Ok(decide(
                    false,
                    0,
                    tat_ns,
                    i64::try_from(wait.as_nanos()).unwrap_or(i64::MAX),
                ))
            }
            Spent::Empty(gate) => gate,
        };
        let _one_at_a_time = gate.lock().await;
        // Another request may have taken a slice while this one waited.
        match self.spend(bucket) {
            Spent::Allowed { left, tat_ns } => return Ok(decide(true, left, tat_ns, 0)),
            Spent::Refused { wait, tat_ns } => {
                return Ok(decide(
                    false,
                    0,
                    tat_ns,
                    i64::try_from(wait.as_nanos()).unwrap_or(i64::MAX),
                ))
            }
            Spent::Empty(_) => {}
        }
        let taken = self
            .store
            .take_rate_slice(&key(bucket), now_ns(), interval, tolerance, slice_size(per_sec, burst))
            .await;
        let slice = match taken {
            Ok(s) => s,
            Err(e) => {
                let now = now_ns() / 1_000_000_000;
                let last = self.last_warning.load(Ordering::Relaxed);
                if now - last >= WARN_EVERY_SECS
                    && self
                        .last_warning
                        .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                        .is_ok()
                {
                    tracing::warn!(error = %e, "the shared /v1 budget is out of reach; this instance's own limit applies");
                }
                return Err(Unreachable);
            }
        };
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let entry = held.entry(bucket).or_default();
        entry.tat_ns = slice.tat_ns;
        entry.touched = Some(Instant::now());
        if slice.granted > 0 {
            entry.left = slice.granted - 1;
            entry.refused_until = None;
            Ok(decide(true, entry.left, slice.tat_ns, 0))
        } else {
            // Room again when the arrival time is within the tolerance of one more interval.
            let wait_ns = slice
                .tat_ns
                .saturating_sub(tolerance)
                .saturating_add(interval)
                .saturating_sub(now_ns());
            let wait = Duration::from_nanos(u64::try_from(wait_ns.max(0)).unwrap_or(0));
            entry.refused_until = Some(Instant::now() + wait);
            Ok(decide(false, 0, slice.tat_ns, wait_ns))
        }
    }

    fn spend(&self, bucket: Bucket) -> Spent {
        let now = Instant::now();
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let entry = held.entry(bucket).or_default();
        entry.touched = Some(now);
        if entry.left > 0 {
            entry.left -= 1;
            return Spent::Allowed {
                left: entry.left,
                tat_ns: entry.tat_ns,
            };
        }
        if let Some(until) = entry.refused_until {
            if until > now {
                return Spent::Refused {
                    wait: until - now,
                    tat_ns: entry.tat_ns,
                };
            }
        }
        Spent::Empty(entry.gate.clone())
    }

    /// Drops the slices of keys idle for a minute, and the database's rows that say nothing.
    pub(crate) async fn sweep(&self) -> Result<(), reconbanker_store::StoreError> {
        let now = Instant::now();
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, h| h.touched.is_some_and(|t| now.duration_since(t) < IDLE));
        self.store.sweep_rate_tats(now_ns()).await.map(|_| ())
    }
}

enum Spent {
    Allowed { left: i64, tat_ns: i64 },
    Refused { wait: Duration, tat_ns: i64 },
    Empty(Arc<tokio::sync::Mutex<()>>),
}

/// The key's row in `rate_tats`.
fn key(bucket: Bucket) -> String {
    match bucket {
        Bucket::Key(k) => format!("key:{k}"),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slice_is_a_tenth_of_a_second_at_most_a_tenth_of_the_burst() {
        assert_eq!(slice_size(50, 100), 5, "the defaults");
        assert_eq!(slice_size(10, 20), 1);
        assert_eq!(slice_size(1, 1), 1, "never empty");
        assert_eq!(slice_size(1000, 50), 5, "a small burst bounds it");
        assert_eq!(slice_size(10_000_000, 10_000_000), 1_000_000);
    }
}
