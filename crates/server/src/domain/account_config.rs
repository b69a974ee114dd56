//! An account's configuration document (docs/product.md §5 `Config`): the typed settings, the secret
//! fields (sealed at rest with the master key), the partial-update input and the masked
//! output. Absent field = unchanged; `null` = cleared (for a field with a default: reset).

use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Deserializer, Serialize};

use super::exact_json::{ExactJson, ExactObject};
use super::FieldError;

/// What a set secret is shown as; sending it back keeps the stored value.
pub const MASK: &str = "********";
const MAX_SECRET_CHARS: usize = 4096;
const MAX_USERNAME_CHARS: usize = 256;
const MAX_RETRY_LIMIT: u32 = 10;
const MAX_POLLING_BODY_BYTES: usize = 16 * 1024;
/// Keys the reconciliation result and passthrough webhooks set themselves; extra fields may not
/// name them (docs/reconciliation.md §6: the documented five and `id`/`received_at` of passthrough,
/// plus the three keys we add).
pub const RESERVED_EXTRA_FIELDS: [&str; 10] = [
    "external_id",
    "status",
    "amount",
    "currency",
    "name",
    "id",
    "received_at",
    "request_id",
    "occurred_at",
    "movement",
];

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum SessionType {
    #[default]
    #[serde(rename = "one-shot")]
    OneShot,
    #[serde(rename = "persistent")]
    Persistent,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LoginMode {
    #[default]
    Simple,
    Assisted,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthType {
    Bearer,
    ApiKey,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NotificationEvent {
    AssistanceRequired,
    LoginFailed,
    ScrapeFailed,
    /// The pending-orders poll failed three times in a row (reconciliation).
    PollFailed,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum PollingMethod {
    #[default]
    #[serde(rename = "GET")]
    Get,
    #[serde(rename = "POST")]
    Post,
}

fn default_retry_limit() -> u32 {
    3
}

/// The non-secret fields, stored as JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub session_type: SessionType,
    pub login_mode: LoginMode,
    pub notification_endpoint_url: Option<String>,
    pub notification_auth_type: Option<AuthType>,
    pub notification_events: Vec<NotificationEvent>,
    pub pending_orders_endpoint: Option<String>,
    pub polling_method: PollingMethod,
    pub polling_body: Option<ExactJson>,
    pub auth_type: Option<AuthType>,
    pub webhook_url: Option<String>,
    pub webhook_auth_type: Option<AuthType>,
    #[serde(default = "default_retry_limit")]
    pub retry_limit: u32,
    pub notify_on_expired: bool,
    pub webhook_extra_fields: ExactObject,
    pub silent_ingestion: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            session_type: SessionType::default(),
            login_mode: LoginMode::default(),
            notification_endpoint_url: None,
            notification_auth_type: None,
            notification_events: Vec::new(),
            pending_orders_endpoint: None,
            polling_method: PollingMethod::default(),
            polling_body: None,
            auth_type: None,
            webhook_url: None,
            webhook_auth_type: None,
            retry_limit: default_retry_limit(),
            notify_on_expired: false,
            webhook_extra_fields: ExactObject::new(),
            silent_ingestion: false,
        }
    }
}

/// The secret fields, sealed together. `Debug` is redacted.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SecretFields {
    pub bank_username: Option<String>,
    pub bank_password: Option<String>,
    pub notification_auth_token: Option<String>,
    pub notification_signing_secret: Option<String>,
    /// The secret rotated out, still signing until `previous_signing_secret_until` (ms).
    pub previous_signing_secret: Option<String>,
    pub previous_signing_secret_until: Option<i64>,
    pub auth_token: Option<String>,
    pub webhook_auth_token: Option<String>,
    /// Signs the reconciliation result and passthrough webhooks (separate from the
    /// notification secret, so the two receivers can be different parties).
    pub webhook_signing_secret: Option<String>,
    pub previous_webhook_signing_secret: Option<String>,
    pub previous_webhook_signing_secret_until: Option<i64>,
    /// Secrets rotated out before the `previous_…` one and still in the grace they were
    /// promised, newest first (a second rotation within the grace does not cut the first
    /// one's short). At most [`MAX_OLDER_SECRETS`] per channel.
    pub older_signing_secrets: Vec<RetiredSecret>,
    pub older_webhook_signing_secrets: Vec<RetiredSecret>,
}

/// A signing secret rotated out, signing until `until` (ms since the epoch).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct RetiredSecret {
    pub secret: String,
    pub until: i64,
}

/// How many secrets rotated out before the latest one a channel keeps signing with (the
/// signature header grows by one signature each).
pub const MAX_OLDER_SECRETS: usize = 8;

/// The two signed webhook channels of an account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SigningChannel {
    /// Operational alerts (`notification_endpoint_url`).
    Notification,
    /// Reconciliation results and passthrough movements (`webhook_url`).
    Result,
}

impl SecretFields {
    /// The current signing secret of a channel, and the rotated-out one with its end (ms).
    pub fn signing(&self, channel: SigningChannel) -> (Option<&str>, Option<(&str, i64)>) {
        let (current, previous, until) = match channel {
            SigningChannel::Notification => (
                &self.notification_signing_secret,
                &self.previous_signing_secret,
                self.previous_signing_secret_until,
            ),
            SigningChannel::Result => (
                &self.webhook_signing_secret,
                &self.previous_webhook_signing_secret,
                self.previous_webhook_signing_secret_until,
            ),
        };
        (current.as_deref(), previous.as_deref().zip(until))
    }

    /// Every secret a channel signs with at `now_ms`: the current one, then each one rotated
    /// out and still in its grace, newest first.
    pub fn signing_keys(&self, channel: SigningChannel, now_ms: i64) -> Vec<&str> {
        let (current, previous) = self.signing(channel);
        let older = match channel {
            SigningChannel::Notification => &self.older_signing_secrets,
            SigningChannel::Result => &self.older_webhook_signing_secrets,
        };
        current
            .into_iter()
            .chain(previous.filter(|(_, until)| now_ms < *until).map(|(s, _)| s))
            .chain(older.iter().filter(|r| now_ms < r.until).map(|r| r.secret.as_str()))
            .collect()
    }

    /// Gives every channel a signing secret (accounts created before a channel existed get
    /// theirs on their next config write). Returns whether anything was generated.
    pub fn ensure_signing_secrets(&mut self) -> bool {
        let mut changed = false;
        for slot in [&mut self.notification_signing_secret, &mut self.webhook_signing_secret] {
            if slot.is_none() {
                *slot = Some(new_signing_secret());
                changed = true;
            }
        }
        changed
    }

    /// Replaces a channel's signing secret; the old one keeps signing until `until_ms` (none
    /// when `until_ms` is `None`: no grace). Returns the new secret.
    pub fn rotate(&mut self, channel: SigningChannel, until_ms: Option<i64>) -> String {
        self.rotate_at(channel, until_ms, chrono::Utc::now().timestamp_millis())
    }

    /// [`Self::rotate`] at `now_ms`.
    pub fn rotate_at(&mut self, channel: SigningChannel, until_ms: Option<i64>, now_ms: i64) -> String {
        let fresh = new_signing_secret();
        let (current, previous, until, older) = match channel {
            SigningChannel::Notification => (
                &mut self.notification_signing_secret,
                &mut self.previous_signing_secret,
                &mut self.previous_signing_secret_until,
                &mut self.older_signing_secrets,
            ),
            SigningChannel::Result => (
                &mut self.webhook_signing_secret,
                &mut self.previous_webhook_signing_secret,
                &mut self.previous_webhook_signing_secret_until,
                &mut self.older_webhook_signing_secrets,
            ),
        };
        // The secret rotated out last time keeps the grace it was promised.
        if let (Some(secret), Some(until)) = (previous.take(), *until) {
            older.insert(0, RetiredSecret { secret, until });
        }
        older.retain(|r| now_ms < r.until);
        older.truncate(MAX_OLDER_SECRETS);
        *previous = current.replace(fresh.clone()).filter(|_| until_ms.is_some());
        *until = previous.as_ref().and(until_ms);
        fresh
    }
}

impl std::fmt::Debug for SecretFields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretFields(<redacted>)")
    }
}

/// A fresh Standard Webhooks signing secret: `whsec_` + base64 of 32 random bytes.
pub fn new_signing_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// `Some(None)` for an explicit `null`, `Some(Some(v))` for a value, `None` when absent.
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// The `PUT /accounts/:id/config` body: every field optional; a field sent changes, `null`
/// clears it (or restores its default), an absent one stays.
#[derive(Clone, Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigPatch {
    #[serde(default, deserialize_with = "nullable")]
    pub session_type: Option<Option<SessionType>>,
    #[serde(default, deserialize_with = "nullable")]
    pub login_mode: Option<Option<LoginMode>>,
    #[serde(default, deserialize_with = "nullable")]
    pub bank_username: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub bank_password: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub notification_endpoint_url: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub notification_auth_type: Option<Option<AuthType>>,
    #[serde(default, deserialize_with = "nullable")]
    pub notification_auth_token: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub notification_events: Option<Option<Vec<NotificationEvent>>>,
    #[serde(default, deserialize_with = "nullable")]
    pub notification_signing_secret: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub webhook_signing_secret: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub pending_orders_endpoint: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub polling_method: Option<Option<PollingMethod>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Value>)]
    pub polling_body: Option<Option<ExactJson>>,
    #[serde(default, deserialize_with = "nullable")]
    pub auth_type: Option<Option<AuthType>>,
    #[serde(default, deserialize_with = "nullable")]
    pub auth_token: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub webhook_url: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub webhook_auth_type: Option<Option<AuthType>>,
    #[serde(default, deserialize_with = "nullable")]
    pub webhook_auth_token: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub retry_limit: Option<Option<u32>>,
    #[serde(default, deserialize_with = "nullable")]
    pub notify_on_expired: Option<Option<bool>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Object>)]
    pub webhook_extra_fields: Option<Option<ExactObject>>,
    #[serde(default, deserialize_with = "nullable")]
    pub silent_ingestion: Option<Option<bool>>,
}

impl ConfigPatch {
    /// The outbound URLs this patch sets, with their field names (checked by the caller
    /// against the outbound-network rule, which needs DNS).
    pub fn urls(&self) -> Vec<(&'static str, &str)> {
        [
            ("notification_endpoint_url", &self.notification_endpoint_url),
            ("pending_orders_endpoint", &self.pending_orders_endpoint),
            ("webhook_url", &self.webhook_url),
        ]
        .into_iter()
        .filter_map(|(name, v)| v.as_ref().and_then(|o| o.as_deref()).map(|u| (name, u)))
        .collect()
    }
}

fn check_secret(field: &'static str, value: &str, max: usize) -> Result<(), FieldError> {
    if value.is_empty() {
        return Err(FieldError::new(field, "must not be empty (use null to clear)"));
    }
    if value.chars().count() > max {
        return Err(FieldError::new(field, format!("must be at most {max} characters")));
    }
    Ok(())
}

/// Tokens travel in an `Authorization` header: visible ASCII only.
fn check_token(field: &'static str, value: &str) -> Result<(), FieldError> {
    check_secret(field, value, MAX_SECRET_CHARS)?;
    if !value.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(FieldError::new(field, "must be printable ASCII without spaces"));
    }
    Ok(())
}

/// Applies a secret field: absent keeps, `null` clears, the mask keeps, a value replaces.
fn apply_secret(
    slot: &mut Option<String>,
    patch: Option<Option<String>>,
    check: impl Fn(&str) -> Result<(), FieldError>,
) -> Result<(), FieldError> {
    match patch {
        None => {}
        Some(None) => *slot = None,
        Some(Some(v)) if v == MASK => {}
        Some(Some(v)) => {
            check(&v)?;
            *slot = Some(v);
        }
    }
    Ok(())
}

fn set<T>(slot: &mut T, patch: Option<Option<T>>, default: impl FnOnce() -> T) {
    match patch {
        None => {}
        Some(None) => *slot = default(),
        Some(Some(v)) => *slot = v,
    }
}

/// Merges a patch into the current document. URLs must already have passed the outbound check.
pub fn apply(settings: &mut Settings, secrets: &mut SecretFields, patch: ConfigPatch) -> Result<(), FieldError> {
    set(&mut settings.session_type, patch.session_type, SessionType::default);
    set(&mut settings.login_mode, patch.login_mode, LoginMode::default);
    apply_secret(&mut secrets.bank_username, patch.bank_username, |v| {
        check_secret("bank_username", v, MAX_USERNAME_CHARS)
    })?;
    apply_secret(&mut secrets.bank_password, patch.bank_password, |v| {
        check_secret("bank_password", v, MAX_SECRET_CHARS)
    })?;
    set(
        &mut settings.notification_endpoint_url,
        patch.notification_endpoint_url.map(Some),
        || None,
    );
    set(
        &mut settings.notification_auth_type,
        patch.notification_auth_type.map(Some),
        || None,
    );
    apply_secret(
        &mut secrets.notification_auth_token,
        patch.notification_auth_token,
        |v| check_token("notification_auth_token", v),
    )?;
    if let Some(events) = patch.notification_events {
        let mut unique = Vec::new();
        for e in events.unwrap_or_default() {
            if !unique.contains(&e) {
                unique.push(e);
            }
        }
        settings.notification_events = unique;
    }
    // Generated by the server: sending back the value shown is harmless, anything else is refused.
    for (field, sent, current) in [
        (
            "notification_signing_secret",
            &patch.notification_signing_secret,
            &secrets.notification_signing_secret,
        ),
        (
            "webhook_signing_secret",
            &patch.webhook_signing_secret,
            &secrets.webhook_signing_secret,
        ),
    ] {
        if let Some(sent) = sent {
            if sent.as_deref() != current.as_deref() {
                return Err(FieldError::new(
                    field,
                    "is generated by the server and cannot be set; rotate it instead",
                ));
            }
        }
    }
    set(
        &mut settings.pending_orders_endpoint,
        patch.pending_orders_endpoint.map(Some),
        || None,
    );
    set(
        &mut settings.polling_method,
        patch.polling_method,
        PollingMethod::default,
    );
    if let Some(body) = patch.polling_body {
        if let Some(v) = &body {
            if !(v.is_string() || v.is_object()) {
                return Err(FieldError::new("polling_body", "must be a string, an object or null"));
            }
            if v.get().len() > MAX_POLLING_BODY_BYTES {
                return Err(FieldError::new("polling_body", "must be at most 16 KiB"));
            }
        }
        settings.polling_body = body;
    }
    set(&mut settings.auth_type, patch.auth_type.map(Some), || None);
    apply_secret(&mut secrets.auth_token, patch.auth_token, |v| {
        check_token("auth_token", v)
    })?;
    set(&mut settings.webhook_url, patch.webhook_url.map(Some), || None);
    set(
        &mut settings.webhook_auth_type,
        patch.webhook_auth_type.map(Some),
        || None,
    );
    apply_secret(&mut secrets.webhook_auth_token, patch.webhook_auth_token, |v| {
        check_token("webhook_auth_token", v)
    })?;
    if let Some(Some(n)) = patch.retry_limit {
        if n > MAX_RETRY_LIMIT {
            return Err(FieldError::new("retry_limit", "must be from 0 to 10"));
        }
    }
    set(&mut settings.retry_limit, patch.retry_limit, default_retry_limit);
    set(&mut settings.notify_on_expired, patch.notify_on_expired, || false);
    if let Some(Some(fields)) = &patch.webhook_extra_fields {
        // Every reserved key given is named, not only the first.
        let bad: Vec<String> = fields
            .keys()
            .filter(|k| RESERVED_EXTRA_FIELDS.contains(&k.as_str()))
            .map(|k| format!("{k:?}"))
            .collect();
        if !bad.is_empty() {
            return Err(FieldError::new(
                "webhook_extra_fields",
                format!(
                    "may not set {} (reserved: {})",
                    bad.join(", "),
                    RESERVED_EXTRA_FIELDS.join(", ")
                ),
            ));
        }
    }
    set(
        &mut settings.webhook_extra_fields,
        patch.webhook_extra_fields,
        ExactObject::new,
    );
    set(&mut settings.silent_ingestion, patch.silent_ingestion, || false);
    Ok(())
}

/// The associated data binding an account's sealed secrets to that account.
pub fn aad(account: reconbanker_store::AccountId) -> Vec<u8> {
    format!("account-config:{account}").into_bytes()
}

/// Reads a stored config (defaults when there is none), opening its sealed secrets.
pub fn decode(
    row: Option<&reconbanker_store::AccountConfigRow>,
    sealer: &crate::support::crypto::Sealer,
) -> Result<(Settings, SecretFields), String> {
    let Some(row) = row else {
        return Ok((Settings::default(), SecretFields::default()));
    };
    let settings: Settings = serde_json::from_str(&row.settings).map_err(|e| format!("settings: {e}"))?;
    let secrets = match &row.secrets {
        None => SecretFields::default(),
        Some(sealed) => {
            let plain = sealer.open(sealed, &aad(row.account_id)).map_err(|e| e.to_string())?;
            serde_json::from_slice(&plain).map_err(|e| format!("secrets: {e}"))?
        }
    };
    Ok((settings, secrets))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn a_rotation_within_the_grace_keeps_every_promised_secret_until_its_own_end() {
        let mut f = SecretFields::default();
        f.ensure_signing_secrets();
        let first = f.notification_signing_secret.clone().expect("secret");
        let t = 1_000_000;
        let second = f.rotate_at(SigningChannel::Notification, Some(t + 100), t);
        let third = f.rotate_at(SigningChannel::Notification, Some(t + 150), t + 50);
        let keys = |f: &SecretFields, now| -> Vec<String> {
            f.signing_keys(SigningChannel::Notification, now)
                .into_iter()
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(keys(&f, t + 60), vec![third.clone(), second.clone(), first]);
        assert_eq!(
            keys(&f, t + 100),
            vec![third.as_str(), second.as_str()],
            "the first's grace ended"
        );
        assert_eq!(keys(&f, t + 150), vec![third]);
        assert_eq!(
            f.signing_keys(SigningChannel::Result, t).len(),
            1,
            "the other channel untouched"
        );
        // Rotations without end keep at most MAX_OLDER_SECRETS older ones (and drop ended ones).
        for i in 0..20 {
            f.rotate_at(SigningChannel::Notification, Some(t + 10_000), t + 200 + i);
        }
        assert_eq!(keys(&f, t + 300).len(), 2 + MAX_OLDER_SECRETS);
        f.rotate_at(SigningChannel::Notification, None, t + 400);
        assert_eq!(
            keys(&f, t + 400).len(),
            1 + MAX_OLDER_SECRETS,
            "no grace for the newest, the promised ones stay"
        );
    }

    fn patch(v: Value) -> ConfigPatch {
        serde_json::from_str(&v.to_string()).expect("patch parses")
    }

    #[test]
    fn absent_keeps_null_clears_value_sets() {
        let mut s = Settings::default();
        let mut sec = SecretFields::default();
        apply(
            &mut s,
            &mut sec,
            patch(json!({"login_mode": "assisted", "bank_password": "pw", "retry_limit": 5})),
        )
        .expect("ok");
        assert_eq!(s.login_mode, LoginMode::Assisted);
        assert_eq!(s.retry_limit, 5);
        apply(&mut s, &mut sec, patch(json!({"session_type": "persistent"}))).expect("ok");
        assert_eq!(s.login_mode, LoginMode::Assisted, "absent = unchanged");
        assert_eq!(sec.bank_password.as_deref(), Some("pw"));
        apply(
            &mut s,
            &mut sec,
            patch(json!({"bank_password": MASK, "retry_limit": null})),
        )
        .expect("ok");
        assert_eq!(sec.bank_password.as_deref(), Some("pw"), "mask keeps");
        assert_eq!(s.retry_limit, 3, "null resets to the default");
        apply(&mut s, &mut sec, patch(json!({"bank_password": null}))).expect("ok");
        assert_eq!(sec.bank_password, None);
    }

    #[test]
    fn enums_and_unknown_fields_are_refused_by_the_parser() {
        for bad in [
            json!({"session_type": "forever"}),
            json!({"login_mode": "ASSISTED"}),
            json!({"notification_events": ["nope"]}),
            json!({"polling_method": "PUT"}),
            json!({"notification_auth_type": "basic"}),
            json!({"retry_limit": -1}),
            json!({"surprise": 1}),
        ] {
            assert!(serde_json::from_value::<ConfigPatch>(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn semantic_checks() {
        let mut s = Settings::default();
        let mut sec = SecretFields {
            notification_signing_secret: Some("whsec_a".into()),
            ..Default::default()
        };
        for bad in [
            json!({"retry_limit": 11}),
            json!({"webhook_extra_fields": {"amount": 1}}),
            json!({"auth_token": "has space"}),
            json!({"bank_password": ""}),
            json!({"polling_body": 3}),
            json!({"notification_signing_secret": "whsec_mine"}),
        ] {
            assert!(apply(&mut s, &mut sec, patch(bad.clone())).is_err(), "{bad}");
        }
        apply(
            &mut s,
            &mut sec,
            patch(json!({"notification_signing_secret": "whsec_a"})),
        )
        .expect("sending it back is fine");
    }
}
