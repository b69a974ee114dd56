//! Reconciliation, end to end: passthrough (docs/reconciliation.md).
