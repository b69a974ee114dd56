//! The browser connector runtime (CONNECTORS.md, issue 9): one shared headless Chromium, an
//! incognito context per login, and banks described as data (TOML definitions) run by a step
//! interpreter. The server wraps [`interp::login`] in its `BankConnector` trait.
//!
//! Modules: `runtime` (the process, leases, health, relaunch), `page` (the facade over one
//! context's page: navigation, typing, clicks, request interception, captures), `def`
//! (definition parsing and validation), `interp` (the interpreter), `extract` (field parsers,
//! JSON pointers), `device` (remember-device state: kept cookies and `localStorage` keys),
//! `evidence`, `http_read` (`read = "http"`: movements over HTTP with the
//! login's cookies). Only `runtime` and `page` name the CDP client.

pub mod def;
mod device;
pub mod evidence;
pub mod extract;
mod http_read;
pub mod interp;
pub mod page;
pub mod runtime;

pub use def::{BankDef, DefError};
pub use evidence::Evidence;
pub use interp::{CodeAsk, Creds, Failure, NoCode, OtpRequest, Session};
pub use runtime::{BrowserRuntime, RuntimeConfig, RuntimeError};
