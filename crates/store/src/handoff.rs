//! Rows of issue 11 (scale-out, second slice): a code handed from the instance that received it
//! to the instance holding the login, and the session leases a dead instance left behind.

use uuid::Uuid;

use crate::{AccountId, AssistanceRequestId, Timestamp};

/// A code offered to whichever instance holds the login waiting for `request_id`. `sealed` is
/// the code sealed under the master key by the application (the store never sees it in the
/// clear); it is `None` once the offer was answered.
#[derive(Clone, PartialEq, Eq)]
pub struct CodeOffer {
    pub id: Uuid,
    pub request_id: AssistanceRequestId,
    pub sealed: Option<Vec<u8>>,
    pub created_at: Timestamp,
}

impl std::fmt::Debug for CodeOffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodeOffer")
            .field("id", &self.id)
            .field("request_id", &self.request_id)
            .field("sealed", &self.sealed.as_ref().map(|_| "<sealed>"))
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// Where an offer stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeOfferState {
    /// Nobody has answered it yet.
    Offered,
    /// The holder took the code: its login has it.
    Taken,
    /// The holder holds the login but is not waiting for a code right now (one is being checked).
    Refused,
}

impl CodeOfferState {
    pub fn as_str(self) -> &'static str {
        match self {
            CodeOfferState::Offered => "offered",
            CodeOfferState::Taken => "taken",
            CodeOfferState::Refused => "refused",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "offered" => Some(CodeOfferState::Offered),
            "taken" => Some(CodeOfferState::Taken),
            "refused" => Some(CodeOfferState::Refused),
            _ => None,
        }
    }
}

/// A session lease that ran out without being released: its holder stopped renewing it (died,
/// or lost the database).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpiredLease {
    pub account_id: AccountId,
    pub owner: String,
    pub expires_at: Timestamp,
}

/// A sliding window of counted events, as [`crate::Store::hit_window`] finds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowState {
    /// Whether this hit was allowed (and, when counting, counted).
    pub allowed: bool,
    /// Events in the window after this hit.
    pub used: i64,
    /// When the oldest event in the window leaves it (`None`: the window is empty).
    pub oldest_expires_at: Option<Timestamp>,
}
