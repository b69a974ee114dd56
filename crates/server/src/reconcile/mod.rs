//! Reconciliation: matching bank movements to the pending orders of the user's back office
//! (the rules are in `docs/reconciliation.md`; "§N" below are its sections).
//!
//! - [`fetch`] calls the customer's pending-orders endpoint (§3.2–§3.4) through the guarded
//!   outbound client, bounded in time, bytes, items and pages.
//! - [`orders`] reads one page of the response and validates its items (§3.3–§3.5), with
//!   amounts read from the JSON text as exact decimals.
//! - [`poller`] is the background loop that polls each reconciling account when due and hands
//!   the outcome to the store, which applies it in one transaction under the account's lock.
//! - [`expiry`] is the sweep that marks accounts with overdue requests for a pass (§5.8).
//! - [`matching`] normalizes and scores names, finds reference codes and runs the
//!   deterministic match pass (§5).
//! - [`passthrough`] builds the frozen `bank_movement` body of a forwarded movement (§7); the
//!   store decides, when it stores the movement, whether it is forwarded.
//!
//! `orders` and `matching` are pure (no I/O, no clock, no database): the workers own the
//! transactions and feed them plain data, so every rule there is a table test away.

pub(crate) mod expiry;
pub(crate) mod fetch;
pub(crate) mod matcher;
pub(crate) mod matching;
pub(crate) mod orders;
pub(crate) mod passthrough;
pub(crate) mod poller;
pub(crate) mod results;
pub(crate) mod review;
