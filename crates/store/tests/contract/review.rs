//! Contract checks of the store's reconciliation review methods (see the section markers in
//! `Store`).
