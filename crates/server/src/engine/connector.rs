//! The bank connector: the code that knows how to log into one bank. The engine never knows
//! which bank it drives. A login that meets a second factor asks the engine for a code through
//! the [`CodeSource`] it was given, and tells it whether the bank accepted the code.

use std::fmt;

use async_trait::async_trait;
use reconbanker_store::{Descriptor, NewMovement};

use crate::assistance::broker::OtpCode;

/// Bank credentials, decrypted for one login. `Debug` is redacted.
#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    /// Issue 9, remember-device: what the account's last login kept for this one
    /// ([`BankSession::remembered`]), opened by the engine. As secret as the password.
    pub remembered: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credentials(<redacted>)")
    }
}

/// Issue 9: what a bank's page looked like when a step failed (CONNECTORS §6): handed to the
/// engine, which seals it with the master key for the account's owner. Inputs are blanked in
/// both the screenshot and the DOM, and none is taken while a one-time code is in the page.
/// `Debug` shows sizes only.
#[derive(Clone, PartialEq, Eq)]
pub struct FailureEvidence {
    /// The step that failed (`login[1]`, `otp`, `movements`).
    pub step: String,
    pub url: String,
    pub title: String,
    /// JPEG of the viewport.
    pub jpeg: Vec<u8>,
    /// `outerHTML` with every input emptied.
    pub dom: String,
    /// The steps run before it, in order.
    pub trail: Vec<String>,
}

impl fmt::Debug for FailureEvidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailureEvidence")
            .field("step", &self.step)
            .field("jpeg_bytes", &self.jpeg.len())
            .field("dom_bytes", &self.dom.len())
            .finish_non_exhaustive()
    }
}

/// Why no code will come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoCode {
    /// The account is in simple mode: nobody will be asked.
    NotAssisted,
    /// No code arrived within the assistance timeout.
    Expired,
    /// The session was stopped (kill, account deleted, shutdown).
    Cancelled,
    /// The request could not be opened (database trouble): worth another try later.
    Unavailable,
}

/// How a login gets one-time codes. Given by the engine to [`BankConnector::login`].
#[async_trait]
pub trait CodeSource: Send {
    /// The bank asks for a code described by `descriptor`: waits for one (opening the
    /// assistance request on the first call, waiting again on the same request after a
    /// rejection).
    async fn code(&mut self, descriptor: &Descriptor) -> Result<OtpCode, NoCode>;
    /// The bank refused the last code and allows another try.
    async fn rejected(&mut self);
    /// Issue 9: a failed step's evidence (a connector that has none never calls it).
    fn evidence(&mut self, _evidence: FailureEvidence) {}
}

/// Failures that end the session for good until a human acts (skip-on-fatal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fatal {
    BadCredentials,
    AccountLocked,
    /// The bank demands a second factor and the account is in simple mode.
    SecondFactorRequired,
    /// An assisted login failed: no code in time.
    AssistanceExpired,
    /// An assisted login failed: the bank refused the codes and gave up.
    OtpRejected,
    /// The account has no credentials configured.
    NotConfigured,
}

impl Fatal {
    pub fn as_str(self) -> &'static str {
        match self {
            Fatal::BadCredentials => "bad_credentials",
            Fatal::AccountLocked => "account_locked",
            Fatal::SecondFactorRequired => "second_factor_required",
            Fatal::AssistanceExpired => "assistance_expired",
            Fatal::OtpRejected => "otp_rejected",
            Fatal::NotConfigured => "not_configured",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectorError {
    #[error("fatal: {}", .0.as_str())]
    Fatal(Fatal),
    /// Network error, 5xx, timeout: worth another try later.
    #[error("retryable: {0}")]
    Retryable(String),
    /// The bank dropped the session; log in again.
    #[error("the bank ended the session")]
    SessionExpired,
    /// The login was stopped while it waited for a code.
    #[error("cancelled")]
    Cancelled,
    /// Issue 9: the bank's page no longer matches the connector's definition (at `step`). The
    /// credentials are fine: retried with backoff like `Retryable`, an alert after a few in a
    /// row, and then a long pause rather than a retry storm — never a fatal block.
    #[error("the bank's page no longer matches its definition at {step}: {detail}")]
    Broken { step: String, detail: String },
}

impl From<NoCode> for ConnectorError {
    fn from(n: NoCode) -> Self {
        match n {
            NoCode::NotAssisted => ConnectorError::Fatal(Fatal::SecondFactorRequired),
            NoCode::Expired => ConnectorError::Fatal(Fatal::AssistanceExpired),
            NoCode::Cancelled => ConnectorError::Cancelled,
            NoCode::Unavailable => ConnectorError::Retryable("assistance request could not be opened".into()),
        }
    }
}

/// A logged-in session at a bank.
#[async_trait]
pub trait BankSession: Send {
    /// The movements the bank shows now (the engine stores what is new).
    async fn read_movements(&mut self) -> Result<Vec<NewMovement>, ConnectorError>;
    async fn logout(&mut self) -> Result<(), ConnectorError>;
    /// Issue 9: the evidence of the last failed read, if the connector took one.
    fn take_evidence(&mut self) -> Option<FailureEvidence> {
        None
    }
    /// Issue 9, remember-device: what this login keeps for the next one (the bank's
    /// trusted-device cookies), which the engine seals and hands back as
    /// [`Credentials::remembered`].
    fn remembered(&self) -> Option<String> {
        None
    }
}

#[async_trait]
pub trait BankConnector: Send + Sync + 'static {
    async fn login(
        &self,
        credentials: &Credentials,
        codes: &mut dyn CodeSource,
    ) -> Result<Box<dyn BankSession>, ConnectorError>;
}
