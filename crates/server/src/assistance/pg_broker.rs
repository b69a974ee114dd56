//! Issue 11 (scale-out): the assistance broker across instances on one PostgreSQL database.
//!
//! A login waits in the process that drives it, exactly as with [`LocalBroker`] (which this
//! broker wraps): a code submitted to *that* process goes straight to the waiter, with no
//! database round trip. A code submitted to another process is handed over through the
//! database:
//!
//! 1. the receiving instance (B) keeps a `code_offers` row with the code sealed under the master
//!    key (like bank credentials) and rings `o:<request id>` — a doorbell that names the request,
//!    never the code;
//! 2. the instance holding the login (A) hears it, takes its waiter out of its slot, and marks
//!    the oldest offer `taken` (clearing the sealed code) — or `refused` when it holds the login
//!    but is not waiting (a code is being checked) — then rings `h:<offer id>`;
//! 3. B deletes its offer when it hears that, or after [`ANSWER_WITHIN`] at the latest, and
//!    reads the state it had: `taken` → the login has the code (202); `refused` → a code is in
//!    flight (409 `CODE_IN_FLIGHT`); still `offered` → nobody took it (the holder is gone or
//!    silent: 409 `NO_PENDING_ASSISTANCE`), and since the delete and the take are atomic
//!    against each other, a code B reports as not taken is never used.
//!
//! A lost `LISTEN` connection may have dropped doorbells: the holder then looks for offers for
//! every request it holds ([`PgBroker::recheck`]), and a sender always settles by its deadline.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use reconbanker_store::signals::PgSignals;
use reconbanker_store::{now, AssistanceRequestId, CodeOffer, CodeOfferState, Store};
use tokio::sync::oneshot;
use uuid::Uuid;

use super::broker::{AssistanceBroker, BrokerError, CodeWait, DeliverError, LocalBroker, OtpCode};
use crate::support::crypto::Sealer;

/// How long an instance that received a code waits for the instance holding the login to take
/// it before answering 409 `NO_PENDING_ASSISTANCE` (the holder is gone, or too busy to answer).
pub const ANSWER_WITHIN: Duration = Duration::from_secs(3);

/// Offers older than this are forgotten by the next offer (their sender died while waiting).
const FORGET_AFTER: Duration = Duration::from_secs(60);

/// Doorbell prefixes on the shared channel.
const OFFERED: &str = "o:";
const ANSWERED: &str = "h:";

pub struct PgBroker {
    local: LocalBroker,
    /// Requests whose login lives in this process (registered, not withdrawn).
    held: Mutex<HashSet<AssistanceRequestId>>,
    /// This process's offers waiting for their answer's doorbell.
    answers: Mutex<HashMap<Uuid, oneshot::Sender<()>>>,
    /// Offers are taken one at a time, so a refusal never races a take for the same waiter.
    turn: tokio::sync::Mutex<()>,
    store: Arc<dyn Store>,
    sealer: Sealer,
    signals: PgSignals,
    answer_within: Duration,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What binds a sealed code to its offer (a sealed value copied to another row does not open).
fn aad(offer: Uuid, request: AssistanceRequestId) -> String {
    format!("code-offer:{offer}:{request}")
}

/// Drops the answer slot of an offer however `deliver` ends.
struct Pending<'a> {
    answers: &'a Mutex<HashMap<Uuid, oneshot::Sender<()>>>,
    id: Uuid,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        lock(self.answers).remove(&self.id);
    }
}

impl PgBroker {
    pub fn new(store: Arc<dyn Store>, sealer: Sealer, signals: PgSignals) -> Arc<Self> {
        Self::with_answer_within(store, sealer, signals, ANSWER_WITHIN)
    }

    pub fn with_answer_within(
        store: Arc<dyn Store>,
        sealer: Sealer,
        signals: PgSignals,
        answer_within: Duration,
    ) -> Arc<Self> {
        Arc::new(Self {
            local: LocalBroker::default(),
            held: Mutex::new(HashSet::new()),
            answers: Mutex::new(HashMap::new()),
            turn: tokio::sync::Mutex::new(()),
            store,
            sealer,
            signals,
            answer_within,
        })
    }

    /// Routes a doorbell of this broker's (`o:` / `h:`); `false` when the payload is not one.
    pub fn hear(self: &Arc<Self>, payload: &str) -> bool {
        if let Some(request) = payload.strip_prefix(OFFERED) {
            if let Ok(request) = request.parse::<AssistanceRequestId>() {
                if lock(&self.held).contains(&request) {
                    let me = self.clone();
                    tokio::spawn(async move { me.answer(request).await });
                }
            }
            true
        } else if let Some(id) = payload.strip_prefix(ANSWERED) {
            if let Ok(id) = id.parse::<Uuid>() {
                if let Some(tx) = lock(&self.answers).remove(&id) {
                    let _ = tx.send(());
                }
            }
            true
        } else {
            false
        }
    }

    /// After a lost `LISTEN` connection: answers the offers whose doorbell may have been missed.
    pub fn recheck(self: &Arc<Self>) {
        let held: Vec<_> = lock(&self.held).iter().copied().collect();
        for request in held {
            let me = self.clone();
            tokio::spawn(async move { me.answer(request).await });
        }
        // Senders settle by their deadline: nothing to do for this process's own offers.
    }

    /// The holder's side: takes the oldest offer for `request` into the waiting login, or
    /// refuses the offers when nobody waits right now.
    async fn answer(&self, request: AssistanceRequestId) {
        let _turn = self.turn.lock().await;
        if !lock(&self.held).contains(&request) {
            return;
        }
        let Some(claim) = self.local.claim(request) else {
            match self.store.refuse_code_offers(request).await {
                Ok(ids) => {
                    for id in ids {
                        self.ring(&format!("{ANSWERED}{id}")).await;
                    }
                }
                Err(e) => tracing::warn!(error = %e, request = %request, "could not refuse a code offer"),
            }
            return;
        };
        let not_before = now() - chrono::Duration::from_std(self.answer_within).unwrap_or(chrono::Duration::zero());
        match self.store.take_code_offer(request, not_before).await {
            Ok(Some(offer)) => {
                let opened = offer
                    .sealed
                    .as_deref()
                    .ok_or(())
                    .and_then(|s| self.sealer.open(s, aad(offer.id, request).as_bytes()).map_err(|_| ()))
                    .and_then(|b| String::from_utf8(b).map_err(|_| ()));
                match opened {
                    Ok(code) => {
                        if claim.send(OtpCode::new(code)).is_err() {
                            tracing::info!(request = %request, "the login stopped waiting as its code arrived");
                        }
                    }
                    Err(()) => {
                        // Every instance must share the master key; the code is lost.
                        tracing::error!(request = %request, "a code offered by another instance could not be opened");
                        claim.restore();
                    }
                }
                self.ring(&format!("{ANSWERED}{}", offer.id)).await;
            }
            Ok(None) => claim.restore(),
            Err(e) => {
                claim.restore();
                tracing::warn!(error = %e, request = %request, "could not take a code offer");
            }
        }
    }

    async fn ring(&self, payload: &str) {
        if let Err(e) = self.signals.notify(payload).await {
            // The sender settles by its deadline and still reads the true state.
            tracing::warn!(error = %e, "could not ring the sender of a code offer");
        }
    }

    /// The sender's side: offers the code to whichever instance holds the login.
    async fn offer(&self, request: AssistanceRequestId, code: OtpCode) -> Result<(), DeliverError> {
        let id = Uuid::new_v4();
        let (tx, rx) = oneshot::channel();
        lock(&self.answers).insert(id, tx);
        let _pending = Pending {
            answers: &self.answers,
            id,
        };
        let at = now();
        let offer = CodeOffer {
            id,
            request_id: request,
            sealed: Some(self.sealer.seal(code.expose().as_bytes(), aad(id, request).as_bytes())),
            created_at: at,
        };
        drop(code);
        let forget_before = at - chrono::Duration::from_std(FORGET_AFTER).unwrap_or(chrono::Duration::zero());
        self.store
            .offer_code(&offer, forget_before)
            .await
            .map_err(|e| DeliverError::Unavailable(e.to_string()))?;
        if let Err(e) = self.signals.notify(&format!("{OFFERED}{request}")).await {
            // Nobody was told: withdraw it (unless it was taken after all).
            return match self.store.close_code_offer(id).await {
                Ok(Some(CodeOfferState::Taken)) => Ok(()),
                _ => Err(DeliverError::Unavailable(e.to_string())),
            };
        }
        // The answer's doorbell, or the deadline; either way the row says what happened.
        let _ = tokio::time::timeout(self.answer_within, rx).await;
        match self.store.close_code_offer(id).await {
            Ok(Some(CodeOfferState::Taken)) => Ok(()),
            Ok(Some(CodeOfferState::Refused)) => Err(DeliverError::NoWaiter),
            Ok(Some(CodeOfferState::Offered) | None) => Err(DeliverError::OwnerGone),
            Err(e) => Err(DeliverError::Unavailable(e.to_string())),
        }
    }
}

#[async_trait]
impl AssistanceBroker for PgBroker {
    async fn register(&self, request: AssistanceRequestId) -> Result<Box<dyn CodeWait>, BrokerError> {
        lock(&self.held).insert(request);
        self.local.register(request).await
    }

    async fn deliver(&self, request: AssistanceRequestId, code: OtpCode) -> Result<(), DeliverError> {
        if lock(&self.held).contains(&request) {
            // The login is in this process: as fast as a single instance.
            return self.local.deliver(request, code).await;
        }
        self.offer(request, code).await
    }

    async fn withdraw(&self, request: AssistanceRequestId) -> Result<(), BrokerError> {
        lock(&self.held).remove(&request);
        self.local.withdraw(request).await
    }

    #[cfg(any(test, feature = "test-support"))]
    fn is_waiting(&self, request: AssistanceRequestId) -> bool {
        self.local.is_waiting(request)
    }

    fn holds(&self, request: AssistanceRequestId) -> bool {
        lock(&self.held).contains(&request)
    }

    fn spans_instances(&self) -> bool {
        true
    }
}
