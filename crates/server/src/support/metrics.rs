//! Issue 11 (metrics): the operator's metrics, exported for Prometheus on `/metrics` (its own
//! listener, `RECONBANKER_METRICS_ADDR`, off by default).
//!
//! Every metric's name is in [`names`], and every place that records one goes through
//! [`Metrics`]. A [`Metrics`] is per application, not the process-global recorder of the
//! `metrics` crate: the recorder is built in `app::wiring` (the one place) and handed here, so
//! several applications in one process (the tests) each count their own, and an application
//! without a metrics address records nothing at all ([`Metrics::off`]: every call returns at
//! once).
//!
//! Counters and histograms are recorded where things happen; the gauges (sessions, the outbox,
//! the pool, leases) are read when `/metrics` is scraped ([`Metrics::observe`]).

use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Level, Metadata, Recorder, SharedString, Unit};

/// The names of every metric.
pub mod names {
    /// Requests answered, by `route` (the matched route template, never the raw path;
    /// `unmatched` for the JSON 404), `method` and `status`.
    pub const HTTP_REQUESTS: &str = "reconbanker_http_requests_total";
    /// Time to the response's head, by `route`, `method` and `status`.
    pub const HTTP_DURATION: &str = "reconbanker_http_request_duration_seconds";
    /// This instance's live bank sessions, by `state` (`starting`, `running`,
    /// `awaiting_code`, `needs_attention`).
    pub const SESSIONS: &str = "reconbanker_sessions";
    /// This instance's logins waiting for a one-time code.
    pub const LOGINS_WAITING: &str = "reconbanker_logins_waiting_for_code";
    /// One-time codes submitted (`/v1` and the dashboard), by `outcome`.
    pub const OTP_SUBMISSIONS: &str = "reconbanker_otp_submissions_total";
    /// Webhook deliveries in the outbox (shared by every instance), by `status` (`pending`,
    /// `dead`).
    pub const OUTBOX: &str = "reconbanker_outbox_deliveries";
    /// Webhook attempts this instance made, by `outcome` (`delivered`, `retry`, `dead`,
    /// `skipped`).
    pub const DELIVERIES: &str = "reconbanker_webhook_attempts_total";
    /// Pending-orders polls this instance ran, by `outcome` (`ok`, `failed`, `error`).
    pub const ORDER_POLLS: &str = "reconbanker_order_polls_total";
    /// How long a pending-orders poll took (fetch and apply).
    pub const ORDER_POLL_DURATION: &str = "reconbanker_order_poll_duration_seconds";
    /// Match passes this instance ran, by `outcome` (`committed`, `unchanged`, `error`).
    pub const MATCH_PASSES: &str = "reconbanker_match_passes_total";
    /// How long a match pass took (load, match, commit).
    pub const MATCH_PASS_DURATION: &str = "reconbanker_match_pass_duration_seconds";
    /// The database pool's connections, by `state` (`in_use`, `idle`, `max`).
    pub const DB_POOL: &str = "reconbanker_db_pool_connections";
    /// The leases this instance holds, by `kind` (`session`, `poll`).
    pub const LEASES: &str = "reconbanker_leases";
    /// Scrapes whose database read failed (the database gauges then keep their last value).
    pub const SCRAPE_ERRORS: &str = "reconbanker_metrics_scrape_errors_total";
}

/// The histogram buckets (seconds) of every duration.
pub const DURATION_BUCKETS: &[f64] = &[
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// What became of a submitted one-time code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OtpOutcome {
    /// Handed to the login (202).
    Accepted,
    /// Refused before it was counted: empty, too long, or not what the bank asks for.
    Invalid,
    /// The account's OTP budget was spent.
    RateLimited,
    /// No request was pending (or its login is gone).
    NoPending,
    /// The code named a request that is not the pending one.
    Stale,
    /// Another code for the request is being checked.
    InFlight,
    /// The database, the limiter or the broker failed.
    Error,
}

impl OtpOutcome {
    const ALL: [OtpOutcome; 7] = [
        OtpOutcome::Accepted,
        OtpOutcome::Invalid,
        OtpOutcome::RateLimited,
        OtpOutcome::NoPending,
        OtpOutcome::Stale,
        OtpOutcome::InFlight,
        OtpOutcome::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OtpOutcome::Accepted => "accepted",
            OtpOutcome::Invalid => "invalid",
            OtpOutcome::RateLimited => "rate_limited",
            OtpOutcome::NoPending => "no_pending",
            OtpOutcome::Stale => "stale",
            OtpOutcome::InFlight => "in_flight",
            OtpOutcome::Error => "error",
        }
    }
}

/// What one webhook attempt came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Delivered,
    /// Failed; another attempt is scheduled.
    Retry,
    /// Failed for the last time (dead letter).
    Dead,
    /// Not sent (no endpoint any more, for instance).
    Skipped,
}

impl DeliveryOutcome {
    const ALL: [DeliveryOutcome; 4] = [
        DeliveryOutcome::Delivered,
        DeliveryOutcome::Retry,
        DeliveryOutcome::Dead,
        DeliveryOutcome::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryOutcome::Delivered => "delivered",
            DeliveryOutcome::Retry => "retry",
            DeliveryOutcome::Dead => "dead",
            DeliveryOutcome::Skipped => "skipped",
        }
    }
}

/// What a pending-orders poll or a match pass came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkOutcome {
    /// A poll that read the orders / a pass that committed.
    Done,
    /// A poll whose exchange failed (a documented poll error) / a pass with nothing to commit.
    Failed,
    /// The database failed.
    Error,
}

/// The gauges read when `/metrics` is scraped.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// Live sessions by state (every state listed, zeros included).
    pub sessions: Vec<(&'static str, u64)>,
    pub logins_waiting: u64,
    pub pool_in_use: u64,
    pub pool_idle: u64,
    pub pool_max: u64,
    /// From the database; `None` when that read failed.
    pub database: Option<ObservedDb>,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct ObservedDb {
    pub outbox_pending: u64,
    pub outbox_dead: u64,
    pub session_leases: u64,
    pub poll_leases: u64,
}

/// The application's metrics: [`Metrics::off`] records nothing; [`Metrics::on`] records into
/// the recorder it is given.
#[derive(Clone, Default)]
pub struct Metrics(Option<Arc<On>>);

struct On {
    recorder: Arc<dyn Recorder + Send + Sync>,
    otp: [Counter; OtpOutcome::ALL.len()],
    deliveries: [Counter; DeliveryOutcome::ALL.len()],
    polls: [Counter; 3],
    poll_duration: Histogram,
    passes: [Counter; 3],
    pass_duration: Histogram,
    logins_waiting: Gauge,
    outbox_pending: Gauge,
    outbox_dead: Gauge,
    pool_in_use: Gauge,
    pool_idle: Gauge,
    pool_max: Gauge,
    session_leases: Gauge,
    poll_leases: Gauge,
    scrape_errors: Counter,
}

static METADATA: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

fn key(name: &'static str, labels: &[(&'static str, &'static str)]) -> Key {
    Key::from_parts(
        name,
        labels
            .iter()
            .map(|(k, v)| Label::from_static_parts(k, v))
            .collect::<Vec<_>>(),
    )
}

/// The `outcome` labels of polls and passes, in [`work_index`] order.
const POLL_LABELS: [&str; 3] = ["ok", "failed", "error"];
const PASS_LABELS: [&str; 3] = ["committed", "unchanged", "error"];

impl Metrics {
    /// Records nothing.
    pub fn off() -> Self {
        Self(None)
    }

    /// Records into `recorder`; every series with a fixed set of labels exists from now on (at
    /// zero), so a dashboard sees them before the first event.
    pub fn on(recorder: Arc<dyn Recorder + Send + Sync>) -> Self {
        describe(&*recorder);
        let counter =
            |name, labels: &[(&'static str, &'static str)]| recorder.register_counter(&key(name, labels), &METADATA);
        let gauge =
            |name, labels: &[(&'static str, &'static str)]| recorder.register_gauge(&key(name, labels), &METADATA);
        let histogram = |name| recorder.register_histogram(&key(name, &[]), &METADATA);
        let on = On {
            otp: OtpOutcome::ALL.map(|o| counter(names::OTP_SUBMISSIONS, &[("outcome", o.as_str())])),
            deliveries: DeliveryOutcome::ALL.map(|o| counter(names::DELIVERIES, &[("outcome", o.as_str())])),
            polls: POLL_LABELS.map(|o| counter(names::ORDER_POLLS, &[("outcome", o)])),
            poll_duration: histogram(names::ORDER_POLL_DURATION),
            passes: PASS_LABELS.map(|o| counter(names::MATCH_PASSES, &[("outcome", o)])),
            pass_duration: histogram(names::MATCH_PASS_DURATION),
            logins_waiting: gauge(names::LOGINS_WAITING, &[]),
            outbox_pending: gauge(names::OUTBOX, &[("status", "pending")]),
            outbox_dead: gauge(names::OUTBOX, &[("status", "dead")]),
            pool_in_use: gauge(names::DB_POOL, &[("state", "in_use")]),
            pool_idle: gauge(names::DB_POOL, &[("state", "idle")]),
            pool_max: gauge(names::DB_POOL, &[("state", "max")]),
            session_leases: gauge(names::LEASES, &[("kind", "session")]),
            poll_leases: gauge(names::LEASES, &[("kind", "poll")]),
            scrape_errors: counter(names::SCRAPE_ERRORS, &[]),
            recorder: recorder.clone(),
        };
        Self(Some(Arc::new(on)))
    }

    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// One HTTP request answered. `route` is the matched route template (`None`: no route
    /// matched); `method` one of a fixed set (see `http::metrics`).
    pub fn http(&self, method: &'static str, route: Option<&str>, status: u16, elapsed: Duration) {
        let Some(on) = &self.0 else { return };
        let route: SharedString = match route {
            Some(r) => SharedString::from_owned(r.to_owned()),
            None => SharedString::const_str("unmatched"),
        };
        let labels = vec![
            Label::new("route", route),
            Label::from_static_parts("method", method),
            Label::new("status", status_label(status)),
        ];
        let requests = Key::from_parts(names::HTTP_REQUESTS, labels.clone());
        on.recorder.register_counter(&requests, &METADATA).increment(1);
        let duration = Key::from_parts(names::HTTP_DURATION, labels);
        on.recorder
            .register_histogram(&duration, &METADATA)
            .record(elapsed.as_secs_f64());
    }

    pub fn otp(&self, outcome: OtpOutcome) {
        if let Some(on) = &self.0 {
            if let Some(i) = OtpOutcome::ALL.iter().position(|o| *o == outcome) {
                on.otp[i].increment(1);
            }
        }
    }

    pub fn delivery(&self, outcome: DeliveryOutcome) {
        if let Some(on) = &self.0 {
            if let Some(i) = DeliveryOutcome::ALL.iter().position(|o| *o == outcome) {
                on.deliveries[i].increment(1);
            }
        }
    }

    pub fn order_poll(&self, outcome: WorkOutcome, elapsed: Duration) {
        if let Some(on) = &self.0 {
            on.polls[work_index(outcome)].increment(1);
            on.poll_duration.record(elapsed.as_secs_f64());
        }
    }

    pub fn match_pass(&self, outcome: WorkOutcome, elapsed: Duration) {
        if let Some(on) = &self.0 {
            on.passes[work_index(outcome)].increment(1);
            on.pass_duration.record(elapsed.as_secs_f64());
        }
    }

    /// Sets the gauges read at a scrape.
    pub fn observe(&self, seen: &Observed) {
        let Some(on) = &self.0 else { return };
        for (state, n) in &seen.sessions {
            on.recorder
                .register_gauge(&key(names::SESSIONS, &[("state", state)]), &METADATA)
                .set(*n as f64);
        }
        on.logins_waiting.set(seen.logins_waiting as f64);
        on.pool_in_use.set(seen.pool_in_use as f64);
        on.pool_idle.set(seen.pool_idle as f64);
        on.pool_max.set(seen.pool_max as f64);
        match seen.database {
            Some(db) => {
                on.outbox_pending.set(db.outbox_pending as f64);
                on.outbox_dead.set(db.outbox_dead as f64);
                on.session_leases.set(db.session_leases as f64);
                on.poll_leases.set(db.poll_leases as f64);
            }
            None => on.scrape_errors.increment(1),
        }
    }
}

fn work_index(outcome: WorkOutcome) -> usize {
    match outcome {
        WorkOutcome::Done => 0,
        WorkOutcome::Failed => 1,
        WorkOutcome::Error => 2,
    }
}

/// The common statuses without an allocation.
fn status_label(status: u16) -> SharedString {
    let s = match status {
        200 => "200",
        201 => "201",
        202 => "202",
        204 => "204",
        301 => "301",
        302 => "302",
        303 => "303",
        304 => "304",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        409 => "409",
        413 => "413",
        415 => "415",
        422 => "422",
        429 => "429",
        500 => "500",
        503 => "503",
        other => return SharedString::from_owned(other.to_string()),
    };
    SharedString::const_str(s)
}

/// The `# HELP` lines.
fn describe(recorder: &dyn Recorder) {
    let seconds = Some(Unit::Seconds);
    let counters: [(&'static str, &'static str); 5] = [
        (
            names::HTTP_REQUESTS,
            "HTTP requests answered, by matched route, method and status",
        ),
        (names::OTP_SUBMISSIONS, "one-time codes submitted, by outcome"),
        (names::DELIVERIES, "webhook attempts made by this instance, by outcome"),
        (
            names::ORDER_POLLS,
            "pending-orders polls run by this instance, by outcome",
        ),
        (names::MATCH_PASSES, "match passes run by this instance, by outcome"),
    ];
    for (name, help) in counters {
        recorder.describe_counter(KeyName::from_const_str(name), None, SharedString::const_str(help));
    }
    recorder.describe_counter(
        KeyName::from_const_str(names::SCRAPE_ERRORS),
        None,
        SharedString::const_str("scrapes whose database read failed"),
    );
    let histograms: [(&'static str, &'static str); 3] = [
        (
            names::HTTP_DURATION,
            "time to the response head, by matched route, method and status",
        ),
        (names::ORDER_POLL_DURATION, "duration of a pending-orders poll"),
        (names::MATCH_PASS_DURATION, "duration of a match pass"),
    ];
    for (name, help) in histograms {
        recorder.describe_histogram(KeyName::from_const_str(name), seconds, SharedString::const_str(help));
    }
    let gauges: [(&'static str, &'static str); 5] = [
        (names::SESSIONS, "this instance's live bank sessions, by state"),
        (
            names::LOGINS_WAITING,
            "this instance's logins waiting for a one-time code",
        ),
        (names::OUTBOX, "webhook deliveries in the shared outbox, by status"),
        (names::DB_POOL, "database pool connections, by state"),
        (names::LEASES, "leases this instance holds, by kind"),
    ];
    for (name, help) in gauges {
        recorder.describe_gauge(KeyName::from_const_str(name), None, SharedString::const_str(help));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_labels_are_the_number() {
        for s in [200u16, 202, 404, 418, 429, 599] {
            assert_eq!(status_label(s).as_ref(), s.to_string());
        }
    }

    #[test]
    fn off_records_nothing_and_costs_nothing() {
        let m = Metrics::off();
        assert!(!m.is_on());
        m.http(
            "GET",
            Some("/v1/accounts/{account_id}/status"),
            200,
            Duration::from_millis(1),
        );
        m.otp(OtpOutcome::Accepted);
        m.observe(&Observed::default());
    }
}
