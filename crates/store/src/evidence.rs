//! Rows of issue 9 (real banks): the failure evidence of a browser login or read.

use crate::{EvidenceId, RunId, Timestamp};

/// What a bank's page looked like when a step of a run failed (CONNECTORS §6). `sealed` is the
/// evidence itself, sealed by the server with the master key: the store never sees it in clear.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvidenceRow {
    pub id: EvidenceId,
    pub run_id: RunId,
    /// The step that failed (`login[1]`, `otp`, `movements`); not secret.
    pub step: String,
    pub sealed: Vec<u8>,
    pub taken_at: Timestamp,
    /// Gone after this (the upkeep loop purges it).
    pub expires_at: Timestamp,
}
