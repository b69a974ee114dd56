//! Open streams learn at once that a credential may have ended.
//!
//! A stream (`/v1/events`, the dashboard's SSE and WebSocket) or a held long-poll authenticated
//! once, when it opened. When an API key is revoked or a dashboard login ends (here or, through
//! the shared signal channel, on another instance), [`Revocations::announce`] wakes every one
//! of them to re-check its own credential; those whose credential is gone end. The
//! announcement names nothing: a credential is only ever judged by reading it again.

use tokio::sync::watch;

/// See the module's documentation.
pub struct Revocations(watch::Sender<u64>);

impl Default for Revocations {
    fn default() -> Self {
        Self(watch::Sender::new(0))
    }
}

impl Revocations {
    /// Some credential may have ended: every waiting stream re-checks its own.
    pub fn announce(&self) {
        self.0.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Changes with every announcement made after this call.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_announcement_wakes_every_subscriber_made_before_it() {
        let r = Revocations::default();
        let (mut a, mut b) = (r.subscribe(), r.subscribe());
        assert!(!a.has_changed().unwrap_or(true));
        r.announce();
        assert!(a.changed().await.is_ok());
        assert!(b.changed().await.is_ok());
        assert!(!a.has_changed().unwrap_or(true));
    }
}
