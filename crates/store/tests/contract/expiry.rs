//! Contract checks of the store's reconciliation expiry methods (see the section markers in
//! `Store`).
