//! Notification webhooks (docs/product.md §8): the delivery worker that drains the durable outbox, the
//! Standard Webhooks signature, and the outbound-network guard at send time.
//!
//! - Deliveries are rows written with the event that caused them (see `events.rs`); the worker
//!   claims due ones with a lease, so a crash or restart only delays them.
//! - Each POST carries `webhook-id` (the delivery id, stable across retries), `webhook-timestamp`
//!   and `webhook-signature: v1,<base64 HMAC-SHA256(id.timestamp.body)>` — two signatures while
//!   a rotated-out secret is in its grace period — and the account's `Authorization`.
//! - 10 s timeout, redirects not followed; non-2xx or timeout → exponential backoff with jitter
//!   (honouring `Retry-After`), dead letter after the last try. A prompt whose assistance request
//!   is no longer pending is skipped, never delivered late.
//! - Targets must resolve only to public addresses (unless the operator allows private ones);
//!   the client's resolver checks every address and the connection goes to those addresses.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, Mac};
use rand::Rng;
use reconbanker_store::{now, AssistanceStatus, DeliveryRow, Store, Timestamp};
use sha2::Sha256;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::domain::account_config::{self, AuthType, SigningChannel};
use crate::support::crypto::Sealer;
use crate::support::metrics::{DeliveryOutcome, Metrics};
use crate::support::outbound;
use crate::support::time::after;

/// Deliveries sent at once.
const PARALLEL: usize = 16;
/// How long a claimed delivery is reserved for the worker that claimed it.
const CLAIM_LEASE: Duration = Duration::from_secs(120);
/// How often the worker looks for due deliveries when nothing wakes it.
const IDLE: Duration = Duration::from_secs(1);
/// Longest wait between two tries (and the longest `Retry-After` honoured).
const MAX_BACKOFF: Duration = Duration::from_secs(12 * 3600);

/// The Standard Webhooks signature header value for one body, one entry per secret.
pub fn signature(secrets: &[&str], id: &str, timestamp: i64, body: &str) -> String {
    secrets
        .iter()
        .filter_map(|secret| {
            let key = base64::engine::general_purpose::STANDARD
                .decode(secret.strip_prefix("whsec_")?)
                .ok()?;
            let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
            mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
            Some(format!(
                "v1,{}",
                base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
            ))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

pub struct WebhookSettings {
    pub timeout: Duration,
    pub backoff: Duration,
    pub max_attempts: u32,
    pub allow_private: bool,
    /// This instance's id (kept in the data directory): its claims carry it, so a restart takes
    /// them back at once (issue 12).
    pub instance: String,
}

pub struct Webhooks {
    store: Arc<dyn Store>,
    sealer: Sealer,
    client: reqwest::Client,
    settings: WebhookSettings,
    wake: Arc<Notify>,
    /// Issue 11: counts the attempts by outcome.
    metrics: Metrics,
    /// Every recorded attempt, for tests that wait on one.
    #[cfg(any(test, feature = "test-support"))]
    attempts: tokio::sync::broadcast::Sender<DeliveryRow>,
}

/// What one attempt came to.
enum Attempt {
    Delivered(u16),
    Failed {
        status: Option<u16>,
        error: String,
        retry_after: Option<Duration>,
    },
    Skip(String),
}

impl Webhooks {
    /// Fails only when the guarded HTTP client cannot be built (no TLS roots, for instance):
    /// the start stops rather than fall back to a client without the network guard.
    pub fn new(
        store: Arc<dyn Store>,
        sealer: Sealer,
        settings: WebhookSettings,
        wake: Arc<Notify>,
    ) -> Result<Self, reqwest::Error> {
        let client = outbound::client(settings.timeout, settings.allow_private)?;
        Ok(Self {
            store,
            sealer,
            client,
            settings,
            wake,
            metrics: Metrics::off(),
            #[cfg(any(test, feature = "test-support"))]
            attempts: tokio::sync::broadcast::channel(1024).0,
        })
    }

    /// Issue 11: records the attempts' outcomes in `metrics`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Every attempt recorded from now on, as recorded.
    #[cfg(any(test, feature = "test-support"))]
    pub fn subscribe_attempts(&self) -> tokio::sync::broadcast::Receiver<DeliveryRow> {
        self.attempts.subscribe()
    }

    /// Drains the outbox until `cancel`: due deliveries are claimed in batches and sent in
    /// parallel; new deliveries wake the worker at once.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        // Up to PARALLEL sends at once; a free slot is filled as soon as one finishes, so a
        // receiver that hangs until the timeout holds up only its own delivery.
        let mut sending = tokio::task::JoinSet::new();
        loop {
            let room = PARALLEL.saturating_sub(sending.len());
            let mut more_due = false;
            if room > 0 && !cancel.is_cancelled() {
                let at = now();
                // A claim must outlast the attempt, or a slow receiver would be sent it twice.
                let hold = CLAIM_LEASE.max(self.settings.timeout + Duration::from_secs(30));
                let lease = after(at, hold);
                match self
                    .store
                    .claim_due_deliveries(at, lease, room as i64, &self.settings.instance)
                    .await
                {
                    Ok(claimed) => {
                        more_due = claimed.len() == room;
                        for delivery in claimed {
                            let this = self.clone();
                            sending.spawn(async move { this.deliver(delivery).await });
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "could not claim webhook deliveries"),
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                Some(_) = sending.join_next(), if !sending.is_empty() => {}
                _ = self.wake.notified(), if !more_due => {}
                _ = tokio::time::sleep(IDLE), if !more_due => {}
            }
        }
        // Attempts under way finish (each bounded by the timeout) so their outcome is recorded.
        while sending.join_next().await.is_some() {}
    }

    async fn deliver(&self, mut d: DeliveryRow) {
        let outcome = self.attempt(&d).await;
        let at = now();
        d.last_attempt_at = Some(at);
        match outcome {
            Attempt::Skip(why) => {
                d.status = "skipped".into();
                d.next_attempt_at = None;
                d.last_error = Some(why);
            }
            Attempt::Delivered(status) => {
                d.attempts += 1;
                d.status = "delivered".into();
                d.next_attempt_at = None;
                d.last_status = Some(i32::from(status));
                d.last_error = None;
                d.delivered_at = Some(at);
            }
            Attempt::Failed {
                status,
                error,
                retry_after,
            } => {
                d.attempts += 1;
                d.last_status = status.map(i32::from);
                d.last_error = Some(error);
                if d.attempts as u32 >= self.settings.max_attempts {
                    d.status = "dead".into();
                    d.next_attempt_at = None;
                } else {
                    let wait = next_wait(retry_after, self.backoff(d.attempts as u32));
                    d.next_attempt_at = Some(after(at, wait));
                }
            }
        }
        tracing::info!(delivery = %d.id, status = %d.status, attempts = d.attempts, "webhook attempt");
        self.metrics.delivery(match d.status.as_str() {
            "delivered" => DeliveryOutcome::Delivered,
            "dead" => DeliveryOutcome::Dead,
            "skipped" => DeliveryOutcome::Skipped,
            _ => DeliveryOutcome::Retry,
        });
        if let Err(e) = self.store.finish_delivery_attempt(&d).await {
            tracing::warn!(error = %e, delivery = %d.id, "could not record a webhook attempt");
        }
        #[cfg(any(test, feature = "test-support"))]
        let _ = self.attempts.send(d);
    }

    /// `backoff * 4^(n-1)`, ±25 % jitter.
    fn backoff(&self, attempts: u32) -> Duration {
        let exp = self
            .settings
            .backoff
            .saturating_mul(4u32.saturating_pow(attempts.saturating_sub(1).min(15)));
        exp.min(MAX_BACKOFF).mul_f64(rand::thread_rng().gen_range(0.75..1.25))
    }

    async fn attempt(&self, d: &DeliveryRow) -> Attempt {
        // A prompt is only worth sending while its request still waits for a code. The request
        // and the account are read at once: the prompt's latency pays for one round trip.
        let prompt = d.request_id.filter(|_| d.event_type == "assistance_required");
        let (request, account) = tokio::join!(
            async {
                match prompt {
                    Some(id) => self.store.assistance_by_id(id).await.map(Some),
                    None => Ok(None),
                }
            },
            self.store.engine_account(d.account_id),
        );
        match request {
            Ok(Some(Some(r))) if r.status == AssistanceStatus::Pending => {}
            Ok(Some(_)) => return Attempt::Skip("the assistance request is no longer pending".into()),
            Ok(None) => {}
            Err(e) => {
                return Attempt::Failed {
                    status: None,
                    error: format!("database: {e}"),
                    retry_after: None,
                }
            }
        }
        let account = match account {
            Ok(Some(a)) => a,
            Ok(None) => return Attempt::Skip("the account no longer exists".into()),
            Err(e) => {
                return Attempt::Failed {
                    status: None,
                    error: format!("database: {e}"),
                    retry_after: None,
                }
            }
        };
        let (settings, secrets) = match account_config::decode(account.config.as_ref(), &self.sealer) {
            Ok(c) => c,
            Err(e) => return Attempt::Skip(format!("account config unreadable: {e}")),
        };
        let Some(target) = Target::of(&d.channel, &settings, &secrets) else {
            return Attempt::Skip(format!("the account has no {} endpoint any more", d.channel));
        };
        let url = match outbound::check_target(target.endpoint, self.settings.allow_private) {
            Ok(u) => u,
            Err(e) => {
                return Attempt::Failed {
                    status: None,
                    error: format!("target refused: {e}"),
                    retry_after: None,
                }
            }
        };
        let timestamp = now().timestamp();
        let keys = secrets.signing_keys(target.signing, now().timestamp_millis());
        let id = d.id.to_string();
        let mut req = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .body(d.payload.clone());
        if target.signing == SigningChannel::Result {
            req = req
                .header("accept", "application/json")
                .header("user-agent", concat!("Reconbanker/", env!("CARGO_PKG_VERSION")));
        }
        let signed = signature(&keys, &id, timestamp, &d.payload);
        if !signed.is_empty() {
            req = req.header("webhook-signature", signed);
        }
        if let Some(authorization) = target.authorization {
            req = req.header("authorization", authorization);
        }
        match req.send().await {
            Ok(res) if res.status().is_success() => Attempt::Delivered(res.status().as_u16()),
            Ok(res) => {
                let retry_after = res
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after);
                Attempt::Failed {
                    status: Some(res.status().as_u16()),
                    error: format!("receiver answered {}", res.status().as_u16()),
                    retry_after,
                }
            }
            Err(e) => {
                let error = if e.is_timeout() {
                    "timeout".to_owned()
                } else if outbound::refused_by_guard(&e) {
                    "target refused: resolves to a non-public address".to_owned()
                } else if e.is_connect() {
                    "could not connect".to_owned()
                } else {
                    "request failed".to_owned()
                };
                Attempt::Failed {
                    status: None,
                    error,
                    retry_after: None,
                }
            }
        }
    }
}

/// `Retry-After`: delay-seconds or an HTTP-date.
fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        // More seconds than a u64 holds is still "later than the cap", not garbage.
        return Some(v.parse::<u64>().map_or(Duration::MAX, Duration::from_secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v.trim()).ok()?;
    (at.with_timezone(&chrono::Utc) - now()).to_std().ok()
}

/// The wait before the next try: the receiver's `Retry-After` is the least it asks for (RFC 9110
/// §10.2.3), so it can lengthen our backoff but never shorten it (a `Retry-After: 0` would spend
/// every try within milliseconds); at most [`MAX_BACKOFF`].
fn next_wait(retry_after: Option<Duration>, backoff: Duration) -> Duration {
    retry_after.unwrap_or(Duration::ZERO).max(backoff).min(MAX_BACKOFF)
}

/// When a rotated-out secret stops signing.
pub fn grace_until(grace: Duration) -> Timestamp {
    after(now(), grace)
}

/// Where a delivery goes, resolved at send time from the account's current config.
struct Target<'a> {
    endpoint: &'a str,
    authorization: Option<String>,
    signing: SigningChannel,
}

impl<'a> Target<'a> {
    /// `notification`: the notification endpoint with its own auth. `result` (reconciliation
    /// results and passthrough): `webhook_url`, token `webhook_auth_token` else `auth_token`,
    /// type `webhook_auth_type` else `auth_type` else bearer (docs/reconciliation.md §6).
    fn of(
        channel: &str,
        settings: &'a account_config::Settings,
        secrets: &'a account_config::SecretFields,
    ) -> Option<Self> {
        let header = |kind: Option<AuthType>, token: &str| match kind {
            Some(AuthType::ApiKey) => format!("Api-Key {token}"),
            _ => format!("Bearer {token}"),
        };
        if channel == "result" {
            let token = secrets.webhook_auth_token.as_deref().or(secrets.auth_token.as_deref());
            let kind = settings.webhook_auth_type.or(settings.auth_type);
            return Some(Self {
                endpoint: settings.webhook_url.as_deref()?,
                authorization: token.map(|t| header(kind, t)),
                signing: SigningChannel::Result,
            });
        }
        Some(Self {
            endpoint: settings.notification_endpoint_url.as_deref()?,
            // A token with no type is sent as Bearer, as on the result channel and the poll.
            authorization: secrets
                .notification_auth_token
                .as_deref()
                .map(|token| header(settings.notification_auth_type, token)),
            signing: SigningChannel::Notification,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_follows_standard_webhooks() {
        // Computed independently: HMAC-SHA256(key = base64-decoded secret, "id.ts.body").
        let key = [7u8; 32];
        let secret = format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(key));
        let sig = signature(&[&secret], "msg_1", 1_700_000_000, r#"{"a":1}"#);
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("key");
        mac.update(br#"msg_1.1700000000.{"a":1}"#);
        let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        assert_eq!(sig, format!("v1,{expected}"));
        let two = signature(&[&secret, &secret], "msg_1", 1_700_000_000, r#"{"a":1}"#);
        assert_eq!(two.split(' ').count(), 2);
        assert_eq!(signature(&["not-a-secret"], "m", 1, "b"), "");
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("soon"), None);
        let later = (now() + chrono::Duration::seconds(90)).to_rfc2822();
        let d = parse_retry_after(&later).expect("date form");
        assert!(d <= Duration::from_secs(90) && d >= Duration::from_secs(85), "{d:?}");
        assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("99999999999999999999"), Some(Duration::MAX));
        assert_eq!(parse_retry_after("-5"), None);
        assert_eq!(parse_retry_after(""), None);
    }

    #[test]
    fn a_notification_token_is_sent_whatever_its_type() {
        let mut settings = account_config::Settings {
            notification_endpoint_url: Some("https://hooks.example/n".into()),
            ..Default::default()
        };
        let mut secrets = account_config::SecretFields::default();
        let auth = |s: &account_config::Settings, k: &account_config::SecretFields| {
            Target::of("notification", s, k).and_then(|t| t.authorization)
        };
        assert_eq!(auth(&settings, &secrets), None, "no token, no header");
        secrets.notification_auth_token = Some("tok".into());
        assert_eq!(auth(&settings, &secrets).as_deref(), Some("Bearer tok"));
        settings.notification_auth_type = Some(AuthType::ApiKey);
        assert_eq!(auth(&settings, &secrets).as_deref(), Some("Api-Key tok"));
        settings.notification_auth_type = Some(AuthType::Bearer);
        assert_eq!(auth(&settings, &secrets).as_deref(), Some("Bearer tok"));
    }

    #[test]
    fn retry_after_lengthens_the_backoff_never_shortens_it() {
        let s = Duration::from_secs;
        assert_eq!(next_wait(None, s(5)), s(5));
        assert_eq!(next_wait(Some(s(0)), s(5)), s(5));
        assert_eq!(next_wait(Some(s(3)), s(5)), s(5));
        assert_eq!(next_wait(Some(s(3600)), s(5)), s(3600));
        assert_eq!(next_wait(Some(Duration::MAX), s(5)), MAX_BACKOFF);
        assert_eq!(next_wait(None, s(24 * 3600)), MAX_BACKOFF);
    }
}
