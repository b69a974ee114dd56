//! How a login gets its codes (docs/product.md §6, to the letter): the first request for a code opens the
//! assistance request (announced with the bank's descriptor); the login then waits — a suspended
//! future — for the code from `/v1` or the dashboard, for the assistance timeout, or for the
//! session to be stopped. A rejected code keeps the *same* request pending with `attempts` + 1;
//! the outcome of the login closes it: `fulfilled`, `expired`, or `cancelled` with a reason.

use async_trait::async_trait;
use reconbanker_store::{AssistanceRequestId, AssistanceRow, AssistanceStatus, Descriptor, EngineAccount, Timestamp};
use tokio_util::sync::CancellationToken;

use super::connector::{CodeSource, ConnectorError, FailureEvidence, NoCode};
use crate::assistance::broker::{CodeWait, OtpCode};
use crate::assistance::{Assistance, OpenError};
use crate::engine::live::{LiveGuard, Phase};

/// What a login keeps of its open request while it waits: the row itself stays in the store.
#[derive(Clone, Copy)]
struct Pending {
    id: AssistanceRequestId,
    expires_at: Timestamp,
}

impl From<&AssistanceRow> for Pending {
    fn from(row: &AssistanceRow) -> Self {
        Self {
            id: row.id,
            expires_at: row.expires_at,
        }
    }
}

pub(super) struct EngineCodes<'a> {
    assistance: &'a Assistance,
    acc: &'a EngineAccount,
    assisted: bool,
    cancel: &'a CancellationToken,
    /// The engine's shutdown (a cancellation then means "shutdown", not "killed").
    shutdown: &'a CancellationToken,
    guard: &'a LiveGuard,
    /// The open request, while it is pending.
    request: Option<Pending>,
    /// The registration for the next code (taken while waiting).
    waiter: Option<Box<dyn CodeWait>>,
    /// The request was closed under us (expired, killed, deleted): no code will come.
    ended: bool,
    /// Issue 9: the login's failure evidence, for the engine to seal and keep.
    evidence: Vec<FailureEvidence>,
}

/// Issue 9: pieces of failure evidence kept per run at most (CONNECTORS §6).
pub(super) const MAX_EVIDENCE: usize = 3;

impl<'a> EngineCodes<'a> {
    pub(super) fn new(
        assistance: &'a Assistance,
        acc: &'a EngineAccount,
        assisted: bool,
        cancel: &'a CancellationToken,
        shutdown: &'a CancellationToken,
        guard: &'a LiveGuard,
    ) -> Self {
        Self {
            assistance,
            acc,
            assisted,
            cancel,
            shutdown,
            guard,
            request: None,
            waiter: None,
            ended: false,
            evidence: Vec::new(),
        }
    }

    /// Issue 9: the evidence the login handed over.
    pub(super) fn take_evidence(&mut self) -> Vec<FailureEvidence> {
        std::mem::take(&mut self.evidence)
    }

    async fn open(&mut self, descriptor: &Descriptor) -> Result<(), NoCode> {
        let (account, user) = (self.acc.account.id, self.acc.account.user_id);
        let opened = match self.assistance.open(account, user, descriptor.clone()).await {
            Err(OpenError::AlreadyPending) => {
                // Left over by a login that is gone (one session per account holds the lease).
                let _ = self.assistance.cancel_for_account(account, user, "superseded").await;
                self.assistance.open(account, user, descriptor.clone()).await
            }
            other => other,
        };
        match opened {
            Ok((row, waiter)) => {
                self.request = Some(Pending::from(&row));
                self.waiter = Some(waiter);
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, account = %account, "could not open an assistance request");
                Err(NoCode::Unavailable)
            }
        }
    }

    /// Closes the request according to how the login ended.
    /// `failure` is `None` when the login succeeded.
    pub(super) async fn finish(&mut self, failure: Option<&ConnectorError>) {
        let Some(request) = self.request.take() else {
            // A login stopped while it was opening its request may have written the row without
            // knowing it: close whatever it left pending.
            if let Some(ConnectorError::Cancelled) = failure {
                let why = if self.shutdown.is_cancelled() {
                    "shutdown"
                } else {
                    "killed"
                };
                let (account, user) = (self.acc.account.id, self.acc.account.user_id);
                if let Err(e) = self.assistance.cancel_for_account(account, user, why).await {
                    tracing::warn!(error = %e, "could not close an interrupted assistance request");
                }
            }
            return;
        };
        let user = self.acc.account.user_id;
        let (status, reason) = match failure {
            None => (AssistanceStatus::Fulfilled, None),
            Some(ConnectorError::Cancelled) => {
                let why = if self.shutdown.is_cancelled() {
                    "shutdown"
                } else {
                    "killed"
                };
                (AssistanceStatus::Cancelled, Some(why.to_owned()))
            }
            Some(ConnectorError::Fatal(f)) => (AssistanceStatus::Cancelled, Some(f.as_str().to_owned())),
            Some(ConnectorError::Retryable(_) | ConnectorError::SessionExpired | ConnectorError::Broken { .. }) => {
                (AssistanceStatus::Cancelled, Some("login_failed".to_owned()))
            }
        };
        // `close` is a no-op when the request was already closed (expired, killed, deleted).
        if let Err(e) = self.assistance.close(request.id, user, status, reason.as_deref()).await {
            tracing::warn!(error = %e, "could not close the assistance request");
        }
    }
}

#[async_trait]
impl CodeSource for EngineCodes<'_> {
    async fn code(&mut self, descriptor: &Descriptor) -> Result<OtpCode, NoCode> {
        if !self.assisted {
            return Err(NoCode::NotAssisted);
        }
        if self.ended {
            return Err(NoCode::Cancelled);
        }
        if self.request.is_none() {
            // Boxed: opening's state (the row, its event, the store's futures) is needed only
            // until the request exists, not for the hours the login may then wait.
            Box::pin(self.open(descriptor)).await?;
        }
        let Some(request) = self.request else {
            return Err(NoCode::Cancelled);
        };
        let waiter = match self.waiter.take() {
            Some(w) => w,
            None => self.assistance.rearm(request.id).await.map_err(|e| {
                tracing::error!(error = %e, "could not wait for a code");
                NoCode::Unavailable
            })?,
        };
        self.guard.set_phase(Phase::AwaitingCode);
        let clock = self.assistance.clock().clone();
        let got = tokio::select! {
            code = waiter.recv() => code.map_err(|_| NoCode::Cancelled),
            _ = clock.sleep_until(request.expires_at) => {
                let user = self.acc.account.user_id;
                let close = self.assistance.close(request.id, user, AssistanceStatus::Expired, Some("timeout"));
                if let Err(e) = Box::pin(close).await {
                    tracing::warn!(error = %e, "could not expire the assistance request");
                }
                self.request = None;
                self.ended = true;
                Err(NoCode::Expired)
            }
            _ = self.cancel.cancelled() => Err(NoCode::Cancelled),
        };
        self.guard.set_phase(Phase::Starting);
        got
    }

    async fn rejected(&mut self) {
        let Some(request) = &self.request else { return };
        // Registered again before the new attempt count is visible, so the next code finds us.
        match self.assistance.rearm(request.id).await {
            Ok(w) => self.waiter = Some(w),
            // `code()` registers again before it waits.
            Err(e) => tracing::warn!(error = %e, "could not wait again after a rejected code"),
        }
        match self
            .assistance
            .code_rejected(request.id, self.acc.account.user_id)
            .await
        {
            Ok(Some(row)) => self.request = Some(Pending::from(&row)),
            Ok(None) => {
                // Closed meanwhile (killed, deleted): no further code will come.
                self.request = None;
                self.waiter = None;
                self.ended = true;
            }
            Err(e) => tracing::warn!(error = %e, "could not count the rejected code"),
        }
    }

    fn evidence(&mut self, evidence: FailureEvidence) {
        if self.evidence.len() < MAX_EVIDENCE {
            self.evidence.push(evidence);
        }
    }
}
