//! Reconciliation: the pure parts of matching bank movements to the pending orders of the
//! user's back office (`/work/shared/spec/RECONCILIATION.md`, "the spec" below).
//!
//! - [`orders`] reads one page of the customer's pending-orders response and validates its
//!   items (§3.3–§3.5), with amounts read from the JSON text as exact decimals.
//! - [`matching`] normalizes and scores names, finds reference codes and runs the
//!   deterministic match pass (§5).
//!
//! Both are pure (no I/O, no clock, no database): the poller and the pass worker own the
//! transactions and feed them plain data, so every rule here is a table test away.

// Used by the poller and the pass worker, next; until they land nothing calls these modules.
#![allow(dead_code)]

pub(crate) mod fetch;
pub(crate) mod matching;
pub(crate) mod orders;
pub(crate) mod poller;
