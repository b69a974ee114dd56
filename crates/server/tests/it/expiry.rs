//! Reconciliation, end to end: expiry (docs/reconciliation.md).
