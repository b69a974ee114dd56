//! Reconciliation, end to end: review (docs/reconciliation.md).
