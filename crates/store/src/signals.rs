//! Signals between instances on one PostgreSQL database (issue 11): `NOTIFY` on one channel,
//! one `LISTEN`ing connection per instance. A signal is a doorbell, never the data: whoever
//! hears one reads the truth from the database, and a lost connection (after which signals may
//! have been missed) is reported as [`Signal::Reconnected`] so the listener re-reads everything
//! it caches.

use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};

use crate::error::{StoreError, StoreResult};

/// The one channel every instance listens on. Payloads are `<kind>:<detail>` and short (well
/// under PostgreSQL's 8000-byte limit).
pub const CHANNEL: &str = "reconbanker";

/// What a listener hears.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Signal {
    /// A payload sent with [`PgSignals::notify`] (by any instance, this one included).
    Message(String),
    /// The listening connection was lost and is being re-established: signals sent meanwhile
    /// are gone, so re-read what they would have announced.
    Reconnected,
}

/// Sends and listens. Its own small pool, so a busy store pool never delays a signal: the
/// listening connection, and two that send.
///
/// A signal's transaction commits with `synchronous_commit` off. It writes nothing but its
/// commit record (a `NOTIFY` takes a transaction id), and PostgreSQL holds the database's one
/// notification lock from a `NOTIFY`'s commit until that commit returns: with the default, every
/// signal waited for a WAL flush and held every other instance's signals behind that flush — a
/// code handed to another instance queued behind the doorbells of the events just written. A
/// signal needs no durability: after a crash the listeners' connections are gone, and they hear
/// [`Signal::Reconnected`].
#[derive(Clone)]
pub struct PgSignals {
    pool: PgPool,
}

impl PgSignals {
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(3)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::query("SET synchronous_commit = off").execute(conn).await?;
                    Ok(())
                })
            })
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect(url)
            .await?;
        Ok(Self { pool })
    }

    /// Sends `payload` to every listening instance (delivered at once: not in a transaction).
    pub async fn notify(&self, payload: &str) -> StoreResult<()> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(payload)
            .execute(&self.pool)
            .await
            .map_err(StoreError::from)?;
        Ok(())
    }

    /// A listening connection on [`CHANNEL`] (reconnects by itself after a loss).
    pub async fn listen(&self) -> StoreResult<SignalListener> {
        let mut l = PgListener::connect_with(&self.pool).await?;
        l.listen(CHANNEL).await?;
        Ok(SignalListener(l))
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

pub struct SignalListener(PgListener);

impl SignalListener {
    /// The next signal. An error means the connection could not be re-established this time;
    /// calling again retries.
    pub async fn recv(&mut self) -> StoreResult<Signal> {
        match self.0.try_recv().await? {
            Some(n) => Ok(Signal::Message(n.payload().to_owned())),
            None => Ok(Signal::Reconnected),
        }
    }
}
