//! Contract checks of the store's reconciliation passthrough methods (see the section markers in
//! `Store`).
