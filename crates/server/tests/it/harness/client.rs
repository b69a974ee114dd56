//! The typed client: a request, the status it must answer with, and the body deserialised into
//! a mirror of the server's output type. A renamed or missing field then fails right here, at
//! the call, with the whole body in the message. Wire-shape tests keep using the raw [`Res`].
//!
//! The mirrors are written from the API documentation, not imported from the server: a test
//! that pins a shape says so with `deny_unknown_fields`, so an added field fails it as well.
//! Every field is declared whether a test reads it or not (hence `dead_code`): a missing
//! non-`Option` field then fails deserialisation too.
#![allow(dead_code)]

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use super::{Res, TestApp};

impl Res {
    /// The body as `T`, after checking the status.
    #[track_caller]
    pub fn typed<T: DeserializeOwned>(self, status: StatusCode) -> T {
        assert_eq!(self.status, status, "status; body: {}", self.text);
        match serde_json::from_str(&self.text) {
            Ok(t) => t,
            Err(e) => panic!("body is not a {}: {e}; body: {}", std::any::type_name::<T>(), self.text),
        }
    }

    /// A dashboard error: the status, the code and the typed body.
    #[track_caller]
    pub fn api_error(&self, status: u16, code: &str) -> ApiErrorOut {
        self.assert_api_error(status, code);
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("error body: {e}; body: {}", self.text))
    }

    /// A `/v1` error: the status, the code and the typed `error` object.
    #[track_caller]
    pub fn v1_error(&self, status: u16, code: &str) -> V1ErrorDetail {
        self.assert_v1_error(status, code);
        let body: V1ErrorOut =
            serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("error body: {e}; body: {}", self.text));
        body.error
    }
}

impl TestApp {
    /// A dashboard request with an optional token and JSON body, answering `status` with a `T`.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        status: StatusCode,
    ) -> T {
        self.json(method, path, token, body).await.typed(status)
    }

    /// `GET` with a dashboard token.
    pub async fn get_as<T: DeserializeOwned>(&self, path: &str, token: &str, status: StatusCode) -> T {
        self.call(Method::GET, path, Some(token), None, status).await
    }

    /// `POST` with a dashboard token and an optional JSON body.
    pub async fn post_as<T: DeserializeOwned>(
        &self,
        path: &str,
        token: &str,
        body: Option<Value>,
        status: StatusCode,
    ) -> T {
        self.call(Method::POST, path, Some(token), body, status).await
    }

    /// A `/v1` request with the key in `x-api-key`, answering `status` with a `T`.
    pub async fn v1_as<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        key: &str,
        body: Option<Value>,
        status: StatusCode,
    ) -> T {
        self.v1(method, path, key, body).await.typed(status)
    }
}

// --- mirrors of the server's output types ---

/// `{"error": "<message>", "code": "<CODE>"}` with optional `details`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiErrorOut {
    pub error: String,
    pub code: String,
    #[serde(default)]
    pub details: Option<Vec<FieldError>>,
}

/// One entry of a validation error's `details`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct V1ErrorOut {
    pub error: V1ErrorDetail,
}

/// The `error` object of a `/v1` error; `details` differs by code, so it stays raw.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct V1ErrorDetail {
    pub code: String,
    pub message: String,
    #[serde(default)]
    pub details: Option<Value>,
}

/// `POST /auth/register`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisteredOut {
    pub id: String,
    pub email: String,
}

/// `POST /auth/login`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginOut {
    pub token: String,
    pub user: UserOut,
}

#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UserOut {
    pub id: String,
    pub email: String,
    pub name: Option<String>,
}

/// `GET /me`.
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MeOut {
    pub id: String,
    pub email: String,
    pub name: Option<String>,
    pub operation_mode: Option<String>,
}

/// `GET /banks`, `GET /banks/:id`, `POST /banks`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BankOut {
    pub id: String,
    pub code: String,
    pub name: String,
    pub login_url: Option<String>,
    pub status: String,
}

/// `GET /accounts/:id` and friends.
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccountOut {
    pub id: String,
    pub bank: String,
    pub name: String,
    pub status: String,
    pub session_status: String,
    pub scrape_blocked_at: Option<String>,
    pub scrape_blocked_reason: Option<String>,
    /// Only `GET /accounts/:id` has it (issue 11).
    #[serde(default)]
    pub session_owner: Option<String>,
}

/// An API key as created (`key` is shown once) or listed (no `key`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyOut {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub scopes: Vec<String>,
    pub account_ids: Option<Vec<String>>,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    #[serde(default)]
    pub key: Option<String>,
}

/// `GET /me/api-keys`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyListOut {
    pub keys: Vec<KeyOut>,
    pub available_scopes: Vec<String>,
}

/// `GET /v1/accounts/:id/status`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusOut {
    pub account_id: String,
    pub session_running: bool,
    pub pending_assistance: Option<PendingOut>,
}

/// An assistance request waiting for a code (`/v1` status and `GET /accounts/:id/otp`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PendingOut {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub descriptor: DescriptorOut,
    pub attempts: i32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DescriptorOut {
    pub length: u32,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub purpose: Option<String>,
}

/// The fields of `GET/PUT /accounts/:id/config` that tests read one by one (the whole document
/// is compared raw where its shape matters).
#[derive(Debug, Deserialize)]
pub struct ConfigOut {
    pub notification_signing_secret: String,
    pub webhook_signing_secret: String,
    pub notification_auth_token: Option<String>,
}

/// `POST /accounts/:id/notifications/rotate-secret`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotatedOut {
    pub notification_signing_secret: String,
    pub previous_valid_until: Option<String>,
}

/// `GET /accounts/:id/movements`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MovementOut {
    pub id: String,
    pub amount: String,
    pub currency: String,
    pub name: Option<String>,
    pub description: String,
    pub received_at: String,
    pub read_at: String,
    #[serde(rename = "match")]
    pub matched: Option<MovementMatchOut>,
    pub ignored_at: Option<String>,
}

/// The request a movement settled.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MovementMatchOut {
    pub request_id: String,
    pub external_id: String,
}

/// `GET /accounts/:id/runs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunOut {
    pub id: String,
    pub kind: String,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub outcome: String,
    pub failure_reason: Option<String>,
    pub movements_read: i32,
    pub new_movements: i32,
}

/// `GET /accounts/:id/notifications`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryOut {
    pub id: String,
    pub event_type: String,
    pub status: String,
    pub attempts: i32,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<String>,
    pub last_attempt_at: Option<String>,
    pub created_at: String,
    pub delivered_at: Option<String>,
    pub payload: Value,
}

/// `{"queued": true}` from scrape/restart.
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct QueuedOut {
    pub queued: bool,
}

/// `{"killed": …}` from kill.
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KilledOut {
    pub killed: bool,
}

/// `{"submitted": true, "request_id": …}` from an accepted code.
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SubmittedOut {
    pub submitted: bool,
    pub request_id: String,
}

/// `POST /realtime/ticket`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketOut {
    pub ticket: String,
    pub ttl_seconds: u64,
}

/// `{"id": …}`, the answer of a create that returns only the new id (`POST /banks`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdOut {
    pub id: String,
}
