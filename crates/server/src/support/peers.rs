//! The other instances on the same database (issue 11): what this instance tells them when a
//! cache of theirs went stale. A single instance has no peers ([`Alone`]); on PostgreSQL the
//! composition root plugs in one that sends a `NOTIFY` (`app::cluster`).

use async_trait::async_trait;
use uuid::Uuid;

/// A cached view that changed in the database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invalidation {
    /// An API key (by its public prefix) was revoked.
    Key(String),
    /// An account was deleted.
    Account(Uuid),
}

impl Invalidation {
    /// The signal payload: `k:<prefix>` or `a:<account id>`.
    pub fn encode(&self) -> String {
        match self {
            Invalidation::Key(prefix) => format!("k:{prefix}"),
            Invalidation::Account(id) => format!("a:{id}"),
        }
    }

    /// The invalidation a payload carries, if it is one.
    pub fn decode(payload: &str) -> Option<Self> {
        match payload.split_once(':')? {
            ("k", prefix) if !prefix.is_empty() => Some(Invalidation::Key(prefix.to_owned())),
            ("a", id) => id.parse().ok().map(Invalidation::Account),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("could not reach the other instances: {0}")]
pub struct PeersError(pub String);

#[async_trait]
pub trait Peers: Send + Sync + 'static {
    /// Tells every other instance to drop its cached view; returns once the database has taken
    /// the announcement.
    async fn announce(&self, what: &Invalidation) -> Result<(), PeersError>;
}

/// One instance: nobody to tell.
pub struct Alone;

#[async_trait]
impl Peers for Alone {
    async fn announce(&self, _: &Invalidation) -> Result<(), PeersError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_others_are_not_invalidations() {
        let id = Uuid::new_v4();
        for i in [Invalidation::Key("0a1b2c3d".into()), Invalidation::Account(id)] {
            assert_eq!(Invalidation::decode(&i.encode()), Some(i));
        }
        for other in ["e:42", "k:", "a:not-a-uuid", "", "k", "x:1"] {
            assert_eq!(Invalidation::decode(other), None, "{other}");
        }
    }
}
