//! Several instances on one PostgreSQL database (issue 11): this instance's ear on the shared
//! signal channel, and its voice on it ([`PgPeers`]).
//!
//! One `LISTEN` connection per instance hears every signal (its own included) and routes it:
//! `e:<seq>` rings the event bus's reader; `k:<prefix>` and `a:<account>` drop the cached views
//! another instance invalidated; `l:<user>` (a login ended) has the open streams re-check theirs; `s:<account>` asks the engine instances to read an account now; `o:<request>` and `h:<offer>` carry a code between instances
//! (`assistance::pg_broker`). After a lost connection, signals may have been missed: the
//! reader reads the log and every API key is re-read on its next use.

use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use reconbanker_store::signals::{PgSignals, Signal, SignalListener};
use reconbanker_store::AccountId;

use super::AppInner;
use crate::assistance::pg_broker::PgBroker;
use crate::push::pg_bus::PgBus;
use crate::support::peers::{Invalidation, Peers, PeersError};

/// How long the listener waits before listening again after it could not reconnect.
const RETRY: Duration = Duration::from_secs(1);

/// Tells the other instances through `NOTIFY`.
pub(crate) struct PgPeers(pub PgSignals);

#[async_trait]
impl Peers for PgPeers {
    async fn announce(&self, what: &Invalidation) -> Result<(), PeersError> {
        self.0
            .notify(&what.encode())
            .await
            .map_err(|e| PeersError(e.to_string()))
    }

    fn heard(&self) -> bool {
        true
    }
}

/// Routes what `listener` hears until the app is gone.
pub(crate) fn listen(app: Weak<AppInner>, bus: Arc<PgBus>, broker: Arc<PgBroker>, mut listener: SignalListener) {
    tokio::spawn(async move {
        loop {
            let heard = listener.recv().await;
            let Some(app) = app.upgrade() else { return };
            match heard {
                Ok(Signal::Message(payload)) => {
                    if payload.starts_with("e:") {
                        bus.ring();
                    } else if broker.hear(&payload) {
                        // A code handed between instances (`o:` offered, `h:` answered).
                    } else if let Some(what) = Invalidation::decode(&payload) {
                        apply(&app, &what);
                    } else {
                        tracing::debug!(%payload, "ignored an unknown signal");
                    }
                }
                Ok(Signal::Reconnected) => {
                    tracing::warn!("the signal connection was lost and re-established; re-reading what it announces");
                    bus.ring();
                    app.keys.forget_all();
                    broker.recheck();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the signal connection is down; retrying");
                    drop(app);
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    });
}

/// Drops this instance's cached view, as the instance that made the change did.
fn apply(app: &AppInner, what: &Invalidation) {
    match what {
        Invalidation::Key(prefix) => app.keys.forget(prefix),
        Invalidation::Account(id) => {
            let account = AccountId(*id);
            app.accounts.forget(account);
            app.assistance.forget(account);
            app.keys.forget_account(account);
        }
        // Every engine instance hears it: the one with the account's session live reads now;
        // otherwise they race for the session lease and one logs in (the others, refused the
        // lease, stop there). An instance without the engine role starts nothing.
        Invalidation::LoginEnded(_) => app.revocations.announce(),
        Invalidation::Scrape(id) => {
            if app.config.roles.engine {
                app.engine.scrape_now(AccountId(*id));
            }
        }
    }
}
