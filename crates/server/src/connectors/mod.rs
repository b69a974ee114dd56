//! The bank connectors this build knows, by bank code. The engine only sees the
//! [`BankConnector`](crate::engine::connector::BankConnector) trait; adding a bank is a new
//! module here and one entry in [`builtin`].

pub mod sandbox;
