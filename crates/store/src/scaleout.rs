//! Rows of issue 11 (scale-out): what several instances on one database share.

use crate::{Timestamp, TokenId, UserId};

/// A realtime ticket, kept by the SHA-256 of its text: the dashboard login it stands for
/// (`user_id`, `jti`, `token_exp` in seconds since the epoch) and when it stops being good.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TicketRow {
    pub hash: Vec<u8>,
    pub user_id: UserId,
    pub jti: TokenId,
    pub token_exp: i64,
    pub expires_at: Timestamp,
}
