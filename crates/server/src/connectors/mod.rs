//! The bank connectors this build knows. The engine only sees the
//! [`BankConnector`](crate::engine::connector::BankConnector) trait; adding a bank is a module
//! here and one entry in [`builtin`] (its bank row is seeded at start).

pub mod sandbox;
// issue 9: banks described as TOML definitions, run in headless Chromium.
pub mod browser;

use std::sync::Arc;

use reconbanker_store::{now, BankId, BankRow};

use crate::config::Config;
use crate::engine::connector::BankConnector;

/// The code of the built-in sandbox bank (docs/product.md §4, §10).
pub const SANDBOX_BANK_CODE: &str = "sandbox";

/// A bank this build can serve: the row seeded into `banks` and, when it is reachable, its
/// connector.
pub struct Builtin {
    pub bank: BankRow,
    pub connector: Option<Arc<dyn BankConnector>>,
}

/// Every built-in bank. `sandbox` is the sandbox bank's URL (embedded, external, or `None`
/// when it is off: the bank is still listed, with no login URL and no connector).
pub fn builtin(config: &Config, sandbox: Option<&url::Url>) -> Result<Vec<Builtin>, reqwest::Error> {
    let connector: Option<Arc<dyn BankConnector>> = match sandbox {
        Some(url) => Some(Arc::new(sandbox::SandboxConnector::new(
            url.clone(),
            config.bank_timeout,
        )?)),
        None => None,
    };
    Ok(vec![Builtin {
        bank: BankRow {
            id: BankId::new(),
            code: SANDBOX_BANK_CODE.into(),
            name: "Sandbox Bank".into(),
            login_url: sandbox.and_then(|u| u.join("/login").ok()).map(|u| u.to_string()),
            status: "active".into(),
            created_at: now(),
        },
        connector,
    }])
}
