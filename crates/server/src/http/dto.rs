//! Output types shared by both surfaces or by several dashboard routes.

use crate::domain::exact_json::{ExactJson, ExactObject};
use reconbanker_store::CodeKind;
use serde::Serialize;

use utoipa::ToSchema;

use crate::assistance::PendingView;
use crate::domain::account_config::{
    AuthType, LoginMode, NotificationEvent, PollingMethod, SecretFields, SessionType, Settings, MASK,
};

/// The bank's description of the code it expects.
#[derive(Serialize, ToSchema)]
pub struct DescriptorOut {
    /// How many characters the code has.
    pub length: u32,
    /// `numeric` or `alphanumeric`.
    #[serde(rename = "type")]
    #[schema(inline)]
    pub kind: CodeKindOut,
    /// Optional hint about what the code is for, such as `login`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CodeKindOut {
    Numeric,
    Alphanumeric,
}

/// An assistance request waiting for a code.
#[derive(Serialize, ToSchema)]
pub struct PendingOut {
    /// The request's id.
    pub id: String,
    /// Always `otp`.
    #[serde(rename = "type")]
    pub kind: String,
    pub descriptor: DescriptorOut,
    /// How many codes have already been tried for this request.
    pub attempts: i32,
}

impl From<&PendingView> for PendingOut {
    fn from(p: &PendingView) -> Self {
        Self {
            id: p.id.to_string(),
            kind: p.kind.clone(),
            descriptor: DescriptorOut {
                length: p.descriptor.length,
                kind: match p.descriptor.kind {
                    CodeKind::Numeric => CodeKindOut::Numeric,
                    CodeKind::Alphanumeric => CodeKindOut::Alphanumeric,
                },
                purpose: p.descriptor.purpose.clone(),
            },
            attempts: p.attempts,
        }
    }
}

/// `202 Accepted`: the code was handed to the waiting login (not yet confirmed by the bank).
#[derive(Serialize, ToSchema)]
pub struct OtpAcceptedOut {
    pub submitted: bool,
    /// The assistance request the code was delivered to.
    pub request_id: String,
}

/// `202 {"queued": true}`: work accepted for later.
#[derive(Serialize, ToSchema)]
pub struct QueuedOut {
    pub queued: bool,
}

impl QueuedOut {
    pub const YES: QueuedOut = QueuedOut { queued: true };
}

/// The `Config` as clients see it: secrets masked or reduced to `has_…`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConfigOut {
    pub session_type: SessionType,
    pub login_mode: LoginMode,
    #[schema(required = true)]
    pub bank_username: Option<String>,
    pub has_bank_password: bool,
    #[schema(required = true)]
    pub notification_endpoint_url: Option<String>,
    #[schema(required = true)]
    pub notification_auth_type: Option<AuthType>,
    /// `********` when set, else `null`.
    #[schema(required = true, value_type = Option<String>)]
    pub notification_auth_token: Option<&'static str>,
    pub notification_events: Vec<NotificationEvent>,
    #[schema(required = true)]
    pub notification_signing_secret: Option<String>,
    #[schema(required = true)]
    pub webhook_signing_secret: Option<String>,
    #[schema(required = true)]
    pub pending_orders_endpoint: Option<String>,
    pub polling_method: PollingMethod,
    /// Any JSON value, sent as the poll's body with `POST`.
    #[schema(required = true, value_type = Option<Value>)]
    pub polling_body: Option<ExactJson>,
    #[schema(required = true)]
    pub auth_type: Option<AuthType>,
    /// `********` when set, else `null`.
    #[schema(required = true, value_type = Option<String>)]
    pub auth_token: Option<&'static str>,
    #[schema(required = true)]
    pub webhook_url: Option<String>,
    #[schema(required = true)]
    pub webhook_auth_type: Option<AuthType>,
    /// `********` when set, else `null`.
    #[schema(required = true, value_type = Option<String>)]
    pub webhook_auth_token: Option<&'static str>,
    pub retry_limit: u32,
    pub notify_on_expired: bool,
    #[schema(value_type = Object)]
    pub webhook_extra_fields: ExactObject,
    pub silent_ingestion: bool,
}

impl ConfigOut {
    pub fn new(s: Settings, secrets: &SecretFields) -> Self {
        let mask = |v: &Option<String>| v.as_ref().map(|_| MASK);
        Self {
            session_type: s.session_type,
            login_mode: s.login_mode,
            bank_username: secrets.bank_username.clone(),
            has_bank_password: secrets.bank_password.is_some(),
            notification_endpoint_url: s.notification_endpoint_url,
            notification_auth_type: s.notification_auth_type,
            notification_auth_token: mask(&secrets.notification_auth_token),
            notification_events: s.notification_events,
            notification_signing_secret: secrets.notification_signing_secret.clone(),
            webhook_signing_secret: secrets.webhook_signing_secret.clone(),
            pending_orders_endpoint: s.pending_orders_endpoint,
            polling_method: s.polling_method,
            polling_body: s.polling_body,
            auth_type: s.auth_type,
            auth_token: mask(&secrets.auth_token),
            webhook_url: s.webhook_url,
            webhook_auth_type: s.webhook_auth_type,
            webhook_auth_token: mask(&secrets.webhook_auth_token),
            retry_limit: s.retry_limit,
            notify_on_expired: s.notify_on_expired,
            webhook_extra_fields: s.webhook_extra_fields,
            silent_ingestion: s.silent_ingestion,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::account_config::new_signing_secret;

    #[test]
    fn output_masks_every_secret() {
        let sec = SecretFields {
            bank_username: Some("ana".into()),
            bank_password: Some("pw-secret".into()),
            notification_auth_token: Some("tok-secret-1".into()),
            notification_signing_secret: Some("whsec_x".into()),
            auth_token: Some("tok-secret-2".into()),
            webhook_auth_token: Some("tok-secret-3".into()),
            ..SecretFields::default()
        };
        let out = serde_json::to_string(&ConfigOut::new(Settings::default(), &sec)).expect("json");
        assert!(!out.contains("secret-"), "{out}");
        assert!(out.contains("\"has_bank_password\":true"));
        assert_eq!(out.matches(MASK).count(), 3);
        assert!(new_signing_secret().starts_with("whsec_"));
    }
}
