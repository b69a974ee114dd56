//! The browser connector (issue 9, CONNECTORS.md): every loaded bank definition — the built-in
//! `banks/*.toml` and `<data dir>/banks/*.toml` — becomes a bank row and a `BankConnector` that
//! runs the definition in headless Chromium through `reconbanker-browser`. One browser runtime
//! (launched on the first login) serves them all.
//!
//! Decisions where the spec is silent (docs/banks.md repeats them):
//! - a definition file with an error is logged (file, line, field) and skipped; the others load;
//! - without Chromium the banks are still listed and each login fails retryable with the
//!   install hint (`apt-get install chromium`), logged once at start;
//! - `Broken` (the page no longer matches its definition) is the engine's
//!   `ConnectorError::Broken`: retried with backoff, alerted, paused — never a fatal block.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use reconbanker_browser::def::{self, Action, BankDef, FatalKind};
use reconbanker_browser::interp::{self, CodeAsk, Creds, Failure, OtpRequest};
use reconbanker_browser::{BrowserRuntime, RuntimeConfig};
use reconbanker_store::{now, BankId, BankRow, CodeKind, Descriptor, NewMovement};

use super::Builtin;
use crate::config::Config;
use crate::engine::connector::{
    BankConnector, BankSession, CodeSource, ConnectorError, Credentials, FailureEvidence, Fatal, NoCode,
};

/// The code of the built-in JavaScript sandbox bank.
pub const SANDBOX_JS_BANK_CODE: &str = "sandbox-js";

pub struct BrowserConnector {
    def: Arc<BankDef>,
    rt: Arc<BrowserRuntime>,
}

/// The engine's code source, as the interpreter asks for codes.
struct Ask<'a>(&'a mut dyn CodeSource);

#[async_trait]
impl CodeAsk for Ask<'_> {
    async fn code(&mut self, request: &OtpRequest) -> Result<String, interp::NoCode> {
        let descriptor = Descriptor {
            length: request.length,
            kind: if request.alphanumeric {
                CodeKind::Alphanumeric
            } else {
                CodeKind::Numeric
            },
            purpose: request.purpose.clone(),
        };
        match self.0.code(&descriptor).await {
            Ok(code) => Ok(code.expose().to_owned()),
            Err(NoCode::NotAssisted) => Err(interp::NoCode::NotAssisted),
            Err(NoCode::Expired) => Err(interp::NoCode::Expired),
            Err(NoCode::Cancelled) => Err(interp::NoCode::Cancelled),
            Err(NoCode::Unavailable) => Err(interp::NoCode::Unavailable),
        }
    }

    async fn rejected(&mut self) {
        self.0.rejected().await;
    }
}

fn to_connector_error(f: Failure) -> ConnectorError {
    match f {
        Failure::Fatal(kind, _) => ConnectorError::Fatal(match kind {
            FatalKind::BadCredentials => Fatal::BadCredentials,
            FatalKind::AccountLocked => Fatal::AccountLocked,
            FatalKind::OtpRejected => Fatal::OtpRejected,
            FatalKind::SecondFactorRequired => Fatal::SecondFactorRequired,
        }),
        Failure::Retryable(message, _) => ConnectorError::Retryable(message),
        Failure::Broken { step, detail, .. } => {
            tracing::warn!(%step, %detail, "a bank page no longer matches its definition");
            ConnectorError::Broken { step, detail }
        }
        Failure::SessionExpired => ConnectorError::SessionExpired,
        Failure::NoCode(n) => ConnectorError::from(match n {
            interp::NoCode::NotAssisted => NoCode::NotAssisted,
            interp::NoCode::Expired => NoCode::Expired,
            interp::NoCode::Cancelled => NoCode::Cancelled,
            interp::NoCode::Unavailable => NoCode::Unavailable,
        }),
    }
}

#[async_trait]
impl BankConnector for BrowserConnector {
    async fn login(
        &self,
        credentials: &Credentials,
        codes: &mut dyn CodeSource,
    ) -> Result<Box<dyn BankSession>, ConnectorError> {
        let extra = BTreeMap::new();
        let creds = Creds {
            username: &credentials.username,
            password: &credentials.password,
            extra: &extra,
            remembered: credentials.remembered.as_deref(),
        };
        let mut ask = Ask(&mut *codes);
        let login = interp::login(&self.rt, &self.def, &creds, &mut ask, true).await;
        match login {
            Ok(session) => Ok(Box::new(BrowserSession {
                session,
                evidence: None,
            })),
            Err(f) => {
                if let Some(e) = f.evidence() {
                    codes.evidence(evidence_of(e));
                }
                Err(to_connector_error(f))
            }
        }
    }
}

struct BrowserSession {
    session: interp::Session,
    /// The evidence of the last failed read, until the engine takes it.
    evidence: Option<FailureEvidence>,
}

/// The interpreter's evidence as the engine takes it.
fn evidence_of(e: &reconbanker_browser::evidence::Evidence) -> FailureEvidence {
    FailureEvidence {
        step: e.step.clone(),
        url: e.url.clone(),
        title: e.title.clone(),
        jpeg: e.jpeg.clone(),
        dom: e.dom.clone(),
        trail: e.trail.clone(),
    }
}

#[async_trait]
impl BankSession for BrowserSession {
    async fn read_movements(&mut self) -> Result<Vec<NewMovement>, ConnectorError> {
        let list = match self.session.read_movements().await {
            Ok(list) => list,
            Err(f) => {
                self.evidence = f.evidence().map(evidence_of);
                return Err(to_connector_error(f));
            }
        };
        Ok(list
            .into_iter()
            .map(|m| NewMovement {
                external_id: m.external_id,
                amount: m.amount,
                currency: m.currency,
                name: m.name,
                description: m.description,
                received_at: m.received_at,
            })
            .collect())
    }

    async fn logout(&mut self) -> Result<(), ConnectorError> {
        self.session.logout().await.map_err(to_connector_error)
    }

    fn take_evidence(&mut self) -> Option<FailureEvidence> {
        self.evidence.take()
    }

    fn remembered(&self) -> Option<String> {
        self.session.remembered().map(str::to_owned)
    }
}

/// The URL of a definition's first `goto` (its login page), for `GET /banks`.
fn login_url(def: &BankDef) -> Option<String> {
    def.login.iter().find_map(|s| match &s.action {
        Action::Goto(path) => def.base_url.join(path).ok().map(|u| u.to_string()),
        _ => None,
    })
}

/// Every loaded definition as a bank with its browser connector, and the browser they share
/// (the server shuts it down when it stops). `sandbox` is the sandbox bank's URL: `sandbox-js`
/// is pointed at it (and listed without a connector when it is off).
pub fn banks(config: &Config, sandbox: Option<&url::Url>) -> Result<(Vec<Builtin>, Arc<BrowserRuntime>), String> {
    let rt_config = RuntimeConfig::from_env(&config.data_dir)?;
    if rt_config.chromium.is_none() {
        tracing::warn!(
            "{}; the browser banks are listed but cannot log in",
            reconbanker_browser::runtime::INSTALL_HINT
        );
    }
    let rt = BrowserRuntime::new(rt_config);
    let (defs, errors) = def::load_all(Some(&config.data_dir.join("banks")));
    for e in &errors {
        tracing::error!(error = %e, "a bank definition was not loaded");
    }
    let mut out = Vec::new();
    for mut d in defs {
        let mut usable = true;
        if d.code == SANDBOX_JS_BANK_CODE && d.source.starts_with("builtin:") {
            match sandbox {
                Some(url) => {
                    d.base_url = url.clone();
                    if let Some(host) = url.host_str() {
                        if !def::host_allowed(&d.allowed_hosts, host) {
                            d.allowed_hosts.push(host.to_ascii_lowercase());
                        }
                    }
                }
                None => usable = false,
            }
        }
        if d.code == super::SANDBOX_BANK_CODE {
            tracing::error!(file = %d.source, "a definition cannot take the code of the HTTP sandbox bank");
            continue;
        }
        let bank = BankRow {
            id: BankId::new(),
            code: d.code.clone(),
            name: d.name.clone(),
            login_url: if usable { login_url(&d) } else { None },
            status: "active".into(),
            created_at: now(),
        };
        let connector: Option<Arc<dyn BankConnector>> = usable.then(|| {
            Arc::new(BrowserConnector {
                def: Arc::new(d),
                rt: Arc::clone(&rt),
            }) as Arc<dyn BankConnector>
        });
        out.push(Builtin { bank, connector });
    }
    Ok((out, rt))
}
