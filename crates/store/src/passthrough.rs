//! Passthrough (docs/reconciliation.md §7): every new movement of a passthrough user's account
//! is forwarded to the account's result webhook as it is, decided when the movement is stored
//! and written to the outbox in the same transaction.

use crate::model::{DeliveryRow, MovementRow};

/// The outbox `event_type` of a forwarded movement (channel [`crate::CHANNEL_RESULT`], subject
/// the movement).
pub const BANK_MOVEMENT: &str = "bank_movement";

/// Builds the frozen body of a movement's `bank_movement` webhook (run by the store inside the
/// transaction that stores it, or re-sends it): the movement as stored and the account's config
/// settings (its JSON text, `None` when the account has no config) as read in that
/// transaction. `None` = nothing is sent.
pub type ForwardFor<'a> = dyn Fn(&MovementRow, Option<&str>) -> Option<String> + Send + Sync + 'a;

/// A [`ForwardFor`] that forwards nothing (for callers that store movements outside passthrough
/// concerns, such as tests and benchmarks).
pub fn never_forward(_: &MovementRow, _: Option<&str>) -> Option<String> {
    None
}

/// What [`crate::Store::notify_movement`] did.
#[derive(Clone, Debug, PartialEq)]
pub enum MovementNotify {
    /// The movement's `bank_movement` delivery is queued: its existing one again (same id, due
    /// now), or a new one.
    Queued(Box<DeliveryRow>),
    /// The owner is not in `passthrough` mode.
    NotPassthrough,
    /// The movement has no sender name (null or blank).
    NoSenderName,
    /// It had no delivery and the builder made no body.
    NothingToSend,
}
