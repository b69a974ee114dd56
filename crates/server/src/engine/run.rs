//! The typed outcomes of a session and the retry policy, kept apart from the loop that drives
//! them so each is a plain value with tests.

use std::time::Duration;

use super::connector::{ConnectorError, Fatal};

/// Why a session stopped (the `reason` of `session.stopped`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StopReason {
    /// One-shot: logged in, read, logged out.
    Completed,
    /// Stopped by `kill`, a deletion or a lost lease.
    Killed,
    /// Stopped because the process is shutting down.
    Shutdown,
    /// A fatal failure: the account is blocked until `restart`.
    Fatal(Fatal),
    /// Retryable failures, one more than the retry policy allows.
    RetriesExhausted,
    /// The account's config could not be opened (wrong master key, corrupt row).
    ConfigUnreadable,
}

impl StopReason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            StopReason::Completed => "completed",
            StopReason::Killed => "killed",
            StopReason::Shutdown => "shutdown",
            StopReason::Fatal(f) => f.as_str(),
            StopReason::RetriesExhausted => "retries_exhausted",
            StopReason::ConfigUnreadable => "config_unreadable",
        }
    }

    /// What a cancellation means: the engine's shutdown, or a kill of this session.
    pub(crate) fn cancelled(shutting_down: bool) -> Self {
        if shutting_down {
            StopReason::Shutdown
        } else {
            StopReason::Killed
        }
    }
}

/// How one run (one login and its reads) ended, as recorded on its `session_runs` row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RunOutcome {
    Succeeded,
    Failed(String),
    Cancelled(StopReason),
}

impl RunOutcome {
    /// The outcome of a run that ended with `result` after `reads` successful reads.
    pub(crate) fn of(result: &Result<(), ConnectorError>, reads: u32, shutting_down: bool) -> Self {
        match result {
            Ok(()) => RunOutcome::Succeeded,
            Err(ConnectorError::Cancelled) => RunOutcome::Cancelled(StopReason::cancelled(shutting_down)),
            // A persistent session the bank dropped after reading was a good run.
            Err(ConnectorError::SessionExpired) if reads > 0 => RunOutcome::Succeeded,
            Err(ConnectorError::SessionExpired) => RunOutcome::Failed("bank_dropped_session".into()),
            Err(ConnectorError::Fatal(f)) => RunOutcome::Failed(f.as_str().into()),
            Err(ConnectorError::Retryable(m)) => RunOutcome::Failed(format!("retryable: {m}")),
            Err(ConnectorError::Broken { step, detail }) => {
                RunOutcome::Failed(format!("{BROKEN_REASON}: {step}: {detail}"))
            }
        }
    }

    /// The row's `outcome` column.
    pub(crate) fn as_str(&self) -> &'static str {
        match self {
            RunOutcome::Succeeded => "succeeded",
            RunOutcome::Failed(_) => "failed",
            RunOutcome::Cancelled(_) => "cancelled",
        }
    }

    /// The row's `failure_reason` column.
    pub(crate) fn reason(&self, result: &Result<(), ConnectorError>) -> Option<String> {
        match (self, result) {
            (RunOutcome::Failed(r), _) => Some(r.clone()),
            (RunOutcome::Cancelled(why), _) => Some(why.as_str().into()),
            (RunOutcome::Succeeded, Err(ConnectorError::SessionExpired)) => Some("bank_dropped_session".into()),
            (RunOutcome::Succeeded, _) => None,
        }
    }
}

/// The `failure_reason` prefix of a run whose bank page no longer matched its definition, and
/// the `reason` of the alert (`session.needs_attention`).
pub(crate) const BROKEN_REASON: &str = "definition_broken";

/// How long the scheduler leaves an account alone after its `sessions`-th session in a row
/// (1 = the first) ended on a page that no longer matches its definition: `base`, doubling per
/// session, at most 6 h. Retrying every poll interval would log into the bank over and over
/// with a definition that cannot work (and may get the login locked).
pub(crate) fn broken_pause(base: Duration, sessions: u32) -> Duration {
    const CAP: Duration = Duration::from_secs(6 * 3600);
    if sessions == 0 {
        return Duration::ZERO;
    }
    base.saturating_mul(1u32 << (sessions - 1).min(16)).min(CAP)
}

/// Retries of retryable failures within one session: `attempts` retries, the first after
/// `base`, doubling each time, with ±25 % jitter.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RetryPolicy {
    pub attempts: u32,
    pub base: Duration,
}

impl RetryPolicy {
    /// The wait before the next try after `failures` consecutive failures (1 = the first), or
    /// `None` when the session should give up. `jitter` is drawn from `0.75..1.25` by the
    /// caller, so the policy itself is a pure function.
    pub(crate) fn delay(&self, failures: u32, jitter: f64) -> Option<Duration> {
        if failures == 0 || failures > self.attempts {
            return None;
        }
        let exp = self.base.saturating_mul(1u32 << (failures - 1).min(16));
        let scaled = exp.as_secs_f64() * jitter.clamp(0.75, 1.25);
        Some(Duration::try_from_secs_f64(scaled).unwrap_or(Duration::MAX))
    }
}

/// A jitter factor for [`RetryPolicy::delay`].
pub(crate) fn jitter() -> f64 {
    use rand::Rng;
    rand::thread_rng().gen_range(0.75..1.25)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_double_and_stop_after_the_attempts() {
        let p = RetryPolicy {
            attempts: 3,
            base: Duration::from_secs(2),
        };
        assert_eq!(p.delay(0, 1.0), None, "no failure, no retry");
        assert_eq!(p.delay(1, 1.0), Some(Duration::from_secs(2)));
        assert_eq!(p.delay(2, 1.0), Some(Duration::from_secs(4)));
        assert_eq!(p.delay(3, 1.0), Some(Duration::from_secs(8)));
        assert_eq!(p.delay(4, 1.0), None, "one more than allowed gives up");
        assert_eq!(p.delay(1, 0.75), Some(Duration::from_millis(1500)));
        assert_eq!(p.delay(1, 1.25), Some(Duration::from_millis(2500)));
        assert_eq!(p.delay(1, 9.0), Some(Duration::from_millis(2500)), "jitter is clamped");
        let none = RetryPolicy {
            attempts: 0,
            base: Duration::from_secs(2),
        };
        assert_eq!(none.delay(1, 1.0), None);
        let huge = RetryPolicy {
            attempts: 100,
            base: Duration::from_secs(u64::MAX / 2),
        };
        assert!(huge.delay(90, 1.0).is_some(), "saturates instead of overflowing");
    }

    #[test]
    fn a_broken_definition_pauses_longer_each_session_up_to_six_hours() {
        let base = Duration::from_secs(30 * 60);
        assert_eq!(broken_pause(base, 0), Duration::ZERO);
        assert_eq!(broken_pause(base, 1), base);
        assert_eq!(broken_pause(base, 2), base * 2);
        assert_eq!(broken_pause(base, 3), base * 4);
        assert_eq!(broken_pause(base, 4), Duration::from_secs(4 * 3600));
        assert_eq!(broken_pause(base, 5), Duration::from_secs(6 * 3600), "capped");
        assert_eq!(broken_pause(base, 40), Duration::from_secs(6 * 3600), "no overflow");
    }

    #[test]
    fn outcomes_and_stop_reasons() {
        let cancelled = Err(ConnectorError::Cancelled);
        assert_eq!(
            RunOutcome::of(&cancelled, 0, true),
            RunOutcome::Cancelled(StopReason::Shutdown)
        );
        assert_eq!(
            RunOutcome::of(&cancelled, 0, false),
            RunOutcome::Cancelled(StopReason::Killed)
        );
        assert_eq!(
            RunOutcome::of(&cancelled, 0, true).reason(&cancelled).as_deref(),
            Some("shutdown"),
            "a run cut short by shutdown says so, like its session.stopped event"
        );
        let dropped = Err(ConnectorError::SessionExpired);
        let ok = RunOutcome::of(&dropped, 2, false);
        assert_eq!(ok.as_str(), "succeeded");
        assert_eq!(ok.reason(&dropped).as_deref(), Some("bank_dropped_session"));
        let early = RunOutcome::of(&dropped, 0, false);
        assert_eq!(
            (early.as_str(), early.reason(&dropped).as_deref()),
            ("failed", Some("bank_dropped_session"))
        );
        let fatal = Err(ConnectorError::Fatal(Fatal::BadCredentials));
        assert_eq!(
            RunOutcome::of(&fatal, 0, false).reason(&fatal).as_deref(),
            Some("bad_credentials")
        );
        let retry = Err(ConnectorError::Retryable("503".into()));
        assert_eq!(
            RunOutcome::of(&retry, 0, false).reason(&retry).as_deref(),
            Some("retryable: 503")
        );
        assert_eq!(RunOutcome::of(&Ok(()), 1, false).reason(&Ok(())), None);
        let broken = Err(ConnectorError::Broken {
            step: "login[1]".into(),
            detail: "nothing matched".into(),
        });
        assert_eq!(
            RunOutcome::of(&broken, 0, false).reason(&broken).as_deref(),
            Some("definition_broken: login[1]: nothing matched")
        );
        assert_eq!(StopReason::Fatal(Fatal::AccountLocked).as_str(), "account_locked");
        assert_eq!(StopReason::RetriesExhausted.as_str(), "retries_exhausted");
    }
}
