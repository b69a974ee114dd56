//! Rows of issue 11's master-key rotation: every value the server sealed with its master key,
//! named by whose it is (the server binds each sealed value to its owner as associated data).

use crate::{AccountId, EvidenceId, Timestamp, UserId};

/// Whose sealed value this is, and so where it lives.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SealedOwner {
    /// `account_configs.secrets`: the account's bank credentials and other config secrets.
    AccountConfig(AccountId),
    /// `user_totp.secret`: the user's two-factor secret.
    Totp(UserId),
    /// `run_evidence.sealed`: a failed browser run's evidence.
    Evidence(EvidenceId),
    /// `carried_keys.sealed`: a derived key carried across rotations, by its label.
    CarriedKey(String),
    /// `account_devices.sealed`: an account's remembered-device state (issue 9).
    Device(AccountId),
}

/// A key derived from an earlier master key, kept sealed with the current one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CarriedKeyRow {
    pub label: String,
    pub sealed: Vec<u8>,
    pub created_at: Timestamp,
}

/// How many sealed values a rotation rewrote, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResealCounts {
    pub account_configs: u64,
    pub totp_secrets: u64,
    pub evidence: u64,
    pub carried_keys: u64,
    pub devices: u64,
}

/// The sealed value a rotation could not rewrite (nothing was written).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResealRefused {
    pub owner: SealedOwner,
    /// Why, from the caller (never the value itself).
    pub reason: String,
}

/// Rewrites one sealed value: opens it with the old key and seals it with the new one, or says
/// why it cannot.
pub type Reseal<'a> = dyn Fn(&SealedOwner, &[u8]) -> Result<Vec<u8>, String> + Send + Sync + 'a;
