//! Rows as the store reads and writes them. The HTTP layer has its own input and output types
//! and converts; nothing here is serialised to clients directly.

use chrono::{DateTime, SubsecRound, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::*;

/// Every timestamp the store keeps: UTC, millisecond precision.
pub type Timestamp = DateTime<Utc>;

/// The current time at the store's precision (milliseconds), so a value survives a round trip.
pub fn now() -> Timestamp {
    Utc::now().trunc_subsecs(3)
}

pub(crate) fn to_ms(t: Timestamp) -> i64 {
    t.timestamp_millis()
}

/// The timestamp `ms` milliseconds after the Unix epoch; `None` when out of chrono's range (a
/// corrupt stored value).
pub(crate) fn try_from_ms(ms: i64) -> Option<Timestamp> {
    Utc.timestamp_millis_opt(ms).single()
}

#[derive(Clone, Debug, PartialEq)]
pub struct UserRow {
    pub id: UserId,
    pub email: String,
    pub name: Option<String>,
    pub password_hash: String,
    pub is_admin: bool,
    pub operation_mode: Option<String>,
    pub created_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq)]
pub struct BankRow {
    pub id: BankId,
    pub code: String,
    pub name: String,
    pub login_url: Option<String>,
    pub status: String,
    pub created_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq)]
pub struct NewAccount {
    pub id: AccountId,
    pub user_id: UserId,
    pub bank_id: BankId,
    pub name: String,
    pub created_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq)]
pub struct AccountRow {
    pub id: AccountId,
    pub user_id: UserId,
    pub bank_id: BankId,
    /// The bank's code, joined in: accounts are always shown with it.
    pub bank_code: String,
    pub name: String,
    pub status: String,
    pub scrape_blocked_at: Option<Timestamp>,
    pub scrape_blocked_reason: Option<String>,
    pub created_at: Timestamp,
}

/// An account's configuration document. `settings` is the JSON of the non-secret fields;
/// `secrets` is an opaque blob (the server encrypts it; the store never sees plaintext).
#[derive(Clone, Debug, PartialEq)]
pub struct AccountConfigRow {
    pub account_id: AccountId,
    pub settings: String,
    pub secrets: Option<Vec<u8>>,
    pub updated_at: Timestamp,
}

/// What [`crate::Store::replace_account_config`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigWrite {
    Written,
    /// The account is not the user's (or is gone).
    NotFound,
    /// The stored config is no longer the one the change was made from: nothing written.
    Changed,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ApiKeyRow {
    pub id: ApiKeyId,
    pub user_id: UserId,
    pub name: String,
    pub prefix: String,
    /// SHA-256 of the key's secret part.
    pub secret_hash: Vec<u8>,
    pub scopes: Vec<String>,
    /// `None` = every account the user owns, now and later.
    pub account_ids: Option<Vec<AccountId>>,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

/// What kind of code a bank asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CodeKind {
    Numeric,
    Alphanumeric,
}

/// The bank's description of the code it expects.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    pub length: u32,
    #[serde(rename = "type")]
    pub kind: CodeKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AssistanceStatus {
    Pending,
    Fulfilled,
    Cancelled,
    Expired,
}

impl AssistanceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Fulfilled => "fulfilled",
            Self::Cancelled => "cancelled",
            Self::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "fulfilled" => Self::Fulfilled,
            "cancelled" => Self::Cancelled,
            "expired" => Self::Expired,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct AssistanceRow {
    pub id: AssistanceRequestId,
    pub account_id: AccountId,
    /// Always `"otp"` for now.
    pub kind: String,
    pub descriptor: Descriptor,
    pub attempts: i32,
    pub status: AssistanceStatus,
    pub reason: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub expires_at: Timestamp,
    pub closed_at: Option<Timestamp>,
}

/// A movement as a connector read it from the bank.
#[derive(Clone, Debug, PartialEq)]
pub struct NewMovement {
    /// The bank's own id for it: a movement read twice is stored once.
    pub external_id: String,
    /// Decimal string, e.g. `-12.34`.
    pub amount: String,
    pub currency: String,
    pub name: Option<String>,
    pub description: String,
    /// As the bank reported it.
    pub received_at: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct MovementRow {
    pub id: MovementId,
    pub account_id: AccountId,
    pub external_id: String,
    pub amount: String,
    pub currency: String,
    pub name: Option<String>,
    pub description: String,
    pub received_at: String,
    pub read_at: Timestamp,
}

/// One session run: `outcome` is `running`, `succeeded`, `failed` or `cancelled`.
#[derive(Clone, Debug, PartialEq)]
pub struct RunRow {
    pub id: RunId,
    pub account_id: AccountId,
    /// `one-shot` or `persistent`.
    pub kind: String,
    pub started_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    pub outcome: String,
    pub failure_reason: Option<String>,
    pub movements_read: i32,
    pub new_movements: i32,
}

/// What the engine needs to drive an account: the account and its stored config.
#[derive(Clone, Debug, PartialEq)]
pub struct EngineAccount {
    pub account: AccountRow,
    pub config: Option<AccountConfigRow>,
}

/// An event to append to the event log, with the webhook deliveries it causes (written in the
/// same transaction as the state change).
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    pub id: uuid::Uuid,
    pub user_id: UserId,
    pub account_id: AccountId,
    /// docs/product.md §6 name, e.g. `assistance.requested`.
    pub kind: String,
    /// JSON.
    pub data: String,
    pub occurred_at: Timestamp,
    pub deliveries: Vec<NewDelivery>,
}

/// An event as logged; `seq` orders the log (and is the SSE `id:`).
#[derive(Clone, Debug, PartialEq)]
pub struct EventRow {
    pub seq: i64,
    pub id: uuid::Uuid,
    pub user_id: UserId,
    pub account_id: AccountId,
    pub kind: String,
    pub data: String,
    pub occurred_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq)]
pub struct NewDelivery {
    pub id: DeliveryId,
    /// Subscribable name: `assistance_required`, `login_failed`, `scrape_failed`.
    pub event_type: String,
    /// The JSON body to POST (no secrets).
    pub payload: String,
    /// For prompts: the assistance request, so a prompt no longer pending is not sent late.
    pub request_id: Option<AssistanceRequestId>,
    pub next_attempt_at: Timestamp,
    /// Which webhook: [`CHANNEL_NOTIFICATION`] (the account's notification webhook) or
    /// [`CHANNEL_RESULT`] (the reconciliation result webhook).
    pub channel: String,
    /// The request or movement whose deliveries go out in order: a delivery is not claimed
    /// while an older one of the same subject is still pending.
    pub subject_id: Option<uuid::Uuid>,
}

/// [`NewDelivery::channel`] of the notification webhook (the default).
pub const CHANNEL_NOTIFICATION: &str = "notification";
/// [`NewDelivery::channel`] of the reconciliation result webhook.
pub const CHANNEL_RESULT: &str = "result";

/// A delivery: `status` is `pending`, `delivered`, `dead` (retries exhausted) or `skipped`.
#[derive(Clone, Debug, PartialEq)]
pub struct DeliveryRow {
    pub id: DeliveryId,
    pub account_id: AccountId,
    pub event_id: uuid::Uuid,
    pub event_type: String,
    pub payload: String,
    pub request_id: Option<AssistanceRequestId>,
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: Option<Timestamp>,
    pub last_attempt_at: Option<Timestamp>,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub delivered_at: Option<Timestamp>,
    /// `notification` or `result`.
    pub channel: String,
    pub subject_id: Option<uuid::Uuid>,
}

/// Builds the events of an assistance state change from the row as changed (run by the store
/// inside the transaction).
pub type EventsFor<'a> = dyn Fn(&AssistanceRow) -> Vec<NewEvent> + Send + Sync + 'a;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_round_trip_and_out_of_range_is_none() {
        let t = now();
        assert_eq!(try_from_ms(to_ms(t)), Some(t));
        assert_eq!(try_from_ms(0), Some(DateTime::UNIX_EPOCH));
        assert_eq!(try_from_ms(i64::MAX), None);
        assert_eq!(try_from_ms(i64::MIN), None);
    }
}
